"""`creditgate audit`: run ``creditgate.audit()`` and report every check.

The audit itself is SQL (``db/functions/ledger/audit.sql``): it re-derives every money
invariant from the raw rows. This module only runs it the way an operator's tooling should,
as ``service_role`` (the role it is granted to), and presents the result: a table of checks
with their failure counts and sample rows, or the raw JSON for scripts. Any failing check
makes the exit status non-zero, so the command can gate a deploy or page someone from cron.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

# Exit statuses: every check passed, some check failed, the audit could not run.
EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_ERROR = 2

_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class AuditError(Exception):
    """The audit could not run (connection, role, or a malformed answer)."""


@dataclass(frozen=True)
class Check:
    name: str
    failures: int
    samples: list[Any]


@dataclass(frozen=True)
class AuditResult:
    ok: bool
    checks: list[Check]
    raw: dict[str, Any]

    @property
    def failing(self) -> list[Check]:
        return [c for c in self.checks if c.failures]


def parse_since(value: str | None, *, now: datetime | None = None) -> datetime | None:
    """``--since``: an ISO-8601 timestamp (UTC when it has no offset) or a duration ago
    such as ``30m``, ``24h``, ``7d``."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if m := _DURATION.match(text):
        amount, unit = int(m.group(1)), m.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(
            f"--since {value!r}: expected an ISO-8601 timestamp or a duration like 24h or 7d"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_audit(database_url: str, since: datetime | None = None) -> AuditResult:
    """Run ``creditgate.audit(since)`` in one transaction as service_role."""
    try:
        with psycopg.connect(database_url, connect_timeout=10) as conn:
            with conn.transaction():
                conn.execute("set local role service_role")
                row = conn.execute(
                    "select creditgate.audit(since => %s::timestamptz)", [since]
                ).fetchone()
    except psycopg.Error as exc:
        raise AuditError(str(exc).strip()) from exc
    if row is None or not isinstance(row[0], dict):
        raise AuditError("creditgate.audit() returned no result")
    return parse_result(row[0])


def parse_result(raw: dict[str, Any]) -> AuditResult:
    try:
        checks = [
            Check(str(c["name"]), int(c["failures"]), list(c.get("samples") or []))
            for c in raw["checks"]
        ]
        return AuditResult(ok=bool(raw["ok"]), checks=checks, raw=raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditError(f"unexpected audit result: {json.dumps(raw)[:500]}") from exc


def render(result: AuditResult, out: Console) -> None:
    """A table of every check; failing ones in red with their sample rows."""
    table = Table("check", "failures", "samples", title="creditgate audit", title_justify="left")
    for check in result.checks:
        if check.failures:
            samples = "\n".join(json.dumps(s, sort_keys=True, default=str) for s in check.samples)
            table.add_row(f"[red]{check.name}[/]", f"[bold red]{check.failures}[/]", samples)
        else:
            table.add_row(check.name, "[green]0[/]", "[dim]-[/]")
    out.print(table)
    if result.ok:
        out.print(f"[bold green]ok[/]: all {len(result.checks)} checks passed")
    else:
        names = ", ".join(c.name for c in result.failing)
        out.print(f"[bold red]FAILED[/]: {len(result.failing)} check(s) failing: {names}")


def main(
    database_url: str,
    *,
    since: str | None,
    as_json: bool,
    out: Console,
    err: Console,
) -> int:
    """The command: returns the exit status."""
    try:
        moment = parse_since(since)
    except ValueError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        return EXIT_ERROR
    try:
        result = run_audit(database_url, moment)
    except AuditError as exc:
        err.print(f"[bold red]error:[/] the audit could not run: {exc}", highlight=False)
        return EXIT_ERROR
    if as_json:
        # Plain text: no markup, highlighting or wrapping, so the output parses as JSON.
        out.print(json.dumps(result.raw, indent=2), markup=False, highlight=False, soft_wrap=True)
    else:
        render(result, out)
    return EXIT_OK if result.ok else EXIT_FAILURES
