-- creditgate.service_grant_credits(user_id, amount, entry_type, idempotency_key, category,
--   expires_at, priority, reason, metadata), called as service_role.
-- Proves: a grant posts one credit entry and one lot with the requested attributes; every
-- error (exact SQLSTATE, message, DETAIL field); idempotent replay; key mismatch; only
-- service_role may call it.

begin;
set local client_min_messages = warning;
select plan(38);

select tests.create_user(p_id => 'd1000000-0000-4000-8000-000000000001');  -- 1000 signup bonus
select tests.create_user(p_id => 'd1000000-0000-4000-8000-000000000002');

select tests.as_service();
create temp table r1 as
select creditgate.service_grant_credits(
  user_id => 'd1000000-0000-4000-8000-000000000001', amount => 500, entry_type => 'purchase',
  idempotency_key => 'grant-1', category => 'paid', expires_at => now() + interval '30 days',
  priority => 20, reason => 'pack', metadata => '{"order": 7}'
) as r;
select tests.as_owner();  -- inspect the books as the owner (creditgate_private is not exposed)

select is(
  (select r - 'entry_id' - 'lot_id' from r1),
  '{"entry_type": "purchase", "amount": 500, "balance": 1500, "replayed": false}'::jsonb,
  'a grant returns its type, amount, balance after and replayed=false'
);
select results_eq(
  $$ select l.entry_type::text, l.amount::bigint, l.delta, l.balance_after::bigint, l.reason, l.metadata
     from creditgate.ledger as l, r1 where l.id = (r1.r ->> 'entry_id')::bigint $$,
  $$ values ('purchase'::text, 500::bigint, 500::bigint, 1500::bigint, 'pack'::text, '{"order": 7}'::jsonb) $$,
  'one ledger entry with the reason and metadata'
);
select results_eq(
  $$ select c.category::text, c.priority::integer, c.amount::bigint, c.remaining::bigint, c.expires_at
     from creditgate.credit_lots as c, r1 where c.id = (r1.r ->> 'lot_id')::uuid $$,
  $$ values ('paid'::text, 20, 500::bigint, 500::bigint, now() + interval '30 days') $$,
  'one lot with the requested category, priority and expiry'
);
select is(
  (select source_entry_id from creditgate.credit_lots, r1 where id = (r1.r ->> 'lot_id')::uuid),
  (select (r ->> 'entry_id')::bigint from r1), 'the lot points at the entry that created it'
);
select is(
  (select amount::bigint from creditgate_private.lot_movements, r1 where ledger_id = (r1.r ->> 'entry_id')::bigint),
  500::bigint, 'the lot''s arrival is recorded as a movement'
);
select is(
  (select balance::bigint from creditgate.balances where user_id = 'd1000000-0000-4000-8000-000000000001'),
  1500::bigint, 'the balance moved'
);
select tests.as_service();
select is(
  creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000002', 5, 'grant', 'grant-defaults')
    - 'entry_id' - 'lot_id',
  '{"entry_type": "grant", "amount": 5, "balance": 1005, "replayed": false}'::jsonb,
  'the optional arguments have defaults'
);
select results_eq(
  $$ select category::text, priority::integer, expires_at from creditgate.credit_lots
     where source_entry_id = (select id from creditgate.ledger where idempotency_key = 'grant-defaults') $$,
  $$ values ('promotional'::text, 50, null::timestamptz) $$,
  'defaults: promotional, priority 50, never expires'
);
select lives_ok(
  $$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000002', 1, 'signup_bonus', 't-sb');
     select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000002', 1, 'admin_recharge', 't-ar') $$,
  'every credit entry type of a grant is accepted'
);

-- ---------------------------------------------------------------- replay and mismatch
select is(
  creditgate.service_grant_credits(
    user_id => 'd1000000-0000-4000-8000-000000000001', amount => 500, entry_type => 'purchase',
    idempotency_key => 'grant-1', category => 'paid', expires_at => now() + interval '30 days',
    priority => 20, reason => 'pack', metadata => '{"order": 7}'),
  (select r || '{"replayed": true}' from r1),
  'the same key and request replays the original result (same entry and lot) with replayed=true'
);
select tests.as_owner();
select is(
  (select count(*) from creditgate.ledger where idempotency_key = 'grant-1'),
  1::bigint, 'the replay posted nothing'
);
select is(
  (select count(*) from creditgate.credit_lots where user_id = 'd1000000-0000-4000-8000-000000000001'),
  2::bigint, 'the replay created no lot (signup lot + one)'
);
select is(
  (select balance::bigint from creditgate.balances where user_id = 'd1000000-0000-4000-8000-000000000001'),
  1500::bigint, 'the replay granted nothing'
);
select tests.as_service();
select throws_ok(
  $$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000001', 501, 'purchase',
       'grant-1', 'paid', now() + interval '30 days', 20) $$,
  'PT409', 'idempotency_key_reused', 'the same key with another amount is PT409'
);
select throws_ok(
  $$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000001', 500, 'purchase',
       'grant-1', 'promotional', now() + interval '30 days', 20) $$,
  'PT409', 'idempotency_key_reused', 'the same key with another category is PT409'
);
select throws_ok(
  $$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000002', 500, 'purchase',
       'grant-1', 'paid', now() + interval '30 days', 20) $$,
  'PT409', 'idempotency_key_reused', 'the same key for another user is PT409'
);
select is(
  tests.error_json($$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000001',
       500, 'purchase', 'grant-1', 'paid', null, 20) $$) -> 'detail',
  '{"idempotency_key": "grant-1"}'::jsonb, 'PT409 DETAIL names the key'
);

-- ---------------------------------------------------------------- validation
select is(
  tests.error_json($$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000001',
       0, 'grant', 'v-1') $$),
  '{"sqlstate": "PT400", "message": "invalid_request",
    "detail": {"field": "amount", "reason": "must be a positive integer"}}'::jsonb,
  'amount 0 is PT400 naming amount'
);
select throws_ok(
  $$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000001', -1, 'grant', 'v-1') $$,
  'PT400', 'invalid_request', 'a negative amount is PT400'
);
select throws_ok(
  $$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000001', 5, 'refund', 'v-1') $$,
  'PT400', 'invalid_request', 'a refund cannot be granted'
);
select is(
  tests.error_json($$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000001',
       5, 'spend', 'v-1') $$) -> 'detail' ->> 'field',
  'entry_type', 'a debit type is PT400 naming entry_type'
);
select is(
  tests.error_json($$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000001',
       5, 'grant', 'v-1', 'gift') $$) -> 'detail' ->> 'field',
  'category', 'an unknown category is PT400 naming category'
);
select is(
  tests.error_json($$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000001',
       5, 'grant', 'v-1', priority => 101) $$) -> 'detail' ->> 'field',
  'priority', 'priority 101 is PT400 naming priority'
);
select throws_ok(
  $$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000001', 5, 'grant', 'v-1',
       priority => -1) $$,
  'PT400', 'invalid_request', 'a negative priority is PT400'
);
select is(
  tests.error_json($$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000001',
       5, 'grant', 'v-1', expires_at => now()) $$) -> 'detail' ->> 'field',
  'expires_at', 'a lot expiring now is PT400 naming expires_at'
);
select throws_ok(
  $$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000001', 5, 'grant', 'v-1',
       expires_at => now() - interval '1 day') $$,
  'PT400', 'invalid_request', 'a lot expiring in the past is PT400'
);
select is(
  tests.error_json($$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000001',
       5, 'grant', 'two words') $$) -> 'detail' ->> 'field',
  'idempotency_key', 'a key with a space is PT400 naming idempotency_key'
);
select throws_ok(
  $$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000001', 5, 'grant', null) $$,
  'PT400', 'invalid_request', 'a null key is PT400'
);
select is(
  tests.error_json($$ select creditgate.service_grant_credits(null, 5, 'grant', 'v-1') $$) -> 'detail' ->> 'field',
  'user_id', 'a null user is PT400 naming user_id'
);
select is(
  tests.error_json($$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-0000000000ee',
       5, 'grant', 'v-1') $$),
  '{"sqlstate": "PT404", "message": "not_found", "detail": {"object": "user"}}'::jsonb,
  'an unknown user is PT404'
);
select is(
  (select count(*) from creditgate.ledger where idempotency_key = 'v-1'),
  0::bigint, 'no refused call posted anything'
);
-- creditgate's own key namespaces: a grant there could squat an entry owed later.
select is(
  tests.error_json($$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000001',
       5, 'grant', 'refund:' || gen_random_uuid()) $$),
  jsonb_build_object('sqlstate', 'PT400', 'message', 'invalid_request', 'detail', jsonb_build_object(
    'field', 'idempotency_key',
    'reason', 'the prefixes signup:, stripe:, admin:, charge:, refund:, expire:, forfeit: and owed: are creditgate''s own')),
  'a key in the refund: namespace is PT400 naming idempotency_key'
);
select is(
  (select array_agg(p order by p) from unnest(array['signup', 'stripe', 'admin', 'charge', 'expire', 'forfeit', 'owed']) as p
   where tests.error_json(format(
     $$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000001', 5, 'grant', %L) $$,
     p || ':x')) ->> 'message' = 'invalid_request'),
  array['admin', 'charge', 'expire', 'forfeit', 'owed', 'signup', 'stripe'],
  'so are keys in the signup:, stripe:, admin:, charge:, expire:, forfeit: and owed: namespaces'
);
select is(
  (select count(*) from creditgate.ledger where idempotency_key ~ '^[a-z]+:x$' or idempotency_key ~ '^refund:'),
  0::bigint, 'none of them posted anything'
);
select is(
  creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000002', 5, 'grant', 'my-refund:1')
    ->> 'replayed',
  'false', 'a prefix elsewhere in the key is the caller''s own'
);

-- ---------------------------------------------------------------- who may call
select tests.as_user('d1000000-0000-4000-8000-000000000001');
select throws_ok(
  $$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000001', 5, 'grant', 'self') $$,
  '42501', 'permission denied for function service_grant_credits', 'a user cannot grant themself credits'
);
select tests.as_anon();
select throws_ok(
  $$ select creditgate.service_grant_credits('d1000000-0000-4000-8000-000000000001', 5, 'grant', 'anon') $$,
  '42501', 'permission denied for function service_grant_credits', 'anon cannot grant credits'
);

select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit is clean');

select * from finish();
rollback;
