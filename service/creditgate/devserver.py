"""``creditgate up``: the embedded default as one foreground command.

Prepares the local database (create + Supabase-parity bootstrap, migrations, seed, a dev
user), then runs three child processes -- the local runner, the HTTP service and the
worker -- until Ctrl-C or SIGTERM. Each child runs in its own session so a terminal Ctrl-C
reaches only this supervisor, which then stops them in order: the worker first (it drains
and settles in-flight jobs while the runner and the service are still up), then the
service, then the runner. If any child dies on its own the others are stopped too and the
command exits non-zero naming it. Children's output is shown on stderr, prefixed with
their name; the banner (URL, dev token, sample request) goes to stdout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

import httpx
import psycopg

from creditgate import localdb

DEV_EMAIL = "dev@creditgate.local"
# A fixed id, so the dev token printed by every `up` names the same user.
DEV_USER_ID = str(uuid.uuid5(uuid.NAMESPACE_DNS, DEV_EMAIL))
# The dev admin, for the console's admin pages (one-time login link printed by `up`).
DEV_ADMIN_EMAIL = "admin@creditgate.local"
DEV_ADMIN_ID = str(uuid.uuid5(uuid.NAMESPACE_DNS, DEV_ADMIN_EMAIL))
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
WORKER_GRACE_SECONDS = 10.0
# Seeded routes of the local provider point at a loopback runner on some port.
_LOOPBACK_ENDPOINT = r"^https?://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?/?$"


class DevServerError(Exception):
    """`up` cannot continue; the message says why and what to do."""


# --- database preparation ------------------------------------------------------------------


def ensure_dev_user(
    admin_db_url: str, email: str = DEV_EMAIL, user_id: str = DEV_USER_ID, admin: bool = False
) -> str:
    """The dev user's id, creating it (signup trigger: balance + bonus) if absent.

    ``admin``: also make it an admin (a row in creditgate_private.admins).
    """
    with psycopg.connect(admin_db_url, autocommit=True) as conn:
        row = conn.execute("select id from auth.users where email = %s", [email]).fetchone()
        if row is not None:
            found = str(row[0])
            if admin:
                _make_admin(conn, found)
            return found
        conn.execute(
            """
            insert into auth.users (
              id, aud, role, email, email_confirmed_at, raw_app_meta_data, raw_user_meta_data,
              created_at, updated_at
            ) values (
              %s, 'authenticated', 'authenticated', %s, now(), '{"provider": "email"}', '{}',
              now(), now()
            )
            on conflict (id) do nothing
            """,
            [user_id, email],
        )
        if admin:
            _make_admin(conn, user_id)
    return user_id


def _make_admin(conn: psycopg.Connection[tuple[object, ...]], user_id: str) -> None:
    conn.execute(
        "insert into creditgate_private.admins (user_id, note) values (%s, 'creditgate up')"
        " on conflict do nothing",
        [user_id],
    )


def point_local_routes(owner_db_url: str, runner_url: str) -> int:
    """Point routes of provider ``local`` on a loopback URL at the runner `up` starts."""
    with psycopg.connect(owner_db_url, autocommit=True) as conn:
        cur = conn.execute(
            """
            update creditgate_private.model_routes
            set endpoint = %s
            where provider = 'local' and endpoint ~ %s and endpoint <> %s
            """,
            [runner_url, _LOOPBACK_ENDPOINT, runner_url],
        )
        return cur.rowcount


def sample_model(owner_db_url: str) -> str | None:
    with psycopg.connect(owner_db_url, autocommit=True) as conn:
        row = conn.execute(
            "select id from creditgate.models where enabled and kind = 'image'"
            " order by sort_order, id limit 1"
        ).fetchone()
    return str(row[0]) if row else None


# --- processes -----------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    proc: subprocess.Popen[bytes]
    pump: threading.Thread | None = None


@dataclass
class Supervisor:
    """Starts children, notices when one dies, stops them all in reverse start order."""

    env: Mapping[str, str]
    output: IO[str] = field(default_factory=lambda: sys.stderr)
    children: list[Child] = field(default_factory=list)
    _write_lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, name: str, argv: Sequence[str]) -> Child:
        proc = subprocess.Popen(
            list(argv),
            env=dict(self.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops us in order
        )
        child = Child(name, argv, proc)
        child.pump = threading.Thread(
            target=self._pump, args=(child,), name=f"pump-{name}", daemon=True
        )
        child.pump.start()
        self.children.append(child)
        return child

    def _pump(self, child: Child) -> None:
        assert child.proc.stdout is not None
        prefix = f"{child.name:>7} | "
        for raw in iter(child.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._write_lock:
                self.output.write(prefix + line + "\n")
                self.output.flush()

    def dead(self) -> Child | None:
        for child in self.children:
            if child.proc.poll() is not None:
                return child
        return None

    def stop_all(self, timeout: float = STOP_TIMEOUT) -> None:
        for child in reversed(self.children):
            self._stop(child, timeout)
        for child in self.children:
            if child.pump is not None:
                child.pump.join(2.0)

    @staticmethod
    def _stop(child: Child, timeout: float) -> None:
        if child.proc.poll() is not None:
            return
        child.proc.send_signal(signal.SIGTERM)
        try:
            child.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_until(
    ready: Callable[[], bool], supervisor: Supervisor, stopping: threading.Event, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if (child := supervisor.dead()) is not None:
            raise DevServerError(f"{child.name} exited with code {child.proc.returncode}")
        if stopping.is_set():
            raise KeyboardInterrupt
        if time.monotonic() > deadline:
            raise DevServerError(f"not ready after {timeout:g}s")
        time.sleep(0.2)


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class DevPlan:
    host: str
    port: int
    runner_host: str
    runner_port: int
    worker: bool
    env: Mapping[str, str]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "creditgate.cli", *args]


def run_children(plan: DevPlan, on_ready: Callable[[Supervisor], None]) -> int:
    """Run runner, service and worker until a signal or a child's death; returns exit code."""
    for name, host, port, env in (
        ("service", plan.host, plan.port, "--port / CREDITGATE_PORT"),
        ("runner", plan.runner_host, plan.runner_port, "CREDITGATE_RUNNER_PORT"),
    ):
        if not port_free(host, port):
            raise DevServerError(f"{host}:{port} is in use: choose another {name} port ({env})")

    stopping = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stopping.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    supervisor = Supervisor(plan.env)
    code = 0
    try:
        supervisor.start("runner", _cli("runner"))
        runner_up = lambda: tcp_open(plan.runner_host, plan.runner_port)  # noqa: E731
        wait_until(runner_up, supervisor, stopping, READY_TIMEOUT)
        supervisor.start("service", _cli("serve"))
        wait_until(lambda: http_ok(f"{plan.url}/readyz"), supervisor, stopping, READY_TIMEOUT)
        if plan.worker:
            supervisor.start("worker", _cli("worker", "--grace", f"{WORKER_GRACE_SECONDS:g}"))
        on_ready(supervisor)
        while not stopping.wait(0.5):
            if (child := supervisor.dead()) is not None:
                raise DevServerError(
                    f"{child.name} exited unexpectedly with code {child.proc.returncode}"
                )
    except KeyboardInterrupt:
        pass
    except DevServerError as exc:
        print(f"error: {exc}; stopping the other processes", file=sys.stderr, flush=True)
        code = 1
    finally:
        if received:
            name = signal.Signals(received[0]).name
            print(f"{name}: stopping worker, service and runner", file=sys.stderr, flush=True)
        supervisor.stop_all()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code


def curl_example(url: str, model_id: str | None) -> str:
    model = model_id or "<model id from GET /v1/models>"
    params = {"prompt": "a lighthouse at dusk, oil painting"}
    body = json.dumps({"model_id": model, "params": params})
    return (
        f"curl -sS -X POST '{url}/v1/generations?wait=30' \\\n"
        '  -H "Authorization: Bearer $CREDITGATE_TOKEN" \\\n'
        '  -H "Idempotency-Key: $(cat /proc/sys/kernel/random/uuid)" \\\n'
        "  -H 'Content-Type: application/json' \\\n"
        f"  -d '{body}'"
    )


def absolute_state_dir(raw: str | os.PathLike[str]) -> str:
    return str(Path(raw).resolve())


def safe_db_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise DevServerError(f"CREDITGATE_DB_NAME {name!r} is not a plain identifier")
    return name


def local_urls(admin_url: str, dbname: str) -> tuple[str, str, str]:
    """(superuser, owner, authenticator) URLs of the local database."""
    return (
        localdb.dsn_for(admin_url, dbname=dbname),
        localdb.dsn_for(admin_url, dbname=dbname, user=localdb.DEPLOYER_ROLE),
        localdb.dsn_for(admin_url, dbname=dbname, user="authenticator"),
    )


# --- the command -----------------------------------------------------------------------------


def up(
    *,
    port: int | None,
    worker: bool,
    progress: Callable[[str], None],
) -> int:
    """Everything `creditgate up` does; returns the process exit code."""
    # Imported here: config reads CREDITGATE_STATE_DIR at import, the CLI may have set it.
    from creditgate import migrate
    from creditgate.auth import mint_token
    from creditgate.config import STATE_DIR, DatabaseSettings, Settings, load_dev_env

    load_dev_env()
    db_settings = DatabaseSettings()
    if db_settings.url:
        raise DevServerError("`up` runs the embedded local default; unset DATABASE_URL")
    dbname = safe_db_name(db_settings.local_name)
    admin_db, owner_db, api_db = local_urls(db_settings.admin_url, dbname)

    try:
        created = localdb.ensure_database(db_settings.admin_url, dbname)
    except psycopg.OperationalError as exc:
        raise DevServerError(
            f"cannot reach PostgreSQL at {db_settings.admin_url} ({exc}); run scripts/setup"
        ) from None
    progress(f"database {dbname}: {'created' if created else 'exists'}")
    plan_applied = migrate.apply(owner_db, progress=progress)
    applied = len(plan_applied.actions)
    progress("migrations: " + (f"{applied} file(s) applied" if applied else "up to date"))
    seed = migrate.project_root() / "supabase" / "seed.sql"
    if seed.exists():
        localdb.run_sql_file(owner_db, seed)
        progress("seed: loaded supabase/seed.sql")
    user_id = ensure_dev_user(admin_db)
    admin_id = ensure_dev_user(admin_db, DEV_ADMIN_EMAIL, DEV_ADMIN_ID, admin=True)

    settings = Settings()
    if not settings.jwt_secret:
        raise DevServerError("SUPABASE_JWT_SECRET is empty (see .creditgate/dev.env)")
    runner_url = f"http://{settings.runner_host}:{settings.runner_port}"
    if moved := point_local_routes(owner_db, runner_url):
        progress(f"routes: {moved} local route(s) now use the runner at {runner_url}")
    serve_port = port or settings.port
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    env.update(
        CREDITGATE_SERVICE_DATABASE_URL=api_db,
        CREDITGATE_HOST=settings.host,
        CREDITGATE_PORT=str(serve_port),
        CREDITGATE_RUNNER_HOST=settings.runner_host,
        CREDITGATE_RUNNER_PORT=str(settings.runner_port),
        CREDITGATE_STATE_DIR=absolute_state_dir(STATE_DIR),
        CREDITGATE_STORAGE_ROOT=absolute_state_dir(settings.storage_root),
        PYTHONUNBUFFERED="1",
    )
    plan = DevPlan(
        host=settings.host,
        port=serve_port,
        runner_host=settings.runner_host,
        runner_port=settings.runner_port,
        worker=worker,
        env=env,
    )
    token = mint_token(settings.jwt_secret, user_id, email=DEV_EMAIL, ttl_seconds=24 * 3600)
    model_id = sample_model(owner_db)

    def banner(supervisor: Supervisor) -> None:
        from creditgate.console.links import LINK_TTL_SECONDS, issue_link

        pids = ", ".join(f"{c.name} {c.proc.pid}" for c in supervisor.children)
        # Issued once the service is up, so their few minutes are not spent waiting for it.
        links_file = Path(env["CREDITGATE_STATE_DIR"]) / "console-links.json"
        user_link = issue_link(links_file, user_id, DEV_EMAIL)
        admin_link = issue_link(links_file, admin_id, DEV_ADMIN_EMAIL)
        minutes = LINK_TTL_SECONDS // 60
        lines = [
            "",
            "creditgate is up (Ctrl-C stops everything)",
            f"  URL:       {plan.url}",
            f"  user:      {DEV_EMAIL} ({user_id})",
            f"  token:     {token}",
            f"  processes: {pids}",
            f"  console:   {plan.url}/console/",
            f"  sign in:   {plan.url}/console/link/{user_link}",
            f"  admin:     {plan.url}/console/link/{admin_link}",
            f"             (one-time links, valid {minutes} minutes; each `up` prints new ones)",
            "" if worker else "  (no worker: generations stay queued)",
            "Try it:",
            f"  export CREDITGATE_TOKEN={token}",
            "  " + curl_example(plan.url, model_id).replace("\n", "\n  "),
            "",
        ]
        print("\n".join(lines), flush=True)

    return run_children(plan, banner)
