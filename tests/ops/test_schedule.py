"""pg_cron schedules on the local cluster (pg_cron preloaded, cron.database_name=postgres),
managed as creditgate_deployer: NOSUPERUSER CREATEROLE BYPASSRLS, like hosted Supabase's
`postgres` role. The superuser part is what scripts/setup does once per cluster (and what
Supabase does for its projects): create the extension in the cron database and let the
migrator use schema cron."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import psycopg
import pytest

from creditgate import localdb, schedule
from tests import dbutil
from tests.e2e.procs import CLI, base_env
from tests.ops.helpers import expire_lease, grant, new_user, owner, value

JOBS = ["audit", "expire-credits", "mark-media", "prune-rate-limits", "reap-leases"]


@pytest.fixture(scope="module")
def cron_db() -> Iterator[str]:
    with psycopg.connect(dbutil.ADMIN_URL, autocommit=True) as conn:
        name = conn.execute("select current_setting('cron.database_name', true)").fetchone()
    assert name and name[0], "pg_cron is not preloaded on this cluster (scripts/setup)"
    with psycopg.connect(
        localdb.dsn_for(dbutil.ADMIN_URL, dbname=name[0]), autocommit=True
    ) as conn:
        try:
            conn.execute("create extension if not exists pg_cron")
        except psycopg.errors.UniqueViolation:
            pass  # created by a concurrent run
        conn.execute(f"grant usage on schema cron to {localdb.DEPLOYER_ROLE}")
        for fn in ("schedule_in_database(text, text, text, text, text, boolean)",
                   "alter_job(bigint, text, text, text, text, boolean)"):
            conn.execute(f"grant execute on function cron.{fn} to {localdb.DEPLOYER_ROLE}")
    yield str(name[0])


def cli(db: dbutil.TestDatabase, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**base_env(), "DATABASE_URL": db.owner_url, "COLUMNS": "250"}
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def cron_jobs(cron_db: str, database: str) -> list[tuple[int, str, str]]:
    with psycopg.connect(localdb.dsn_for(dbutil.ADMIN_URL, dbname=cron_db)) as conn:
        rows = conn.execute(
            "select jobid, jobname, username from cron.job where database = %s order by jobname",
            [database],
        ).fetchall()
    return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


def test_migrations_do_not_need_pg_cron(db: dbutil.TestDatabase) -> None:
    # Test databases are migrated without the extension: no schema cron, jobs all there.
    assert value(db, "select to_regnamespace('cron') is null") is True
    assert value(db, "select count(*) from creditgate_private.jobs where not on_pg_cron") == 5


def test_the_migrator_is_not_a_superuser(db: dbutil.TestDatabase) -> None:
    attrs = value(
        db,
        "select array[rolsuper, rolcreaterole, rolbypassrls] from pg_roles"
        " where rolname = current_user",
    )
    assert attrs == [False, True, True]


def test_install_status_remove(db: dbutil.TestDatabase, cron_db: str) -> None:
    first = cli(db, "schedule", "install")
    assert first.returncode == 0, first.stderr
    again = cli(db, "schedule", "install")  # idempotent
    assert again.returncode == 0, again.stderr
    jobs = cron_jobs(cron_db, db.name)
    assert [name for _, name, _ in jobs] == [f"creditgate-{j}@{db.name}" for j in JOBS]
    assert {user for _, _, user in jobs} == {localdb.DEPLOYER_ROLE}

    shown = cli(db, "schedule", "status")
    assert shown.returncode == 0, shown.stderr
    for job in JOBS:
        assert f"creditgate-{job}@{db.name}" in shown.stdout
    assert "17 3 * * *" in shown.stdout and "never" in shown.stdout

    # pg_cron runs them now: a worker's call runs nothing.
    with owner(db) as conn:
        conn.execute("set role service_role")
        ran = conn.execute("select creditgate.service_run_due_jobs('w')").fetchone()
    assert ran is not None and ran[0] == {"locked": False, "ran": []}

    removed = cli(db, "schedule", "remove")
    assert removed.returncode == 0 and "removed 5" in removed.stdout, removed.stderr
    assert cron_jobs(cron_db, db.name) == []
    with psycopg.connect(localdb.dsn_for(dbutil.ADMIN_URL, dbname=cron_db)) as conn:
        ours = conn.execute(
            "select count(*) from cron.job_run_details as d where d.database = %s", [db.name]
        ).fetchone()
    assert ours == (0,)
    assert value(db, "select bool_or(on_pg_cron) from creditgate_private.jobs") is False
    assert "no pg_cron jobs" in cli(db, "schedule", "status").stdout


def test_each_job_has_its_effect_under_pg_cron(db: dbutil.TestDatabase, cron_db: str) -> None:
    user = new_user(db, credits=1000)
    with owner(db) as conn:
        # A lot that has lapsed, a running job whose worker vanished, an expired temporary
        # file, a rate-limit window long over.
        grant(conn, user, 70, expires_at="2099-01-01")
        conn.execute(
            "update creditgate.credit_lots set expires_at = now() - interval '1 hour'"
            " where user_id = %s and amount = 70",
            [user],
        )
        gid = conn.execute(
            "select tests.make_queued_generation(%s, 'img-test', 100)", [user]
        ).fetchone()
        assert gid is not None
        conn.execute(
            "select creditgate.service_claim_generations(worker_id => 'gone', max_jobs => 1)"
        )
        expire_lease(conn, gid[0])
        media = conn.execute("select tests.media_for(%s, 'image/png')", [user]).fetchone()
        assert media is not None
        conn.execute(
            "update creditgate.media set saved = false, expires_at = now() - interval '1 hour'"
            " where id = %s",
            [media[0]],
        )
        conn.execute(
            "insert into creditgate_private.rate_limit_rules (id, scope, window_seconds,"
            " max_requests) values ('t', 'user', 60, 5)"
        )
        conn.execute(
            "insert into creditgate_private.rate_limit_counters values"
            " ('t', 'x', now() - interval '1 day', 1), ('t', 'y', now(), 1)"
        )
    assert schedule.install(db.owner_url)
    # Every minute, so the test sees each job run once (pg_cron 1.4 has minute resolution).
    with psycopg.connect(
        localdb.dsn_for(dbutil.ADMIN_URL, dbname=cron_db, user=localdb.DEPLOYER_ROLE),
        autocommit=True,
    ) as conn:
        for jobid, _, _ in cron_jobs(cron_db, db.name):
            conn.execute("select cron.alter_job(%s, schedule => '* * * * *')", [jobid])
    try:
        deadline = time.monotonic() + 150
        while True:
            jobs = schedule.status(db.owner_url)
            if all(j.last_status == "succeeded" for j in jobs):
                break
            failed = [(j.name, j.last_message) for j in jobs if j.last_status == "failed"]
            assert not failed, failed
            assert time.monotonic() < deadline, [(j.name, j.last_status) for j in jobs]
            time.sleep(2)
        assert all(j.runs >= 1 and j.last_duration is not None for j in jobs)
        shown = cli(db, "schedule", "status")
        assert shown.stdout.count("succeeded") == 5, shown.stdout

        assert value(
            db,
            "select count(*) from creditgate.ledger where user_id = %s and entry_type = 'expire'",
            user,
        ) == 1
        assert value(
            db, "select status from creditgate.generations where id = %s", gid[0]
        ) == "queued"
        assert value(
            db, "select count(*) from creditgate_private.media_purge_queue where media_id = %s",
            media[0],
        ) == 1
        assert value(
            db, "select array_agg(subject) from creditgate_private.rate_limit_counters"
        ) == ["y"]
        assert value(db, "select count(*) from creditgate_private.audit_runs") >= 1
        runners = value(db, "select array_agg(distinct runner) from creditgate_private.job_runs")
        assert runners == ["pg_cron"]
    finally:
        schedule.remove(db.owner_url)
    assert cron_jobs(cron_db, db.name) == []


def test_job_names_on_hosted_supabase() -> None:
    # The application database is the cron database there: plain names.
    assert schedule.job_name("audit", "postgres", "postgres") == "creditgate-audit"
    assert schedule.job_name("audit", "creditgate", "postgres") == "creditgate-audit@creditgate"
