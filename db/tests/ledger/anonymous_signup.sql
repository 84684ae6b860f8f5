-- Anonymous sign-ins and the signup bonus (DESIGN §3 amendments, issue 17 item 7).
-- Triggers on auth.users: creditgate_on_auth_user_created (insert) and
-- creditgate_on_auth_user_made_permanent (is_anonymous true -> false).
-- Proves: an anonymous user gets setting anonymous_signup_bonus (default 0), never the
-- signup bonus, so minting anonymous users mints no credits; the signup bonus is granted
-- once (key signup:<user_id>) when the user becomes permanent, never again (other updates,
-- a second conversion, a changed setting); permanent sign-ups are unchanged; every change
-- is made as supabase_auth_admin, as GoTrue makes it; the setting is validated.

begin;
set local client_min_messages = warning;
select plan(24);

select trigger_is('auth', 'users', 'creditgate_on_auth_user_made_permanent',
  'creditgate_private', 'tg_users__after_update', 'the conversion trigger is installed on auth.users');

-- ---------------------------------------------------------------- the setting
select is(creditgate_private.setting('anonymous_signup_bonus'), '0'::jsonb,
  'anonymous_signup_bonus defaults to 0');
select is(creditgate_private.setting_problem('anonymous_signup_bonus', '-1'),
  'must be an integer between 0 and 1000000000', 'a negative anonymous bonus is refused');
select is(creditgate_private.setting_problem('anonymous_signup_bonus', '25'), null,
  'an integer anonymous bonus is accepted');

-- ---------------------------------------------------------------- anonymous sign-ins
select tests.create_anonymous_user('17070000-0000-4000-8000-000000000001');
select is(
  (select balance::bigint from creditgate.balances where user_id = '17070000-0000-4000-8000-000000000001'),
  0::bigint, 'an anonymous user gets a balance row with 0 credits'
);
select is(
  (select count(*) from creditgate.ledger where user_id = '17070000-0000-4000-8000-000000000001'),
  0::bigint, 'and no ledger entry: no signup bonus'
);

-- A script minting anonymous users mints no credits.
select tests.create_anonymous_user() from generate_series(1, 50);
select is(
  (select coalesce(sum(b.balance), 0)::bigint
   from creditgate.balances as b inner join auth.users as u on b.user_id = u.id
   where u.is_anonymous),
  0::bigint, 'fifty more anonymous sign-ins hold 0 credits in all'
);

-- ---------------------------------------------------------------- becoming permanent
select tests.make_permanent('17070000-0000-4000-8000-000000000001');
select results_eq(
  $$ select entry_type::text, amount::bigint, idempotency_key::text from creditgate.ledger
     where user_id = '17070000-0000-4000-8000-000000000001' $$,
  $$ values ('signup_bonus'::text, 1000::bigint, 'signup:17070000-0000-4000-8000-000000000001'::text) $$,
  'becoming permanent grants the signup bonus, keyed signup:<user_id>'
);
select is(
  (select balance::bigint from creditgate.balances where user_id = '17070000-0000-4000-8000-000000000001'),
  1000::bigint, 'the converted user now holds the bonus'
);
select results_eq(
  $$ select category::text, amount::bigint from creditgate.credit_lots
     where user_id = '17070000-0000-4000-8000-000000000001' $$,
  $$ values ('promotional'::text, 1000::bigint) $$,
  'as one promotional lot'
);

-- Later updates by GoTrue (sign-ins, metadata) grant nothing.
set local role supabase_auth_admin;
update auth.users set last_sign_in_at = now(), raw_user_meta_data = '{"name": "x"}'
where id = '17070000-0000-4000-8000-000000000001';
update auth.users set is_anonymous = false where id = '17070000-0000-4000-8000-000000000001';
reset role;
select is(
  (select count(*) from creditgate.ledger where user_id = '17070000-0000-4000-8000-000000000001'),
  1::bigint, 'other updates, and setting is_anonymous false again, grant nothing more'
);

-- Flipped back to anonymous and converted again, after the bonus changed: the update
-- still succeeds (GoTrue's update never fails because of creditgate), and no second bonus.
insert into creditgate_private.settings (key, value) values ('signup_bonus', '300');
set local role supabase_auth_admin;
update auth.users set is_anonymous = true where id = '17070000-0000-4000-8000-000000000001';
reset role;
select lives_ok(
  $$ select tests.make_permanent('17070000-0000-4000-8000-000000000001') $$,
  'a second conversion succeeds'
);
select is(
  (select count(*) from creditgate.ledger where user_id = '17070000-0000-4000-8000-000000000001'),
  1::bigint, 'and grants no second bonus'
);
select is(
  (select balance::bigint from creditgate.balances where user_id = '17070000-0000-4000-8000-000000000001'),
  1000::bigint, 'the balance is unchanged'
);

-- Several users converted in one statement each get their own bonus, of the current setting.
select tests.create_anonymous_user('17070000-0000-4000-8000-000000000002');
select tests.create_anonymous_user('17070000-0000-4000-8000-000000000003');
set local role supabase_auth_admin;
update auth.users set is_anonymous = false
where id in ('17070000-0000-4000-8000-000000000002', '17070000-0000-4000-8000-000000000003');
reset role;
select results_eq(
  $$ select idempotency_key::text, amount::bigint from creditgate.ledger
     where user_id in ('17070000-0000-4000-8000-000000000002', '17070000-0000-4000-8000-000000000003')
     order by idempotency_key $$,
  $$ values ('signup:17070000-0000-4000-8000-000000000002'::text, 300::bigint),
            ('signup:17070000-0000-4000-8000-000000000003'::text, 300::bigint) $$,
  'a conversion of two users grants each their bonus, at the current setting'
);

-- ---------------------------------------------------------------- an anonymous bonus
insert into creditgate_private.settings (key, value) values ('anonymous_signup_bonus', '25');
select tests.create_anonymous_user('17070000-0000-4000-8000-000000000004');
select results_eq(
  $$ select entry_type::text, amount::bigint, idempotency_key::text from creditgate.ledger
     where user_id = '17070000-0000-4000-8000-000000000004' $$,
  $$ values ('signup_bonus'::text, 25::bigint, 'signup:anonymous:17070000-0000-4000-8000-000000000004'::text) $$,
  'with anonymous_signup_bonus 25 an anonymous user gets 25, keyed signup:anonymous:<user_id>'
);
select tests.make_permanent('17070000-0000-4000-8000-000000000004');
select results_eq(
  $$ select idempotency_key::text, amount::bigint from creditgate.ledger
     where user_id = '17070000-0000-4000-8000-000000000004' order by id $$,
  $$ values ('signup:anonymous:17070000-0000-4000-8000-000000000004'::text, 25::bigint),
            ('signup:17070000-0000-4000-8000-000000000004'::text, 300::bigint) $$,
  'and the signup bonus on conversion, under its own key'
);
select is(
  (select balance::bigint from creditgate.balances where user_id = '17070000-0000-4000-8000-000000000004'),
  325::bigint, 'both bonuses are in the balance'
);

-- ---------------------------------------------------------------- permanent sign-ups
select tests.create_user(p_id => '17070000-0000-4000-8000-000000000005');
select results_eq(
  $$ select idempotency_key::text, amount::bigint from creditgate.ledger
     where user_id = '17070000-0000-4000-8000-000000000005' $$,
  $$ values ('signup:17070000-0000-4000-8000-000000000005'::text, 300::bigint) $$,
  'a permanent sign-up gets the signup bonus at once, as before'
);
set local role supabase_auth_admin;
update auth.users set is_anonymous = false, updated_at = now()
where id = '17070000-0000-4000-8000-000000000005';
reset role;
select is(
  (select count(*) from creditgate.ledger where user_id = '17070000-0000-4000-8000-000000000005'),
  1::bigint, 'and nothing more on later updates'
);

-- A user who was anonymous before creditgate was installed has no balance row yet.
alter table auth.users disable trigger creditgate_on_auth_user_created;
select tests.create_anonymous_user('17070000-0000-4000-8000-000000000006');
alter table auth.users enable trigger creditgate_on_auth_user_created;
select tests.make_permanent('17070000-0000-4000-8000-000000000006');
select is(
  (select balance::bigint from creditgate.balances where user_id = '17070000-0000-4000-8000-000000000006'),
  300::bigint, 'a conversion creates the missing balance row and grants the bonus'
);

-- ---------------------------------------------------------------- the setting through the API
select tests.create_user(p_id => '17070000-0000-4000-8000-0000000000ad');
select tests.make_admin('17070000-0000-4000-8000-0000000000ad');
select tests.as_user('17070000-0000-4000-8000-0000000000ad');
select is(creditgate.admin_set_setting('anonymous_signup_bonus', '0') -> 'value', '0'::jsonb,
  'an admin sets anonymous_signup_bonus');
select throws_ok(
  $$ select creditgate.admin_set_setting('anonymous_signup_bonus', '"10"') $$,
  'PT400', 'invalid_request', 'a non-integer anonymous bonus is refused'
);
select tests.as_owner();

select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit is clean');
select tests.as_owner();

select * from finish();
rollback;
