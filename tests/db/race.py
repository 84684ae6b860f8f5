"""What the race tests (tests/db/test_*_races.py) share: fire calls at once, read as owner.

``fire`` runs every call in its own transaction on its own connection. Threads line up on a
barrier and fire together, so the database, not the test, decides who wins. The server's
max_connections is shared with other test runs, so "N at once" uses up to ``pool_size()``
connections, each firing its share of the calls back to back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from tests import dbutil, pgrest

Call = Callable[[psycopg.Connection], Any]


@dataclass
class Outcome:
    """What one call gave: its value, or the SQLSTATE and message of its psycopg.Error."""

    result: Any = None
    sqlstate: str | None = None
    message: str | None = None


def pool_size(db: dbutil.TestDatabase, wanted: int) -> int:
    """As many connections as wanted, leaving room for everyone else on the server."""
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        row = conn.execute(
            "select current_setting('max_connections')::int - count(*)::int from pg_stat_activity"
        ).fetchone()
    free = int(row[0]) if row else 20
    return max(4, min(wanted, free - 30))


def fire(
    target: dbutil.TestDatabase | str,
    calls: Sequence[Call],
    size: int | None = None,
    *,
    join_timeout: float = 300,
) -> list[Outcome]:
    """Run every call concurrently from `size` connections; outcomes in call order.

    target: a test database (connect as PostgREST does: ``authenticator`` over
    ``db.api_url``) or a connection URL (e.g. ``db.owner_url``). size: how many connections;
    by default ``pool_size(db, len(calls))``, which needs a test database.
    """
    if isinstance(target, str):
        if size is None:
            raise TypeError("fire(url, calls) needs a size")
        url = target
    else:
        url = target.api_url
        if size is None:
            size = pool_size(target, len(calls))
    outcomes = [Outcome() for _ in calls]
    barrier = threading.Barrier(size)
    errors: list[BaseException] = []

    def worker(slot: int) -> None:
        try:
            with pgrest.connect(url) as conn:
                barrier.wait(timeout=60)
                for i in range(slot, len(calls), size):
                    try:
                        outcomes[i].result = calls[i](conn)
                    except psycopg.Error as exc:
                        outcomes[i].sqlstate = exc.diag.sqlstate
                        outcomes[i].message = exc.diag.message_primary
        except BaseException as exc:  # surfaced below, never swallowed
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=join_timeout)
    if errors:
        raise errors[0]
    return outcomes


def owner_rows(db: dbutil.TestDatabase, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement as the owner (the deployer role); its rows, if it returns any."""
    with psycopg.connect(db.owner_url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def owner_value(db: dbutil.TestDatabase, sql: str, *params: Any) -> Any:
    """Run one statement as the owner; the first column of its first row (None if none)."""
    with psycopg.connect(db.owner_url, autocommit=True) as conn:
        row = conn.execute(sql, list(params)).fetchone()
    return row[0] if row else None


def assert_audit_ok(db: dbutil.TestDatabase) -> None:
    """creditgate.audit(), called as service_role the PostgREST way, reports ok=true."""
    with pgrest.connect(db.api_url) as conn:
        report = pgrest.rpc(conn, "audit", role="service_role")
    failing = [c for c in report.get("checks", []) if c.get("failures")]
    assert report["ok"] is True, failing or report
