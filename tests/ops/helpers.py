"""What the operations tests share: owner connections, users, events."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from standardwebhooks.webhooks import Webhook

from tests import dbutil


def owner(db: dbutil.TestDatabase) -> psycopg.Connection:
    return psycopg.connect(db.owner_url, autocommit=True)


def value(db: dbutil.TestDatabase, sql: str, *params: Any) -> Any:
    with owner(db) as conn:
        row = conn.execute(sql, list(params)).fetchone()
    return row[0] if row else None


def set_setting(db: dbutil.TestDatabase, key: str, val: Any) -> None:
    with owner(db) as conn:
        conn.execute(
            "insert into creditgate_private.settings (key, value) values (%s, %s)"
            " on conflict (key) do update set value = excluded.value",
            [key, Jsonb(val)],
        )


def new_user(db: dbutil.TestDatabase, credits: int = 0, plan: str = "free") -> uuid.UUID:
    """A user without signup bonus, then ``credits`` granted (key test-grant:...)."""
    set_setting(db, "signup_bonus", 0)
    with owner(db) as conn, conn.transaction():
        row = conn.execute("select tests.create_user()").fetchone()
        assert row is not None
        user = uuid.UUID(str(row[0]))
        conn.execute("update creditgate.balances set plan = %s where user_id = %s", [plan, user])
        if credits:
            grant(conn, user, credits)
    return user


def grant(
    conn: psycopg.Connection, user: uuid.UUID, amount: int, expires_at: Any = None
) -> dict[str, Any]:
    row = conn.execute(
        "select creditgate.service_grant_credits(user_id => %s, amount => %s,"
        " entry_type => 'grant', idempotency_key => %s, expires_at => %s)",
        [user, amount, f"test-grant-{uuid.uuid4()}", expires_at],
    ).fetchone()
    assert row is not None
    result: dict[str, Any] = row[0]
    return result


def events(
    db: dbutil.TestDatabase, event_type: str, user: uuid.UUID | None = None
) -> list[dict[str, Any]]:
    with owner(db) as conn:
        rows = conn.execute(
            "select payload from creditgate_private.events where event_type = %s"
            " and (%s::uuid is null or user_id = %s::uuid) order by created_at, id",
            [event_type, user, user],
        ).fetchall()
    return [r[0] for r in rows]


# --- a real webhook receiver on 127.0.0.1 -------------------------------------------------



@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: Any  # the payload standardwebhooks' verify() returned, or the exception


@dataclass
class Receiver:
    """Answers each POST with the next planned reply: an HTTP status, or ``("hang", s)`` to
    hold the request for s seconds (then 200). Verifies every signature with the
    ``standardwebhooks`` library, as a receiver should."""

    secret: str = ""
    plan: list[Any] = field(default_factory=list)
    default: int = 200
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    verified: Any = Webhook(receiver.secret).verify(body, headers)
                except Exception as exc:  # recorded for the test to assert on
                    verified = exc
                with receiver.lock:
                    receiver.received.append(Received(headers, body, verified))
                    reply = receiver.plan.pop(0) if receiver.plan else receiver.default
                if isinstance(reply, tuple):
                    time.sleep(reply[1])
                    reply = 200
                try:
                    self.send_response(int(reply))
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def ids(self) -> list[str]:
        with self.lock:
            return [r.headers["webhook-id"] for r in self.received]


def worker_process(
    db: dbutil.TestDatabase, tmp_path: Path, name: str, **env: str
) -> tuple[subprocess.Popen[bytes], Path]:
    """A real `creditgate worker` process on the test database."""
    log = tmp_path / f"{name}.log"
    full = {
        **os.environ,
        "CREDITGATE_SERVICE_DATABASE_URL": db.api_url,
        "CREDITGATE_RUNNER_SECRET": "runner-secret-" + "r" * 32,
        "CREDITGATE_SIGNING_SECRET": "signing-secret-" + "s" * 32,
        "CREDITGATE_STORAGE_ROOT": str(tmp_path / "media"),
        "CREDITGATE_STATE_DIR": str(tmp_path / "state"),
        "CREDITGATE_IDLE_POLL_SECONDS": "60",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "creditgate.cli", "worker", "--worker-id", name],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, log


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(db: dbutil.TestDatabase, *args: str) -> CliResult:
    """`creditgate <args>` in this process (typer's runner) on the test database as its
    migrator: the same code as the installed command, without a process start per call."""
    from typer.testing import CliRunner

    from creditgate.cli import app

    result = CliRunner().invoke(
        app, [*args, "--database-url", db.owner_url], env={"COLUMNS": "250"}
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


def expire_lease(conn: psycopg.Connection, generation_id: Any) -> None:
    """Move a running generation's lease expiry into the past (its worker "vanished").

    The lease lives on the generation row here; once the lease columns move to
    creditgate_private.generation_leases (branch h17a), there."""
    row = conn.execute(
        "select to_regclass('creditgate_private.generation_leases') is not null"
    ).fetchone()
    past = "lease_expires_at = now() - interval '5 minutes'"
    if row and row[0]:
        query = f"update creditgate_private.generation_leases set {past} where generation_id = %s"
    else:
        query = f"update creditgate.generations set {past} where id = %s"
    conn.execute(query, [generation_id])  # type: ignore[arg-type]
