-- Owners see their data, not the machinery (DESIGN §3, amendments of turn 2; issue 17
-- item 8). As `authenticated`, impersonated as PostgREST does:
-- * `select *` works on every owner-readable table (supabase-js does it);
-- * no owner-readable row of generations carries a lease, request hash, settle result,
--   client address or charge key, at any stage of a generation's life;
-- * the granting admin's user id is not in the owner's ledger (it is kept server-side);
-- * the supabase_realtime publication streams only owner-visible columns of generations.
begin;
set local client_min_messages = warning;

select tests.worker_models();
select tests.create_user() as u \gset
select tests.create_user() as admin \gset
select tests.make_admin(:'admin');
select tests.media_for(:'u') as m \gset

select tests.as_user(:'admin');
select creditgate.admin_add_credits(:'u', 500, 'goodwill', 'gift-1') ->> 'entry_id' as gift \gset
select tests.as_user(:'u');
select creditgate.request_generation('img-test', '{"prompt": "queued"}', 'v-1') ->> 'generation_id' as g_queued \gset
select creditgate.request_generation('img-test', '{"prompt": "running"}', 'v-2') ->> 'generation_id' as g_running \gset
select creditgate.request_generation('img-test', '{"prompt": "settled"}', 'v-3') ->> 'generation_id' as g_settled \gset
select tests.as_service();
-- Claims the two oldest (v-1 and v-2 run), settles v-1; v-3 stays queued.
select creditgate.service_claim_generations('w1', 2) as jobs \gset
select creditgate.service_settle_generation(
  (:'jobs'::jsonb #>> '{0,generation_id}')::uuid, 'w1', :'jobs'::jsonb #>> '{0,lease_token}',
  jsonb_build_object('status', 'succeeded', 'media', jsonb_build_array(jsonb_build_object(
    'storage_key', 'media/' || (:'jobs'::jsonb #>> '{0,generation_id}') || '/0.png',
    'content_type', 'image/png', 'bytes', 10)))
);
select tests.as_owner();

create temp table machinery (name text) on commit drop;
insert into machinery values
  ('lease_owner'), ('lease_token'), ('lease_expires_at'), ('request_hash'),
  ('settle_result'), ('settled_lease_token'), ('client_ip'), ('charge_key');
grant select on machinery to authenticated;

select plan(14);

-- ------------------------------------------------------------ select * as the owner
select tests.as_user(:'u');
select lives_ok('select * from creditgate.balances', 'the owner can select * from balances');
select lives_ok('select * from creditgate.credit_lots', 'the owner can select * from credit_lots');
select lives_ok('select * from creditgate.ledger', 'the owner can select * from ledger');
select lives_ok('select * from creditgate.generations', 'the owner can select * from generations');
select lives_ok('select * from creditgate.media', 'the owner can select * from media');
select is(
  (select count(*)::integer from creditgate.generations),
  4,
  'the owner reads all four of their generations (queued, running, succeeded, media_for''s)'
);
select is(
  (select array_agg(distinct status::text order by status::text) from creditgate.generations),
  array['queued', 'running', 'succeeded'],
  'the generations read cover queued, running and settled rows'
);

-- ------------------------------------------------------------ no machinery in any row
select is(
  (select coalesce(array_agg(distinct k order by k), '{}')
   from creditgate.generations as g, jsonb_object_keys(to_jsonb(g)) as k
   where k in (select name from machinery)),
  '{}'::text[],
  'no generation row the owner reads names a lease, hash, settle result, client IP or charge key'
);
select is(
  (select count(*)::integer from creditgate.generations as g
   where to_jsonb(g)::text like '%' || (:'jobs'::jsonb #>> '{1,lease_token}') || '%'),
  0,
  'the running job''s lease token appears nowhere in the owner''s rows'
);
select is(
  (select count(*)::integer from information_schema.columns as c
   where c.table_schema = 'creditgate' and c.table_name = 'generations'
     and c.column_name in (select name from machinery)),
  0,
  'creditgate.generations has no machinery column at all (not merely hidden)'
);

-- ------------------------------------------------------------ the admin stays anonymous
select is(
  (select count(*)::integer from creditgate.ledger as l
   where l.id = :'gift'::bigint and l.entry_type = 'admin_recharge'),
  1,
  'the owner sees the admin recharge'
);
select is(
  (select count(*)::integer from creditgate.ledger as l
   where l.metadata::text like '%' || :'admin' || '%' or l.metadata ? 'admin_id'),
  0,
  'no ledger row the owner reads carries the granting admin''s user id'
);
select tests.as_owner();
select is(
  (select a.admin_id from creditgate_private.admin_grants as a where a.ledger_id = :'gift'::bigint),
  :'admin'::uuid,
  'the granting admin is recorded server-side, against the entry'
);

-- ------------------------------------------------------------ Realtime
select is(
  (select array_agg(a order by a) from pg_catalog.pg_publication_tables as t, unnest(t.attnames) as a
   where t.pubname = 'supabase_realtime' and t.schemaname = 'creditgate' and t.tablename = 'generations'),
  (select array_agg(a order by a) from unnest(array[
    'id', 'user_id', 'model_id', 'kind', 'status', 'params', 'cost', 'actual_cost',
    'idempotency_key', 'attempts', 'max_attempts', 'output', 'error', 'created_at',
    'started_at', 'finished_at', 'updated_at', 'prices'
  ]::name[]) as a),
  'supabase_realtime streams generations with owner-visible columns only'
);

select * from finish();
rollback;
