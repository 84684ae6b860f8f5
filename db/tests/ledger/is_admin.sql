-- creditgate.is_admin(): whether the caller is an admin, from creditgate_private.admins only.
-- Proves: a forged user_metadata.is_admin claim does not make an admin; a listed user is
-- one; no claims means false; anon cannot call it.

begin;
set local client_min_messages = warning;
select plan(8);

select tests.create_user(p_id => 'f1000000-0000-4000-8000-00000000000a');
select tests.create_user(p_id => 'f1000000-0000-4000-8000-000000000001');
select tests.make_admin('f1000000-0000-4000-8000-00000000000a');

select tests.as_user('f1000000-0000-4000-8000-000000000001');
select is(
  (auth.jwt() -> 'user_metadata' ->> 'is_admin')::boolean, true,
  'the caller claims is_admin in user_metadata'
);
select is(creditgate.is_admin(), false, 'a forged metadata claim does not make an admin');
select set_config('request.jwt.claims',
  '{"sub": "f1000000-0000-4000-8000-000000000001", "role": "authenticated", "is_admin": true,
    "app_metadata": {"is_admin": true}}', true);
select is(creditgate.is_admin(), false, 'nor does any other claim');

select tests.as_user('f1000000-0000-4000-8000-00000000000a');
select is(creditgate.is_admin(), true, 'a user listed in creditgate_private.admins is an admin');

select set_config('request.jwt.claims', '', true);
select is(creditgate.is_admin(), false, 'no claims: not an admin');

select tests.as_anon();
select throws_ok(
  $$ select creditgate.is_admin() $$,
  '42501', 'permission denied for function is_admin', 'anon cannot call is_admin'
);

select tests.as_owner();
select is(
  has_function_privilege('authenticated', 'creditgate.is_admin()', 'execute'), true,
  'authenticated may call is_admin'
);
select is(
  (select count(*) from creditgate_private.admins), 1::bigint,
  'asking changed nothing: one admin'
);

select * from finish();
rollback;
