-- creditgate.admin_add_credits(user_id, amount, reason, idempotency_key), called as
-- authenticated with the admin check inside the function.
-- Proves: admin rights come only from creditgate_private.admins (a forged
-- user_metadata.is_admin claim gets PT403; no claims gets PT401); success posts an
-- admin_recharge entry and lot; every error; idempotent replay; key mismatch; admin keys
-- live in their own namespace.

begin;
set local client_min_messages = warning;
select plan(23);

select tests.create_user(p_id => 'e1000000-0000-4000-8000-00000000000a');  -- the admin
select tests.create_user(p_id => 'e1000000-0000-4000-8000-000000000001');  -- a user
select tests.make_admin('e1000000-0000-4000-8000-00000000000a');

-- ---------------------------------------------------------------- who may call
select tests.as_user('e1000000-0000-4000-8000-000000000001');
select is(
  (current_setting('request.jwt.claims')::jsonb -> 'user_metadata' ->> 'is_admin'), 'true',
  'the caller carries a forged user_metadata.is_admin claim'
);
select is(
  tests.error_json($$ select creditgate.admin_add_credits('e1000000-0000-4000-8000-000000000001',
       1000000, 'I am admin', 'forged') $$),
  '{"sqlstate": "PT403", "message": "forbidden", "detail": {"requires": "admin"}}'::jsonb,
  'a forged admin claim gets PT403 forbidden'
);
select set_config('request.jwt.claims', '{"role": "authenticated", "app_metadata": {"role": "admin"}}', true);
select throws_ok(
  $$ select creditgate.admin_add_credits('e1000000-0000-4000-8000-000000000001', 5, 'x', 'no-sub') $$,
  'PT401', 'not_authenticated', 'claims without a subject get PT401'
);
select set_config('request.jwt.claims', '', true);
select throws_ok(
  $$ select creditgate.admin_add_credits('e1000000-0000-4000-8000-000000000001', 5, 'x', 'no-claims') $$,
  'PT401', 'not_authenticated', 'no claims at all get PT401'
);
select tests.as_anon();
select throws_ok(
  $$ select creditgate.admin_add_credits('e1000000-0000-4000-8000-000000000001', 5, 'x', 'anon') $$,
  '42501', 'permission denied for function admin_add_credits', 'anon cannot even call it'
);
select tests.as_owner();
select is(
  (select count(*) from creditgate.ledger where entry_type = 'admin_recharge'),
  0::bigint, 'none of those calls granted anything'
);

-- ---------------------------------------------------------------- success
select tests.as_user('e1000000-0000-4000-8000-00000000000a');
create temp table r1 as
select creditgate.admin_add_credits(
  user_id => 'e1000000-0000-4000-8000-000000000001', amount => 250, reason => 'support ticket 42',
  idempotency_key => 'ticket-42'
) as r;
select tests.as_owner();
select is(
  (select r - 'entry_id' - 'lot_id' from r1),
  '{"entry_type": "admin_recharge", "amount": 250, "balance": 1250, "replayed": false}'::jsonb,
  'an admin recharge returns the entry and the balance after'
);
select results_eq(
  $$ select l.idempotency_key::text, l.reason, l.metadata, l.user_id, a.admin_id
     from creditgate.ledger as l, r1, creditgate_private.admin_grants as a
     where l.id = (r1.r ->> 'entry_id')::bigint and a.ledger_id = l.id $$,
  $$ values ('admin:ticket-42'::text, 'support ticket 42'::text, '{}'::jsonb,
       'e1000000-0000-4000-8000-000000000001'::uuid, 'e1000000-0000-4000-8000-00000000000a'::uuid) $$,
  'the entry is keyed admin:<key>, keeps the reason; which admin is recorded server-side only'
);
select results_eq(
  $$ select c.category::text, c.priority::integer, c.expires_at, c.remaining::bigint
     from creditgate.credit_lots as c, r1
     where c.id = (r1.r ->> 'lot_id')::uuid $$,
  $$ values ('promotional'::text, 50, null::timestamptz, 250::bigint) $$,
  'the lot is promotional, priority 50, never expires'
);

-- ---------------------------------------------------------------- replay and mismatch
select tests.as_user('e1000000-0000-4000-8000-00000000000a');
select is(
  creditgate.admin_add_credits('e1000000-0000-4000-8000-000000000001', 250, 'support ticket 42', 'ticket-42'),
  (select r || '{"replayed": true}' from r1),
  'the same key replays the original result with replayed=true'
);
select throws_ok(
  $$ select creditgate.admin_add_credits('e1000000-0000-4000-8000-000000000001', 300, 'support ticket 42', 'ticket-42') $$,
  'PT409', 'idempotency_key_reused', 'the same key with another amount is PT409'
);
select throws_ok(
  $$ select creditgate.admin_add_credits('e1000000-0000-4000-8000-00000000000a', 250, 'support ticket 42', 'ticket-42') $$,
  'PT409', 'idempotency_key_reused', 'the same key for another user is PT409'
);
select tests.as_owner();
select is(
  (select balance::bigint from creditgate.balances where user_id = 'e1000000-0000-4000-8000-000000000001'),
  1250::bigint, 'granted once'
);
-- A service grant under the raw key 'ticket-42' is another key entirely.
select tests.as_service();
select is(
  creditgate.service_grant_credits('e1000000-0000-4000-8000-000000000001', 1, 'grant', 'ticket-42') ->> 'replayed',
  'false', 'an admin key never collides with a system key of the same text'
);

-- ---------------------------------------------------------------- validation
select tests.as_user('e1000000-0000-4000-8000-00000000000a');
select is(
  tests.error_json($$ select creditgate.admin_add_credits('e1000000-0000-4000-8000-000000000001',
       5, null, 'v-1') $$),
  '{"sqlstate": "PT400", "message": "invalid_request", "detail": {"field": "reason", "reason": "required"}}'::jsonb,
  'a missing reason is PT400 naming reason'
);
select throws_ok(
  $$ select creditgate.admin_add_credits('e1000000-0000-4000-8000-000000000001', 5, '   ', 'v-1') $$,
  'PT400', 'invalid_request', 'a blank reason is PT400'
);
select is(
  tests.error_json($$ select creditgate.admin_add_credits('e1000000-0000-4000-8000-000000000001',
       0, 'r', 'v-1') $$) -> 'detail' ->> 'field',
  'amount', 'amount 0 is PT400 naming amount'
);
select throws_ok(
  $$ select creditgate.admin_add_credits('e1000000-0000-4000-8000-000000000001', -5, 'r', 'v-1') $$,
  'PT400', 'invalid_request', 'a negative amount is PT400'
);
select is(
  tests.error_json($$ select creditgate.admin_add_credits('e1000000-0000-4000-8000-000000000001',
       5, 'r', '') $$) -> 'detail' ->> 'field',
  'idempotency_key', 'an empty key is PT400 naming idempotency_key'
);
select throws_ok(
  $$ select creditgate.admin_add_credits('e1000000-0000-4000-8000-000000000001', 5, 'r', null) $$,
  'PT400', 'invalid_request', 'a null key is PT400'
);
select throws_ok(
  $$ select creditgate.admin_add_credits('e1000000-0000-4000-8000-0000000000ee', 5, 'r', 'v-1') $$,
  'PT404', 'not_found', 'an unknown user is PT404'
);
-- The admin check comes first: a non-admin learns nothing from validation errors.
select tests.as_user('e1000000-0000-4000-8000-000000000001');
select throws_ok(
  $$ select creditgate.admin_add_credits('e1000000-0000-4000-8000-0000000000ee', 0, null, null) $$,
  'PT403', 'forbidden', 'a non-admin gets PT403 before any validation'
);

select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit is clean');

select * from finish();
rollback;
