-- creditgate.request_generation(model_id, params, idempotency_key): charge + create in one
-- transaction, replay by key, every error code.
begin;
select plan(46);

select tests.seed_models();
select tests.create_user() as u \gset
select tests.create_user() as other \gset
select tests.create_user() as poor \gset
select tests.media_for(:'u') as own_media \gset
select tests.media_for(:'other') as other_media \gset

select tests.as_user(:'u', '198.51.100.23');
select creditgate.request_generation('img-test', '{"prompt": " a cat "}', 'req-1') as first \gset

select is((:'first'::jsonb) - 'generation_id',
  '{"status": "queued", "cost": 33, "balance": 966, "replayed": false}'::jsonb,
  'a request is queued and charged: 999 - 33 = 966 (media_for spent 1)');
select is((select count(*)::integer from creditgate.generations as g where g.idempotency_key = 'req-1'), 1,
  'the owner sees the generation');

select tests.as_owner();
select is(g.status, 'queued', 'the generation is queued') from creditgate.generations as g where g.id = (:'first'::jsonb ->> 'generation_id')::uuid;
select is(g.params,
  '{"prompt": "a cat", "negative_prompt": "", "width": 512, "height": 512, "steps": 20, "cfg_scale": 7, "loras": []}'::jsonb,
  'the normalized params are stored') from creditgate.generations as g where g.id = (:'first'::jsonb ->> 'generation_id')::uuid;
select is(g.cost::bigint, 33::bigint, 'the cost is stored') from creditgate.generations as g where g.id = (:'first'::jsonb ->> 'generation_id')::uuid;
select is(g.kind, 'image', 'the kind is copied from the model') from creditgate.generations as g where g.id = (:'first'::jsonb ->> 'generation_id')::uuid;
select is(g.charge_key, 'charge:' || g.id, 'the charge key is charge:<id>') from tests.generations_full as g where g.id = (:'first'::jsonb ->> 'generation_id')::uuid;
select is(g.max_attempts, 3, 'max_attempts comes from the setting') from tests.generations_full as g where g.id = (:'first'::jsonb ->> 'generation_id')::uuid;
select is(g.client_ip, '198.51.100.23'::inet, 'the client IP (cf-connecting-ip) is kept server-side') from tests.generations_full as g where g.id = (:'first'::jsonb ->> 'generation_id')::uuid;
select is(g.idempotency_key, 'req-1', 'the idempotency key is stored') from tests.generations_full as g where g.id = (:'first'::jsonb ->> 'generation_id')::uuid;
select is(
  (select count(*)::integer from creditgate.ledger as l
   where l.generation_id = (:'first'::jsonb ->> 'generation_id')::uuid and l.entry_type = 'spend'
     and l.amount = 33 and l.idempotency_key = 'charge:' || (:'first'::jsonb ->> 'generation_id')),
  1, 'exactly one spend entry under the charge key, for the cost');

-- Replay: same key, same request -> the original result. "Same" is what the client sent
-- (request_replay_first.sql: spelling out a default is another request).
select tests.as_user(:'u');
select is(
  creditgate.request_generation('img-test', '{"prompt": " a cat "}', 'req-1'),
  (:'first'::jsonb) || '{"replayed": true}',
  'a replay returns the original result with replayed = true');
select is((select b.balance::bigint from creditgate.balances as b where b.user_id = :'u'), 966::bigint,
  'a replay charges nothing');
select is((select count(*)::integer from creditgate.generations as g where g.idempotency_key = 'req-1'), 1,
  'a replay creates nothing');
select throws_ok(
  $$select creditgate.request_generation('img-test', '{"prompt": "a dog"}', 'req-1')$$,
  'PT409', 'idempotency_key_reused', 'same key, different params');
select throws_ok(
  $$select creditgate.request_generation('edit-test', '{"prompt": "a cat", "init_media_id": "00000000-0000-4000-8000-000000000000"}', 'req-1')$$,
  'PT409', 'idempotency_key_reused', 'same key, different (invalid) request: the key is looked up first');
select throws_ok(
  $$select creditgate.request_generation('video-test', '{"prompt": "a cat"}', 'req-1')$$,
  'PT409', 'idempotency_key_reused', 'same key, different model');

-- Keys are per user.
select tests.as_user(:'other');
select is(
  (creditgate.request_generation('img-test', '{"prompt": "a cat"}', 'req-1') ->> 'replayed')::boolean,
  false, 'another user may use the same key for their own request');

-- Bad keys.
select tests.as_user(:'u');
select is(tests.error_of($$select creditgate.request_generation('img-test', '{"prompt": "x"}', '')$$),
  'PT400 invalid_request idempotency_key', 'an empty key is refused');
select is(tests.error_of($$select creditgate.request_generation('img-test', '{"prompt": "x"}', 'a b')$$),
  'PT400 invalid_request idempotency_key', 'a key with a space is refused');
select is(tests.error_of($$select creditgate.request_generation('img-test', '{"prompt": "x"}', null)$$),
  'PT400 invalid_request idempotency_key', 'a missing key is refused');
select is(tests.error_of(format('select creditgate.request_generation(%L, %L, %L)', 'img-test', '{"prompt": "x"}', repeat('k', 201))),
  'PT400 invalid_request idempotency_key', 'a key over 200 characters is refused');

-- Model and params.
select throws_ok($$select creditgate.request_generation('nope', '{"prompt": "x"}', 'req-2')$$,
  'PT404', 'not_found', 'an unknown model is not found');
select throws_ok($$select creditgate.request_generation('img-off', '{"prompt": "x"}', 'req-2')$$,
  'PT503', 'model_unavailable', 'a disabled model is unavailable');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "x", "steps": 1000}', 'req-2')$$,
  'PT400', 'invalid_request', 'out-of-range params are refused');
select is(tests.error_of($$select creditgate.request_generation('img-test', '{"prompt": "x", "loras": [{"id": "../x"}]}', 'req-2')$$),
  'PT400 invalid_request loras[0].id', 'a path-like LoRA id is refused by request_generation too');
select is(tests.error_of(format(
    $q$select creditgate.request_generation('edit-test', '{"prompt": "x", "init_media_id": "%s"}', 'req-2')$q$, :'other_media')),
  'PT400 invalid_request init_media_id', 'another user''s media cannot be edited');
select is(
  (creditgate.request_generation('edit-test', format('{"prompt": "x", "init_media_id": "%s"}', :'own_media')::jsonb, 'req-edit') ->> 'cost')::bigint,
  43::bigint, 'an edit of one''s own image is charged');
select tests.as_owner();
update creditgate.media set deleted_at = now(), expires_at = now() where id = :'own_media';
select tests.as_user(:'u');
select is(tests.error_of(format(
    $q$select creditgate.request_generation('edit-test', '{"prompt": "x", "init_media_id": "%s"}', 'req-3')$q$, :'own_media')),
  'PT400 invalid_request init_media_id', 'deleted media cannot be edited');

-- Maintenance.
select tests.as_owner();
insert into creditgate_private.settings (key, value) values ('maintenance_mode', 'true');
select tests.as_user(:'u');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "x"}', 'req-m')$$,
  'PT503', 'maintenance', 'maintenance mode refuses new generations');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "a cat"}', 'req-1')$$,
  'PT409', 'idempotency_key_reused', 'under maintenance the key is still looked up first (another body: PT409)');
select is((creditgate.quote('img-test', '{"prompt": "x"}') ->> 'cost')::bigint, 33::bigint,
  'quotes still work in maintenance');
select tests.as_owner();
update creditgate_private.settings set value = 'false' where key = 'maintenance_mode';

-- max_attempts follows the setting.
insert into creditgate_private.settings (key, value) values ('max_attempts', '5');
select tests.as_user(:'u');
select creditgate.request_generation('chat-test', '{"messages": [{"role": "user", "content": "hi"}]}', 'req-chat') as chat \gset
select tests.as_owner();
select is(g.max_attempts, 5, 'max_attempts is read at request time') from creditgate.generations as g where g.id = (:'chat'::jsonb ->> 'generation_id')::uuid;

-- Insufficient credits: nothing changes.
select tests.as_user(:'poor');
select is((creditgate.request_generation('video-test', '{"prompt": "x", "duration_seconds": 10}', 'p-1') ->> 'balance')::bigint,
  397::bigint, 'a 603-credit video leaves 397');
select throws_ok($$select creditgate.request_generation('video-test', '{"prompt": "x", "duration_seconds": 10}', 'p-2')$$,
  'PT402', 'insufficient_credits', 'a request above the balance is refused');
select is(tests.error_detail($$select creditgate.request_generation('video-test', '{"prompt": "x", "duration_seconds": 10}', 'p-2')$$),
  '{"required": 603, "available": 397}'::jsonb, 'PT402 says what was required and available');
select is((select b.balance::bigint from creditgate.balances as b where b.user_id = :'poor'), 397::bigint,
  'a refused request leaves the balance where it was');
select is((select count(*)::integer from creditgate.generations), 1, 'a refused request creates no generation (poor sees one)');
select is((creditgate.request_generation('img-test', '{"prompt": "x", "steps": 100, "width": 2048, "height": 2048}', 'p-3') ->> 'cost')::bigint,
  152::bigint, 'a request within the balance still passes: ceil(10 + 41.94304 + 100)');

-- Who may call.
select tests.as_anon();
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "x"}', 'anon-1')$$,
  '42501', 'permission denied for function request_generation', 'anon cannot request a generation');
select set_config('role', 'authenticated', true), set_config('request.jwt.claims', '{"role": "authenticated"}', true);
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "x"}', 'nouser-1')$$,
  'PT401', 'not_authenticated', 'a token without a user is not authenticated');
select tests.as_service();
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "x"}', 'svc-1')$$,
  '42501', 'permission denied for function request_generation', 'service_role cannot request a generation');

-- Spending down to exactly zero passes; one more credit is refused.
select tests.as_owner();
insert into creditgate.models (id, kind, name, enabled, price_base, defaults) values ('flat-test', 'image', 'Flat', true, 245, '{}');
select tests.as_user(:'poor');
select is((creditgate.request_generation('flat-test', '{"prompt": "x"}', 'p-5') ->> 'balance')::bigint, 0::bigint,
  'a request costing exactly the balance passes and leaves 0');
select throws_ok($$select creditgate.request_generation('free-nope', '{"prompt": "x"}', 'p-6')$$,
  'PT404', 'not_found', 'sanity: unknown model still 404 at zero balance');
select tests.as_owner();
update creditgate.models set price_base = 1 where id = 'flat-test';
select tests.as_user(:'poor');
select throws_ok($$select creditgate.request_generation('flat-test', '{"prompt": "y"}', 'p-7')$$,
  'PT402', 'insufficient_credits', 'at zero balance a 1-credit request is refused');

select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit finds nothing wrong');

select * from finish();
rollback;
