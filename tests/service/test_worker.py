"""The worker against a real test database, the real runner and fake providers on 127.0.0.1.

Each test requests generations exactly as a client would (``request_generation`` as the
user, through the authenticator role), runs a :class:`~creditgate.worker.Worker` (in this
process, or ``creditgate worker`` as a subprocess for the signal tests) and then checks the
money: the user's balance, their ledger entries and ``creditgate.audit()``.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
from PIL import Image
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from creditgate.config import Settings
from creditgate.db import Arg, Database
from creditgate.providers import ProviderGateway
from creditgate.storage import LocalStorage, StorageError
from creditgate.worker import Worker
from tests import dbutil
from tests.fakes import FakeA1111, FakeOpenAI, free_port
from tests.polling import eventually

T = TypeVar("T")
SECRET = "worker-test-runner-secret-0123456789"
SIGNING = "worker-test-signing-secret-0123456789abcdef"
KEY_A = "key-aaaaaaaaaaaaaaaa"
KEY_B = "key-bbbbbbbbbbbbbbbb"
SIGNUP_BONUS = 1000
IMG_COST = 33  # img-test defaults: 10 + 10/MP * 0.26 MP + 20 steps, rounded up
PROMPT = "a lighthouse at dusk"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


# --- the real runner ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runner_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("runner") / "runner.log"
    port = free_port()
    env = {**os.environ, "CREDITGATE_RUNNER_SECRET": SECRET}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "creditgate.runner", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"runner exited: {log.read_text()}")
            try:
                httpx.get(f"{url}/sdapi/v1/sd-models", headers={"X-Runner-Secret": SECRET})
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail("runner did not start")
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


# --- database helpers --------------------------------------------------------------------------


def owner_execute(db: dbutil.TestDatabase, query: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(db.owner_url, autocommit=True, row_factory=dict_row) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def seed(db: dbutil.TestDatabase, endpoint: str, options: Mapping[str, Any] | None = None) -> None:
    """tests.seed_models(), every route pointed at ``endpoint`` with ``options``."""
    owner_execute(db, "select tests.seed_models()")
    owner_execute(
        db,
        "update creditgate_private.model_routes set endpoint = %s, options = %s",
        [endpoint, Jsonb(dict(options or {"timeout_seconds": 30}))],
    )


def route(db: dbutil.TestDatabase, model_id: str, **fields: Any) -> None:
    for name, value in fields.items():
        owner_execute(
            db,
            f"update creditgate_private.model_routes set {name} = %s where model_id = %s",
            [Jsonb(value) if isinstance(value, dict) else value, model_id],
        )


def new_user(db: dbutil.TestDatabase) -> str:
    return str(owner_execute(db, "select tests.create_user() as id")[0]["id"])


def generation(db: dbutil.TestDatabase, gid: str) -> dict[str, Any]:
    return owner_execute(db, "select * from tests.generations_full where id = %s", [gid])[0]


def media_rows(db: dbutil.TestDatabase, gid: str) -> list[dict[str, Any]]:
    return owner_execute(
        db, "select * from creditgate.media where generation_id = %s order by position", [gid]
    )


def provider_calls(db: dbutil.TestDatabase, gid: str) -> list[dict[str, Any]]:
    return owner_execute(
        db,
        "select * from creditgate_private.provider_calls where generation_id = %s order by id",
        [gid],
    )


def check_money(
    db: dbutil.TestDatabase,
    user_id: str,
    *,
    charged: Mapping[str, int],
    refunded: Mapping[str, int],
) -> None:
    """Balance, ledger and audit for a user whose generations were charged/refunded so."""
    entries = owner_execute(
        db,
        "select entry_type, amount, delta, generation_id::text as gid from creditgate.ledger"
        " where user_id = %s order by id",
        [user_id],
    )
    spends = [(e["gid"], e["amount"]) for e in entries if e["entry_type"] == "spend"]
    refunds = [(e["gid"], e["amount"]) for e in entries if e["entry_type"] == "refund"]
    assert sorted(spends) == sorted(charged.items()), entries
    assert sorted(refunds) == sorted((g, a) for g, a in refunded.items() if a), entries
    expected = SIGNUP_BONUS - sum(charged.values()) + sum(refunded.values())
    balance = owner_execute(
        db, "select balance from creditgate.balances where user_id = %s", [user_id]
    )[0]["balance"]
    assert balance == expected == sum(e["delta"] for e in entries)
    assert_audit_ok(db)


def assert_audit_ok(db: dbutil.TestDatabase) -> None:
    report = owner_execute(db, "select creditgate.audit() as report")[0]["report"]
    assert report["ok"], [c for c in report["checks"] if c["failures"]]


# --- the in-process worker ---------------------------------------------------------------------


@dataclass
class Harness:
    db: dbutil.TestDatabase
    worker: Worker
    calls: Database
    storage: LocalStorage

    async def request(
        self, user_id: str, model_id: str, params: Mapping[str, Any], key: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.calls.call(
            "request_generation",
            {
                "model_id": Arg(model_id, "text"),
                "params": Arg(dict(params), "jsonb"),
                "idempotency_key": Arg(key or str(uuid.uuid4()), "text"),
            },
            role="authenticated",
            claims={"sub": user_id, "role": "authenticated", "aud": "authenticated"},
            headers={"x-forwarded-for": "203.0.113.10"},
        )
        return result

    async def wait_status(
        self, gid: str, statuses: set[str], seconds: float = 15.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while True:
            row = await asyncio.to_thread(generation, self.db, gid)
            if row["status"] in statuses:
                return row
            if time.monotonic() > deadline:
                raise AssertionError(f"generation still {row['status']}: {row}")
            await asyncio.sleep(0.05)

    def stored_files(self) -> list[str]:
        root = self.storage.root
        return sorted(
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and "~" not in p.name
        )


def worker_settings(db: dbutil.TestDatabase, tmp_path: Path, **overrides: Any) -> Settings:
    base = Settings(
        service_database_url=db.api_url,
        runner_secret=SECRET,
        signing_secret=SIGNING,
        storage_root=tmp_path / "media",
        lease_seconds=10,
        heartbeat_seconds=0.5,
        idle_poll_seconds=60.0,  # only NOTIFY can wake the worker within a test's time
        worker_concurrency=2,
    )
    return replace(base, **overrides)


@asynccontextmanager
async def harness(
    db: dbutil.TestDatabase,
    tmp_path: Path,
    *,
    storage_cls: Callable[..., LocalStorage] = LocalStorage,
    api_keys: Mapping[str, list[str]] | None = None,
    grace_seconds: float = 5.0,
    **overrides: Any,
) -> AsyncIterator[Harness]:
    settings = worker_settings(db, tmp_path, **overrides)
    storage = storage_cls(settings.storage_root, "http://127.0.0.1:1", SIGNING.encode())
    pool = Database(db.api_url, min_size=1, max_size=6)
    calls = Database(db.api_url, min_size=1, max_size=2)
    await pool.open()
    await calls.open()
    try:
        async with httpx.AsyncClient() as http:
            gateway = ProviderGateway(
                http,
                api_keys or {},
                runner_secret=SECRET,
                base_backoff=0.01,
                max_backoff=0.05,
            )
            worker = Worker(settings, pool, storage, gateway, grace_seconds=grace_seconds)
            task = asyncio.create_task(worker.run())
            try:
                async with asyncio.timeout(10):
                    await worker.listening.wait()
                yield Harness(db, worker, calls, storage)
            finally:
                worker.stop()
                await asyncio.wait_for(task, 30)
    finally:
        await calls.close()
        await pool.close()


# --- tests -------------------------------------------------------------------------------------


def test_image_job_runs_on_notify(db: dbutil.TestDatabase, tmp_path: Path, runner_url: str) -> None:
    seed(db, runner_url)
    user = new_user(db)

    async def scenario() -> tuple[dict[str, Any], float, Harness]:
        async with harness(db, tmp_path) as h:
            await asyncio.sleep(0.3)  # the worker is idle, waiting (poll in 60 s)
            started = time.monotonic()
            requested = await h.request(user, "img-test", {"prompt": PROMPT, "seed": 7})
            assert requested["cost"] == IMG_COST
            row = await h.wait_status(requested["generation_id"], {"succeeded", "failed"}, 10)
            return row, time.monotonic() - started, h

    row, elapsed, h = run(scenario())
    assert row["status"] == "succeeded", row
    assert elapsed < 8, "woken by NOTIFY, not by the 60 s idle poll"
    gid = str(row["id"])
    assert row["attempts"] == 1 and row["actual_cost"] == IMG_COST
    [media] = media_rows(db, gid)
    assert media["storage_key"] == f"media/{gid}/1-0.png"
    assert media["content_type"] == "image/png"
    assert (media["width"], media["height"]) == (512, 512)
    data = (h.storage.root / media["storage_key"]).read_bytes()
    assert media["bytes"] == len(data)
    assert Image.open(io.BytesIO(data)).size == (512, 512)
    assert h.stored_files() == [media["storage_key"]]
    [call] = provider_calls(db, gid)
    assert (call["outcome"], call["provider"], call["http_status"]) == ("succeeded", "local", 200)
    check_money(db, user, charged={gid: IMG_COST}, refunded={})


def test_provider_500_then_success_charges_once(db: dbutil.TestDatabase, tmp_path: Path) -> None:
    with FakeA1111(keys={SECRET}, fail_times=1, fail_status=500) as fake:
        seed(db, fake.url)
        user = new_user(db)

        async def scenario() -> dict[str, Any]:
            async with harness(db, tmp_path) as h:
                requested = await h.request(user, "img-test", {"prompt": PROMPT})
                return await h.wait_status(requested["generation_id"], {"succeeded", "failed"})

        row = run(scenario())
        assert len(fake.gated_requests) == 2  # the gateway retried within one lease
    gid = str(row["id"])
    assert row["status"] == "succeeded" and row["attempts"] == 1
    assert len(media_rows(db, gid)) == 1
    check_money(db, user, charged={gid: IMG_COST}, refunded={})


@pytest.mark.parametrize(
    ("faults", "options", "code", "claims"),
    [
        pytest.param(
            {"always_status": 500}, {"max_attempts": 2}, "server_error", 3, id="always-500"
        ),
        pytest.param(
            {"hang_seconds": 5.0},
            {"timeout_seconds": 0.3, "max_attempts": 1},
            "timeout",
            3,
            id="timeout",
        ),
        pytest.param({"empty": True}, {}, "empty_output", 1, id="empty"),
    ],
)
def test_failed_jobs_are_refunded_in_full(
    db: dbutil.TestDatabase,
    tmp_path: Path,
    faults: dict[str, Any],
    options: dict[str, Any],
    code: str,
    claims: int,
) -> None:
    with FakeA1111(keys={SECRET}, **faults) as fake:
        seed(db, fake.url, {"timeout_seconds": 30, **options})
        user = new_user(db)

        async def scenario() -> dict[str, Any]:
            async with harness(db, tmp_path) as h:
                requested = await h.request(user, "img-test", {"prompt": PROMPT})
                return await h.wait_status(requested["generation_id"], {"succeeded", "failed"})

        row = run(scenario())
    gid = str(row["id"])
    assert row["status"] == "failed", row
    assert row["error"]["code"] == code
    # Retryable failures went back to the queue until the attempts ran out.
    assert row["attempts"] == claims
    assert [c["outcome"] for c in provider_calls(db, gid)] == ["failed"] * claims
    assert media_rows(db, gid) == []
    check_money(db, user, charged={gid: IMG_COST}, refunded={gid: IMG_COST})


def test_rate_limited_key_is_rotated(db: dbutil.TestDatabase, tmp_path: Path) -> None:
    with FakeOpenAI(keys={KEY_A, KEY_B}, rate_limited_keys={KEY_A}, reply_text="Hi there") as fake:
        seed(db, fake.url)
        route(
            db,
            "chat-test",
            provider="openai",
            provider_model="fake-chat",
            options={"api_key_ref": "fake", "timeout_seconds": 10},
        )
        user = new_user(db)
        params = {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 64}

        async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
            async with harness(db, tmp_path, api_keys={"fake": [KEY_A, KEY_B]}) as h:
                requested = await h.request(user, "chat-test", params)
                row = await h.wait_status(requested["generation_id"], {"succeeded", "failed"})
                return requested, row

        requested, row = run(scenario())
        assert fake.keys_seen() == [KEY_A, KEY_B]
    gid = str(row["id"])
    assert row["status"] == "succeeded", row
    assert row["output"]["text"] == "Hi there"
    assert row["output"]["usage"] == {
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "total_tokens": 18,
    }
    assert media_rows(db, gid) == []
    [call] = provider_calls(db, gid)
    assert (call["provider"], call["http_status"]) == ("openai", 200)
    # The SQL settles chat at the quoted cost unless given an actual_cost (see the report).
    cost = requested["cost"]
    actual = row["actual_cost"]
    check_money(db, user, charged={gid: cost}, refunded={gid: cost - actual})


class WriteThenFailStorage(LocalStorage):
    """Writes the object, then reports failure (a lost acknowledgement, say)."""

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await super().put(key, data, content_type)
        raise StorageError(f"simulated failure after writing {key}")


def test_upload_failure_fails_refunds_and_leaves_no_files(
    db: dbutil.TestDatabase, tmp_path: Path, runner_url: str
) -> None:
    seed(db, runner_url)
    user = new_user(db)

    async def scenario() -> tuple[dict[str, Any], list[str]]:
        async with harness(db, tmp_path, storage_cls=WriteThenFailStorage) as h:
            requested = await h.request(user, "img-test", {"prompt": PROMPT})
            row = await h.wait_status(requested["generation_id"], {"succeeded", "failed"})
            return row, h.stored_files()

    row, files = run(scenario())
    gid = str(row["id"])
    assert row["status"] == "failed"
    assert row["error"]["code"] == "storage_error"
    assert row["attempts"] == 3  # retryable: every attempt was tried
    assert files == []
    assert media_rows(db, gid) == []
    check_money(db, user, charged={gid: IMG_COST}, refunded={gid: IMG_COST})


def test_lost_lease_stops_the_job_and_the_new_attempt_wins(
    db: dbutil.TestDatabase, tmp_path: Path
) -> None:
    with FakeA1111(keys={SECRET}, hang_seconds=2.0) as fake:
        seed(db, fake.url)
        user = new_user(db)

        async def scenario() -> tuple[dict[str, Any], list[str]]:
            async with harness(db, tmp_path, worker_concurrency=1) as h:
                requested = await h.request(user, "img-test", {"prompt": PROMPT})
                gid = requested["generation_id"]
                await h.wait_status(gid, {"running"})
                # The reaper takes the job back as if this worker had stopped renewing.
                await asyncio.to_thread(
                    owner_execute,
                    db,
                    "update creditgate_private.generation_leases"
                    " set lease_expires_at = now() - interval '1s' where generation_id = %s",
                    [gid],
                )
                await asyncio.to_thread(
                    owner_execute, db, "select creditgate.service_reap_expired_leases()"
                )
                row = await h.wait_status(gid, {"succeeded", "failed"}, seconds=20)
                return row, h.stored_files()

        row, files = run(scenario())
    gid = str(row["id"])
    assert row["status"] == "succeeded" and row["attempts"] == 2
    assert [c["outcome"] for c in provider_calls(db, gid)] == ["lease_expired", "succeeded"]
    [media] = media_rows(db, gid)
    assert media["storage_key"] == f"media/{gid}/2-0.png"
    assert files == [media["storage_key"]]  # the first attempt never wrote or deleted
    check_money(db, user, charged={gid: IMG_COST}, refunded={})


def test_unknown_provider_fails_without_retry(db: dbutil.TestDatabase, tmp_path: Path) -> None:
    seed(db, "http://127.0.0.1:9")
    route(db, "img-test", options={"api_key_ref": "missing"})
    user = new_user(db)

    async def scenario() -> dict[str, Any]:
        async with harness(db, tmp_path) as h:
            requested = await h.request(user, "img-test", {"prompt": PROMPT})
            return await h.wait_status(requested["generation_id"], {"succeeded", "failed"})

    row = run(scenario())
    gid = str(row["id"])
    assert (row["status"], row["error"]["code"], row["attempts"]) == ("failed", "not_configured", 1)
    check_money(db, user, charged={gid: IMG_COST}, refunded={gid: IMG_COST})


def test_edit_whose_input_was_purged_is_refunded(
    db: dbutil.TestDatabase, tmp_path: Path, runner_url: str
) -> None:
    seed(db, runner_url)
    user = new_user(db)
    media_id = owner_execute(db, "select tests.media_for(%s) as id", [user])[0]["id"]
    gid = request_sync(db, user, "edit-test", {"prompt": PROMPT, "init_media_id": str(media_id)})
    # The cleanup purges the input between the request and the claim.
    [earlier] = owner_execute(
        db,
        "update creditgate.media set purged_at = now() where id = %s"
        " returning generation_id::text as gid",
        [media_id],
    )

    async def scenario() -> dict[str, Any]:
        async with harness(db, tmp_path) as h:
            return await h.wait_status(gid, {"succeeded", "failed"})

    row = run(scenario())
    assert (row["status"], row["error"]["code"], row["attempts"]) == ("failed", "input_missing", 1)
    # tests.media_for charged 1 credit for the earlier (succeeded) generation.
    cost = row["cost"]
    check_money(db, user, charged={gid: cost, earlier["gid"]: 1}, refunded={gid: cost})


# --- signals: `creditgate worker` as a real process --------------------------------------------


def worker_process(
    db: dbutil.TestDatabase, tmp_path: Path, *args: str
) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"worker-{uuid.uuid4().hex[:6]}.log"
    env = {
        **os.environ,
        "CREDITGATE_SERVICE_DATABASE_URL": db.api_url,
        "CREDITGATE_RUNNER_SECRET": SECRET,
        "CREDITGATE_SIGNING_SECRET": SIGNING,
        "CREDITGATE_STORAGE_ROOT": str(tmp_path / "media"),
        "CREDITGATE_STATE_DIR": str(tmp_path / "state"),
        "CREDITGATE_LEASE_SECONDS": "10",
        "CREDITGATE_HEARTBEAT_SECONDS": "0.5",
        "CREDITGATE_IDLE_POLL_SECONDS": "60",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "creditgate.cli", "worker", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, log


def request_sync(db: dbutil.TestDatabase, user: str, model_id: str, params: dict[str, Any]) -> str:
    async def go() -> str:
        calls = Database(db.api_url, min_size=1, max_size=1)
        await calls.open()
        try:
            result = await calls.call(
                "request_generation",
                {
                    "model_id": Arg(model_id, "text"),
                    "params": Arg(params, "jsonb"),
                    "idempotency_key": Arg(str(uuid.uuid4()), "text"),
                },
                role="authenticated",
                claims={"sub": user, "role": "authenticated", "aud": "authenticated"},
            )
        finally:
            await calls.close()
        return str(result["generation_id"])

    return run(go())


@pytest.mark.parametrize(
    ("hang", "grace", "expected"),
    [
        pytest.param(1.5, 15.0, "succeeded", id="finishes-within-grace"),
        pytest.param(30.0, 0.5, "queued", id="handed-back-after-grace"),
    ],
)
def test_sigterm_during_a_slow_job(
    db: dbutil.TestDatabase, tmp_path: Path, hang: float, grace: float, expected: str
) -> None:
    with FakeA1111(keys={SECRET}, hang_seconds=hang) as fake:
        seed(db, fake.url, {"timeout_seconds": 60, "max_attempts": 1})
        user = new_user(db)
        gid = request_sync(db, user, "img-test", {"prompt": PROMPT})
        proc, log = worker_process(db, tmp_path, "--grace", str(grace))
        try:
            eventually(lambda: len(fake.gated_requests) == 1, 20, "the provider call")
            assert generation(db, gid)["status"] == "running"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        row = generation(db, gid)
        assert row["status"] == expected, log.read_text()
        if expected == "queued":
            assert row["error"]["code"] == "worker_shutdown"
            assert row["lease_token"] is None
            check_money(db, user, charged={gid: IMG_COST}, refunded={})
            # Another worker picks the job up and finishes it: still charged once.
            fake.faults.hang_seconds = 0
            proc, log = worker_process(db, tmp_path)
            try:
                eventually(lambda: generation(db, gid)["status"] == "succeeded", 20, "the retry")
            finally:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(30) == 0, log.read_text()
            assert generation(db, gid)["attempts"] == 2
        assert len(media_rows(db, gid)) == 1
        check_money(db, user, charged={gid: IMG_COST}, refunded={})
    assert '"event": "worker stopped"' in log.read_text()


def test_an_outcome_the_database_refuses_is_reported_as_a_failure(
    db: dbutil.TestDatabase, tmp_path: Path, runner_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker bug (here: an impossible width) must not leave the user waiting for leases."""
    seed(db, runner_url)
    user = new_user(db)
    monkeypatch.setattr(
        "creditgate.worker.media_info",
        lambda blob: {"width": 0, "height": 512, "duration_seconds": None},
    )

    async def scenario() -> tuple[dict[str, Any], list[str]]:
        async with harness(db, tmp_path) as h:
            requested = await h.request(user, "img-test", {"prompt": PROMPT})
            row = await h.wait_status(requested["generation_id"], {"succeeded", "failed"})
            return row, h.stored_files()

    row, files = run(scenario())
    gid = str(row["id"])
    assert (row["status"], row["error"]["code"], row["attempts"]) == ("failed", "internal_error", 1)
    assert files == [] and media_rows(db, gid) == []
    check_money(db, user, charged={gid: IMG_COST}, refunded={gid: IMG_COST})


def test_a_job_queued_behind_another_is_picked_up_without_its_own_notify(
    db: dbutil.TestDatabase, tmp_path: Path, runner_url: str
) -> None:
    """request_generation notifies only when no other job is queued. Job B checks while A is
    queued (so B sends no NOTIFY), the worker claims A, and only then does B commit: the
    worker's second look after a productive claim must find B, long before the 60 s poll."""
    seed(db, runner_url)
    user_a, user_b = new_user(db), new_user(db)
    # A (a video) hangs at its provider, so only a second look, not A's end, can wake the
    # worker for B while it still has a free slot.
    slow = FakeA1111(keys={SECRET}, hang_seconds=30.0)
    slow.__enter__()
    owner_execute(
        db,
        "update creditgate_private.model_routes set endpoint = %s, options = %s"
        " where model_id = 'video-test'",
        [slow.url, Jsonb({"timeout_seconds": 60})],
    )

    def request_in_tx(conn: psycopg.Connection, user: str, model_id: str) -> str:
        conn.execute(
            "select set_config('role', 'authenticated', true),"
            " set_config('request.jwt.claims', %s, true),"
            " set_config('request.headers', '{\"x-forwarded-for\": \"203.0.113.10\"}', true)",
            [json.dumps({"sub": user, "role": "authenticated", "aud": "authenticated"})],
        )
        row = conn.execute(
            "select creditgate.request_generation(model_id => %s,"
            " params => %s::jsonb, idempotency_key => %s)",
            [model_id, json.dumps({"prompt": PROMPT}), str(uuid.uuid4())],
        ).fetchone()
        assert row is not None
        return str(row[0]["generation_id"])

    with psycopg.connect(db.api_url, autocommit=False) as conn_a:
        gid_a = request_in_tx(conn_a, user_a, "video-test")
        conn_a.commit()  # nobody listens yet: A's NOTIFY reaches no worker
    conn_b = psycopg.connect(db.api_url, autocommit=False)
    listener = psycopg.connect(db.owner_url, autocommit=True)
    try:
        listener.execute("listen creditgate_generations")
        gid_b = request_in_tx(conn_b, user_b, "img-test")  # sees A queued: no NOTIFY

        async def scenario() -> tuple[dict[str, Any], float]:
            async with harness(db, tmp_path) as h:
                await h.wait_status(gid_a, {"running"}, 10)  # claimed at start, now hanging
                started = time.monotonic()
                await asyncio.to_thread(conn_b.commit)  # B appears after that claim
                row = await h.wait_status(gid_b, {"succeeded", "failed"}, 20)
                return row, time.monotonic() - started

        row_b, elapsed = run(scenario())
        # (A, handed back when the worker stops, may notify its re-queue; B never does.)
        payloads = [n.payload for n in listener.notifies(timeout=0.5)]
        assert gid_b not in payloads, "B sent no NOTIFY"
    finally:
        conn_b.close()
        listener.close()
        slow.__exit__(None, None, None)
    assert row_b["status"] == "succeeded", row_b
    assert elapsed < 8, "found by the worker's second look, not when A ends or the 60 s poll"
    check_money(db, user_b, charged={gid_b: IMG_COST}, refunded={})
