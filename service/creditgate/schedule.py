"""Periodic jobs: pg_cron schedules (``creditgate schedule``) and the worker's fallback runner.

The jobs themselves are SQL (``db/functions/ops/jobs.sql``): ``creditgate_private.run_job``
runs one by name and records the run. Two ways to call them on a cadence:

* **pg_cron** (hosted Supabase, or the local cluster after ``scripts/setup``):
  :func:`install` schedules one ``creditgate-<job>`` pg_cron job per row of
  ``creditgate_private.jobs`` and marks the jobs as pg_cron's. pg_cron lives in one database
  of the cluster (``cron.database_name``). When that is the application database (Supabase:
  ``postgres``) the jobs are scheduled with ``cron.schedule``; otherwise (a local database
  named ``creditgate``) with ``cron.schedule_in_database`` from a connection to the cron
  database, and the job names carry ``@<database>`` so that several databases on one cluster
  never overwrite each other's jobs. Everything runs as the connecting role: a
  non-superuser with usage on schema ``cron`` is enough (what Supabase's ``postgres`` has).
* **Workers** (:class:`JobRunner`): every worker calls ``service_run_due_jobs`` every few
  seconds. A transaction advisory lock in SQL makes one caller the runner at a time, and
  due-ness is read under that lock from the last start, so however many workers run, each
  job runs once per period, and never for jobs that pg_cron runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from creditgate.db import ApiError, Arg, Database
from creditgate.localdb import dsn_for
from creditgate.observability import get_logger

__all__ = [
    "CronJob",
    "JobRunner",
    "ScheduleError",
    "install",
    "job_name",
    "remove",
    "status",
]

JOB_PREFIX = "creditgate-"
# Where pg_cron lives when this role may not read cron.database_name (its usual value).
DEFAULT_CRON_DATABASE = os.environ.get("CREDITGATE_CRON_DATABASE", "postgres")
DEFAULT_POLL_SECONDS = 5.0

log = get_logger("creditgate.schedule")


class ScheduleError(Exception):
    """pg_cron is missing or the role may not use it; the message says what to do."""


@dataclass(frozen=True)
class CronJob:
    """One creditgate-* pg_cron job and its last run (from cron.job_run_details)."""

    jobid: int
    name: str
    schedule: str
    command: str
    active: bool
    last_status: str | None
    last_start: datetime | None
    last_duration: timedelta | None
    last_message: str | None
    runs: int


@dataclass(frozen=True)
class _Target:
    app_db: str
    cron_db: str

    @property
    def same(self) -> bool:
        return self.app_db == self.cron_db


def job_name(job: str, app_db: str, cron_db: str) -> str:
    """``creditgate-<job>``, plus ``@<database>`` when pg_cron lives in another database."""
    return f"{JOB_PREFIX}{job}" if app_db == cron_db else f"{JOB_PREFIX}{job}@{app_db}"


def _command(job: str) -> str:
    return f"select creditgate_private.run_job('{job}')"


def _target(conn: psycopg.Connection[Any], cron_database: str | None = None) -> _Target:
    """Where pg_cron is: this database when schema ``cron`` is here (hosted Supabase), else
    ``cron.database_name`` (readable by superusers only), else ``cron_database``."""
    row = conn.execute("select current_database()").fetchone()
    assert row is not None
    app_db = str(row[0])
    if _has_cron_schema(conn):
        return _Target(app_db, app_db)
    cron_db: str | None = None
    try:
        with conn.transaction():
            found = conn.execute("select current_setting('cron.database_name', true)").fetchone()
            cron_db = found[0] if found else None
    except psycopg.errors.InsufficientPrivilege:
        cron_db = cron_database or DEFAULT_CRON_DATABASE
    if not cron_db:
        raise ScheduleError(
            "pg_cron is not loaded on this server (shared_preload_libraries); "
            "`creditgate worker` runs the jobs instead"
        )
    return _Target(app_db, str(cron_db))


@contextlib.contextmanager
def _cron_connection(
    database_url: str, target: _Target, app: psycopg.Connection[Any]
) -> Iterator[psycopg.Connection[Any]]:
    """A connection where schema ``cron`` is: the application's own, or the cron database."""
    if target.same:
        if not _has_cron_schema(app):
            try:
                with app.transaction():
                    app.execute("create extension if not exists pg_cron")
            except psycopg.Error as exc:
                raise ScheduleError(
                    f"pg_cron is not enabled in {target.app_db} and could not be: {exc}. "
                    "On Supabase, enable it under Database > Extensions."
                ) from exc
        yield app
        return
    try:
        conn = psycopg.connect(
            dsn_for(database_url, dbname=target.cron_db), autocommit=True, connect_timeout=10
        )
    except psycopg.Error as exc:
        raise ScheduleError(
            f"cannot connect to pg_cron's database {target.cron_db}: {exc}"
        ) from exc
    with conn:
        if not _has_cron_schema(conn):
            raise ScheduleError(
                f"pg_cron is not created in {target.cron_db}: as a superuser run "
                f"`create extension pg_cron` there (scripts/setup does it locally)"
            )
        row = conn.execute("select has_schema_privilege('cron', 'usage')").fetchone()
        if not row or not row[0]:
            raise ScheduleError(
                f"this role may not use pg_cron: as a superuser, in {target.cron_db}, "
                "`grant usage on schema cron to <role>` (scripts/setup does it locally)"
            )
        yield conn


def _has_cron_schema(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("select to_regnamespace('cron') is not null").fetchone()
    return bool(row and row[0])


def _jobs(app: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    rows = app.execute(
        "select name, cron_schedule from creditgate_private.jobs order by name"
    ).fetchall()
    return [(str(name), str(schedule)) for name, schedule in rows]


def install(database_url: str) -> list[CronJob]:
    """Schedule every job on pg_cron (idempotent: pg_cron updates a job of the same name)."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as app:
        target = _target(app)
        jobs = _jobs(app)
        with _cron_connection(database_url, target, app) as cron:
            for job, schedule in jobs:
                name = job_name(job, target.app_db, target.cron_db)
                if target.same:
                    cron.execute(
                        "select cron.schedule(%s, %s, %s)", [name, schedule, _command(job)]
                    )
                else:
                    try:
                        cron.execute(
                            "select cron.schedule_in_database(%s, %s, %s, %s)",
                            [name, schedule, _command(job), target.app_db],
                        )
                    except psycopg.errors.InsufficientPrivilege as exc:
                        raise ScheduleError(
                            f"{exc}: as a superuser, in {target.cron_db}, grant execute on "
                            "function cron.schedule_in_database(text, text, text, text, text, "
                            "boolean) to <role> (scripts/setup does it locally)"
                        ) from exc
            found = _list(cron, target)
        app.execute("select creditgate_private.set_jobs_on_pg_cron(true)")
    return found


def status(database_url: str) -> list[CronJob]:
    """The creditgate-* pg_cron jobs of this database with their last run."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as app:
        target = _target(app)
        with _cron_connection(database_url, target, app) as cron:
            return _list(cron, target)


def remove(database_url: str) -> int:
    """Unschedule every creditgate-* job of this database and delete its run history."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as app:
        target = _target(app)
        with _cron_connection(database_url, target, app) as cron:
            jobs = _list(cron, target)
            ids = [job.jobid for job in jobs]
            if ids:
                cron.execute("delete from cron.job_run_details where jobid = any(%s)", [ids])
            for job in jobs:
                cron.execute("select cron.unschedule(%s::bigint)", [job.jobid])
            removed = len(jobs)
        app.execute("select creditgate_private.set_jobs_on_pg_cron(false)")
    return removed


def _list(cron: psycopg.Connection[Any], target: _Target) -> list[CronJob]:
    query = sql.SQL(
        """
        select j.jobid, j.jobname, j.schedule, j.command, j.active,
          r.status, r.start_time, r.end_time - r.start_time, r.return_message,
          (select count(*) from cron.job_run_details as c where c.jobid = j.jobid)
        from cron.job as j
        left join lateral (
          select d.status, d.start_time, d.end_time, d.return_message
          from cron.job_run_details as d
          where d.jobid = j.jobid
          order by d.start_time desc nulls last, d.runid desc
          limit 1
        ) as r on true
        where j.jobname like {prefix} and j.database = {db}
        order by j.jobname
        """
    ).format(prefix=sql.Literal(JOB_PREFIX + "%"), db=sql.Literal(target.app_db))
    rows = cron.execute(query).fetchall()
    return [
        CronJob(
            jobid=int(r[0]),
            name=str(r[1]),
            schedule=str(r[2]),
            command=str(r[3]),
            active=bool(r[4]),
            last_status=r[5],
            last_start=r[6],
            last_duration=r[7],
            last_message=r[8],
            runs=int(r[9]),
        )
        for r in rows
    ]


# --- the workers' fallback ------------------------------------------------------------------


class JobRunner:
    """Calls ``service_run_due_jobs`` every ``poll_seconds`` until ``stopped`` is set.

    Cheap when nothing is due or another worker holds the runner lock (one indexed read, or
    a failed try-lock), so every worker runs one.
    """

    def __init__(
        self,
        db: Database,
        runner_id: str,
        *,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        on_ran: Callable[[list[Any]], None] | None = None,
    ) -> None:
        self.db = db
        self.runner_id = runner_id
        self.poll_seconds = max(0.05, poll_seconds)
        self.on_ran = on_ran
        self.log = log.bind(worker_id=runner_id)

    async def run_once(self) -> list[Any]:
        result = await self.db.call(
            "service_run_due_jobs", {"runner": Arg(self.runner_id, "text")}, role="service_role"
        )
        ran = list(result.get("ran") or []) if isinstance(result, dict) else []
        for job in ran:
            log_fn = self.log.info if job.get("ok") else self.log.error
            log_fn(
                "periodic job ran", job=job.get("job"), ok=job.get("ok"), result=job.get("result")
            )
        if ran and self.on_ran is not None:
            self.on_ran(ran)
        return ran

    async def run(self, stopped: asyncio.Event) -> None:
        while not stopped.is_set():
            try:
                await self.run_once()
            except (ApiError, psycopg.Error, OSError) as exc:
                self.log.warning("periodic jobs failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), self.poll_seconds)
