"""Shared machinery of the fault tests: real processes, SQL helpers and the money check.

`creditgate serve` and `creditgate worker` run as subprocesses (tests/e2e/procs.py) against a
test database; providers are the fakes of tests/fakes on 127.0.0.1. After every fault the
money is checked exactly (:func:`assert_money`): the ledger of each affected user holds one
``spend`` keyed ``charge:<generation_id>`` per generation, refunds keyed
``refund:<generation_id>`` exactly as the outcomes dictate, the cached balance equals the
expected figure and the ledger sum, and ``creditgate.audit()`` run as ``service_role`` is ok.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from creditgate.auth import mint_token
from tests.e2e.procs import Proc, base_env, http_ok, start, wait_until
from tests.fakes import free_port

JWT_SECRET = "faults-jwt-secret-with-at-least-32-characters!"
RUNNER_SECRET = "faults-runner-secret-0123456789abcdef"
SIGNING_SECRET = "faults-media-signing-secret-0123456789abcdef"
SIGNUP_BONUS = 1000
IMG_COST = 33  # img-test at its defaults (db/testing/generation.sql)
PROMPT = "a lighthouse in a storm"
TERMINAL = {"succeeded", "failed", "canceled"}


# --- SQL ---------------------------------------------------------------------------------------


def sql(url: str, query: str, params: Any = None) -> list[dict[str, Any]]:
    """One autocommit statement; rows as dicts."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=10) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def as_service_role(api_url: str, query: str, params: Any = None) -> list[dict[str, Any]]:
    """As the service does it: log in as authenticator, switch to service_role."""
    with (
        psycopg.connect(api_url, row_factory=dict_row, connect_timeout=10) as conn,
        conn.transaction(),
    ):
        conn.execute("set local role service_role")
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def seed(owner_url: str, endpoint: str, options: Mapping[str, Any] | None = None) -> None:
    """tests.seed_models() with every route pointed at ``endpoint``."""
    sql(owner_url, "select tests.seed_models()")
    sql(
        owner_url,
        "update creditgate_private.model_routes set endpoint = %s, options = %s",
        [endpoint, Jsonb(dict(options or {"timeout_seconds": 30}))],
    )


def set_route(owner_url: str, model_id: str, **fields: Any) -> None:
    for name, value in fields.items():
        sql(
            owner_url,
            f"update creditgate_private.model_routes set {name} = %s where model_id = %s",
            [Jsonb(value) if isinstance(value, dict) else value, model_id],
        )


def set_setting(owner_url: str, key: str, value: Any) -> None:
    """Write creditgate_private.settings directly, as the owner (what admin_set_setting does)."""
    sql(
        owner_url,
        "insert into creditgate_private.settings (key, value) values (%s, %s)"
        " on conflict (key) do update set value = excluded.value, updated_at = now()",
        [key, Jsonb(value)],
    )


def new_user(owner_url: str) -> str:
    return str(sql(owner_url, "select tests.create_user() as id")[0]["id"])


def generation(owner_url: str, gid: str) -> dict[str, Any]:
    rows = sql(owner_url, "select * from tests.generations_full where id = %s", [gid])
    assert rows, f"no generation {gid}"
    return rows[0]


def media_rows(owner_url: str, gid: str) -> list[dict[str, Any]]:
    return sql(
        owner_url,
        "select * from creditgate.media where generation_id = %s order by position",
        [gid],
    )


def provider_calls(owner_url: str, gid: str) -> list[dict[str, Any]]:
    return sql(
        owner_url,
        "select * from creditgate_private.provider_calls where generation_id = %s order by id",
        [gid],
    )


def wait_status(
    owner_url: str,
    gid: str,
    statuses: set[str],
    *,
    timeout: float,
    procs: list[Proc] | None = None,
) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def reached() -> bool:
        found.update(generation(owner_url, gid))
        return found["status"] in statuses

    wait_until(reached, procs or [], timeout=timeout, what=f"generation {gid} in {statuses}")
    return found


# --- the money invariants ----------------------------------------------------------------------


def assert_audit_ok(api_url: str) -> None:
    [row] = as_service_role(api_url, "select creditgate.audit() as report")
    report = row["report"]
    assert report["ok"] is True, [c for c in report["checks"] if c["failures"]]


def assert_money(
    owner_url: str,
    api_url: str,
    user_id: str,
    *,
    charged: Mapping[str, int],
    refunded: Mapping[str, int],
    credited: int = SIGNUP_BONUS,
) -> int:
    """The user's ledger and balance are exactly what these outcomes dictate; audit is ok.

    ``charged``: every generation of the user with its cost (each must have exactly one spend
    keyed ``charge:<id>``, and the user no other spend); ``refunded``: generation -> amount
    refunded (0 or absent = no refund); ``credited``: credits granted (signup bonus + grants).
    Returns the balance.
    """
    entries = sql(
        owner_url,
        "select entry_type, amount, delta, idempotency_key, generation_id::text as gid"
        " from creditgate.ledger where user_id = %s order by id",
        [user_id],
    )
    spends = [e for e in entries if e["entry_type"] == "spend"]
    refunds = [e for e in entries if e["entry_type"] == "refund"]
    credits = [e for e in entries if e["delta"] > 0 and e["entry_type"] != "refund"]
    assert len(spends) == len(charged), f"{len(spends)} spends for {len(charged)} generations"
    assert {e["idempotency_key"]: e["amount"] for e in spends} == {
        f"charge:{gid}": cost for gid, cost in charged.items()
    }, "every generation charged exactly once, under charge:<id>, for its cost"
    assert all(e["gid"] == e["idempotency_key"].removeprefix("charge:") for e in spends)
    expected_refunds = {f"refund:{gid}": amount for gid, amount in refunded.items() if amount}
    assert len(refunds) == len(expected_refunds), refunds
    assert {e["idempotency_key"]: e["amount"] for e in refunds} == expected_refunds
    assert sum(e["amount"] for e in credits) == credited, credits
    assert not [e for e in entries if e["entry_type"] in ("expire", "clawback")]
    expected = credited - sum(charged.values()) + sum(expected_refunds.values())
    [row] = sql(owner_url, "select balance from creditgate.balances where user_id = %s", [user_id])
    assert row["balance"] == expected == sum(e["delta"] for e in entries), (row, expected)
    [lots] = sql(
        owner_url,
        "select coalesce(sum(remaining), 0)::bigint as s from creditgate.credit_lots"
        " where user_id = %s",
        [user_id],
    )
    assert lots["s"] == expected
    assert_audit_ok(api_url)
    return expected


def stored_files(root: Path) -> list[str]:
    """Every file under a LocalStorage root (side files and temp files included)."""
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# --- processes ---------------------------------------------------------------------------------


@dataclass
class Stack:
    """`creditgate serve` and workers as subprocesses, all pointed at one database."""

    owner_url: str
    api_url: str
    tmp: Path
    env: dict[str, str]
    port: int
    procs: list[Proc] = field(default_factory=list)
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def media_root(self) -> Path:
        return Path(self.env["CREDITGATE_STORAGE_ROOT"])

    def serve(self, timeout: float = 30.0) -> Proc:
        proc = start("service", ["serve"], self.env, self.tmp)
        self.procs.append(proc)
        wait_until(lambda: http_ok(f"{self.url}/readyz"), [proc], timeout, "the service")
        return proc

    def worker(self, worker_id: str, *args: str, env: Mapping[str, str] | None = None) -> Proc:
        """A worker with a fixed --worker-id; returns once it LISTENs."""
        proc = start(
            worker_id,
            ["worker", "--worker-id", worker_id, *args],
            {**self.env, **(env or {})},
            self.tmp,
        )
        self.procs.append(proc)
        wait_until(
            lambda: '"event": "listening"' in proc.output(), [proc], 30, f"worker {worker_id}"
        )
        return proc

    def live(self) -> list[Proc]:
        return [p for p in self.procs if p.alive()]

    def client(self, user_id: str, timeout: float = 60.0) -> httpx.Client:
        token = mint_token(JWT_SECRET, user_id)
        client = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )
        self.clients.append(client)
        return client

    def close(self) -> dict[str, int]:
        """SIGTERM everything still running (workers first); returns the exit codes."""
        for client in self.clients:
            client.close()
        codes: dict[str, int] = {}
        for proc in sorted(self.procs, key=lambda p: p.name == "service"):
            if proc.alive():
                try:
                    codes[proc.name] = proc.stop(signal.SIGTERM, timeout=30)
                except AssertionError:  # ignored SIGTERM: Proc.stop killed it
                    codes[proc.name] = -signal.SIGKILL
        return codes

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.output()[-4000:]}" for p in self.procs)


def stack_env(
    api_url: str, tmp: Path, port: int, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    return {
        **base_env(),
        "CREDITGATE_SERVICE_DATABASE_URL": api_url,
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "CREDITGATE_RUNNER_SECRET": RUNNER_SECRET,
        "CREDITGATE_SIGNING_SECRET": SIGNING_SECRET,
        "CREDITGATE_STORAGE_ROOT": str(tmp / "media"),
        "CREDITGATE_STATE_DIR": str(tmp / "state"),
        "CREDITGATE_HOST": "127.0.0.1",
        "CREDITGATE_PORT": str(port),
        "CREDITGATE_WAIT_MAX_SECONDS": "30",
        "CREDITGATE_LOG_LEVEL": "info",
        **(extra or {}),
    }


@contextmanager
def running_stack(
    owner_url: str, api_url: str, tmp: Path, extra_env: Mapping[str, str] | None = None
) -> Iterator[Stack]:
    """A Stack whose processes are stopped on the way out, even when the test failed."""
    port = free_port()
    stack = Stack(owner_url, api_url, tmp, stack_env(api_url, tmp, port, extra_env), port)
    try:
        yield stack
    finally:
        stack.close()


def post_generation(
    client: httpx.Client,
    params: Mapping[str, Any],
    *,
    model_id: str = "img-test",
    key: str | None = None,
    wait: float | None = None,
) -> httpx.Response:
    return client.post(
        "/v1/generations",
        params={"wait": wait} if wait is not None else None,
        headers={"Idempotency-Key": key or str(uuid.uuid4())},
        json={"model_id": model_id, "params": dict(params)},
    )


