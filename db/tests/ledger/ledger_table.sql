-- creditgate.ledger (and its companion creditgate_private.lot_movements): the append-only
-- truth. Runs as the owner (creditgate_deployer), the most privileged role the app has.
-- Proves: UPDATE, DELETE and TRUNCATE are refused for the owner too; the sign of delta is
-- set by the trigger from entry_type whatever the caller passes; balance_after continues
-- the user's running sum; constraints on amount, keys and refunds hold.

begin;
set local client_min_messages = warning;
select plan(29);

create function pg_temp.error_of(p_sql text) returns jsonb
language plpgsql as $$
declare
  v_state text;
  v_message text;
begin
  execute p_sql;
  return null;
exception when others then
  get stacked diagnostics v_state = returned_sqlstate, v_message = message_text;
  return jsonb_build_object('sqlstate', v_state, 'message', v_message);
end
$$;

select has_table('creditgate', 'ledger', 'creditgate.ledger exists');
select trigger_is('creditgate', 'ledger', 'ledger_before_insert',
  'creditgate_private', 'tg_ledger__before_insert', 'the sign trigger is installed');
select trigger_is('creditgate', 'ledger', 'ledger_refuse_update_delete',
  'creditgate_private', 'tg_ledger__refuse_change', 'the update/delete guard is installed');
select trigger_is('creditgate', 'ledger', 'ledger_refuse_truncate',
  'creditgate_private', 'tg_ledger__refuse_change', 'the truncate guard is installed');
-- The owner is whichever non-superuser ran the migrations (creditgate_deployer locally, the
-- project's postgres role after `supabase db push`).
select is(current_user::text,
  (select n.nspowner::regrole::text from pg_catalog.pg_namespace as n where n.nspname = 'creditgate'),
  'these tests run as the owner');

select tests.create_user(p_id => 'c1000000-0000-4000-8000-000000000001');  -- 1000 signup bonus
select creditgate_private.spend_credits('c1000000-0000-4000-8000-000000000001', 300, 'l-spend');

-- ---------------------------------------------------------------- append-only
select throws_ok(
  $$ update creditgate.ledger set amount = 1 where idempotency_key = 'l-spend' $$,
  '42501', 'creditgate.ledger is append-only', 'the owner cannot UPDATE a ledger row'
);
select throws_ok(
  $$ update creditgate.ledger set reason = 'tidy up' $$,
  '42501', 'creditgate.ledger is append-only', 'not even a harmless column'
);
select throws_ok(
  $$ delete from creditgate.ledger where idempotency_key = 'l-spend' $$,
  '42501', 'creditgate.ledger is append-only', 'the owner cannot DELETE a ledger row'
);
select throws_ok(
  $$ truncate creditgate.ledger cascade $$,
  '42501', 'creditgate.ledger is append-only', 'the owner cannot TRUNCATE the ledger'
);
select throws_ok(
  $$ truncate creditgate.ledger $$,
  '0A000', 'cannot truncate a table referenced in a foreign key constraint',
  'a plain TRUNCATE is refused as well'
);
select throws_ok(
  $$ update creditgate_private.lot_movements set amount = amount * 2 $$,
  '42501', 'creditgate.ledger is append-only', 'lot movements cannot be updated'
);
select throws_ok(
  $$ delete from creditgate_private.lot_movements $$,
  '42501', 'creditgate.ledger is append-only', 'lot movements cannot be deleted'
);
select throws_ok(
  $$ truncate creditgate_private.lot_movements $$,
  '42501', 'creditgate.ledger is append-only', 'lot movements cannot be truncated'
);
select is(
  (select count(*) from creditgate.ledger where user_id = 'c1000000-0000-4000-8000-000000000001'),
  2::bigint, 'both entries are still there'
);

-- ---------------------------------------------------------------- the trigger sets delta
-- Direct inserts as the owner, each claiming the wrong sign (and a bogus balance_after).
create temp table signs (entry_type text, expected bigint);
insert into signs values
  ('signup_bonus', 1), ('purchase', 1), ('grant', 1), ('admin_recharge', 1), ('refund', 1),
  ('spend', -1), ('expire', -1), ('clawback', -1);
insert into creditgate.ledger (user_id, entry_type, amount, delta, balance_after,
  idempotency_key, request_hash, charge_key)
select 'c1000000-0000-4000-8000-000000000001', s.entry_type, 7, -7 * s.expected, 123456,
  'sign-' || s.entry_type, 'x', case when s.entry_type = 'refund' then 'l-spend' end
from signs as s;
select is_empty(
  $$ select l.entry_type, l.delta from creditgate.ledger as l join signs as s
     on l.idempotency_key = 'sign-' || s.entry_type
     where l.delta <> 7 * s.expected $$,
  'every entry type gets its sign from the trigger, not from the caller'
);
select is(
  (select array_agg(entry_type::text order by entry_type) from creditgate.ledger where delta > 0
     and idempotency_key like 'sign-%'),
  array['admin_recharge', 'grant', 'purchase', 'refund', 'signup_bonus'],
  'credits: signup_bonus, purchase, grant, admin_recharge, refund'
);
select is(
  (select array_agg(entry_type::text order by entry_type) from creditgate.ledger where delta < 0
     and idempotency_key like 'sign-%'),
  array['clawback', 'expire', 'spend'], 'debits: spend, expire, clawback'
);
select is(
  (select balance_after::bigint from creditgate.ledger where idempotency_key = 'sign-grant'),
  721::bigint,
  'balance_after is computed from the balance row, which each entry moves (700 + 7 + 7 + 7), not taken from the caller'
);
select throws_ok(
  $$ insert into creditgate.ledger (user_id, entry_type, amount, delta, balance_after,
       idempotency_key, request_hash)
     values ('c1000000-0000-4000-8000-000000000001', 'grant', 0, 0, 0, 'zero', 'x') $$,
  '23514', 'value for domain creditgate.credits violates check constraint "credits_check"',
  'a zero amount is refused'
);
select throws_ok(
  $$ insert into creditgate.ledger (user_id, entry_type, amount, delta, balance_after,
       idempotency_key, request_hash)
     values ('c1000000-0000-4000-8000-000000000001', 'grant', -5, -5, 0, 'negative', 'x') $$,
  '23514', 'value for domain creditgate.credits violates check constraint "credits_check"',
  'a negative amount is refused'
);
select is(
  pg_temp.error_of($$ insert into creditgate.ledger (user_id, entry_type, amount, delta,
       balance_after, idempotency_key, request_hash)
     values ('c1000000-0000-4000-8000-000000000001', 'bonus', 5, 5, 0, 'bad-type', 'x') $$) ->> 'sqlstate',
  '23514', 'an unknown entry type is refused by the entry_type domain'
);
select throws_ok(
  $$ insert into creditgate.ledger (user_id, entry_type, amount, delta, balance_after,
       idempotency_key, request_hash)
     values ('c1000000-0000-4000-8000-000000000001', 'grant', 5, 5, 0, 'l-spend', 'x') $$,
  '23505', 'duplicate key value violates unique constraint "ledger_idempotency_key_key"',
  'an idempotency key is used once in the whole ledger'
);
select throws_ok(
  $$ insert into creditgate.ledger (user_id, entry_type, amount, delta, balance_after,
       idempotency_key, request_hash)
     values ('c1000000-0000-4000-8000-000000000001', 'refund', 5, 5, 0, 'orphan-refund', 'x') $$,
  '23514', 'a refund, and only a refund, names the charge it refunds (charge_key)',
  'a refund must name its charge'
);
select throws_ok(
  $$ insert into creditgate.ledger (user_id, entry_type, amount, delta, balance_after,
       idempotency_key, request_hash, charge_key)
     values ('c1000000-0000-4000-8000-000000000001', 'spend', 5, 5, 0, 'spend-with-charge', 'x', 'l-spend') $$,
  '23514', 'a refund, and only a refund, names the charge it refunds (charge_key)',
  'only a refund names a charge'
);
select throws_ok(
  $$ insert into creditgate.ledger (user_id, entry_type, amount, delta, balance_after,
       idempotency_key, request_hash)
     values ('c1000000-0000-4000-8000-0000000000ee', 'grant', 5, 5, 0, 'no-user', 'x') $$,
  '23503', 'no balance row for user c1000000-0000-4000-8000-0000000000ee',
  'an entry for a user without a balance row is refused'
);

-- ---------------------------------------------------------------- balance_after chain
select tests.create_user(p_id => 'c1000000-0000-4000-8000-000000000002');
select creditgate_private.grant_credits('c1000000-0000-4000-8000-000000000002', 250, 'purchase', 'c2-g1', 'paid');
select creditgate_private.spend_credits('c1000000-0000-4000-8000-000000000002', 1100, 'c2-s1');
select creditgate_private.refund_credits('c1000000-0000-4000-8000-000000000002', 'c2-s1', 100, 'c2-r1');
select creditgate_private.spend_credits('c1000000-0000-4000-8000-000000000002', 150, 'c2-s2');
select results_eq(
  $$ select entry_type::text, delta, balance_after::bigint from creditgate.ledger
     where user_id = 'c1000000-0000-4000-8000-000000000002' order by id $$,
  $$ values ('signup_bonus'::text, 1000::bigint, 1000::bigint), ('purchase', 250, 1250),
            ('spend', -1100, 150), ('refund', 100, 250), ('spend', -150, 100) $$,
  'balance_after is the running sum of the user''s deltas'
);
select is(
  (select balance from creditgate.balances where user_id = 'c1000000-0000-4000-8000-000000000002'),
  (select balance_after from creditgate.ledger where user_id = 'c1000000-0000-4000-8000-000000000002'
   order by id desc limit 1),
  'the cached balance is the last balance_after'
);
select is(
  (select balance::bigint from creditgate.balances where user_id = 'c1000000-0000-4000-8000-000000000002'),
  (select sum(delta)::bigint from creditgate.ledger where user_id = 'c1000000-0000-4000-8000-000000000002'),
  'and the sum of the deltas'
);
select is(
  (select sum(remaining)::bigint from creditgate.credit_lots where user_id = 'c1000000-0000-4000-8000-000000000002'),
  100::bigint, 'and the sum of the lots'
);

select * from finish();
rollback;
