"""`creditgate migrate`: idempotent, concurrent-safe, tamper-proof, all-or-nothing, and
runnable as a non-superuser like hosted Supabase."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from creditgate import localdb, migrate
from tests import dbutil

ROOT = dbutil.ROOT
CLI = [sys.executable, "-m", "creditgate.cli"]


def _empty() -> dbutil.TestDatabase:
    name = f"cg_m_{dbutil.RUN_ID}_{uuid.uuid4().hex[:8]}"
    localdb.create_database(dbutil.ADMIN_URL, name)
    localdb.bootstrap(dbutil.ADMIN_URL, name)
    return dbutil.TestDatabase(name)


@pytest.fixture
def empty_db() -> Iterator[dbutil.TestDatabase]:
    """A bootstrapped database with no migrations applied."""
    db = _empty()
    try:
        yield db
    finally:
        localdb.drop_database(dbutil.ADMIN_URL, db.name)


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A copy of db/ and supabase/ that a test may edit."""
    shutil.copytree(ROOT / "db", tmp_path / "db")
    shutil.copytree(ROOT / "supabase", tmp_path / "supabase")
    return tmp_path


def run_cli(*args: str, db: dbutil.TestDatabase | None = None, root: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if db is not None:
        env["DATABASE_URL"] = db.owner_url
    if root is not None:
        env["CREDITGATE_PROJECT_ROOT"] = str(root)
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=300)


def schema_dump(db: dbutil.TestDatabase) -> str:
    proc = subprocess.run(
        ["pg_dump", "--schema-only", "--no-comments", "-N", "creditgate_migrations", "-N", "tests",
         db.admin_url],
        capture_output=True, text=True, check=True,
    )
    lines = [
        ln for ln in proc.stdout.splitlines()
        if not ln.startswith(("--", "\\restrict", "\\unrestrict")) and "pg_dump" not in ln
    ]
    return "\n".join(lines)


def tracked(db: dbutil.TestDatabase) -> list[tuple[str, str]]:
    with psycopg.connect(db.owner_url) as conn:
        return conn.execute(
            "select name, checksum from creditgate_migrations.versioned order by name"
        ).fetchall()


def test_deployer_is_a_supabase_like_non_superuser() -> None:
    with psycopg.connect(dbutil.ADMIN_URL) as conn:
        row = conn.execute(
            "select rolsuper, rolcreaterole, rolbypassrls from pg_roles where rolname = %s",
            [localdb.DEPLOYER_ROLE],
        ).fetchone()
    assert row == (False, True, True)


def test_apply_twice_changes_nothing(empty_db: dbutil.TestDatabase) -> None:
    first = run_cli("migrate", "apply", db=empty_db)
    assert first.returncode == 0, first.stderr
    assert "applied" in first.stdout
    dump = schema_dump(empty_db)
    versions = tracked(empty_db)
    assert versions, "versioned migrations were recorded"

    second = run_cli("migrate", "apply", db=empty_db)
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout
    assert schema_dump(empty_db) == dump
    assert tracked(empty_db) == versions

    plan = run_cli("migrate", "plan", db=empty_db)
    assert plan.returncode == 0 and "nothing to do" in plan.stdout
    status = run_cli("migrate", "status", db=empty_db)
    assert status.returncode == 0 and "pending" not in status.stdout


def test_concurrent_runs_do_the_work_once(empty_db: dbutil.TestDatabase) -> None:
    env = dict(os.environ, DATABASE_URL=empty_db.owner_url)
    procs = [
        subprocess.Popen([*CLI, "migrate", "apply"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    stdouts = sorted(out for out, _ in outs)
    assert "nothing to do" in stdouts[1] and "applied" in stdouts[0], stdouts
    names = [name for name, _ in tracked(empty_db)]
    assert len(names) == len(set(names)) == len(list((ROOT / "db" / "schema").glob("*.sql")))


def test_tampered_versioned_file_is_refused(empty_db: dbutil.TestDatabase, project_copy: Path) -> None:
    assert run_cli("migrate", "apply", db=empty_db, root=project_copy).returncode == 0
    before = schema_dump(empty_db)
    first = sorted((project_copy / "db" / "schema").glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after it ran\n")
    # A pending file next to the tampered one must not be applied either.
    (project_copy / "db" / "schema" / "9999_pending.sql").write_text(
        "create table creditgate_private.pending_probe (id int);\n"
    )
    result = run_cli("migrate", "apply", db=empty_db, root=project_copy)
    assert result.returncode != 0
    assert f"schema/{first.name}" in result.stderr
    assert schema_dump(empty_db) == before
    status = run_cli("migrate", "status", db=empty_db, root=project_copy)
    assert status.returncode != 0 and "TAMPERED" in status.stdout


def test_failed_migration_leaves_database_unchanged(empty_db: dbutil.TestDatabase, project_copy: Path) -> None:
    assert run_cli("migrate", "apply", db=empty_db, root=project_copy).returncode == 0
    before = schema_dump(empty_db)
    (project_copy / "db" / "schema" / "9998_ok.sql").write_text(
        "create table creditgate_private.probe_ok (id int);\n"
    )
    (project_copy / "db" / "schema" / "9999_broken.sql").write_text(
        "create table creditgate_private.probe_broken (id int);\n\n"
        "alter table creditgate_private.no_such_table add column x int;\n"
    )
    result = run_cli("migrate", "apply", db=empty_db, root=project_copy)
    assert result.returncode != 0
    assert "schema/9999_broken.sql:3" in result.stderr
    assert "no_such_table" in result.stderr
    assert "nothing was changed" in result.stderr
    assert schema_dump(empty_db) == before


def test_changed_repeatable_file_is_reapplied(empty_db: dbutil.TestDatabase, project_copy: Path) -> None:
    assert run_cli("migrate", "apply", db=empty_db, root=project_copy).returncode == 0
    errors = project_copy / "db" / "functions" / "private" / "errors.sql"
    errors.write_text(errors.read_text().replace(
        "'Sign in and send the access token.'", "'Sign in first.'"
    ))
    result = run_cli("migrate", "apply", db=empty_db, root=project_copy)
    assert result.returncode == 0, result.stderr
    assert "functions/private/errors.sql (changed)" in result.stderr
    with psycopg.connect(empty_db.owner_url) as conn:
        hint = conn.execute(
            "select hint from creditgate_private.error_codes() where message = 'not_authenticated'"
        ).fetchone()
    assert hint == ("Sign in first.",)


def test_supabase_migrations_give_the_same_schema(empty_db: dbutil.TestDatabase) -> None:
    reference = _empty()
    try:
        migrate.apply(reference.owner_url)
        files = sorted((ROOT / "supabase" / "migrations").glob("*.sql"))
        assert files, "supabase/migrations is generated and checked in"
        for path in files:
            proc = subprocess.run(
                ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", empty_db.owner_url, "-f", str(path)],
                capture_output=True, text=True,
            )
            assert proc.returncode == 0, f"{path.name}: {proc.stderr}"
        assert schema_dump(empty_db) == schema_dump(reference)
    finally:
        localdb.drop_database(dbutil.ADMIN_URL, reference.name)


def test_supabase_migrations_are_current() -> None:
    result = run_cli("migrate", "generate", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_stale_supabase_migrations_are_detected(project_copy: Path) -> None:
    assert run_cli("migrate", "generate", "--check", root=project_copy).returncode == 0
    errors = project_copy / "db" / "functions" / "private" / "errors.sql"
    errors.write_text(errors.read_text() + "\n-- a change\n")
    result = run_cli("migrate", "generate", "--check", root=project_copy)
    assert result.returncode != 0
    assert "out of date" in result.stderr
    # Regenerating fixes it, appending one migration.
    before = set((project_copy / "supabase" / "migrations").iterdir())
    assert run_cli("migrate", "generate", root=project_copy).returncode == 0
    added = set((project_copy / "supabase" / "migrations").iterdir()) - before
    assert len(added) == 1 and next(iter(added)).name.endswith("_repeatables.sql")
    assert run_cli("migrate", "generate", "--check", root=project_copy).returncode == 0
