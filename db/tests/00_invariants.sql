-- Catalog-wide invariants over every object in creditgate and creditgate_private (DESIGN
-- §2, STYLE "SQL"). Each test is a query over pg_catalog that lists offenders, so objects
-- added later are covered without touching this file; a failure names them.
--
-- RLS on every table; no client write privilege anywhere; no client privilege at all on
-- private objects; service_role cannot write the money tables; definer functions pin
-- search_path; API functions and tables are commented; no API function is executable by
-- PUBLIC; service_* functions are for service_role only; plpgsql_check finds no error.

begin;
set local client_min_messages = warning;
select plan(13);

create temp view our_relations as
select c.oid, c.oid::regclass::text as name, n.nspname as schema, c.relkind, c.relrowsecurity
from pg_class as c
inner join pg_namespace as n on n.oid = c.relnamespace
where n.nspname in ('creditgate', 'creditgate_private')
  and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
  and not exists (select 1 from pg_depend as d where d.objid = c.oid and d.deptype = 'e');

create temp view our_functions as
select p.oid, p.oid::regprocedure::text as name, n.nspname as schema, p.proname, p.prosecdef,
  p.proconfig, p.prorettype, p.prokind, l.lanname, p.proacl, p.proowner
from pg_proc as p
inner join pg_namespace as n on n.oid = p.pronamespace
inner join pg_language as l on l.oid = p.prolang
where n.nspname in ('creditgate', 'creditgate_private')
  and not exists (select 1 from pg_depend as d where d.objid = p.oid and d.deptype = 'e');

select cmp_ok(
  (select count(*) from our_relations where relkind in ('r', 'p')), '>', 0::bigint,
  'the schemas hold tables (the queries below look at something)'
);

-- ---------------------------------------------------------------- RLS and table privileges
select is_empty(
  $$ select name from our_relations where relkind in ('r', 'p') and not relrowsecurity $$,
  'RLS is enabled on every table of creditgate and creditgate_private'
);
select is_empty(
  $$ select r.name, role, priv
     from our_relations as r
     cross join unnest(array['anon', 'authenticated']) as role
     cross join unnest(array['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) as priv
     where r.relkind <> 'S'
       and case when priv in ('INSERT', 'UPDATE') then has_any_column_privilege(role, r.oid, priv)
                else has_table_privilege(role, r.oid, priv) end $$,
  'anon and authenticated cannot INSERT, UPDATE, DELETE or TRUNCATE any table (nor any column)'
);
select is_empty(
  $$ select r.name, role, priv
     from our_relations as r
     cross join unnest(array['anon', 'authenticated']) as role
     cross join unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) as priv
     where r.schema = 'creditgate_private' and r.relkind <> 'S'
       and case when priv in ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
                then has_any_column_privilege(role, r.oid, priv)
                else has_table_privilege(role, r.oid, priv) end
     union all
     select r.name, role, priv
     from our_relations as r
     cross join unnest(array['anon', 'authenticated']) as role
     cross join unnest(array['USAGE', 'SELECT', 'UPDATE']) as priv
     where r.schema = 'creditgate_private' and r.relkind = 'S'
       and has_sequence_privilege(role, r.oid, priv)
     union all
     select f.name, role, 'EXECUTE'
     from our_functions as f
     cross join unnest(array['anon', 'authenticated']) as role
     where f.schema = 'creditgate_private' and has_function_privilege(role, f.oid, 'EXECUTE')
     union all
     select 'schema creditgate_private', role, priv
     from unnest(array['anon', 'authenticated']) as role
     cross join unnest(array['USAGE', 'CREATE']) as priv
     where has_schema_privilege(role, 'creditgate_private', priv) $$,
  'anon and authenticated hold no privilege at all on creditgate_private or anything in it'
);
select is_empty(
  $$ select t.name, priv
     from unnest(array['creditgate.balances', 'creditgate.credit_lots', 'creditgate.ledger']) as t (name)
     cross join unnest(array['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) as priv
     where case when priv in ('INSERT', 'UPDATE')
                then has_any_column_privilege('service_role', t.name, priv)
                else has_table_privilege('service_role', t.name, priv) end $$,
  'service_role cannot write balances, credit_lots or ledger (only definer functions do)'
);

-- ---------------------------------------------------------------- functions
select is_empty(
  $$ select name, proconfig from our_functions
     where prosecdef and not coalesce('search_path=""' = any(proconfig), false) $$,
  'every SECURITY DEFINER function sets search_path = '''''
);
select is_empty(
  $$ select name from our_functions
     where schema = 'creditgate' and obj_description(oid, 'pg_proc') is null $$,
  'every function in creditgate has a COMMENT'
);
select is_empty(
  $$ select name from our_relations
     where schema = 'creditgate' and relkind in ('r', 'p', 'v', 'm', 'f')
       and obj_description(oid, 'pg_class') is null $$,
  'every table and view in creditgate has a COMMENT'
);
select is_empty(
  $$ select f.name from our_functions as f
     cross join lateral aclexplode(coalesce(f.proacl, acldefault('f', f.proowner))) as a
     where a.grantee = 0 and a.privilege_type = 'EXECUTE' $$,
  'no function in creditgate or creditgate_private is executable by PUBLIC'
);
select is_empty(
  $$ select name, role from our_functions
     cross join unnest(array['anon', 'authenticated']) as role
     where schema = 'creditgate' and proname like 'service\_%' and has_function_privilege(role, oid, 'EXECUTE') $$,
  'service_* functions are not executable by anon or authenticated'
);
select is_empty(
  $$ select name from our_functions
     where schema = 'creditgate' and proname like 'service\_%'
       and not has_function_privilege('service_role', oid, 'EXECUTE') $$,
  'service_* functions are executable by service_role'
);

-- ---------------------------------------------------------------- plpgsql_check
select is_empty(
  $$ select f.name from our_functions as f
     where f.lanname = 'plpgsql' and f.prorettype = 'trigger'::regtype
       and not exists (select 1 from pg_trigger as t where t.tgfoid = f.oid) $$,
  'every PL/pgSQL trigger function is attached to a trigger (so plpgsql_check can check it)'
);
select is_empty(
  $$ select f.name, c.lineno, c.sqlstate, c.message, c.detail
     from our_functions as f
     left join lateral (
       select distinct t.tgrelid from pg_trigger as t where t.tgfoid = f.oid
     ) as trg on true
     cross join lateral plpgsql_check_function_tb(
       f.oid, coalesce(trg.tgrelid, 0), fatal_errors => false
     ) as c
     where f.lanname = 'plpgsql'
       and (f.prorettype <> 'trigger'::regtype or trg.tgrelid is not null)
       and c.level = 'error' $$,
  'plpgsql_check reports no error in any PL/pgSQL function (trigger functions checked per table)'
);

select * from finish();
rollback;
