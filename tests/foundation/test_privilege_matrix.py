"""Every object's privileges for anon, authenticated and service_role equal the reviewed
matrix in db/privileges.json; new objects without an entry fail."""

from __future__ import annotations

import psycopg

from tests import dbutil
from tests.foundation import privileges


def test_catalog_matches_documented_matrix(module_db: dbutil.TestDatabase) -> None:
    with psycopg.connect(module_db.owner_url) as conn:
        actual = privileges.catalog_matrix(conn)
    documented = privileges.load()
    missing = sorted(set(actual) - set(documented))
    assert not missing, f"objects without a privilege-matrix entry: {missing}"
    gone = sorted(set(documented) - set(actual))
    assert not gone, f"matrix entries for objects that no longer exist: {gone}"
    diffs = {name: (documented[name], actual[name]) for name in actual if documented[name] != actual[name]}
    assert not diffs, f"privileges differ from db/privileges.json (documented, actual): {diffs}"


def test_matrix_keeps_the_contract(module_db: dbutil.TestDatabase) -> None:
    """Independent of the file: the rules the matrix must obey (DESIGN §2)."""
    with psycopg.connect(module_db.owner_url) as conn:
        actual = privileges.catalog_matrix(conn)
    problems = []
    for name, entry in actual.items():
        schema = name.split(".", 1)[0]
        kind = str(entry["kind"])
        for role in ("anon", "authenticated"):
            privs = set(entry[role])  # type: ignore[arg-type]
            if schema == "creditgate_private" and privs:
                problems.append(f"{role} has {privs} on private {name}")
            if privs & {"INSERT", "UPDATE", "DELETE", "TRUNCATE", "TRIGGER", "REFERENCES"}:
                problems.append(f"{role} may write {name}: {privs}")
        fn = name.split(".", 1)[1]
        if kind.startswith("function") and fn.startswith("service_"):
            if entry["anon"] or entry["authenticated"] or entry["service_role"] != ["EXECUTE"]:
                problems.append(f"{name} must be service_role only: {entry}")
        if kind == "table" and set(entry["service_role"]) - {"SELECT"}:  # type: ignore[arg-type]
            problems.append(f"service_role may write {name}: {entry['service_role']}")
    assert not problems, "\n".join(problems)
