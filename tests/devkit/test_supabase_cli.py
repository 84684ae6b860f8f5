"""The real Supabase CLI (npm `supabase` 2.117.0) pushes supabase/migrations/ to a database
prepared the way hosted Supabase is (tests/devkit/supabase_like.sql: auth schema and GoTrue's
full auth.users owned by supabase_auth_admin, a NOSUPERUSER CREATEROLE BYPASSRLS migrator,
no creditgate bootstrap). On that database: every pgTAP file and audit() pass, a GoTrue-style
signup credits the bonus, a second push is a no-op, and a changed function goes live after
`creditgate migrate generate` plus a push."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from creditgate import localdb
from tests import dbutil
from tests.devkit.supabase_like import MIGRATOR, create, db_url, drop, signup, url

ROOT = dbutil.ROOT
SUPABASE = ROOT / "devkit" / "node_modules" / ".bin" / "supabase"
PGTAP_FILES = sorted((ROOT / "db" / "tests").rglob("*.sql"))
PLAN_RE = re.compile(r"^1\.\.(\d+)$", re.M)


def push(name: str, workdir: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "SUPABASE_"))}
    env["HOME"] = str(home)  # the CLI keeps its state under ~/.supabase
    return subprocess.run(
        [str(SUPABASE), "db", "push", "--db-url", db_url(name), "--include-all", "--yes",
         "--workdir", str(workdir)],
        capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL,
    )


def applied(name: str) -> list[str]:
    with psycopg.connect(url(name)) as conn:
        rows = conn.execute(
            "select version from supabase_migrations.schema_migrations order by version"
        ).fetchall()
    return [v for (v,) in rows]


def versions(folder: Path) -> list[str]:
    return sorted(p.name.split("_", 1)[0] for p in folder.glob("*.sql"))


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A Supabase-like database after one push of the checked-in migrations."""
    name = create()
    try:
        result = push(name, ROOT, tmp_path_factory.mktemp("home"))
        yield name, result.stdout + result.stderr
    finally:
        drop(name)


def test_the_database_is_prepared_like_hosted_supabase(pushed: tuple[str, str]) -> None:
    name, _ = pushed
    with psycopg.connect(localdb.dsn_for(dbutil.ADMIN_URL, dbname=name)) as conn:
        migrator = conn.execute(
            "select rolsuper, rolcreaterole, rolbypassrls from pg_roles where rolname = %s",
            [MIGRATOR],
        ).fetchone()
        owner = conn.execute(
            "select relowner::regrole::text from pg_class where oid = 'auth.users'::regclass"
        ).fetchone()
        columns = conn.execute(
            "select count(*) from information_schema.columns"
            " where table_schema = 'auth' and table_name = 'users'"
        ).fetchone()
        bootstrap_role_used = conn.execute(
            "select count(*) from pg_class as c join pg_namespace as n on n.oid = c.relnamespace"
            " where n.nspname in ('creditgate', 'creditgate_private', 'auth')"
            " and c.relowner = 'creditgate_deployer'::regrole"
        ).fetchone()
    assert migrator == (False, True, True)
    assert owner == ("supabase_auth_admin",)
    assert columns is not None and columns[0] == 35  # GoTrue's auth.users, is_anonymous included
    assert bootstrap_role_used == (0,)


def test_push_applies_every_migration(pushed: tuple[str, str]) -> None:
    name, output = pushed
    expected = versions(ROOT / "supabase" / "migrations")
    assert "Finished supabase db push." in output, output
    for migration in sorted((ROOT / "supabase" / "migrations").glob("*.sql")):
        assert f"Applying migration {migration.name}" in output, output
    assert applied(name) == expected
    with psycopg.connect(url(name)) as conn:
        owner = conn.execute(
            "select nspowner::regrole::text from pg_namespace where nspname = 'creditgate'"
        ).fetchone()
    assert owner == (MIGRATOR,)


@pytest.fixture(scope="module")
def pgtap_ready(pushed: tuple[str, str]) -> str:
    """The pushed database with pgTAP, plpgsql_check and the test helpers (db/testing)."""
    name, _ = pushed
    with psycopg.connect(localdb.dsn_for(dbutil.ADMIN_URL, dbname=name), autocommit=True) as c:
        c.execute("set client_min_messages = warning")
        c.execute("create extension if not exists pgtap")
        c.execute("create extension if not exists plpgsql_check")
    with psycopg.connect(url(name), autocommit=True) as conn:
        conn.execute("set client_min_messages = warning")
        for path in sorted((ROOT / "db" / "testing").glob("*.sql")):
            conn.execute(path.read_bytes(), prepare=False)
    return name


@pytest.mark.parametrize("path", PGTAP_FILES, ids=lambda p: str(p.relative_to(ROOT / "db" / "tests")))
def test_pgtap_passes_on_the_pushed_database(pgtap_ready: str, path: Path) -> None:
    proc = subprocess.run(
        ["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", url(pgtap_ready),
         "-f", str(path)],
        capture_output=True, text=True, timeout=600,
    )
    out = proc.stdout + proc.stderr
    plan = PLAN_RE.search(proc.stdout)
    oks = re.findall(r"^ok \d+", proc.stdout, re.M)
    assert proc.returncode == 0, out
    assert plan is not None and int(plan.group(1)) == len(oks) > 0, out
    assert re.findall(r"^not ok .*$", proc.stdout, re.M) == [], out


def test_audit_passes_and_a_gotrue_signup_credits_the_bonus(pgtap_ready: str) -> None:
    name = pgtap_ready
    user_id = signup(name)
    with psycopg.connect(url(name, "authenticator"), autocommit=True) as conn:
        with conn.transaction():
            conn.execute("select set_config('role', 'authenticated', true),"
                         " set_config('request.jwt.claims', %s, true)",
                         [f'{{"sub": "{user_id}", "role": "authenticated"}}'])
            balance = conn.execute("select creditgate.get_balance()").fetchone()
        with conn.transaction():
            conn.execute("select set_config('role', 'service_role', true)")
            audit = conn.execute("select creditgate.audit()").fetchone()
    assert balance is not None and balance[0]["balance"] == 1000
    assert audit is not None and audit[0]["ok"] is True, audit


def test_a_second_push_is_a_no_op(pushed: tuple[str, str], tmp_path: Path) -> None:
    name, _ = pushed
    before = applied(name)
    result = push(name, ROOT, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Remote database is up to date." in result.stdout + result.stderr
    assert "Applying migration" not in result.stdout + result.stderr
    assert applied(name) == before


def test_a_changed_function_goes_live_after_generate_and_push(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "db", project / "db")
    shutil.copytree(ROOT / "supabase", project / "supabase")
    name = create()
    try:
        first = push(name, project, tmp_path)
        assert first.returncode == 0, first.stdout + first.stderr
        account = project / "db" / "functions" / "ledger" / "account.sql"
        text = account.read_text()
        # A line added to the body of is_admin() (a DESIGN name, whatever its body is).
        start = text.index("create or replace function creditgate.is_admin()")
        body = text.index("as $$\n", start) + len("as $$\n")
        account.write_text(text[:body] + "  -- devkit: changed\n" + text[body:])

        generate = subprocess.run(
            [sys.executable, "-m", "creditgate.cli", "migrate", "generate"],
            capture_output=True, text=True, timeout=120,
            env=dict(os.environ, CREDITGATE_PROJECT_ROOT=str(project)),
        )
        assert generate.returncode == 0, generate.stderr
        new_files = sorted(set(versions(project / "supabase" / "migrations"))
                           - set(versions(ROOT / "supabase" / "migrations")))
        assert len(new_files) == 1, generate.stdout

        second = push(name, project, tmp_path)
        assert second.returncode == 0, second.stdout + second.stderr
        assert f"Applying migration {new_files[0]}_repeatables.sql" in second.stdout + second.stderr
        with psycopg.connect(url(name)) as conn:
            body = conn.execute(
                "select pg_get_functiondef('creditgate.is_admin()'::regprocedure)"
            ).fetchone()
        assert body is not None and "devkit: changed" in body[0]
        assert applied(name)[-1] == new_files[0]
    finally:
        drop(name)
