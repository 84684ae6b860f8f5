-- creditgate.get_balance(): {balance, available, owed, plan, expiring, daily} for the caller.
-- Proves: figures for the caller only; balance counts lapsed-but-unswept credits while
-- available does not; expiring lists lots lapsing within 30 days; PT401 without a
-- subject; anon cannot call it.

begin;
set local client_min_messages = warning;
select plan(13);

select tests.create_user(p_id => '01000000-0000-4000-8000-000000000001');  -- 1000 signup bonus
select tests.create_user(p_id => '01000000-0000-4000-8000-000000000002');

-- ---------------------------------------------------------------- a new user
select tests.as_user('01000000-0000-4000-8000-000000000001');
select is(
  creditgate.get_balance() - 'daily',
  '{"balance": 1000, "available": 1000, "owed": 0, "plan": "free", "expiring": []}'::jsonb,
  'a new user has the signup bonus, all of it spendable, on the free plan'
);
select ok(
  creditgate.get_balance() -> 'daily' ?& array['used', 'cap'],
  'daily usage reports used and cap'
);

-- ---------------------------------------------------------------- lots of every kind
select tests.as_owner();
-- Expires in 10 days: listed. In 40 days: not listed. Lapsed an hour ago: neither
-- listed nor available, but still in the balance until the sweep posts it.
select creditgate_private.grant_credits('01000000-0000-4000-8000-000000000001', 70, 'grant', 'soon',
  'paid', now() + interval '10 days', 40) ->> 'lot_id' as soon_lot \gset
select creditgate_private.grant_credits('01000000-0000-4000-8000-000000000001', 30, 'grant', 'later',
  'promotional', now() + interval '40 days');
select creditgate_private.grant_credits('01000000-0000-4000-8000-000000000001', 25, 'grant', 'lapsed',
  'promotional', now() - interval '1 hour', 50, null, '{}', null, now() - interval '1 day');
select creditgate_private.spend_credits('01000000-0000-4000-8000-000000000001', 20, 'gb-spend');
-- Another user's lots must not show up.
select creditgate_private.grant_credits('01000000-0000-4000-8000-000000000002', 5, 'grant', 'other',
  'paid', now() + interval '1 day');

select tests.as_user('01000000-0000-4000-8000-000000000001');
select is((creditgate.get_balance() ->> 'balance')::bigint, 1105::bigint,
  'balance: 1000 + 70 + 30 + 25 - 20, lapsed credits included until swept');
select is((creditgate.get_balance() ->> 'available')::bigint, 1080::bigint,
  'available: the lapsed 25 are not spendable');
select is(
  creditgate.get_balance() -> 'expiring',
  jsonb_build_array(jsonb_build_object('lot_id', :'soon_lot', 'amount', 50,
    'category', 'paid', 'expires_at', now() + interval '10 days')),
  'expiring lists only the lot lapsing within 30 days, with what is left of it (the spend took 20)'
);
select is(
  (select count(*) from creditgate.credit_lots), 4::bigint,
  'the user sees their own four lots and nothing of the other user'
);

select tests.as_service();
select creditgate.service_expire_credits();
select tests.as_user('01000000-0000-4000-8000-000000000001');
select is(
  (creditgate.get_balance() ->> 'balance')::bigint, (creditgate.get_balance() ->> 'available')::bigint,
  'after the sweep balance and available agree'
);

select tests.as_user('01000000-0000-4000-8000-000000000002');
select is(
  creditgate.get_balance() - 'daily' - 'expiring',
  '{"balance": 1005, "available": 1005, "owed": 0, "plan": "free"}'::jsonb,
  'the other user sees only their own figures'
);

-- ---------------------------------------------------------------- not signed in
select set_config('request.jwt.claims', '{"role": "authenticated"}', true);
select throws_ok($$ select creditgate.get_balance() $$, 'PT401', 'not_authenticated',
  'claims without a subject get PT401');
select set_config('request.jwt.claims', '', true);
select throws_ok($$ select creditgate.get_balance() $$, 'PT401', 'not_authenticated',
  'no claims get PT401');
select tests.as_anon();
select throws_ok($$ select creditgate.get_balance() $$, '42501',
  'permission denied for function get_balance', 'anon cannot call get_balance');
select tests.as_service();
select throws_ok($$ select creditgate.get_balance() $$, '42501',
  'permission denied for function get_balance', 'nor can service_role (it has no caller)');
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit is clean');

select * from finish();
rollback;
