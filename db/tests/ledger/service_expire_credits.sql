-- creditgate.service_expire_credits(now, max_lots), service_role.
-- Proves: a lot expires at the instant expires_at = now (not a microsecond earlier); one
-- expire entry per lapsed lot for what is left of it (key expire:<lot_id>:<n>); a second
-- sweep finds nothing; partially spent lots expire only their rest; max_lots batches and
-- reports more; errors; only service_role may call it. Time moves through the `now`
-- parameter, never by sleeping.

begin;
set local client_min_messages = warning;
select plan(21);

insert into creditgate_private.settings (key, value) values ('signup_bonus', '0');
select tests.create_user(p_id => '04000000-0000-4000-8000-000000000001');
select tests.create_user(p_id => '04000000-0000-4000-8000-000000000002');

-- T = now() + 1 hour. Lot x lapses at T, lot z an hour later, lot y never.
select (creditgate_private.grant_credits('04000000-0000-4000-8000-000000000001', 100, 'grant', 'x',
  'promotional', now() + interval '1 hour') ->> 'lot_id') as lot_x \gset
select (creditgate_private.grant_credits('04000000-0000-4000-8000-000000000001', 30, 'purchase', 'z',
  'paid', now() + interval '2 hours') ->> 'lot_id') as lot_z \gset
select creditgate_private.grant_credits('04000000-0000-4000-8000-000000000001', 50, 'purchase', 'y', 'paid');

select tests.as_service();
select is(
  creditgate.service_expire_credits(now => now() + interval '1 hour' - interval '1 microsecond'),
  '{"users": 0, "lots": 0, "credits": 0, "more": false}'::jsonb,
  'a microsecond before T nothing has lapsed'
);
select is(
  creditgate.service_expire_credits(now => now() + interval '1 hour'),
  '{"users": 1, "lots": 1, "credits": 100, "more": false}'::jsonb,
  'at T lot x lapses: expires_at = now is expired'
);
select tests.as_owner();
select results_eq(
  $$ select entry_type::text, amount::bigint, delta, balance_after::bigint, reason, metadata ->> 'lot_id'
     from creditgate.ledger where idempotency_key = 'expire:' || $$ || quote_literal(:'lot_x') || $$ || ':1' $$,
  format($$ values ('expire'::text, 100::bigint, -100::bigint, 80::bigint, 'credits expired'::text, %L::text) $$,
    :'lot_x'),
  'one expire entry keyed expire:<lot_id>:1 for the whole lot'
);
select is(
  (select remaining::bigint from creditgate.credit_lots where id = :'lot_x'), 0::bigint, 'lot x is empty'
);
select is(
  (select m.amount::bigint from creditgate_private.lot_movements as m
   inner join creditgate.ledger as l on l.id = m.ledger_id
   where l.entry_type = 'expire' and m.lot_id = :'lot_x'),
  -100::bigint, 'the expiry is recorded as a movement out of lot x'
);
select is(
  (select balance::bigint from creditgate.balances where user_id = '04000000-0000-4000-8000-000000000001'),
  80::bigint, 'the balance drops by what expired'
);

select tests.as_service();
select is(
  creditgate.service_expire_credits(now => now() + interval '1 hour'),
  '{"users": 0, "lots": 0, "credits": 0, "more": false}'::jsonb,
  'a second sweep at T finds nothing to do'
);

-- Spend 10 of lot z (it burns before y: it expires), then sweep after z lapsed.
select tests.as_owner();
select creditgate_private.spend_credits('04000000-0000-4000-8000-000000000001', 10, 'z-spend',
  p_now => now() + interval '1 hour');
select tests.as_service();
select is(
  creditgate.service_expire_credits(now => now() + interval '2 hours') - 'users' - 'more',
  '{"lots": 1, "credits": 20}'::jsonb, 'a partially spent lot expires only what is left'
);
select tests.as_owner();
select is(
  (select balance::bigint from creditgate.balances where user_id = '04000000-0000-4000-8000-000000000001'),
  50::bigint, 'only the never-expiring lot is left'
);
select is(
  (select count(*) from creditgate.ledger where entry_type = 'expire'
     and user_id = '04000000-0000-4000-8000-000000000001'),
  2::bigint, 'one expire entry per lapsed lot'
);

-- ---------------------------------------------------------------- batches
select creditgate_private.grant_credits('04000000-0000-4000-8000-000000000001', 5, 'grant', 'b1',
  'promotional', now() + interval '1 day');
select creditgate_private.grant_credits('04000000-0000-4000-8000-000000000002', 6, 'grant', 'b2',
  'promotional', now() + interval '1 day');
select creditgate_private.grant_credits('04000000-0000-4000-8000-000000000002', 7, 'grant', 'b3',
  'promotional', now() + interval '1 day');
select tests.as_service();
select creditgate.service_expire_credits(now => now() + interval '2 days', max_lots => 2) as batch1 \gset
select creditgate.service_expire_credits(now => now() + interval '2 days', max_lots => 2) as batch2 \gset
select is(
  :'batch1'::jsonb - 'credits',
  '{"users": 2, "lots": 2, "more": true}'::jsonb,
  'max_lots 2 of 3 lapsed lots: two users, two lots, and more is true'
);
select is(
  :'batch2'::jsonb - 'credits' - 'users',
  '{"lots": 1, "more": false}'::jsonb, 'the next batch takes the last lot'
);
select is(
  (:'batch1'::jsonb ->> 'credits')::integer + (:'batch2'::jsonb ->> 'credits')::integer,
  18, 'together the batches expired all 5 + 6 + 7 credits'
);
select is(
  (creditgate.service_expire_credits(now => now() + interval '2 days') ->> 'lots')::integer,
  0, 'and then nothing is left'
);
select is(
  creditgate.service_expire_credits(now => now() + interval '2 days', max_lots => 1) ->> 'lots',
  '0', 'a sweep with nothing lapsed posts nothing'
);

-- ---------------------------------------------------------------- errors and callers
select throws_ok(
  $$ select creditgate.service_expire_credits(max_lots => 0) $$,
  'PT400', 'invalid_request', 'max_lots 0 is PT400'
);
select throws_ok(
  $$ select creditgate.service_expire_credits(max_lots => null) $$,
  'PT400', 'invalid_request', 'a null max_lots is PT400'
);
select tests.as_user('04000000-0000-4000-8000-000000000001');
select throws_ok(
  $$ select creditgate.service_expire_credits() $$,
  '42501', 'permission denied for function service_expire_credits', 'a user cannot run the sweep'
);
select tests.as_anon();
select throws_ok(
  $$ select creditgate.service_expire_credits() $$,
  '42501', 'permission denied for function service_expire_credits', 'nor can anon'
);

select tests.as_owner();
select is(
  (select sum(remaining) from creditgate.credit_lots where expires_at <= now() + interval '2 days'),
  0::numeric, 'no lapsed lot holds credits after the sweeps'
);
select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit is clean');

select * from finish();
rollback;
