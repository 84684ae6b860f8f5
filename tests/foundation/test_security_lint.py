"""Catalog checks for the classic Supabase security mistakes (after supabase/splinter).
Each query returns the offending objects; every one must come back empty."""

from __future__ import annotations

import psycopg
import pytest

from tests import dbutil

SCHEMAS = ["creditgate", "creditgate_private"]

# SECURITY DEFINER functions anon may execute, each by design (DESIGN §4).
ANON_DEFINER_ALLOWED = {
    # Prices a request for visitors; reads only public registry rows and raises PT400.
    "creditgate.quote(model_id text, params jsonb)",
}

CHECKS: dict[str, str] = {
    "rls_disabled": """
        select n.nspname || '.' || c.relname
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = any(%(schemas)s) and c.relkind in ('r', 'p') and not c.relrowsecurity
    """,
    "policy_exists_rls_disabled": """
        select distinct n.nspname || '.' || c.relname
        from pg_policy p join pg_class c on c.oid = p.polrelid
        join pg_namespace n on n.oid = c.relnamespace
        where not c.relrowsecurity
    """,
    "exposed_table_without_policy": """
        select n.nspname || '.' || c.relname
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'creditgate' and c.relkind in ('r', 'p')
          and not exists (select 1 from pg_policy p where p.polrelid = c.oid)
    """,
    "function_search_path_mutable": """
        select n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = any(%(schemas)s)
          and not exists (select 1 from unnest(coalesce(p.proconfig, '{}')) as c where c like 'search_path=%%')
    """,
    "security_definer_search_path_not_empty": """
        select n.nspname || '.' || p.proname
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = any(%(schemas)s) and p.prosecdef
          and not ('search_path=""' = any(coalesce(p.proconfig, '{}')))
    """,
    "security_definer_executable_by_anon": """
        select n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = any(%(schemas)s) and p.prosecdef
          and has_function_privilege('anon', p.oid, 'EXECUTE')
    """,
    "security_definer_executable_by_public": """
        select n.nspname || '.' || p.proname
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = any(%(schemas)s) and p.prosecdef
          and exists (select 1 from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                      where a.grantee = 0 and a.privilege_type = 'EXECUTE')
    """,
    "view_exposes_auth_users": """
        select distinct v.oid::regclass::text
        from pg_class v join pg_namespace n on n.oid = v.relnamespace
        join pg_rewrite r on r.ev_class = v.oid
        join pg_depend d on d.objid = r.oid and d.refobjid = 'auth.users'::regclass
        where v.relkind in ('v', 'm') and n.nspname not in ('auth', 'pg_catalog')
    """,
    "security_definer_view": """
        select c.oid::regclass::text
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'creditgate' and c.relkind = 'v'
          and not coalesce('security_invoker=true' = any(c.reloptions), false)
    """,
    "unindexed_foreign_keys": """
        select con.conrelid::regclass::text || ' ' || con.conname
        from pg_constraint con join pg_namespace n on n.oid = con.connamespace
        where con.contype = 'f' and n.nspname = any(%(schemas)s)
          and not exists (
            select 1 from pg_index i
            where i.indrelid = con.conrelid
              and (i.indkey::int2[])[0:cardinality(con.conkey) - 1] operator(pg_catalog.@>) con.conkey
              and (i.indkey::int2[])[0:cardinality(con.conkey) - 1] operator(pg_catalog.<@) con.conkey
          )
    """,
    "private_schema_usable_by_clients": """
        select r from unnest(array['anon', 'authenticated', 'public']) as r
        where has_schema_privilege(case when r = 'public' then 'anon' else r end,
                                   'creditgate_private', 'USAGE')
    """,
}


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_no_findings(module_db: dbutil.TestDatabase, check: str) -> None:
    with psycopg.connect(module_db.owner_url) as conn:
        found = [row[0] for row in conn.execute(CHECKS[check], {"schemas": SCHEMAS}).fetchall()]
    if check == "security_definer_executable_by_anon":
        found = [f for f in found if f not in ANON_DEFINER_ALLOWED]
    assert found == [], f"{check}: {found}"


def test_lint_catches_a_planted_mistake(db: dbutil.TestDatabase) -> None:
    """The checks can fail: plant one of each mistake and see it reported."""
    with psycopg.connect(db.owner_url, autocommit=True) as conn:
        conn.execute("create table creditgate.lint_probe (id int primary key, user_id uuid references auth.users (id))")
        conn.execute("create function creditgate.lint_probe_fn() returns int language sql security definer as 'select 1'")
        conn.execute("grant execute on function creditgate.lint_probe_fn() to anon")
        conn.execute("create view creditgate.lint_probe_view as select id, email from auth.users")
        planted = {}
        for check in ("rls_disabled", "function_search_path_mutable", "security_definer_executable_by_anon",
                      "security_definer_executable_by_public", "view_exposes_auth_users",
                      "security_definer_view", "unindexed_foreign_keys", "exposed_table_without_policy",
                      "security_definer_search_path_not_empty"):
            planted[check] = [r[0] for r in conn.execute(CHECKS[check], {"schemas": SCHEMAS}).fetchall()]
    assert all(planted.values()), planted
