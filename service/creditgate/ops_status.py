"""``creditgate status`` and the operations gauges on ``/metrics`` (DESIGN §8).

Both read one SQL function, ``creditgate.service_ops_status()`` (as ``service_role``):
queue depth and oldest age, running and expired leases, provider failure rate over the
last hour, outbox backlog and parked deliveries, the last audit, the periodic jobs, and an
``attention`` list. ``status`` exits 1 when that list is not empty (2 when the database
cannot be read), so cron jobs and monitors can run it as is.

The gauges live in the shared registry of :mod:`creditgate.observability`; the service
refreshes them when ``/metrics`` is scraped, at most every :data:`REFRESH_SECONDS`.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any

import psycopg
from prometheus_client import Gauge
from rich.console import Console
from rich.table import Table

from creditgate.db import ApiError, Database
from creditgate.observability import REGISTRY, get_logger

__all__ = ["EXIT_ATTENTION", "EXIT_ERROR", "EXIT_OK", "fetch", "main", "refresh_gauges"]

EXIT_OK = 0
EXIT_ATTENTION = 1
EXIT_ERROR = 2
REFRESH_SECONDS = 10.0

log = get_logger("creditgate.ops")


def fetch(database_url: str) -> dict[str, Any]:
    """``service_ops_status()`` in one read-only transaction as service_role."""
    with psycopg.connect(database_url, connect_timeout=10) as conn, conn.transaction():
        conn.execute("set local role service_role")
        row = conn.execute("select creditgate.service_ops_status()").fetchone()
    if not row or not isinstance(row[0], dict):
        raise ValueError("service_ops_status returned nothing")
    return row[0]


def _age(seconds: Any) -> str:
    value = float(seconds or 0)
    if value < 120:
        return f"{value:.0f}s"
    if value < 7200:
        return f"{value / 60:.0f}m"
    if value < 172800:
        return f"{value / 3600:.1f}h"
    return f"{value / 86400:.1f}d"


def render(data: dict[str, Any], out: Console) -> None:
    queue, leases, outbox = data["queue"], data["leases"], data["outbox"]
    summary = Table("figure", "value", title="creditgate status", title_justify="left")
    summary.add_row("queued generations", str(queue["depth"]))
    summary.add_row("oldest queued", _age(queue["oldest_age_seconds"]) if queue["depth"] else "-")
    summary.add_row("running leases", str(leases["running"]))
    summary.add_row("leases past expiry", str(leases["expired"]))
    summary.add_row("webhook backlog", str(outbox["pending"]))
    summary.add_row(
        "oldest undelivered",
        _age(outbox["oldest_pending_age_seconds"]) if outbox["pending"] else "-",
    )
    summary.add_row("parked deliveries", str(outbox["parked"]))
    summary.add_row("events in the last hour", str(outbox["events_last_hour"]))
    audit = data.get("audit")
    if audit:
        outcome = "ok" if audit["ok"] else f"FAILED ({audit['failures']} failures)"
        summary.add_row("last audit", f"{outcome}, {_age(audit['age_seconds'])} ago")
    else:
        summary.add_row("last audit", "never")
    out.print(summary)

    providers = Table("provider", "calls (1h)", "failures", "failure rate", title="providers")
    for p in data["providers"]:
        providers.add_row(
            p["provider"], str(p["calls"]), str(p["failures"]), f"{float(p['failure_rate']):.1%}"
        )
    if data["providers"]:
        out.print(providers)

    jobs = Table("job", "runner", "every", "last run", "outcome", "duration", title="schedules")
    for j in data["jobs"]:
        last = j.get("last_started_at")
        outcome = "-" if j.get("last_ok") is None else ("ok" if j["last_ok"] else "FAILED")
        if j.get("overdue"):
            outcome += " (overdue)"
        duration = j.get("last_duration_ms")
        jobs.add_row(
            j["name"],
            j["runner"],
            j["cron_schedule"] if j["runner"] == "pg_cron" else _age(j["interval_seconds"]),
            str(last) if last else "never",
            outcome,
            f"{duration} ms" if duration is not None else "-",
        )
    out.print(jobs)
    attention = data.get("attention") or []
    if attention:
        out.print("[bold red]needs attention:[/]")
        for item in attention:
            out.print(f"  - {item}", highlight=False)
    else:
        out.print("[green]all clear[/]")


def main(database_url: str, *, as_json: bool, out: Console, err: Console) -> int:
    try:
        data = fetch(database_url)
    except (psycopg.Error, ValueError) as exc:
        err.print(f"[bold red]error:[/] cannot read the status: {exc}", highlight=False)
        return EXIT_ERROR
    if as_json:
        out.print_json(json.dumps(data, default=str))
    else:
        render(data, out)
    return EXIT_ATTENTION if data.get("attention") else EXIT_OK


# --- /metrics --------------------------------------------------------------------------------

QUEUE_DEPTH = Gauge("creditgate_queue_depth", "Generations queued.", registry=REGISTRY)
QUEUE_OLDEST = Gauge(
    "creditgate_queue_oldest_age_seconds", "Age of the oldest queued generation.", registry=REGISTRY
)
LEASES_RUNNING = Gauge(
    "creditgate_leases_running", "Generations running under a worker lease.", registry=REGISTRY
)
LEASES_EXPIRED = Gauge(
    "creditgate_leases_expired", "Running generations whose lease has expired.", registry=REGISTRY
)
PROVIDER_FAILURE_RATE = Gauge(
    "creditgate_provider_failure_rate",
    "Failed share of provider calls over the last hour, per provider route.",
    ["provider"],
    registry=REGISTRY,
)
OUTBOX_PENDING = Gauge(
    "creditgate_webhook_backlog", "Webhook deliveries not yet delivered.", registry=REGISTRY
)
OUTBOX_OLDEST = Gauge(
    "creditgate_webhook_backlog_oldest_age_seconds",
    "Age of the oldest undelivered webhook delivery.",
    registry=REGISTRY,
)
OUTBOX_PARKED = Gauge(
    "creditgate_webhook_parked",
    "Webhook deliveries parked after their retry budget.",
    registry=REGISTRY,
)
AUDIT_OK = Gauge(
    "creditgate_audit_last_ok",
    "1 if the last stored audit passed, 0 if not, -1 if none ran.",
    registry=REGISTRY,
)
AUDIT_AGE = Gauge(
    "creditgate_audit_last_age_seconds",
    "Seconds since the last stored audit started.",
    registry=REGISTRY,
)
JOB_AGE = Gauge(
    "creditgate_job_last_run_age_seconds",
    "Seconds since each periodic job last started (-1: never).",
    ["job"],
    registry=REGISTRY,
)
JOB_OK = Gauge(
    "creditgate_job_last_ok",
    "1 if the job's last run succeeded, 0 if not, -1 if it never ran.",
    ["job"],
    registry=REGISTRY,
)
ATTENTION = Gauge(
    "creditgate_attention_items",
    "Items `creditgate status` lists as needing attention.",
    registry=REGISTRY,
)
MAX_PROVIDER_LABELS = 50  # provider names come from model_routes; bound them anyway

_last_refresh = 0.0
_refresh_lock = asyncio.Lock()


def set_gauges(data: dict[str, Any]) -> None:
    QUEUE_DEPTH.set(float(data["queue"]["depth"]))
    QUEUE_OLDEST.set(float(data["queue"]["oldest_age_seconds"]))
    LEASES_RUNNING.set(float(data["leases"]["running"]))
    LEASES_EXPIRED.set(float(data["leases"]["expired"]))
    PROVIDER_FAILURE_RATE.clear()
    for p in data["providers"][:MAX_PROVIDER_LABELS]:
        PROVIDER_FAILURE_RATE.labels(provider=str(p["provider"])[:50]).set(float(p["failure_rate"]))
    OUTBOX_PENDING.set(float(data["outbox"]["pending"]))
    OUTBOX_OLDEST.set(float(data["outbox"]["oldest_pending_age_seconds"]))
    OUTBOX_PARKED.set(float(data["outbox"]["parked"]))
    audit = data.get("audit")
    AUDIT_OK.set(-1.0 if not audit else (1.0 if audit["ok"] else 0.0))
    AUDIT_AGE.set(float(audit["age_seconds"]) if audit else -1.0)
    now = time.time()
    for j in data["jobs"]:
        started = j.get("last_started_at")
        age = -1.0
        if started:
            age = now - datetime.fromisoformat(str(started)).timestamp()
        JOB_AGE.labels(job=str(j["name"])).set(age)
        last_ok = j.get("last_ok")
        JOB_OK.labels(job=str(j["name"])).set(-1.0 if last_ok is None else float(bool(last_ok)))
    ATTENTION.set(float(len(data.get("attention") or [])))


async def refresh_gauges(db: Database, *, max_age: float = REFRESH_SECONDS) -> None:
    """Re-read the status into the gauges unless they are fresher than ``max_age``.

    Never raises: a scrape while the database is down keeps the last figures (and the
    service's own metrics still render)."""
    global _last_refresh
    async with _refresh_lock:
        if time.monotonic() - _last_refresh < max_age:
            return
        try:
            data = await db.query_as(
                "select creditgate.service_ops_status()", [], role="service_role"
            )
        except (ApiError, psycopg.Error, OSError) as exc:
            log.warning("ops status unavailable for /metrics", error=str(exc))
            return
        if isinstance(data, dict):
            set_gauges(data)
            _last_refresh = time.monotonic()
