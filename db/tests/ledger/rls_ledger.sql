-- db/policies/ledger.sql: RLS and privileges on the money tables, attacked directly.
-- Proves: anon, authenticated and service_role can neither INSERT, UPDATE nor DELETE rows of
-- ledger, balances or credit_lots (42501) — money moves only through definer functions;
-- a user reads only their own balance, lots and ledger; anon reads no balances; clients see
-- only active credit packs; a user calling service_* functions gets 42501; the private
-- tables are closed to every client role.

begin;
set local client_min_messages = warning;

select tests.create_user(p_id => '07000000-0000-4000-8000-000000000001');  -- 1000 signup bonus
select tests.create_user(p_id => '07000000-0000-4000-8000-000000000002');
select creditgate_private.spend_credits('07000000-0000-4000-8000-000000000002', 10, 'rls-spend');
insert into creditgate.credit_packs (id, name, credits, price_cents, stripe_price_id, active)
values ('on', 'On', 100, 100, 'price_on', true), ('off', 'Off', 100, 100, 'price_off', false);

-- Every direct write, by every client role, on every money table.
create temp table attempts (role text, label text, sql text);
insert into attempts
select r.role, t.tbl || ' ' || o.op, format(o.tmpl, t.tbl, t.col)
from unnest(array['anon', 'authenticated', 'service_role']) as r (role)
cross join (values
  ('creditgate.ledger', 'reason'), ('creditgate.balances', 'plan'), ('creditgate.credit_lots', 'category')
) as t (tbl, col)
cross join (values
  ('INSERT', $$insert into %1$s (user_id) values ('07000000-0000-4000-8000-000000000001')$$),
  ('UPDATE', $$update %1$s set %2$s = %2$s where user_id = '07000000-0000-4000-8000-000000000001'$$),
  ('DELETE', $$delete from %1$s where user_id = '07000000-0000-4000-8000-000000000001'$$)
) as o (op, tmpl);

select plan(27 + 20);

-- attempt(role, sql): run sql as role (impersonated as PostgREST does, transaction-local)
-- and return 'SQLSTATE: message', then switch back to the owner.
create function pg_temp.attempt(p_role text, p_sql text) returns text
language plpgsql as $$
declare
  v_state text;
  v_message text;
begin
  perform set_config('role', p_role, true);
  perform set_config('request.jwt.claims', case p_role
    when 'authenticated' then '{"sub": "07000000-0000-4000-8000-000000000001", "role": "authenticated"}'
    else json_build_object('role', p_role)::text end, true);
  begin
    execute p_sql;
    v_state := 'no error';
  exception when others then
    get stacked diagnostics v_state = returned_sqlstate, v_message = message_text;
  end;
  perform set_config('role', 'none', true);
  return v_state || coalesce(': ' || v_message, '');
end
$$;

select is(
  pg_temp.attempt(a.role, a.sql),
  '42501: permission denied for table ' || split_part(split_part(a.label, ' ', 1), '.', 2),
  a.role || ' cannot ' || split_part(a.label, ' ', 2) || ' ' || split_part(a.label, ' ', 1)
)
from attempts as a
order by a.role, a.label;

select is(
  (select count(*) from creditgate.ledger where user_id = '07000000-0000-4000-8000-000000000001'),
  1::bigint, 'nothing was written'
);

-- ---------------------------------------------------------------- reading
select tests.as_user('07000000-0000-4000-8000-000000000001');
select results_eq(
  $$ select user_id, balance::bigint from creditgate.balances $$,
  $$ values ('07000000-0000-4000-8000-000000000001'::uuid, 1000::bigint) $$,
  'a user reads their own balance row and no other'
);
select is(
  (select count(*) from creditgate.balances where user_id = '07000000-0000-4000-8000-000000000002'),
  0::bigint, 'another user''s balance: 0 rows'
);
select is(
  (select count(*) from creditgate.credit_lots where user_id = '07000000-0000-4000-8000-000000000002'),
  0::bigint, 'another user''s lots: 0 rows'
);
select is(
  (select count(*) from creditgate.ledger where user_id = '07000000-0000-4000-8000-000000000002'),
  0::bigint, 'another user''s ledger: 0 rows'
);
select is(
  (select count(*) from creditgate.ledger where idempotency_key = 'rls-spend'),
  0::bigint, 'not even by its key'
);
select is((select count(*) from creditgate.credit_lots), 1::bigint, 'the user reads their own lot');
select is((select count(*) from creditgate.ledger), 1::bigint, 'and their own ledger entry');
select results_eq(
  $$ select id from creditgate.credit_packs $$, $$ values ('on'::text) $$,
  'a user sees only the active credit pack'
);
select throws_ok(
  $$ select * from creditgate_private.settings $$,
  '42501', 'permission denied for schema creditgate_private', 'a user cannot read private tables'
);

select tests.as_anon();
select throws_ok(
  $$ select * from creditgate.balances $$,
  '42501', 'permission denied for table balances', 'anon reads no balances'
);
select throws_ok(
  $$ select * from creditgate.ledger $$,
  '42501', 'permission denied for table ledger', 'anon reads no ledger'
);
select throws_ok(
  $$ select * from creditgate.credit_lots $$,
  '42501', 'permission denied for table credit_lots', 'anon reads no lots'
);
select results_eq(
  $$ select id from creditgate.credit_packs $$, $$ values ('on'::text) $$,
  'anon sees only the active credit pack'
);
select throws_ok(
  $$ select * from creditgate_private.lot_movements $$,
  '42501', 'permission denied for schema creditgate_private', 'anon cannot read private tables'
);

-- ---------------------------------------------------------------- service functions
select tests.as_user('07000000-0000-4000-8000-000000000001');
select throws_ok(
  $$ select creditgate.service_grant_credits('07000000-0000-4000-8000-000000000001', 1, 'grant', 'x') $$,
  '42501', 'permission denied for function service_grant_credits', 'a user cannot call service_grant_credits'
);
select throws_ok(
  $$ select creditgate.service_apply_checkout('evt', '07000000-0000-4000-8000-000000000001', 'price_on') $$,
  '42501', 'permission denied for function service_apply_checkout', 'a user cannot call service_apply_checkout'
);
select throws_ok(
  $$ select creditgate.service_clawback('evt', '07000000-0000-4000-8000-000000000002', 1, 'x') $$,
  '42501', 'permission denied for function service_clawback', 'a user cannot call service_clawback'
);
select throws_ok(
  $$ select creditgate.service_expire_credits() $$,
  '42501', 'permission denied for function service_expire_credits', 'a user cannot call service_expire_credits'
);
select throws_ok(
  $$ select creditgate_private.spend_credits('07000000-0000-4000-8000-000000000002', 1, 'x') $$,
  '42501', 'permission denied for schema creditgate_private', 'a user cannot reach the private primitives'
);

select tests.as_owner();
select * from finish();
rollback;
