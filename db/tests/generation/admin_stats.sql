-- creditgate.admin_stats(since): admins only (checked inside, never from JWT metadata);
-- the figures over a small known dataset; the since window.
begin;
select plan(15);

select tests.worker_models();
select tests.create_user() as admin \gset
select tests.make_admin(:'admin');
select tests.create_user() as u \gset
select tests.create_user() as v \gset

-- g1 image succeeded (100), g2 chat succeeded at 13 of 40, g3 image failed (100), g4 video queued (300).
select tests.make_queued_generation(:'u', 'img-test', 100) as g1 \gset
select tests.make_queued_generation(:'u', 'chat-test', 40, '{"messages": [{"role": "user", "content": "x"}]}') as g2 \gset
select tests.make_queued_generation(:'v', 'img-test', 100) as g3 \gset
select tests.as_service();
create temp table jobs as select creditgate.service_claim_generations('w1', 3) as j;
select creditgate.service_settle_generation(:'g1', 'w1', (select x ->> 'lease_token' from jobs, jsonb_array_elements(j) as x where x ->> 'generation_id' = :'g1'),
  jsonb_build_object('status', 'succeeded', 'provider', '{"name": "local", "http_status": 200, "latency_ms": 100}'::jsonb,
    'media', jsonb_build_array(jsonb_build_object('storage_key', 'media/' || :'g1' || '/0.png', 'content_type', 'image/png', 'bytes', 1))));
select creditgate.service_settle_generation(:'g2', 'w1', (select x ->> 'lease_token' from jobs, jsonb_array_elements(j) as x where x ->> 'generation_id' = :'g2'),
  '{"status": "succeeded", "actual_cost": 13, "output": {"text": "hi"}, "provider": {"name": "local", "http_status": 200, "latency_ms": 80}}');
select creditgate.service_settle_generation(:'g3', 'w1', (select x ->> 'lease_token' from jobs, jsonb_array_elements(j) as x where x ->> 'generation_id' = :'g3'),
  '{"status": "failed", "error": {"code": "server_error"}, "provider": {"name": "local", "http_status": 500, "latency_ms": 300}}');
select tests.as_owner();
select tests.make_queued_generation(:'v', 'video-test', 300, '{"prompt": "waves"}') as g4 \gset

-- Who may call it.
select tests.as_user(:'u');
select throws_ok($$select creditgate.admin_stats()$$, 'PT403', 'forbidden',
  'a user is refused, whatever their JWT user_metadata claims');
select set_config('request.jwt.claims', '{"role": "authenticated"}', true);
select throws_ok($$select creditgate.admin_stats()$$, 'PT401', 'not_authenticated', 'no user: not_authenticated');
select tests.as_anon();
select throws_ok($$select creditgate.admin_stats()$$, '42501', null, 'anon cannot call it at all');

select tests.as_user(:'admin');
create temp table stats as select creditgate.admin_stats() as s;
select tests.as_owner();

select is(
  (select array_agg(k order by k) from stats, jsonb_object_keys(s) as k),
  array['credits', 'generations', 'providers', 'since', 'users'],
  'shape: since, users, generations, credits, providers'
);
select is((select s -> 'since' from stats), to_jsonb(now() - interval '7 days'), 'since defaults to 7 days ago');
select is((select s -> 'users' from stats), '{"total": 3, "new": 3, "active": 2}'::jsonb,
  'users: all, new since, with a generation since');
select is(
  (select (s -> 'generations') - 'by_model' - 'by_day' from stats),
  '{"total": 4, "by_status": {"failed": 1, "queued": 1, "succeeded": 2}, "by_kind": {"chat": 1, "image": 2, "video": 1}}'::jsonb,
  'generations by status and kind'
);
select is(
  (select s #> '{generations,by_model}' from stats),
  '{"chat-test": {"count": 1, "succeeded": 1, "failed": 0, "credits": 13},
    "img-test": {"count": 2, "succeeded": 1, "failed": 1, "credits": 100},
    "video-test": {"count": 1, "succeeded": 0, "failed": 0, "credits": 300}}'::jsonb,
  'generations by model, with what they finally cost'
);
select is(
  (select s #> '{generations,by_day}' from stats),
  jsonb_build_array(jsonb_build_object('day', (now() at time zone 'UTC')::date, 'count', 4, 'succeeded', 2, 'failed', 1)),
  'generations by UTC day'
);
select is(
  (select s -> 'credits' from stats),
  '{"granted": 3000, "spent": 540, "refunded": 127, "expired": 0, "clawed_back": 0, "forfeited": 0, "net_spent": 413}'::jsonb,
  'credits: three signup bonuses granted, four charges, two refunds'
);
select is(
  (select s -> 'providers' from stats),
  '[{"provider": "local", "calls": 3, "failures": 1, "failure_rate": 0.3333, "p50_latency_ms": 100}]'::jsonb,
  'providers: calls, failures, failure rate, median latency'
);

-- The window.
select tests.as_user(:'admin');
select is(
  creditgate.admin_stats(now() + interval '1 minute') - 'since',
  '{"users": {"total": 3, "new": 0, "active": 0},
    "generations": {"total": 0, "by_status": {}, "by_kind": {}, "by_model": {}, "by_day": []},
    "credits": {"granted": 0, "spent": 0, "refunded": 0, "expired": 0, "clawed_back": 0, "forfeited": 0, "net_spent": 0},
    "providers": []}'::jsonb,
  'nothing happened after since: zeros and empty groups'
);
select throws_ok($$select creditgate.admin_stats(null)$$, 'PT400', 'invalid_request', 'since is required');
select tests.as_service();
select throws_ok($$select creditgate.admin_stats()$$, '42501', null, 'service_role has no use for it: no grant');
select tests.as_owner();
select is(
  (select array_agg(r.rolname order by r.rolname) from pg_roles as r
   where has_function_privilege(r.oid, 'creditgate.admin_stats(timestamptz)', 'execute')
     and r.rolname in ('anon', 'authenticated', 'service_role', 'public')),
  array['authenticated']::name[],
  'of the API roles only authenticated may execute it'
);

select * from finish();
rollback;
