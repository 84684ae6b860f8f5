-- creditgate_private.refund_credits: returns a charge's credits, called as the owner.
-- Proves: credits go back to the lots that paid, in reverse burn order; refunds are capped
-- at the charge (a second key gets only the rest, a third gets 0); an expired lot gets its
-- credits back and the sweep then expires them; every error (exact SQLSTATE and message);
-- idempotent replay and key mismatch.

begin;
select plan(35);

-- moved(key): what the entry under key did to each lot, 'label:signed amount' by label.
create temp table lots (label text primary key, id uuid not null unique);
create function pg_temp.moved(p_key text) returns text
language sql as $$
  select coalesce(string_agg(n.label || ':' || m.amount::text, ',' order by n.label), '')
  from creditgate_private.lot_movements as m
  join creditgate.ledger as l on l.id = m.ledger_id
  join pg_temp.lots as n on n.id = m.lot_id
  where l.idempotency_key = p_key
$$;
create function pg_temp.remaining(p_label text) returns bigint
language sql as $$
  select c.remaining from creditgate.credit_lots as c
  where c.id = (select n.id from pg_temp.lots as n where n.label = p_label)
$$;

insert into creditgate_private.settings (key, value) values ('signup_bonus', '0');
select tests.create_user(p_id => 'b1000000-0000-4000-8000-000000000001');
insert into lots select 'a_p10_paid', (creditgate_private.grant_credits(
  'b1000000-0000-4000-8000-000000000001', 10, 'purchase', 'g-a', 'paid', null, 10) ->> 'lot_id')::uuid;
insert into lots select 'b_p50_promo_5d', (creditgate_private.grant_credits(
  'b1000000-0000-4000-8000-000000000001', 10, 'grant', 'g-b', 'promotional',
  now() + interval '5 days', 50) ->> 'lot_id')::uuid;
insert into lots select 'c_p50_promo_never', (creditgate_private.grant_credits(
  'b1000000-0000-4000-8000-000000000001', 100, 'grant', 'g-c', 'promotional', null, 50) ->> 'lot_id')::uuid;

select creditgate_private.spend_credits('b1000000-0000-4000-8000-000000000001', 25, 'chg-1');
select is(pg_temp.moved('chg-1'), 'a_p10_paid:-10,b_p50_promo_5d:-10,c_p50_promo_never:-5',
  'the charge burned a, b and part of c');

-- ---------------------------------------------------------------- partial refund, reverse order
select is(
  creditgate_private.refund_credits('b1000000-0000-4000-8000-000000000001', 'chg-1', 12, 'ref-1')
    - 'entry_id',
  '{"entry_type": "refund", "amount": 12, "refunded": 12, "balance": 107, "replayed": false}'::jsonb,
  'a refund returns what it refunded and the balance after'
);
select is(pg_temp.moved('ref-1'), 'b_p50_promo_5d:7,c_p50_promo_never:5',
  'reverse burn order: the last-burned lot (c) is refilled first, then b');
select results_eq(
  $$ select entry_type::text, amount::bigint, delta, charge_key from creditgate.ledger
     where idempotency_key = 'ref-1' $$,
  $$ values ('refund'::text, 12::bigint, 12::bigint, 'chg-1'::text) $$,
  'the refund entry is positive and names its charge'
);
select is(
  creditgate_private.refund_credits('b1000000-0000-4000-8000-000000000001', 'chg-1', 12, 'ref-1'),
  (select jsonb_build_object('entry_id', id, 'entry_type', 'refund', 'amount', 12, 'refunded', 12,
     'balance', 107, 'replayed', true) from creditgate.ledger where idempotency_key = 'ref-1'),
  'the same key replays the original result with replayed=true'
);
select is(
  (select balance::bigint from creditgate.balances where user_id = 'b1000000-0000-4000-8000-000000000001'),
  107::bigint, 'the replay refunded nothing more'
);
select throws_ok(
  $$ select creditgate_private.refund_credits('b1000000-0000-4000-8000-000000000001', 'chg-1', 13, 'ref-1') $$,
  'PT409', 'idempotency_key_reused', 'the same key with another amount is PT409'
);
select creditgate_private.spend_credits('b1000000-0000-4000-8000-000000000001', 1, 'chg-other');
select throws_ok(
  $$ select creditgate_private.refund_credits('b1000000-0000-4000-8000-000000000001', 'chg-other', 12, 'ref-1') $$,
  'PT409', 'idempotency_key_reused', 'the same key for another charge is PT409'
);
select throws_ok(
  $$ select creditgate_private.refund_credits('b1000000-0000-4000-8000-000000000001', 'chg-1', 25, 'chg-1') $$,
  'PT409', 'idempotency_key_reused', 'a refund cannot reuse the key of the charge itself'
);

-- ---------------------------------------------------------------- capped at the charge
select is(
  creditgate_private.refund_credits('b1000000-0000-4000-8000-000000000001', 'chg-1', 20, 'ref-2')
    - 'entry_id',
  '{"entry_type": "refund", "amount": 13, "refunded": 13, "balance": 119, "replayed": false}'::jsonb,
  'a second key asking 20 gets only the 13 the charge still holds'
);
select is(pg_temp.moved('ref-2'), 'a_p10_paid:10,b_p50_promo_5d:3',
  'b is filled back up, then a (burned first, refilled last)');
select is(
  creditgate_private.refund_credits('b1000000-0000-4000-8000-000000000001', 'chg-1', 5, 'ref-3'),
  '{"entry_id": null, "entry_type": "refund", "amount": 0, "refunded": 0, "balance": 119,
    "replayed": false}'::jsonb,
  'a third key gets 0: nothing is left of the charge'
);
select is(
  (select count(*) from creditgate.ledger where idempotency_key = 'ref-3'),
  0::bigint, 'a refund of nothing posts no entry'
);
select is(
  (select sum(amount) from creditgate.ledger where charge_key = 'chg-1'),
  25::numeric, 'refunds of the charge add up to exactly the charge'
);
select results_eq(
  $$ select label, pg_temp.remaining(label) from lots order by label $$,
  $$ values ('a_p10_paid'::text, 10::bigint), ('b_p50_promo_5d', 9), ('c_p50_promo_never', 100) $$,
  'every lot holds what it held before the charge, less the 1 that b paid for chg-other'
);

-- ---------------------------------------------------------------- errors
select throws_ok(
  $$ select creditgate_private.refund_credits('b1000000-0000-4000-8000-000000000001', 'no-such-charge', 1, 'ref-4') $$,
  'PT404', 'not_found', 'an unknown charge is PT404'
);
select throws_ok(
  $$ select creditgate_private.refund_credits('b1000000-0000-4000-8000-000000000001', 'g-a', 1, 'ref-4') $$,
  'PT404', 'not_found', 'a grant is not a charge: PT404'
);
select tests.create_user(p_id => 'b1000000-0000-4000-8000-000000000002');
select is(
  tests.error_json($$ select creditgate_private.refund_credits(
    'b1000000-0000-4000-8000-000000000002', 'chg-1', 1, 'ref-4') $$),
  '{"sqlstate": "PT404", "message": "not_found", "detail": {"object": "charge"}}'::jsonb,
  'another user''s charge is PT404 for this user'
);
select throws_ok(
  $$ select creditgate_private.refund_credits('b1000000-0000-4000-8000-0000000000ee', 'chg-1', 1, 'ref-4') $$,
  'PT404', 'not_found', 'an unknown user is PT404'
);
select throws_ok(
  $$ select creditgate_private.refund_credits('b1000000-0000-4000-8000-000000000001', 'chg-1', 0, 'ref-4') $$,
  'PT400', 'invalid_request', 'amount 0 is PT400'
);
select is(
  tests.error_json($$ select creditgate_private.refund_credits(
    'b1000000-0000-4000-8000-000000000001', 'chg-1', null, 'ref-4') $$) -> 'detail' ->> 'field',
  'amount', 'a null amount is PT400 naming amount'
);
select is(
  tests.error_json($$ select creditgate_private.refund_credits(
    'b1000000-0000-4000-8000-000000000001', 'chg-1', 1, 'bad key') $$),
  '{"sqlstate": "PT400", "message": "invalid_request",
    "detail": {"field": "idempotency_key", "reason": "1-200 printable ASCII characters, no spaces"}}'::jsonb,
  'a bad key is PT400 naming idempotency_key'
);
select is(
  tests.error_json($$ select creditgate_private.refund_credits(
    'b1000000-0000-4000-8000-000000000001', null, 1, 'ref-4') $$) -> 'detail' ->> 'field',
  'charge_key', 'a null charge key is PT400 naming charge_key'
);

-- ---------------------------------------------------------------- refund into an expired lot
select tests.create_user(p_id => 'b1000000-0000-4000-8000-000000000003');
-- Lot e expired an hour ago (granted a day ago); n never expires.
insert into lots select 'e_expired', (creditgate_private.grant_credits(
  'b1000000-0000-4000-8000-000000000003', 50, 'grant', 'g-e', 'promotional',
  now() - interval '1 hour', 50, null, '{}', null, now() - interval '1 day') ->> 'lot_id')::uuid;
insert into lots select 'n_never', (creditgate_private.grant_credits(
  'b1000000-0000-4000-8000-000000000003', 20, 'purchase', 'g-n', 'paid', null, 50) ->> 'lot_id')::uuid;
-- Two hours ago, before e expired, a charge of 40 burned e.
select creditgate_private.spend_credits('b1000000-0000-4000-8000-000000000003', 40, 'old-chg',
  p_now => now() - interval '2 hours');
select is(pg_temp.moved('old-chg'), 'e_expired:-40', 'the old charge was paid by lot e');

select tests.as_service();
select is(
  creditgate.service_expire_credits() - 'more',
  '{"users": 1, "lots": 1, "credits": 10}'::jsonb, 'the sweep expires the 10 e still held'
);
select tests.as_owner();
select is(
  creditgate_private.refund_credits('b1000000-0000-4000-8000-000000000003', 'old-chg', 40, 'old-ref')
    ->> 'balance',
  '60', 'the full refund lands in the balance'
);
select is(pg_temp.moved('old-ref'), 'e_expired:40', 'the refund goes back to the expired lot that paid');
select is(
  creditgate_private.available_credits('b1000000-0000-4000-8000-000000000003', now()),
  20::bigint, 'refunded credits of an expired lot are not spendable'
);
select throws_ok(
  $$ select creditgate_private.spend_credits('b1000000-0000-4000-8000-000000000003', 21, 'new-chg') $$,
  'PT402', 'insufficient_credits', 'so a spend cannot use them'
);
select tests.as_service();
select is(
  creditgate.service_expire_credits() - 'more',
  '{"users": 1, "lots": 1, "credits": 40}'::jsonb, 'the next sweep expires them'
);
select tests.as_owner();
select is(
  (select array_agg(idempotency_key::text order by id) from creditgate.ledger
   where user_id = 'b1000000-0000-4000-8000-000000000003' and entry_type = 'expire'),
  (select array['expire:' || id || ':1', 'expire:' || id || ':2'] from lots where label = 'e_expired'),
  'each expiry of the lot has its own key'
);
select is(pg_temp.remaining('e_expired'), 0::bigint, 'lot e ends empty');
select is(
  (select balance::bigint from creditgate.balances where user_id = 'b1000000-0000-4000-8000-000000000003'),
  20::bigint, 'the balance is what the unexpired lot holds'
);
select is(
  (select count(*) from creditgate_private.lot_movements as m
   inner join creditgate.ledger as l on l.id = m.ledger_id
   where l.entry_type = 'refund' and m.amount <= 0),
  0::bigint, 'refunds only ever return credits to lots'
);
select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit is clean after all of it');

select * from finish();
rollback;
