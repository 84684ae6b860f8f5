"""The privilege matrix: what anon, authenticated and service_role may do with every
table, view, sequence and function in ``creditgate`` and ``creditgate_private``.

``db/privileges.json`` is the reviewed, documented matrix; the test compares it with the
catalog, so a new object without an entry (or a grant nobody reviewed) fails. After a
deliberate change, regenerate with ``python -m tests.foundation.privileges --write`` and
review the diff.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
MATRIX = ROOT / "db" / "privileges.json"
ROLES = ("anon", "authenticated", "service_role")
SCHEMAS = ("creditgate", "creditgate_private")
TABLE_PRIVS = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")

CATALOG_QUERY = """
with objects as (
  select c.oid, n.nspname as schema, c.relname as name,
    case c.relkind when 'r' then 'table' when 'p' then 'table' when 'v' then 'view'
      when 'm' then 'materialized view' when 'S' then 'sequence' when 'f' then 'foreign table' end as kind
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
  where n.nspname = any(%(schemas)s) and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
)
select o.schema, o.name, o.kind, r.rolname,
  array(
    select p from unnest(%(table_privs)s::text[]) as p
    where o.kind <> 'sequence' and has_table_privilege(r.oid, o.oid, p)
    union all
    select p from unnest(array['USAGE', 'SELECT', 'UPDATE']) as p
    where o.kind = 'sequence' and has_sequence_privilege(r.oid, o.oid, p)
  ) as privs
from objects o cross join pg_roles r
where r.rolname = any(%(roles)s)
union all
select n.nspname, p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
  case when p.prosecdef then 'function (security definer)' else 'function' end,
  r.rolname,
  case when has_function_privilege(r.oid, p.oid, 'EXECUTE') then array['EXECUTE'] else array[]::text[] end
from pg_proc p join pg_namespace n on n.oid = p.pronamespace
cross join pg_roles r
where n.nspname = any(%(schemas)s) and r.rolname = any(%(roles)s)
  and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e')
order by 1, 2, 4
"""


def catalog_matrix(conn: psycopg.Connection) -> dict[str, dict[str, object]]:
    rows = conn.execute(
        CATALOG_QUERY,
        {"schemas": list(SCHEMAS), "roles": list(ROLES), "table_privs": list(TABLE_PRIVS)},
    ).fetchall()
    matrix: dict[str, dict[str, object]] = {}
    for schema, name, kind, role, privs in rows:
        entry = matrix.setdefault(f"{schema}.{name}", {"kind": kind})
        entry[role] = sorted(privs)
    return matrix


def load() -> dict[str, dict[str, object]]:
    data = json.loads(MATRIX.read_text())
    objects: dict[str, dict[str, object]] = data["objects"]
    return objects


def main() -> None:
    from tests import dbutil

    db = dbutil.new_database()
    try:
        with psycopg.connect(db.owner_url) as conn:
            matrix = catalog_matrix(conn)
    finally:
        dbutil.drop(db)
    if "--write" in sys.argv:
        MATRIX.write_text(json.dumps({
            "about": "Privileges of anon, authenticated and service_role on every object in "
                     "creditgate and creditgate_private. Reviewed by hand; the test "
                     "tests/foundation/test_privilege_matrix.py compares it with the catalog.",
            "objects": matrix,
        }, indent=1, sort_keys=True) + "\n")
        print(f"wrote {MATRIX.relative_to(ROOT)} ({len(matrix)} objects)")
    else:
        print(json.dumps(matrix, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
