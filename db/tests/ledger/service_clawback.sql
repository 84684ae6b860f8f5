-- creditgate.service_clawback(event_id, user_id, amount, reason), service_role.
-- Proves: a Stripe refund or dispute takes back at most what is spendable, paid lots first
-- (then the usual burn order), never expired credits; the shortfall is recorded in
-- creditgate_private.clawbacks; replay returns the original result; the same event with
-- other arguments is PT409; errors; only service_role may call it.

begin;
set local client_min_messages = warning;
select plan(30);

create temp table lots (label text primary key, id uuid not null unique);
create function pg_temp.moved(p_key text) returns text
language sql security definer as $$
  select coalesce(string_agg(n.label || ':' || m.amount::text, ',' order by n.label), '')
  from creditgate_private.lot_movements as m
  join creditgate.ledger as l on l.id = m.ledger_id
  join pg_temp.lots as n on n.id = m.lot_id
  where l.idempotency_key = p_key
$$;

insert into creditgate_private.settings (key, value) values ('signup_bonus', '0');
select tests.create_user(p_id => '03000000-0000-4000-8000-000000000001');
select tests.create_user(p_id => '03000000-0000-4000-8000-000000000002');
insert into lots select 'promo_p10', (creditgate_private.grant_credits(
  '03000000-0000-4000-8000-000000000001', 100, 'grant', 'g-promo', 'promotional', null, 10) ->> 'lot_id')::uuid;
insert into lots select 'paid_p50', (creditgate_private.grant_credits(
  '03000000-0000-4000-8000-000000000001', 50, 'purchase', 'g-paid50', 'paid', null, 50) ->> 'lot_id')::uuid;
insert into lots select 'paid_p60', (creditgate_private.grant_credits(
  '03000000-0000-4000-8000-000000000001', 10, 'purchase', 'g-paid60', 'paid', null, 60) ->> 'lot_id')::uuid;
insert into lots select 'paid_lapsed', (creditgate_private.grant_credits(
  '03000000-0000-4000-8000-000000000001', 40, 'purchase', 'g-lapsed', 'paid', now() - interval '1 hour',
  0, null, '{}', null, now() - interval '1 day') ->> 'lot_id')::uuid;

-- ---------------------------------------------------------------- paid first, full take
select tests.as_service();
select is(
  creditgate.service_clawback('dp_1', '03000000-0000-4000-8000-000000000001', 30, 'dispute') - 'entry_id',
  '{"requested": 30, "taken": 30, "shortfall": 0, "balance": 170, "replayed": false}'::jsonb,
  'a clawback within what is spendable takes all of it'
);
select is(pg_temp.moved('stripe:dp_1'), 'paid_p50:-30',
  'paid credits go first, ahead of a promotional lot with better priority');
select results_eq(
  $$ select entry_type::text, amount::bigint, delta, reason, metadata from creditgate.ledger
     where idempotency_key = 'stripe:dp_1' $$,
  $$ values ('clawback'::text, 30::bigint, -30::bigint, 'dispute'::text,
       '{"event_id": "dp_1", "requested": 30}'::jsonb) $$,
  'one clawback entry keyed stripe:<event_id>'
);
select is(
  creditgate.service_clawback('dp_2', '03000000-0000-4000-8000-000000000001', 100, 'refund') ->> 'taken',
  '100', 'a second clawback of 100'
);
select is(pg_temp.moved('stripe:dp_2'), 'paid_p50:-20,paid_p60:-10,promo_p10:-70',
  'takes the rest of the paid lots in burn order, then promotional credits');

-- ---------------------------------------------------------------- shortfall
select creditgate.service_clawback('dp_3', '03000000-0000-4000-8000-000000000001', 500, 'chargeback')
  as r3 \gset
select is(
  :'r3'::jsonb - 'entry_id',
  '{"requested": 500, "taken": 30, "shortfall": 470, "balance": 40, "replayed": false}'::jsonb,
  'asked for more than is spendable: takes the 30 left and reports a shortfall of 470'
);
select is(pg_temp.moved('stripe:dp_3'), 'promo_p10:-30', 'the last spendable credits');
select tests.as_owner();
select results_eq(
  $$ select requested, taken, shortfall, ledger_id, reason from creditgate_private.clawbacks
     where idempotency_key = 'stripe:dp_3' $$,
  format($$ values (500::bigint, 30::bigint, 470::bigint, %s::bigint, 'chargeback'::text) $$,
    :'r3'::jsonb ->> 'entry_id'),
  'the clawback record keeps requested, taken and the shortfall'
);
select is(
  (select remaining::bigint from creditgate.credit_lots
   where id = (select id from lots where label = 'paid_lapsed')),
  40::bigint, 'expired credits are never taken (the 40 left are the lapsed lot''s)'
);
select tests.as_service();
select creditgate.service_clawback('dp_4', '03000000-0000-4000-8000-000000000001', 10, 'dispute')
  as r4 \gset
select is(
  :'r4'::jsonb,
  '{"requested": 10, "taken": 0, "shortfall": 10, "entry_id": null, "balance": 40, "replayed": false}'::jsonb,
  'nothing spendable: takes 0, the whole amount is shortfall'
);
select tests.as_owner();
select results_eq(
  $$ select requested, taken, shortfall, ledger_id from creditgate_private.clawbacks
     where idempotency_key = 'stripe:dp_4' $$,
  $$ values (10::bigint, 0::bigint, 10::bigint, null::bigint) $$,
  'a clawback that took nothing is still recorded'
);
select is(
  (select count(*) from creditgate.ledger where idempotency_key = 'stripe:dp_4'),
  0::bigint, 'and posts no ledger entry'
);

-- ---------------------------------------------------------------- replay and mismatch
select tests.as_service();
select is(
  creditgate.service_clawback('dp_3', '03000000-0000-4000-8000-000000000001', 500, 'chargeback'),
  :'r3'::jsonb || '{"replayed": true}', 'a redelivered clawback replays the original result'
);
select is(
  creditgate.service_clawback('dp_4', '03000000-0000-4000-8000-000000000001', 10, 'dispute'),
  :'r4'::jsonb || '{"replayed": true}', 'so does one that took nothing'
);
select is(
  creditgate.service_clawback('dp_3', '03000000-0000-4000-8000-000000000001', 500, 'other words') ->> 'replayed',
  'true', 'the reason is not part of the request'
);
select tests.as_owner();
select is(
  (select count(*) from creditgate.ledger where entry_type = 'clawback'), 3::bigint,
  'replays posted nothing'
);
select is(
  (select balance::bigint from creditgate.balances where user_id = '03000000-0000-4000-8000-000000000001'),
  40::bigint, 'replays took nothing'
);
select tests.as_service();
select throws_ok(
  $$ select creditgate.service_clawback('dp_3', '03000000-0000-4000-8000-000000000001', 501, 'chargeback') $$,
  'PT409', 'idempotency_key_reused', 'the same event with another amount is PT409'
);
select is(
  tests.error_json($$ select creditgate.service_clawback('dp_4',
       '03000000-0000-4000-8000-000000000002', 10, 'dispute') $$),
  '{"sqlstate": "PT409", "message": "idempotency_key_reused",
    "detail": {"idempotency_key": "stripe:dp_4"}}'::jsonb,
  'the same event for another user is PT409'
);

-- ---------------------------------------------------------------- errors
select is(
  tests.error_json($$ select creditgate.service_clawback('dp_5',
       '03000000-0000-4000-8000-000000000001', 0, 'x') $$),
  '{"sqlstate": "PT400", "message": "invalid_request",
    "detail": {"field": "amount", "reason": "must be a positive integer"}}'::jsonb,
  'amount 0 is PT400 naming amount'
);
select throws_ok(
  $$ select creditgate.service_clawback('dp_5', '03000000-0000-4000-8000-000000000001', -1, 'x') $$,
  'PT400', 'invalid_request', 'a negative amount is PT400'
);
select throws_ok(
  $$ select creditgate.service_clawback('dp_5', '03000000-0000-4000-8000-000000000001', null, 'x') $$,
  'PT400', 'invalid_request', 'a null amount is PT400'
);
select is(
  tests.error_json($$ select creditgate.service_clawback(null,
       '03000000-0000-4000-8000-000000000001', 5, 'x') $$) -> 'detail' ->> 'field',
  'event_id', 'a null event id is PT400 naming event_id'
);
select throws_ok(
  $$ select creditgate.service_clawback('', '03000000-0000-4000-8000-000000000001', 5, 'x') $$,
  'PT400', 'invalid_request', 'an empty event id is PT400'
);
select is(
  tests.error_json($$ select creditgate.service_clawback('dp_5',
       '03000000-0000-4000-8000-0000000000ee', 5, 'x') $$),
  '{"sqlstate": "PT404", "message": "not_found", "detail": {"object": "user"}}'::jsonb,
  'an unknown user is PT404'
);
select tests.as_owner();
select is(
  (select count(*) from creditgate_private.clawbacks where idempotency_key = 'stripe:dp_5'),
  0::bigint, 'no refused call recorded anything'
);

-- ---------------------------------------------------------------- who may call
select tests.as_user('03000000-0000-4000-8000-000000000002');
select throws_ok(
  $$ select creditgate.service_clawback('dp_6', '03000000-0000-4000-8000-000000000001', 5, 'x') $$,
  '42501', 'permission denied for function service_clawback', 'a user cannot claw back credits'
);
select tests.as_anon();
select throws_ok(
  $$ select creditgate.service_clawback('dp_6', '03000000-0000-4000-8000-000000000001', 5, 'x') $$,
  '42501', 'permission denied for function service_clawback', 'nor can anon'
);

select tests.as_service();
select is(
  (select c -> 'failures' from jsonb_array_elements(creditgate.audit() -> 'checks') as c
   where c ->> 'name' = 'clawbacks_match_ledger'),
  '0'::jsonb, 'clawback records agree with the ledger'
);
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit is clean');

select * from finish();
rollback;
