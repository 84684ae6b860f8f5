-- The worker-side functions: service_* are for service_role only (anon and authenticated
-- get 42501 before any code runs), hardened (definer, empty search_path), commented, and
-- plpgsql_check finds nothing in them or their helpers.
begin;
select plan(21);

create temp table fns (sig text primary key, service boolean not null);
insert into fns values
  ('creditgate.service_claim_generations(text,integer,integer)', true),
  ('creditgate.service_heartbeat(uuid,text,text,integer)', true),
  ('creditgate.service_settle_generation(uuid,text,text,jsonb)', true),
  ('creditgate.service_reap_expired_leases(timestamp with time zone)', true),
  ('creditgate.service_expired_media(integer,timestamp with time zone)', true),
  ('creditgate.service_mark_media_purged(uuid[])', true),
  ('creditgate.admin_stats(timestamp with time zone)', false),
  ('creditgate_private.check_lease_args(uuid,text,text)', false),
  ('creditgate_private.check_worker_id(text)', false),
  ('creditgate_private.check_lease_seconds(integer)', false),
  ('creditgate_private.job_json(creditgate.generations)', false),
  ('creditgate_private.outcome_integer(jsonb,text,bigint,bigint)', false),
  ('creditgate_private.outcome_text(jsonb,text,integer)', false),
  ('creditgate_private.outcome_object(jsonb,text,text[])', false),
  ('creditgate_private.settle_outcome(creditgate.generations,jsonb)', false),
  ('creditgate_private.media_ttl()', false),
  ('creditgate_private.chat_actual_cost(creditgate.generations,bigint)', false);

select is(
  (select array_agg(f.sig order by f.sig) from fns as f
   where f.service and (
     not has_function_privilege('service_role', f.sig::regprocedure, 'execute')
     or has_function_privilege('anon', f.sig::regprocedure, 'execute')
     or has_function_privilege('authenticated', f.sig::regprocedure, 'execute'))),
  null,
  'service functions: service_role may execute, anon and authenticated may not'
);
select is(
  (select array_agg(f.sig order by f.sig) from fns as f
   where f.sig like 'creditgate_private.%' and (
     has_function_privilege('anon', f.sig::regprocedure, 'execute')
     or has_function_privilege('authenticated', f.sig::regprocedure, 'execute')
     or has_function_privilege('service_role', f.sig::regprocedure, 'execute'))),
  null,
  'private helpers: no API role may execute them'
);
select is(
  (select array_agg(f.sig order by f.sig) from fns as f
   inner join pg_proc as p on p.oid = f.sig::regprocedure
   where f.sig like 'creditgate.%'
     and not (p.prosecdef and p.proconfig @> array['search_path=""'])),
  null,
  'API functions are security definer with an empty search_path'
);
select is(
  (select array_agg(f.sig order by f.sig) from fns as f
   inner join pg_proc as p on p.oid = f.sig::regprocedure
   where not coalesce(p.proconfig @> array['search_path=""'], false)),
  null,
  'helpers pin the search_path too'
);
select is(
  (select array_agg(f.sig order by f.sig) from fns as f
   where obj_description(f.sig::regprocedure, 'pg_proc') is null),
  null,
  'every function has a comment'
);
select is(
  (select array_agg(f.sig || ': ' || c.message order by f.sig) from fns as f
   inner join pg_proc as p on p.oid = f.sig::regprocedure
   inner join pg_language as l on l.oid = p.prolang and l.lanname = 'plpgsql'
   cross join lateral plpgsql_check_function_tb(f.sig::regprocedure) as c),
  null,
  'plpgsql_check is clean'
);
select is(
  (select array_agg(c.relname || '.' || a.attname order by c.relname, a.attname)
   from pg_attribute as a inner join pg_class as c on c.oid = a.attrelid
   where (c.oid, a.attname) in (('creditgate_private.generation_leases'::regclass, 'settled_lease_token'),
                                ('creditgate_private.provider_calls'::regclass, 'lease_token'))
     and col_description(c.oid, a.attnum) is null),
  null,
  'the worker columns are commented'
);

-- Calling them as a client fails on privileges, before any code runs.
select tests.worker_models();
select tests.create_user() as u \gset
select tests.make_queued_generation(:'u') as g \gset

create temp table calls (sql text);
insert into calls values
  ('select creditgate.service_claim_generations(''w1'')'),
  (format('select creditgate.service_heartbeat(%L, ''w1'', %L, 60)', :'g', gen_random_uuid())),
  (format('select creditgate.service_settle_generation(%L, ''w1'', %L, ''{"status": "failed", "error": {"code": "x"}}'')', :'g', gen_random_uuid())),
  ('select creditgate.service_reap_expired_leases()'),
  ('select creditgate.service_expired_media(10)'),
  (format('select creditgate.service_mark_media_purged(array[%L]::uuid[])', gen_random_uuid()));
grant select on calls to anon, authenticated;

select tests.as_user(:'u');
select throws_ok(c.sql, '42501', null, 'authenticated: ' || c.sql) from calls as c;
select tests.as_anon();
select throws_ok(c.sql, '42501', null, 'anon: ' || c.sql) from calls as c;
select tests.as_owner();

select is((select status from creditgate.generations where id = :'g'), 'queued', 'no client call claimed the job');
select is(
  (select array_agg(t.relname order by t.relname) from pg_class as t
   where t.oid in ('creditgate_private.provider_calls'::regclass)
     and (has_table_privilege('anon', t.oid, 'select') or has_table_privilege('authenticated', t.oid, 'select'))),
  null,
  'the provider call log is invisible to clients'
);

select * from finish();
rollback;
