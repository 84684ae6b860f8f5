"""What every ``creditgate worker`` runs besides generations (DESIGN §8): the periodic jobs
when pg_cron does not run them (:class:`~creditgate.schedule.JobRunner`, one runner at a
time cluster-wide) and webhook delivery (:class:`~creditgate.webhooks.WebhookDeliverer`).

Settings (environment): ``CREDITGATE_JOBS_POLL_SECONDS`` (5; 0 turns the job runner off
in this worker), ``CREDITGATE_WEBHOOK_POLL_SECONDS`` (1; 0 turns delivery off),
``CREDITGATE_WEBHOOK_TIMEOUT_SECONDS`` (10, per attempt).
"""

from __future__ import annotations

import asyncio
import os

from creditgate.config import Settings
from creditgate.db import Database
from creditgate.schedule import JobRunner
from creditgate.webhooks import WebhookDeliverer

__all__ = ["start"]


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def start(
    settings: Settings, db: Database, worker_id: str, stopped: asyncio.Event
) -> list[asyncio.Task[None]]:
    """Start the background tasks; they end once ``stopped`` is set."""
    del settings  # the figures below are read here, so worker.py needs no new settings
    tasks: list[asyncio.Task[None]] = []
    jobs_poll = _seconds("CREDITGATE_JOBS_POLL_SECONDS", 5.0)
    if jobs_poll > 0:
        runner = JobRunner(db, worker_id, poll_seconds=jobs_poll)
        tasks.append(asyncio.create_task(runner.run(stopped), name="worker-jobs"))
    webhook_poll = _seconds("CREDITGATE_WEBHOOK_POLL_SECONDS", 1.0)
    if webhook_poll > 0:
        deliverer = WebhookDeliverer(
            db,
            worker_id,
            timeout_seconds=_seconds("CREDITGATE_WEBHOOK_TIMEOUT_SECONDS", 10.0),
            poll_seconds=webhook_poll,
        )
        tasks.append(asyncio.create_task(deliverer.run(stopped), name="worker-webhooks"))
    return tasks
