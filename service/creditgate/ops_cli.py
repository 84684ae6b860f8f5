"""The operations commands: ``schedule``, ``webhooks`` and ``status`` (DESIGN §8).

They connect with the migrator's URL (``--database-url``, ``$DATABASE_URL`` or the local
database as ``creditgate_deployer``), like ``migrate`` and ``audit``: scheduling needs the
role that owns the jobs, and endpoints are managed through the private functions that the
``admin_*`` webhook functions wrap for admins.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from creditgate import ops_status, schedule, webhooks
from creditgate.db import api_error_from_db

__all__ = ["register"]

UrlOption = typer.Option(None, "--database-url", help="Defaults to $DATABASE_URL or the local db.")
EventOption = typer.Option(
    ["*"], "--event", "-e", help="Event type to send (repeat); default every type."
)
ALLOW_LOOPBACK = (
    "select coalesce((creditgate_private.setting('webhook_allow_loopback') #>> '{}')::boolean,"
    " false)"
)


def register(
    app: typer.Typer,
    database_url: Callable[[str | None], str],
    out: Console,
    err: Console,
) -> None:
    """Add ``schedule``, ``webhooks`` and ``status`` to the ``creditgate`` CLI."""

    def fail(message: str, code: int = 1) -> None:
        err.print(f"[bold red]error:[/] {message}", highlight=False)
        raise typer.Exit(code)

    schedule_app = typer.Typer(
        no_args_is_help=True, help="pg_cron schedules of the periodic jobs (creditgate-*)."
    )
    app.add_typer(schedule_app, name="schedule")

    @schedule_app.command("install")
    def schedule_install(url: str | None = UrlOption) -> None:
        """Schedule every job on pg_cron (idempotent); workers then leave them to pg_cron."""
        try:
            jobs = schedule.install(database_url(url))
        except (schedule.ScheduleError, psycopg.Error) as exc:
            fail(str(exc))
            return
        show_cron(jobs)
        out.print(f"installed {len(jobs)} pg_cron job(s)")

    @schedule_app.command("status")
    def schedule_status(url: str | None = UrlOption) -> None:
        """Each creditgate-* job: schedule, last run, outcome and duration."""
        try:
            jobs = schedule.status(database_url(url))
        except (schedule.ScheduleError, psycopg.Error) as exc:
            fail(str(exc))
            return
        if not jobs:
            out.print("no pg_cron jobs installed: `creditgate worker` runs the jobs")
            return
        show_cron(jobs)

    @schedule_app.command("remove")
    def schedule_remove(url: str | None = UrlOption) -> None:
        """Unschedule every creditgate-* job (and its run history); workers take over."""
        try:
            removed = schedule.remove(database_url(url))
        except (schedule.ScheduleError, psycopg.Error) as exc:
            fail(str(exc))
            return
        out.print(f"removed {removed} pg_cron job(s)")

    def show_cron(jobs: list[schedule.CronJob]) -> None:
        table = Table("job", "schedule", "active", "last run", "outcome", "duration", "runs")
        for job in jobs:
            duration = (
                f"{job.last_duration.total_seconds() * 1000:.0f} ms"
                if job.last_duration is not None
                else "-"
            )
            outcome = job.last_status or "-"
            if job.last_status == "failed" and job.last_message:
                outcome += f": {job.last_message[:80]}"
            table.add_row(
                job.name,
                job.schedule,
                "yes" if job.active else "no",
                str(job.last_start) if job.last_start else "never",
                outcome,
                duration,
                str(job.runs),
            )
        out.print(table)

    webhooks_app = typer.Typer(no_args_is_help=True, help="Webhook endpoints and deliveries.")
    app.add_typer(webhooks_app, name="webhooks")

    def call(url: str | None, query: str, params: list[Any]) -> Any:
        try:
            with psycopg.connect(database_url(url), connect_timeout=10) as conn:
                row = conn.execute(query, params).fetchone()
        except psycopg.Error as exc:
            mapped = api_error_from_db(exc)
            if mapped is None:
                fail(str(exc))
            else:
                details = json.dumps(mapped.details) if mapped.details is not None else ""
                fail(f"{mapped.code} {details}".strip())
            raise  # unreachable: fail() exits
        return row[0] if row else None

    @webhooks_app.command("add")
    def webhooks_add(
        url: str = typer.Argument(..., help="https:// endpoint of the receiver."),
        event: list[str] = EventOption,
        secret: str | None = typer.Option(
            None, "--secret", help="whsec_<base64>; default: a new random secret."
        ),
        description: str | None = typer.Option(None, "--description"),
        database: str | None = UrlOption,
    ) -> None:
        """Register an endpoint; prints its id and secret (shown once)."""
        allow = call(
            database,
            ALLOW_LOOPBACK,
            [],
        )
        refused = asyncio.run(webhooks.refusal(url, allow_loopback=bool(allow)))
        if refused:
            fail(f"URL refused: {refused}")
        result = call(
            database,
            "select creditgate_private.webhook_add(%s, %s::text[], %s, %s)",
            [url, event, secret, description],
        )
        out.print_json(json.dumps(result))

    @webhooks_app.command("list")
    def webhooks_list(database: str | None = UrlOption) -> None:
        """Every endpoint with its backlog (secrets are not shown)."""
        rows = call(database, "select creditgate_private.webhook_list()", []) or []
        table = Table("endpoint", "url", "events", "enabled", "pending", "parked")
        for r in rows:
            enabled = "yes" if r["enabled"] else f"no ({r.get('disabled_reason') or ''})"
            table.add_row(
                str(r["endpoint_id"]),
                r["url"],
                ",".join(r["event_types"]),
                enabled,
                str(r["pending"]),
                str(r["parked"]),
            )
        out.print(table)

    @webhooks_app.command("disable")
    def webhooks_disable(
        endpoint_id: str = typer.Argument(...), database: str | None = UrlOption
    ) -> None:
        """Disable an endpoint; its pending deliveries are canceled."""
        result = call(
            database,
            "select creditgate_private.webhook_disable(%s::uuid, 'disabled by an operator')",
            [endpoint_id],
        )
        out.print_json(json.dumps(result))

    @webhooks_app.command("redeliver")
    def webhooks_redeliver(
        delivery_id: int = typer.Argument(...), database: str | None = UrlOption
    ) -> None:
        """Send a delivery again (same webhook-id, fresh retry budget)."""
        result = call(
            database, "select creditgate_private.webhook_redeliver(%s::bigint)", [delivery_id]
        )
        out.print_json(json.dumps(result))

    @webhooks_app.command("deliveries")
    def webhooks_deliveries(
        endpoint_id: str | None = typer.Option(None, "--endpoint"),
        status: str | None = typer.Option(
            None, "--status", help="pending, delivering, delivered, parked or canceled."
        ),
        limit: int = typer.Option(50, "--limit", min=1, max=1000),
        as_json: bool = typer.Option(False, "--json", help="Every attempt, as JSON."),
        database: str | None = UrlOption,
    ) -> None:
        """Delivery state, newest first, with attempts."""
        rows = (
            call(
                database,
                "select creditgate_private.webhook_deliveries(%s::uuid, %s, %s)",
                [endpoint_id, status, limit],
            )
            or []
        )
        if as_json:
            out.print_json(json.dumps(rows))
            return
        table = Table(
            "delivery", "event", "status", "attempts", "last status", "last error", "next"
        )
        for r in rows:
            table.add_row(
                str(r["delivery_id"]),
                r["event_type"],
                r["status"],
                str(r["attempts"]),
                str(r["last_http_status"] or "-"),
                (r["last_error"] or "-")[:60],
                str(r["next_attempt_at"]) if r["status"] == "pending" else "-",
            )
        out.print(table)

    @app.command("status")
    def status_cmd(
        database: str | None = UrlOption,
        as_json: bool = typer.Option(False, "--json", help="Print the raw status JSON."),
    ) -> None:
        """Queue, leases, provider failures, webhooks, last audit, schedules; exit 1 when
        something needs attention (2 when the status cannot be read)."""
        raise typer.Exit(ops_status.main(database_url(database), as_json=as_json, out=out, err=err))
