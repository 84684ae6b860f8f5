-- Trigger creditgate_on_auth_user_created on auth.users ->
-- creditgate_private.tg_users__after_insert(): balance row + signup bonus.
-- Proves: a new user gets the bonus from the signup_bonus setting (default 1000) as one
-- promotional lot keyed signup:<user_id>; a changed setting applies to later users; 0
-- grants nothing but still creates the balance row; signup_bonus_expires_days sets the
-- expiry; running the trigger again for the same user cannot grant twice.

begin;
set local client_min_messages = warning;
select plan(16);

select trigger_is('auth', 'users', 'creditgate_on_auth_user_created',
  'creditgate_private', 'tg_users__after_insert', 'the signup trigger is installed on auth.users');

-- ---------------------------------------------------------------- the default bonus
select tests.create_user(p_id => '05000000-0000-4000-8000-000000000001');
select is(
  (select balance::bigint from creditgate.balances where user_id = '05000000-0000-4000-8000-000000000001'),
  1000::bigint, 'a new user starts with the default bonus of 1000'
);
select results_eq(
  $$ select entry_type::text, amount::bigint, idempotency_key::text, reason from creditgate.ledger
     where user_id = '05000000-0000-4000-8000-000000000001' $$,
  $$ values ('signup_bonus'::text, 1000::bigint, 'signup:05000000-0000-4000-8000-000000000001'::text,
       'signup bonus'::text) $$,
  'one signup_bonus entry keyed signup:<user_id>'
);
select results_eq(
  $$ select category::text, priority::integer, amount::bigint, remaining::bigint, expires_at
     from creditgate.credit_lots
     where user_id = '05000000-0000-4000-8000-000000000001' $$,
  $$ values ('promotional'::text, 50, 1000::bigint, 1000::bigint, null::timestamptz) $$,
  'one promotional lot, priority 50, never expiring'
);
select is(
  (select plan from creditgate.balances where user_id = '05000000-0000-4000-8000-000000000001'),
  'free', 'on the free plan'
);

-- ---------------------------------------------------------------- running it again
-- Fire the very same trigger function again for the same user (as a retried or replayed
-- insert would) through a scratch table carrying the user's id.
create temp table rerun (id uuid, is_anonymous boolean not null default false);
create trigger rerun_signup after insert on rerun
  for each row execute function creditgate_private.tg_users__after_insert();
insert into rerun values ('05000000-0000-4000-8000-000000000001');
select is(
  (select count(*) from creditgate.ledger where user_id = '05000000-0000-4000-8000-000000000001'),
  1::bigint, 'running the trigger again posts no second bonus'
);
select is(
  (select balance::bigint from creditgate.balances where user_id = '05000000-0000-4000-8000-000000000001'),
  1000::bigint, 'the balance is unchanged'
);
insert into creditgate_private.settings (key, value) values ('signup_bonus', '250');
select throws_ok(
  $$ insert into rerun values ('05000000-0000-4000-8000-000000000001') $$,
  'PT409', 'idempotency_key_reused', 'a re-run after the bonus changed is refused, not granted again'
);
select is(
  (select count(*) from creditgate.credit_lots where user_id = '05000000-0000-4000-8000-000000000001'),
  1::bigint, 'still one lot'
);

-- ---------------------------------------------------------------- a changed setting
select tests.create_user(p_id => '05000000-0000-4000-8000-000000000002');
select is(
  (select balance::bigint from creditgate.balances where user_id = '05000000-0000-4000-8000-000000000002'),
  250::bigint, 'after the setting changed to 250 a new user gets 250'
);
select is(
  (select amount::bigint from creditgate.ledger where idempotency_key = 'signup:05000000-0000-4000-8000-000000000002'),
  250::bigint, 'as a signup_bonus entry of 250'
);
update creditgate_private.settings set value = '0' where key = 'signup_bonus';
select tests.create_user(p_id => '05000000-0000-4000-8000-000000000003');
select is(
  (select balance::bigint from creditgate.balances where user_id = '05000000-0000-4000-8000-000000000003'),
  0::bigint, 'with signup_bonus 0 a new user gets a balance row with 0'
);
select is(
  (select count(*) from creditgate.ledger where user_id = '05000000-0000-4000-8000-000000000003'),
  0::bigint, 'and no ledger entry'
);
select is(
  (select count(*) from creditgate.credit_lots where user_id = '05000000-0000-4000-8000-000000000003'),
  0::bigint, 'and no lot'
);
update creditgate_private.settings set value = '100' where key = 'signup_bonus';
insert into creditgate_private.settings (key, value) values ('signup_bonus_expires_days', '7');
select tests.create_user(p_id => '05000000-0000-4000-8000-000000000004');
select results_eq(
  $$ select amount::bigint, expires_at from creditgate.credit_lots
     where user_id = '05000000-0000-4000-8000-000000000004' $$,
  $$ values (100::bigint, now() + interval '7 days') $$,
  'signup_bonus_expires_days 7 makes the bonus lot expire in 7 days'
);

select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit is clean');

select * from finish();
rollback;
