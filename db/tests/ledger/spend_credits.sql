-- creditgate_private.spend_credits: the charge primitive, called as the owner (as
-- request_generation does inside its transaction).
-- Proves: success figures and ledger row, burn order (priority, soonest expiry with
-- never-expiring last, promotional before paid, oldest first) and exactly which lots each
-- spend hits, expiry at the instant, every error (exact SQLSTATE, message and DETAIL),
-- idempotent replay and key mismatch, the key's lock.

begin;
select plan(40);

-- hits(key): which lots the entry under key moved, as 'label:taken' sorted by label.
create temp table lots (label text primary key, id uuid not null unique);
create function pg_temp.hits(p_key text) returns text
language sql as $$
  select coalesce(string_agg(n.label || ':' || (-m.amount)::text, ',' order by n.label), '')
  from creditgate_private.lot_movements as m
  join creditgate.ledger as l on l.id = m.ledger_id
  join pg_temp.lots as n on n.id = m.lot_id
  where l.idempotency_key = p_key
$$;

-- ---------------------------------------------------------------- success and replay
select tests.create_user(p_id => 'a1000000-0000-4000-8000-000000000001');  -- 1000 signup bonus

select is(
  creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000001', 100, 'charge-1') - 'entry_id',
  '{"entry_type": "spend", "amount": 100, "balance": 900, "replayed": false}'::jsonb,
  'a spend returns its type, amount, the balance after and replayed=false'
);
select results_eq(
  $$ select entry_type::text, amount::bigint, delta, balance_after::bigint from creditgate.ledger
     where idempotency_key = 'charge-1' $$,
  $$ values ('spend'::text, 100::bigint, -100::bigint, 900::bigint) $$,
  'the spend is one ledger row with a negative delta and balance_after'
);
select is(
  (select balance::bigint from creditgate.balances where user_id = 'a1000000-0000-4000-8000-000000000001'),
  900::bigint, 'the cached balance moved with the ledger'
);
select is(
  creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000001', 100, 'charge-1'),
  (select jsonb_build_object('entry_id', id, 'entry_type', 'spend', 'amount', 100, 'balance', 900,
     'replayed', true) from creditgate.ledger where idempotency_key = 'charge-1'),
  'the same key and request replays the original result with replayed=true'
);
select creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000001', 50, 'charge-2');
select ok(
  exists (
    select 1 from pg_locks
    where pid = pg_backend_pid() and locktype = 'advisory' and granted and mode = 'ExclusiveLock'
      and classid = 1667720057 and objid = hashtext('charge-2')::oid
  ),
  'the spend holds its key''s lock to commit (two users'' calls with one key take turns)'
);
select is(
  creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000001', 100, 'charge-1') ->> 'balance',
  '900', 'a replay returns the original balance, not the current one'
);
select is(
  (select count(*) from creditgate.ledger where user_id = 'a1000000-0000-4000-8000-000000000001'
     and entry_type = 'spend'),
  2::bigint, 'replays posted nothing'
);
select is(
  (select balance::bigint from creditgate.balances where user_id = 'a1000000-0000-4000-8000-000000000001'),
  850::bigint, 'replays charged nothing'
);

-- ---------------------------------------------------------------- errors
select throws_ok(
  $$ select creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000001', 101, 'charge-1') $$,
  'PT409', 'idempotency_key_reused', 'the same key with another amount is PT409'
);
select throws_ok(
  $$ select creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000001', 100, 'charge-1',
       'a1000000-0000-4000-8000-0000000000ff') $$,
  'PT409', 'idempotency_key_reused', 'the same key for another generation is PT409'
);
select tests.create_user(p_id => 'a1000000-0000-4000-8000-000000000002');
select throws_ok(
  $$ select creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000002', 100, 'charge-1') $$,
  'PT409', 'idempotency_key_reused', 'the same key for another user is PT409'
);
select is(
  tests.error_json($$ select creditgate_private.spend_credits(
    'a1000000-0000-4000-8000-000000000001', 100, 'charge-1', null, 'other reason') $$),
  null, 'the reason is not part of the request: a replay with another reason is still a replay'
);
select throws_ok(
  $$ select creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000001', 851, 'charge-3') $$,
  'PT402', 'insufficient_credits', 'spending more than the balance is PT402'
);
select is(
  tests.error_json($$ select creditgate_private.spend_credits(
    'a1000000-0000-4000-8000-000000000001', 851, 'charge-3') $$) -> 'detail',
  '{"required": 851, "available": 850}'::jsonb, 'PT402 DETAIL says what was required and available'
);
select is(
  creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000001', 850, 'charge-3') ->> 'balance',
  '0', 'exactly the balance can be spent'
);
select throws_ok(
  $$ select creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000001', 1, 'charge-4') $$,
  'PT402', 'insufficient_credits', 'an empty balance cannot spend one credit'
);
select throws_ok(
  $$ select creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000001', 0, 'charge-5') $$,
  'PT400', 'invalid_request', 'amount 0 is PT400'
);
select throws_ok(
  $$ select creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000001', -5, 'charge-5') $$,
  'PT400', 'invalid_request', 'a negative amount is PT400'
);
select is(
  tests.error_json($$ select creditgate_private.spend_credits(
    'a1000000-0000-4000-8000-000000000001', null, 'charge-5') $$),
  '{"sqlstate": "PT400", "message": "invalid_request",
    "detail": {"field": "amount", "reason": "must be a positive integer"}}'::jsonb,
  'a null amount is PT400 naming the field'
);
select throws_ok(
  $$ select creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000001', 1, null) $$,
  'PT400', 'invalid_request', 'a null key is PT400'
);
select throws_ok(
  $$ select creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000001', 1, '') $$,
  'PT400', 'invalid_request', 'an empty key is PT400'
);
select throws_ok(
  $$ select creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000001', 1, 'has space') $$,
  'PT400', 'invalid_request', 'a key with a space is PT400'
);
select is(
  tests.error_json(format($$ select creditgate_private.spend_credits(
    'a1000000-0000-4000-8000-000000000001', 1, %L) $$, repeat('k', 201))) -> 'detail' ->> 'field',
  'idempotency_key', 'a 201-character key is PT400 naming idempotency_key'
);
select throws_ok(
  $$ select creditgate_private.spend_credits('a1000000-0000-4000-8000-0000000000ee', 1, 'charge-6') $$,
  'PT404', 'not_found', 'an unknown user is PT404'
);

-- ---------------------------------------------------------------- burn order
insert into creditgate_private.settings (key, value) values ('signup_bonus', '0');
select tests.create_user(p_id => 'a1000000-0000-4000-8000-000000000003');

-- Ten credits in each lot; labels sort in the expected burn order.
create function pg_temp.lot(
  p_label text, p_category text, p_priority integer, p_expires_at timestamptz,
  p_now timestamptz default now()
) returns void
language sql as $$
  insert into pg_temp.lots (label, id)
  select p_label, (creditgate_private.grant_credits(
    'a1000000-0000-4000-8000-000000000003', 10, 'grant', 'lot-' || p_label, p_category,
    p_expires_at, p_priority, null, '{}', null, p_now
  ) ->> 'lot_id')::uuid;
$$;
-- Granted out of order on purpose: creation order must not matter, only the rule.
select pg_temp.lot('h_p90_promo_1d', 'promotional', 90, now() + interval '1 day');
select pg_temp.lot('g_p50_paid_never_new', 'paid', 50, null);
select pg_temp.lot('e_p50_promo_never', 'promotional', 50, null);
select pg_temp.lot('c_p50_paid_5d', 'paid', 50, now() + interval '5 days');
select pg_temp.lot('f_p50_paid_never_old', 'paid', 50, null);
select pg_temp.lot('d_p50_promo_10d', 'promotional', 50, now() + interval '10 days');
select pg_temp.lot('b_p50_promo_5d', 'promotional', 50, now() + interval '5 days');
select pg_temp.lot('a_p10_paid_never', 'paid', 10, null);
-- Priority 0 and the soonest expiry of all, but already expired: never burned.
select pg_temp.lot('x_p0_promo_expired', 'promotional', 0, now() - interval '1 second',
  now() - interval '1 day');
-- "Oldest first" is the last tie-breaker: f is older than g (both paid, 50, never expiring).
update creditgate.credit_lots set created_at = now() - interval '1 day'
where id = (select id from lots where label = 'f_p50_paid_never_old');

select is(
  creditgate_private.available_credits('a1000000-0000-4000-8000-000000000003', now()),
  80::bigint, 'eight unexpired lots of ten are spendable; the expired lot is not'
);
select creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000003', 15, 'burn-1');
select is(pg_temp.hits('burn-1'), 'a_p10_paid_never:10,b_p50_promo_5d:5',
  'priority first: the priority-10 paid lot burns before any priority-50 lot, even expiring ones');
select creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000003', 20, 'burn-2');
select is(pg_temp.hits('burn-2'), 'b_p50_promo_5d:5,c_p50_paid_5d:10,d_p50_promo_10d:5',
  'then soonest expiry, promotional before paid on the same expiry');
select creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000003', 22, 'burn-3');
select is(pg_temp.hits('burn-3'), 'd_p50_promo_10d:5,e_p50_promo_never:10,f_p50_paid_never_old:7',
  'never-expiring lots after expiring ones, promotional before paid, then the oldest');
select creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000003', 13, 'burn-4');
select is(pg_temp.hits('burn-4'), 'f_p50_paid_never_old:3,g_p50_paid_never_new:10',
  'the newer paid lot only after the older one is empty');
select creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000003', 10, 'burn-5');
select is(pg_temp.hits('burn-5'), 'h_p90_promo_1d:10',
  'the worst priority goes last although it expires soonest');
select is(
  tests.error_json($$ select creditgate_private.spend_credits(
    'a1000000-0000-4000-8000-000000000003', 1, 'burn-6') $$) -> 'detail',
  '{"required": 1, "available": 0}'::jsonb,
  'only the expired lot is left: nothing is spendable'
);
select is(
  (select remaining::bigint from creditgate.credit_lots
   where id = (select id from lots where label = 'x_p0_promo_expired')),
  10::bigint, 'the expired lot was never touched'
);

-- ---------------------------------------------------------------- expiry at the instant
select tests.create_user(p_id => 'a1000000-0000-4000-8000-000000000004');
-- T = now() + 1 hour (now() is fixed for the whole transaction).
insert into lots select 'expiring_at_t', (creditgate_private.grant_credits(
  'a1000000-0000-4000-8000-000000000004', 100, 'grant', 'inst-x', 'promotional',
  now() + interval '1 hour', 10) ->> 'lot_id')::uuid;
insert into lots select 'never', (creditgate_private.grant_credits(
  'a1000000-0000-4000-8000-000000000004', 50, 'grant', 'inst-y', 'paid', null, 50) ->> 'lot_id')::uuid;

select creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000004', 10, 'inst-1',
  p_now => now() + interval '1 hour' - interval '1 microsecond');
select is(pg_temp.hits('inst-1'), 'expiring_at_t:10', 'one microsecond before T the lot is spendable');
select is(
  creditgate_private.available_credits('a1000000-0000-4000-8000-000000000004',
    now() + interval '1 hour' - interval '1 microsecond'),
  140::bigint, 'available just before T counts the expiring lot'
);
select is(
  creditgate_private.available_credits('a1000000-0000-4000-8000-000000000004', now() + interval '1 hour'),
  50::bigint, 'available at T does not: a lot is unspendable from the instant it expires'
);
select is(
  tests.error_json($$ select creditgate_private.spend_credits(
    'a1000000-0000-4000-8000-000000000004', 60, 'inst-2', p_now => now() + interval '1 hour') $$),
  '{"sqlstate": "PT402", "message": "insufficient_credits",
    "detail": {"required": 60, "available": 50}}'::jsonb,
  'at T the 90 unswept credits of the lapsed lot cannot pay'
);
select creditgate_private.spend_credits('a1000000-0000-4000-8000-000000000004', 30, 'inst-3',
  p_now => now() + interval '1 hour');
select is(pg_temp.hits('inst-3'), 'never:30',
  'at T a spend skips the lapsed priority-10 lot and burns the never-expiring one');
select is(
  (select balance::bigint from creditgate.balances where user_id = 'a1000000-0000-4000-8000-000000000004'),
  110::bigint, 'the balance still holds the unswept 90 until the expiry sweep posts them'
);

-- ---------------------------------------------------------------- the books
select is(
  (select count(*) from creditgate_private.lot_movements as m
   inner join creditgate.ledger as l on l.id = m.ledger_id
   where l.entry_type = 'spend' and m.amount >= 0),
  0::bigint, 'spends only ever take from lots'
);
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit is clean after all of it');

select * from finish();
rollback;
