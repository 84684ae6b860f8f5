"""End to end: `creditgate serve`, `creditgate worker` and `creditgate runner` as real processes.

A client talks HTTP only: POST /v1/generations?wait -> request_generation (charge) -> NOTIFY
-> worker -> runner -> storage -> settle -> the waiting request answers with signed URLs,
which are downloaded and compared with what was stored. Balance and ledger must match the
costs the API reported, to the credit, and the audit must pass.
"""

from __future__ import annotations

import io
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from PIL import Image
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from creditgate.auth import mint_token
from tests import dbutil
from tests.e2e.procs import Proc, base_env, http_ok, start, wait_until
from tests.fakes import free_port

JWT_SECRET = "e2e-jwt-secret-with-at-least-32-characters!"
RUNNER_SECRET = "e2e-runner-secret-0123456789abcdef"
SIGNING_SECRET = "e2e-media-signing-secret-0123456789abcdef"
SIGNUP_BONUS = 1000


def owner(db: dbutil.TestDatabase, query: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(db.owner_url, autocommit=True, row_factory=dict_row) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


@dataclass
class Stack:
    db: dbutil.TestDatabase
    url: str
    media_root: Path
    procs: list[Proc]
    clients: list[httpx.Client]

    def user(self) -> tuple[str, httpx.Client]:
        user_id = str(owner(self.db, "select tests.create_user() as id")[0]["id"])
        token = mint_token(JWT_SECRET, user_id)
        client = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        self.clients.append(client)
        return user_id, client


@pytest.fixture(scope="module")
def stack(
    module_db: dbutil.TestDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("e2e")
    port, runner_port = free_port(), free_port()
    owner(module_db, "select tests.seed_models()")
    owner(
        module_db,
        "update creditgate_private.model_routes set endpoint = %s, options = %s",
        [f"http://127.0.0.1:{runner_port}", Jsonb({"timeout_seconds": 60})],
    )
    env = {
        **base_env(),
        "CREDITGATE_SERVICE_DATABASE_URL": module_db.api_url,
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "CREDITGATE_RUNNER_SECRET": RUNNER_SECRET,
        "CREDITGATE_SIGNING_SECRET": SIGNING_SECRET,
        "CREDITGATE_STORAGE_ROOT": str(tmp / "media"),
        "CREDITGATE_STATE_DIR": str(tmp / "state"),
        "CREDITGATE_HOST": "127.0.0.1",
        "CREDITGATE_PORT": str(port),
        "CREDITGATE_RUNNER_PORT": str(runner_port),
        "CREDITGATE_WAIT_MAX_SECONDS": "30",
        "CREDITGATE_HEARTBEAT_SECONDS": "2",
        # Generations must be picked up through LISTEN/NOTIFY, not by polling.
        "CREDITGATE_IDLE_POLL_SECONDS": "300",
    }
    procs: list[Proc] = []
    try:
        procs.append(start("runner", ["runner"], env, tmp))
        procs.append(start("service", ["serve"], env, tmp))
        procs.append(start("worker", ["worker", "--concurrency", "3"], env, tmp))
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(f"{url}/readyz"), procs, what="the service")
        wait_until(lambda: '"event": "listening"' in procs[2].output(), procs, what="the worker")
        stack = Stack(module_db, url, tmp / "media", procs, [])
        yield stack
        for client in stack.clients:
            client.close()
    finally:
        codes = {proc.name: proc.stop() for proc in reversed(procs)}
    # uvicorn re-raises the signal it handled after a clean shutdown: -SIGTERM is clean too.
    assert codes == {"worker": 0, "service": -signal.SIGTERM, "runner": -signal.SIGTERM}, codes
    assert '"event": "worker stopped"' in procs[2].output()


def generate(client: httpx.Client, model_id: str, params: dict[str, Any]) -> dict[str, Any]:
    key = str(uuid.uuid4())
    response = client.post(
        "/v1/generations",
        params={"wait": 30},
        headers={"Idempotency-Key": key},
        json={"model_id": model_id, "params": params},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "succeeded", body
    # The same key again is a replay: same generation, no second charge.
    again = client.post(
        "/v1/generations",
        headers={"Idempotency-Key": key},
        json={"model_id": model_id, "params": params},
    )
    assert again.status_code == 200, again.text
    assert again.json()["generation_id"] == body["generation_id"]
    assert again.json()["replayed"] is True
    return body


def download(stack: Stack, media: dict[str, Any]) -> bytes:
    """The bytes behind a signed URL; they must be the stored object's, byte for byte."""
    assert media["url"].startswith(stack.url + "/media-files/media/")
    response = httpx.get(media["url"], timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == media["content_type"]
    assert response.content == (stack.media_root / media["key"]).read_bytes()
    assert len(response.content) == media["bytes"]
    # Tampering with the signature is refused.
    assert httpx.get(media["url"][:-4] + "0000", timeout=10).status_code == 403
    return response.content


def check_account(stack: Stack, user_id: str, client: httpx.Client, costs: dict[str, int]) -> None:
    """Balance and ledger (over HTTP and in SQL) match the charges exactly; audit passes."""
    refunds = {
        str(r["id"]): r["cost"] - r["actual_cost"]
        for r in owner(
            stack.db,
            "select id, cost, actual_cost from creditgate.generations where user_id = %s",
            [user_id],
        )
        if r["actual_cost"] != r["cost"]
    }
    expected = SIGNUP_BONUS - sum(costs.values()) + sum(refunds.values())
    balance = client.get("/v1/balance").json()
    assert balance["balance"] == expected, balance
    ledger = client.get("/v1/ledger", params={"limit": 200}).json()["items"]
    spends = {e["generation_id"]: e["amount"] for e in ledger if e["entry_type"] == "spend"}
    assert spends == costs
    assert [e for e in ledger if e["entry_type"] == "refund"] == [
        e for e in ledger if e["entry_type"] == "refund" and e["generation_id"] in refunds
    ]
    assert sum(e["delta"] for e in ledger) == expected
    assert ledger[0]["balance_after"] == expected
    report = owner(stack.db, "select creditgate.audit() as r")[0]["r"]
    assert report["ok"], report


def test_image_then_edit_of_it(stack: Stack) -> None:
    user_id, client = stack.user()
    params = {"prompt": "a lighthouse at dusk", "seed": 42, "width": 512, "height": 384}
    image = generate(client, "img-test", params)
    [media] = image["generation"]["media"]
    assert (media["content_type"], media["width"], media["height"]) == ("image/png", 512, 384)
    png = download(stack, media)
    assert Image.open(io.BytesIO(png)).size == (512, 384)

    # The runner is deterministic: the same request (new key) gives the same picture.
    same = generate(client, "img-test", params)
    assert download(stack, same["generation"]["media"][0]) == png

    edit = generate(
        client,
        "edit-test",
        {"prompt": "the same lighthouse in winter", "init_media_id": media["id"], "seed": 42},
    )
    [edited] = edit["generation"]["media"]
    edited_png = download(stack, edited)
    assert edited_png != png
    assert Image.open(io.BytesIO(edited_png)).format == "PNG"

    costs = {g["generation_id"]: g["cost"] for g in (image, same, edit)}
    check_account(stack, user_id, client, costs)


def test_video(stack: Stack) -> None:
    user_id, client = stack.user()
    video = generate(
        client,
        "video-test",
        {"prompt": "waves", "width": 256, "height": 256, "duration_seconds": 2, "fps": 4},
    )
    [media] = video["generation"]["media"]
    assert media["content_type"] == "image/gif"  # the runner renders AnimateDiff as GIF
    assert float(media["duration_seconds"]) == pytest.approx(2.0)
    gif = Image.open(io.BytesIO(download(stack, media)))
    assert getattr(gif, "n_frames", 1) == 8
    check_account(stack, user_id, client, {video["generation_id"]: video["cost"]})


def test_chat(stack: Stack) -> None:
    user_id, client = stack.user()
    chat = generate(
        client,
        "chat-test",
        {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 64},
    )
    generation = chat["generation"]
    assert generation["media"] == []
    assert generation["output"]["text"].startswith("Local runner (local-chat-test) heard: Name")
    assert generation["output"]["usage"]["total_tokens"] > 0
    check_account(stack, user_id, client, {chat["generation_id"]: chat["cost"]})


def test_the_stack_is_still_up(stack: Stack) -> None:
    for proc in stack.procs:
        assert proc.alive(), proc.output()
    metrics = httpx.get(f"{stack.url}/metrics", timeout=10).text
    assert "creditgate_http_requests_total" in metrics
