-- creditgate.audit(since): {ok, checks: [{name, failures, samples}]}, service_role.
-- Proves: a clean ledger audits ok with every check at 0; each kind of corruption (made
-- here as the owner, each inside a savepoint that is rolled back) makes ok=false and is
-- reported by the check that names it, with samples; `since` limits per-user checks;
-- only service_role may call it.

begin;
set local client_min_messages = warning;
select plan(35);

-- failing(audit): names of the checks with failures, sorted.
create function pg_temp.failing(p_audit jsonb) returns text[]
language sql as $$
  select coalesce(array_agg(c ->> 'name' order by c ->> 'name'), '{}')
  from jsonb_array_elements(p_audit -> 'checks') as c
  where (c ->> 'failures')::bigint > 0
$$;
create function pg_temp.check_of(p_audit jsonb, p_name text) returns jsonb
language sql as $$
  select c from jsonb_array_elements(p_audit -> 'checks') as c where c ->> 'name' = p_name
$$;

-- Some honest activity: grants, spends, a refund, a clawback, an expiry.
select tests.create_user(p_id => '06000000-0000-4000-8000-000000000001');  -- 1000 signup bonus
select tests.create_user(p_id => '06000000-0000-4000-8000-000000000002');
select (creditgate_private.grant_credits('06000000-0000-4000-8000-000000000001', 200, 'purchase', 'a-buy',
  'paid', now() + interval '1 day') ->> 'lot_id') as paid_lot \gset
select creditgate_private.spend_credits('06000000-0000-4000-8000-000000000001', 300, 'a-spend');
select creditgate_private.refund_credits('06000000-0000-4000-8000-000000000001', 'a-spend', 100, 'a-refund');
select creditgate_private.spend_credits('06000000-0000-4000-8000-000000000002', 10, 'b-spend');
select tests.as_service();
select creditgate.service_clawback('a-dispute', '06000000-0000-4000-8000-000000000002', 5000, 'dispute');
select creditgate.service_expire_credits(now => now() + interval '2 days');

-- ---------------------------------------------------------------- clean
select creditgate.audit() as clean \gset
select is((:'clean'::jsonb ->> 'ok')::boolean, true, 'a clean ledger audits ok');
select is(pg_temp.failing(:'clean'), '{}'::text[], 'every check reports 0 failures');
select ok(
  (select array_agg(c ->> 'name') from jsonb_array_elements(:'clean'::jsonb -> 'checks') as c)
  @> array['balance_matches_ledger_and_lots', 'balance_after_chain', 'entry_lot_movements_match_delta',
           'lot_remaining_matches_movements', 'lot_movements_reference_entries_and_lots',
           'idempotency_keys_unique', 'refunds_within_charge',
           'clawbacks_match_ledger', 'settings_known_and_typed'],
  'the audit runs every ledger check'
);
select is(
  (select count(*) from jsonb_array_elements(:'clean'::jsonb -> 'checks') as c
   where not (c ? 'name' and c ? 'failures' and c ? 'samples')),
  0::bigint, 'each check reports name, failures and samples'
);

-- ---------------------------------------------------------------- corruptions (as the owner)
select tests.as_owner();

-- 1. The cached balance edited directly.
savepoint c1; -- noqa: PRS
update creditgate.balances set balance = balance + 5 where user_id = '06000000-0000-4000-8000-000000000001';
select creditgate.audit() as c1 \gset
rollback to savepoint c1; -- noqa: PRS
select is((:'c1'::jsonb ->> 'ok')::boolean, false, 'an edited balance: ok is false');
select is(pg_temp.failing(:'c1'), array['balance_matches_ledger_and_lots'], 'reported by the balance check alone');
select is(
  pg_temp.check_of(:'c1', 'balance_matches_ledger_and_lots') -> 'samples' -> 0 ->> 'user_id',
  '06000000-0000-4000-8000-000000000001', 'the sample names the user'
);

-- 2. Triggers disabled, a debit posted with a positive delta.
savepoint c2; -- noqa: PRS
alter table creditgate.ledger disable trigger user;
insert into creditgate.ledger (user_id, entry_type, amount, delta, balance_after, idempotency_key, request_hash)
values ('06000000-0000-4000-8000-000000000002', 'spend', 5, 5, 5, 'wrong-sign', 'x');
select creditgate.audit() as c2 \gset
rollback to savepoint c2; -- noqa: PRS
select is((:'c2'::jsonb ->> 'ok')::boolean, false, 'a spend with a positive delta: ok is false');
select ok(
  pg_temp.failing(:'c2') @> array['balance_matches_ledger_and_lots', 'entry_lot_movements_match_delta'],
  'reported by the balance and the lot movement checks'
);

-- 3. Triggers on, a credit inserted directly (no lot; the trigger moves the balance, so the
--    lots no longer add up to it).
savepoint c3; -- noqa: PRS
insert into creditgate.ledger (user_id, entry_type, amount, delta, balance_after, idempotency_key, request_hash)
values ('06000000-0000-4000-8000-000000000001', 'grant', 50, 0, 0, 'direct-grant', 'x');
select creditgate.audit() as c3 \gset
rollback to savepoint c3; -- noqa: PRS
select is((:'c3'::jsonb ->> 'ok')::boolean, false, 'a direct ledger insert: ok is false');
select is(pg_temp.failing(:'c3'),
  array['balance_matches_ledger_and_lots', 'entry_lot_movements_match_delta'],
  'the balance disagrees and the entry moved no lot');
select is(
  pg_temp.check_of(:'c3', 'entry_lot_movements_match_delta') -> 'samples' -> 0 -> 'delta',
  '50'::jsonb, 'the sample shows the entry''s delta'
);

-- 4. A wrong balance_after, everything else made consistent.
savepoint c4; -- noqa: PRS
alter table creditgate.ledger disable trigger ledger_before_insert;
with e as (
  insert into creditgate.ledger (user_id, entry_type, amount, delta, balance_after, idempotency_key, request_hash)
  values ('06000000-0000-4000-8000-000000000001', 'grant', 10, 10, 999999, 'bad-chain', 'x')
  returning id
), lot as (
  insert into creditgate.credit_lots (user_id, category, amount, remaining, source_entry_id)
  select '06000000-0000-4000-8000-000000000001', 'promotional', 10, 10, e.id from e
  returning id, source_entry_id
)
insert into creditgate_private.lot_movements (ledger_id, lot_id, amount)
select lot.source_entry_id, lot.id, 10 from lot;
update creditgate.balances set balance = balance + 10 where user_id = '06000000-0000-4000-8000-000000000001';
select creditgate.audit() as c4 \gset
rollback to savepoint c4; -- noqa: PRS
select is((:'c4'::jsonb ->> 'ok')::boolean, false, 'a broken balance_after: ok is false');
select is(pg_temp.failing(:'c4'), array['balance_after_chain'], 'reported by the balance_after chain alone');

-- 5. The unique constraint dropped and a key applied twice.
savepoint c5; -- noqa: PRS
alter table creditgate.ledger drop constraint ledger_idempotency_key_key;
insert into creditgate.ledger (user_id, entry_type, amount, delta, balance_after, idempotency_key, request_hash)
values ('06000000-0000-4000-8000-000000000001', 'spend', 1, 0, 0, 'a-spend', 'x');
select creditgate.audit() as c5 \gset
rollback to savepoint c5; -- noqa: PRS
select is((:'c5'::jsonb ->> 'ok')::boolean, false, 'a key applied twice: ok is false');
select ok('idempotency_keys_unique' = any(pg_temp.failing(:'c5')), 'reported by the key check');
select is(
  pg_temp.check_of(:'c5', 'idempotency_keys_unique') -> 'samples',
  '[{"idempotency_key": "a-spend", "entries": 2}]'::jsonb, 'the sample names the key and its count'
);

-- 6. A lot's remaining edited directly.
savepoint c6; -- noqa: PRS
update creditgate.credit_lots set remaining = remaining + 1 where id = :'paid_lot';
select creditgate.audit() as c6 \gset
rollback to savepoint c6; -- noqa: PRS
select is((:'c6'::jsonb ->> 'ok')::boolean, false, 'an edited lot: ok is false');
select is(pg_temp.failing(:'c6'),
  array['balance_matches_ledger_and_lots', 'lot_remaining_matches_movements'],
  'the lots no longer sum to the balance, nor the lot to its movements');

-- 6b. A lot left holding more than it was created with (its movements still agree). The
--     signup bonus lot: the paid lot is empty by now, and a lot's amount must be positive.
savepoint c6b; -- noqa: PRS
update creditgate.credit_lots set amount = remaining - 1
where user_id = '06000000-0000-4000-8000-000000000001' and category = 'promotional';
select creditgate.audit() as c6b \gset
rollback to savepoint c6b; -- noqa: PRS
select is(pg_temp.failing(:'c6b'), array['lot_remaining_matches_movements'],
  'a lot holding more than its amount is reported by the lot check');

-- 6c. A movement naming a lot that does not exist.
savepoint c6c; -- noqa: PRS
insert into creditgate_private.lot_movements (ledger_id, lot_id, amount)
select min(l.id), 'dead0000-0000-4000-8000-000000000001', 1 from creditgate.ledger as l
where l.user_id = '06000000-0000-4000-8000-000000000001';
select creditgate.audit() as c6c \gset
rollback to savepoint c6c; -- noqa: PRS
select ok('lot_movements_reference_entries_and_lots' = any(pg_temp.failing(:'c6c')),
  'a movement into a missing lot is reported');
select is(
  pg_temp.check_of(:'c6c', 'lot_movements_reference_entries_and_lots') -> 'samples' -> 0 ->> 'lot_id',
  'dead0000-0000-4000-8000-000000000001', 'the sample names the missing lot'
);

-- 7. More refunded than charged, everything else made consistent (the credits land in a
--    new lot so that lots, movements and the balance, which the ledger trigger moves, all
--    agree).
savepoint c7; -- noqa: PRS
with e as (
  insert into creditgate.ledger (user_id, entry_type, amount, delta, balance_after, idempotency_key,
    request_hash, charge_key)
  values ('06000000-0000-4000-8000-000000000001', 'refund', 250, 0, 0, 'over-refund', 'x', 'a-spend')
  returning id
), lot as (
  insert into creditgate.credit_lots (user_id, category, amount, remaining, source_entry_id)
  select '06000000-0000-4000-8000-000000000001', 'promotional', 250, 250, e.id from e
  returning id, source_entry_id
)
insert into creditgate_private.lot_movements (ledger_id, lot_id, amount)
select lot.source_entry_id, lot.id, 250 from lot;
select creditgate.audit() as c7 \gset
rollback to savepoint c7; -- noqa: PRS
select is((:'c7'::jsonb ->> 'ok')::boolean, false, 'refunds above the charge: ok is false');
select is(pg_temp.failing(:'c7'), array['refunds_within_charge'], 'reported by the refund check alone');

-- 8. A refund of a charge that does not exist, everything else made consistent.
savepoint c8; -- noqa: PRS
with e as (
  insert into creditgate.ledger (user_id, entry_type, amount, delta, balance_after, idempotency_key,
    request_hash, charge_key)
  values ('06000000-0000-4000-8000-000000000001', 'refund', 40, 0, 0, 'orphan-refund', 'x', 'no-such-charge')
  returning id
), lot as (
  insert into creditgate.credit_lots (user_id, category, amount, remaining, source_entry_id)
  select '06000000-0000-4000-8000-000000000001', 'promotional', 40, 40, e.id from e
  returning id, source_entry_id
)
insert into creditgate_private.lot_movements (ledger_id, lot_id, amount)
select lot.source_entry_id, lot.id, 40 from lot;
select creditgate.audit() as c8 \gset
rollback to savepoint c8; -- noqa: PRS
select is(pg_temp.failing(:'c8'), array['refunds_within_charge'],
  'a refund of no charge at all is reported by the refund check');

-- 9. A refund of another user's charge, everything else made consistent.
savepoint c9; -- noqa: PRS
with e as (
  insert into creditgate.ledger (user_id, entry_type, amount, delta, balance_after, idempotency_key,
    request_hash, charge_key)
  values ('06000000-0000-4000-8000-000000000001', 'refund', 4, 0, 0, 'foreign-refund', 'x', 'b-spend')
  returning id
), lot as (
  insert into creditgate.credit_lots (user_id, category, amount, remaining, source_entry_id)
  select '06000000-0000-4000-8000-000000000001', 'promotional', 4, 4, e.id from e
  returning id, source_entry_id
)
insert into creditgate_private.lot_movements (ledger_id, lot_id, amount)
select lot.source_entry_id, lot.id, 4 from lot;
select creditgate.audit() as c9 \gset
rollback to savepoint c9; -- noqa: PRS
select is(pg_temp.failing(:'c9'), array['refunds_within_charge'],
  'a refund of another user''s charge is reported by the refund check');

-- 10. A clawback record that claims credits were taken without a ledger entry.
savepoint c10; -- noqa: PRS
insert into creditgate_private.clawbacks (idempotency_key, user_id, requested, taken, ledger_id)
values ('stripe:phantom', '06000000-0000-4000-8000-000000000001', 10, 10, null);
select creditgate.audit() as c10 \gset
rollback to savepoint c10; -- noqa: PRS
select is(pg_temp.failing(:'c10'), array['clawbacks_match_ledger'], 'a phantom clawback is reported');

-- 11. A clawback record pointing at an entry that is not its clawback.
savepoint c11; -- noqa: PRS
insert into creditgate_private.clawbacks (idempotency_key, user_id, requested, taken, ledger_id)
select 'stripe:misfiled', '06000000-0000-4000-8000-000000000001', 300, 300, id
from creditgate.ledger where idempotency_key = 'a-spend';
select creditgate.audit() as c11 \gset
rollback to savepoint c11; -- noqa: PRS
select is(pg_temp.failing(:'c11'), array['clawbacks_match_ledger'],
  'a clawback record pointing at a spend is reported');

-- 12. Settings: an unknown key, a known key of the wrong type.
savepoint c12; -- noqa: PRS
insert into creditgate_private.settings (key, value) values ('no_such_setting', '1'), ('signup_bonus', '"lots"');
select creditgate.audit() as c12 \gset
rollback to savepoint c12; -- noqa: PRS
select is(pg_temp.failing(:'c12'), array['settings_known_and_typed'], 'bad settings are reported');
select is(
  (pg_temp.check_of(:'c12', 'settings_known_and_typed') ->> 'failures')::integer, 2, 'both of them'
);

-- 13. since: per-user checks look only at users with ledger activity since then.
savepoint c13; -- noqa: PRS
update creditgate.balances set balance = balance + 5 where user_id = '06000000-0000-4000-8000-000000000001';
select creditgate.audit(now() + interval '1 minute') as c13_later \gset
select creditgate.audit(now()) as c13_now \gset
rollback to savepoint c13; -- noqa: PRS
select is((:'c13_later'::jsonb ->> 'ok')::boolean, true,
  'since after the user''s last activity: the user is not checked');
select is(pg_temp.failing(:'c13_now'), array['balance_matches_ledger_and_lots'],
  'since covering the activity: the user is checked');

select is((creditgate.audit() ->> 'ok')::boolean, true, 'every corruption was rolled back');

-- ---------------------------------------------------------------- who may call
select tests.as_user('06000000-0000-4000-8000-000000000001');
select throws_ok($$ select creditgate.audit() $$, '42501', 'permission denied for function audit',
  'a user cannot run the audit');
select tests.as_anon();
select throws_ok($$ select creditgate.audit() $$, '42501', 'permission denied for function audit',
  'nor can anon');

select * from finish();
rollback;
