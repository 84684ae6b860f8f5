"""Without pg_cron, `creditgate worker` runs the periodic jobs: three real worker processes,
one runner at a time (a transaction advisory lock in service_run_due_jobs), each job once
per period, and none of the jobs pg_cron runs."""

from __future__ import annotations

import itertools
import signal
import time
from pathlib import Path

from tests import dbutil
from tests.ops.helpers import owner, value, worker_process
from tests.polling import eventually

PERIOD = 2  # seconds, for every job in this test


def test_three_workers_run_each_job_once_per_period(
    db: dbutil.TestDatabase, tmp_path: Path
) -> None:
    with owner(db) as conn:
        conn.execute("update creditgate_private.jobs set interval_seconds = %s", [PERIOD])
        # As if `creditgate schedule install` had given this one to pg_cron.
        conn.execute("update creditgate_private.jobs set on_pg_cron = true where name = 'audit'")
    names = ["jobs-1", "jobs-2", "jobs-3"]
    procs = [
        worker_process(db, tmp_path, name, CREDITGATE_JOBS_POLL_SECONDS="0.1")
        for name in names
    ]
    started = time.monotonic()
    try:
        eventually(
            lambda: value(
                db,
                "select coalesce(min(n), 0) from (select count(*) as n from"
                " creditgate_private.job_runs group by job) as r",
            )
            >= 4
            and value(db, "select count(distinct job) from creditgate_private.job_runs") == 4,
            90,
            "four runs of every worker-run job",
        )
    finally:
        for proc, _ in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, log in procs:
            assert proc.wait(30) == 0, log.read_text()[-3000:]
    elapsed = time.monotonic() - started

    with owner(db) as conn:
        rows = conn.execute(
            "select job, extract(epoch from started_at)::float8, runner, ok"
            " from creditgate_private.job_runs order by job, started_at"
        ).fetchall()
    by_job: dict[str, list[float]] = {}
    for job, at, runner, ok in rows:
        assert ok, (job, runner)
        assert runner in names
        by_job.setdefault(job, []).append(at)
    assert sorted(by_job) == ["expire-credits", "mark-media", "prune-rate-limits", "reap-leases"]
    for job, starts in by_job.items():
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        # Never twice within a period, whichever worker ran it...
        assert min(gaps) >= PERIOD - 0.01, (job, gaps)
        # ...and not skipped for long either (the runners poll every 0.1 s).
        assert max(gaps) < PERIOD + 2, (job, gaps)
        assert len(starts) <= elapsed / PERIOD + 1, (job, len(starts), elapsed)
