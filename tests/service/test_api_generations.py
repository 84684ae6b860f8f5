"""The generation routes over a real socket against a real database: happy paths, every
error mapping (400/402/404/409/429/503), idempotent replays, waiting, pagination, media."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from creditgate.api import queries
from creditgate.storage import LocalStorage
from tests import dbutil, pgrest
from tests.service.apiutil import (
    SIGNING_SECRET,
    auth,
    balance,
    create_user,
    owner,
    running,
    scalar,
    seed_models,
    settings_for,
)

IMG = {"model_id": "img-test", "params": {"prompt": "a lighthouse at dusk"}}


@dataclass
class Api:
    db: dbutil.TestDatabase
    client: httpx.Client
    root: Path

    def user(self, *, admin: bool = False) -> tuple[str, dict[str, str]]:
        user_id = create_user(self.db, admin=admin)
        return user_id, auth(user_id)

    def generate(
        self, headers: dict[str, str], body: dict[str, Any] = IMG, key: str | None = None, **kw: Any
    ) -> httpx.Response:
        return self.client.post(
            "/v1/generations",
            json=body,
            headers={**headers, "Idempotency-Key": key or str(uuid.uuid4())},
            **kw,
        )


@pytest.fixture
def api(db: dbutil.TestDatabase, tmp_path: Path) -> Iterator[Api]:
    seed_models(db)
    with (
        running(settings_for(db, tmp_path)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield Api(db, client, tmp_path)


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details", "request_id"}
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return dict(body["error"])


# --- catalog ------------------------------------------------------------------------------


def test_models_are_public_and_hide_routes(api: Api) -> None:
    response = api.client.get("/v1/models")
    assert response.status_code == 200
    body = response.json()
    ids = [m["id"] for m in body["models"]]
    assert ids == ["img-test", "edit-test", "video-test", "chat-test"]  # img-off is disabled
    assert {lora["id"] for lora in body["loras"]} == {"lora-a", "lora-b"}
    text = response.text
    for secret in ("127.0.0.1:7860", "local-img-test", "safetensors", "endpoint", "provider"):
        assert secret not in text


def test_quote_anonymous_and_authenticated(api: Api) -> None:
    _, headers = api.user()
    anon = api.client.post("/v1/quote", json=IMG)
    assert anon.status_code == 200, anon.text
    assert anon.json()["cost"] == 33
    assert api.client.post("/v1/quote", json=IMG, headers=headers).json()["cost"] == 33
    # An invalid token is refused even where a token is optional.
    bad = api.client.post("/v1/quote", json=IMG, headers={"Authorization": "Bearer nope"})
    error(bad, 401, "not_authenticated")


def test_quote_errors_name_the_field(api: Api) -> None:
    bad = api.client.post("/v1/quote", json={"model_id": "img-test", "params": {"prompt": ""}})
    assert error(bad, 400, "invalid_request")["details"]["field"] == "prompt"
    unknown = api.client.post("/v1/quote", json={"model_id": "nope", "params": {}})
    error(unknown, 404, "not_found")
    off = api.client.post("/v1/quote", json={"model_id": "img-off", "params": {"prompt": "x"}})
    error(off, 503, "model_unavailable")


# --- creating -----------------------------------------------------------------------------


def test_create_replay_and_key_reuse(api: Api) -> None:
    user_id, headers = api.user()
    first = api.generate(headers, key="key-1")
    assert first.status_code == 201, first.text
    created = first.json()
    assert created["status"] == "queued" and created["replayed"] is False
    assert created["cost"] == 33 and created["balance"] == 1000 - 33

    again = api.generate(headers, key="key-1")
    assert again.status_code == 200
    assert again.json()["generation_id"] == created["generation_id"]
    assert again.json()["replayed"] is True
    assert balance(api.db, user_id) == 1000 - 33  # charged once

    other = {"model_id": "img-test", "params": {"prompt": "something else"}}
    reused = api.generate(headers, other, key="key-1")
    error(reused, 409, "idempotency_key_reused")


def test_missing_idempotency_key(api: Api) -> None:
    user_id, headers = api.user()
    response = api.client.post("/v1/generations", json=IMG, headers=headers)
    details = error(response, 400, "invalid_request")["details"]
    assert details["field"] == "Idempotency-Key"
    blank = api.client.post("/v1/generations", json=IMG, headers={**headers, "Idempotency-Key": ""})
    error(blank, 400, "invalid_request")
    long = api.generate(headers, key="k" * 256)
    assert error(long, 400, "invalid_request")["details"]["field"] == "Idempotency-Key"
    assert balance(api.db, user_id) == 1000


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model_id": "img-test", "params": {"prompt": "x", "width": 100000}}, "width"),
        ({"model_id": "img-test", "params": {"prompt": "x", "width": 513}}, "width"),
        ({"model_id": "img-test", "params": {"prompt": "x", "bogus": 1}}, None),
        ({"model_id": "img-test", "params": "not an object"}, "params"),
        ({"model_id": 7, "params": {}}, "model_id"),
        ({"params": {}}, "model_id"),
        ({"model_id": "img-test", "params": {}, "extra": True}, "extra"),
        ([1, 2], "body"),
    ],
)
def test_bad_params_name_the_field(api: Api, body: Any, field: str | None) -> None:
    user_id, headers = api.user()
    details = error(api.generate(headers, body), 400, "invalid_request")["details"]
    if field is not None:
        assert details["field"] == field
    else:
        assert "bogus" in details["field"]
    assert balance(api.db, user_id) == 1000


def test_unstorable_value_is_a_400(api: Api) -> None:
    user_id, headers = api.user()
    body = {"model_id": "img-test", "params": {"prompt": "nul \u0000 byte"}}
    response = api.generate(headers, body)
    assert error(response, 400, "invalid_request")["details"] == {
        "reason": "a value cannot be stored"
    }
    assert "u0000" not in response.text and "jsonb" not in response.text
    assert balance(api.db, user_id) == 1000


def test_invalid_json_body(api: Api) -> None:
    _, headers = api.user()
    response = api.client.post(
        "/v1/generations",
        content=b"{not json",
        headers={**headers, "Idempotency-Key": "k", "Content-Type": "application/json"},
    )
    assert error(response, 400, "invalid_request")["details"]["field"] == "body"
    empty = api.client.post("/v1/generations", headers={**headers, "Idempotency-Key": "k"})
    assert error(empty, 400, "invalid_request")["details"]["field"] == "body"


def test_body_too_large(db: dbutil.TestDatabase, tmp_path: Path) -> None:
    seed_models(db)
    user_id = create_user(db)
    with running(settings_for(db, tmp_path, max_body_bytes=1024)) as url:
        big = {"model_id": "img-test", "params": {"prompt": "x" * 5000}}
        response = httpx.post(
            f"{url}/v1/generations", json=big, headers={**auth(user_id), "Idempotency-Key": "k"}
        )
    error(response, 413, "payload_too_large")


def test_insufficient_credits(api: Api) -> None:
    user_id, headers = api.user()
    video = {"model_id": "video-test", "params": {"prompt": "waves"}}  # 303 credits
    for _ in range(3):
        assert api.generate(headers, video).status_code == 201
    details = error(api.generate(headers, video), 402, "insufficient_credits")["details"]
    assert details == {"required": 303, "available": 1000 - 3 * 303}
    assert balance(api.db, user_id) == 1000 - 3 * 303


def test_rate_limit_has_retry_after(api: Api) -> None:
    with owner(api.db) as conn:
        conn.execute(
            "insert into creditgate_private.rate_limit_rules (id, scope, window_seconds,"
            " max_requests) values ('per-user', 'user', 3600, 2)"
        )
    user_id, headers = api.user()
    assert api.generate(headers).status_code == 201
    assert api.generate(headers).status_code == 201
    limited = api.generate(headers)
    details = error(limited, 429, "rate_limited")["details"]
    assert details["scope"] == "user"
    assert int(limited.headers["Retry-After"]) == details["retry_after_seconds"] > 0
    assert balance(api.db, user_id) == 1000 - 2 * 33


def test_maintenance_and_disabled_model(api: Api) -> None:
    _, admin = api.user(admin=True)
    _, headers = api.user()
    on = api.client.put("/v1/admin/settings/maintenance_mode", json={"value": True}, headers=admin)
    assert on.status_code == 200, on.text
    error(api.generate(headers), 503, "maintenance")
    off = api.client.put(
        "/v1/admin/settings/maintenance_mode", json={"value": False}, headers=admin
    )
    assert off.status_code == 200
    assert api.generate(headers).status_code == 201

    disabled = api.client.put("/v1/admin/models/img-test", json={"enabled": False}, headers=admin)
    assert disabled.status_code == 200, disabled.text
    error(api.generate(headers), 503, "model_unavailable")
    assert "img-test" not in [m["id"] for m in api.client.get("/v1/models").json()["models"]]


# --- reading ------------------------------------------------------------------------------


def test_list_generations_paginates(api: Api) -> None:
    _, headers = api.user()
    _, other = api.user()
    ids = [api.generate(headers).json()["generation_id"] for _ in range(5)]
    api.generate(other)
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 2, **({"before": cursor} if cursor else {})}
        page = api.client.get("/v1/generations", params=params, headers=headers).json()
        seen += [g["id"] for g in page["items"]]
        for item in page["items"]:
            assert "charge_key" not in item and "lease_token" not in item
            assert "client_ip" not in item and "request_hash" not in item
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    for garbage in ("garbage!", queries.encode_cursor("not a time", str(uuid.uuid4()))):
        bad = api.client.get("/v1/generations", params={"before": garbage}, headers=headers)
        assert error(bad, 400, "invalid_request")["details"]["field"] == "before"
    huge = api.client.get("/v1/ledger", params={"before": 2**70}, headers=headers)
    assert error(huge, 400, "invalid_request")["details"]["field"] == "before"
    over = api.client.get("/v1/generations", params={"limit": 1000}, headers=headers)
    assert error(over, 400, "invalid_request")["details"]["field"] == "limit"


def test_get_generation_is_owner_only_with_signed_media(api: Api) -> None:
    user_id, headers = api.user()
    _, stranger = api.user()
    media_id = scalar(api.db, "select tests.media_for(%s)", [user_id])
    generation_id, key = (
        str(v)
        for v in (
            scalar(api.db, "select generation_id from creditgate.media where id = %s", [media_id]),
            scalar(api.db, "select storage_key from creditgate.media where id = %s", [media_id]),
        )
    )
    storage = LocalStorage(api.root / "media", "http://unused", SIGNING_SECRET.encode())
    import asyncio

    # The served type comes from the bytes: a full PNG signature.
    asyncio.run(storage.put(key, b"\x89PNG\r\n\x1a\n fake", "image/png"))

    response = api.client.get(f"/v1/generations/{generation_id}", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded"
    [media] = body["media"]
    assert media["id"] == str(media_id) and media["key"] == key
    assert media["url"].startswith(str(api.client.base_url).rstrip("/") + "/media-files/")
    assert media["url_expires_in"] > 0
    download = httpx.get(media["url"])
    assert download.status_code == 200 and download.content == b"\x89PNG\r\n\x1a\n fake"
    assert download.headers["content-type"] == "image/png"
    tampered = httpx.get(media["url"].replace("sig=", "sig=0"))
    assert tampered.status_code == 403

    error(api.client.get(f"/v1/generations/{generation_id}", headers=stranger), 404, "not_found")
    error(api.client.get(f"/v1/generations/{uuid.uuid4()}", headers=headers), 404, "not_found")
    bad = api.client.get("/v1/generations/not-a-uuid", headers=headers)
    assert error(bad, 400, "invalid_request")["details"]["field"] == "id"

    # Deleted media keep their row but lose the URL.
    deleted = api.client.delete(f"/v1/media/{media_id}", headers=headers)
    assert deleted.status_code == 200, deleted.text
    [media] = api.client.get(f"/v1/generations/{generation_id}", headers=headers).json()["media"]
    assert media["deleted"] is True and media["url"] is None


def test_cancel(api: Api) -> None:
    user_id, headers = api.user()
    _, stranger = api.user()
    generation_id = api.generate(headers).json()["generation_id"]
    error(
        api.client.post(f"/v1/generations/{generation_id}/cancel", headers=stranger),
        404,
        "not_found",
    )
    response = api.client.post(f"/v1/generations/{generation_id}/cancel", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "canceled"
    assert balance(api.db, user_id) == 1000
    again = api.client.post(f"/v1/generations/{generation_id}/cancel", headers=headers)
    error(again, 409, "invalid_state")


def test_media_save_and_delete(api: Api) -> None:
    user_id, headers = api.user()
    _, stranger = api.user()
    media_id = scalar(api.db, "select tests.media_for(%s)", [user_id])
    error(api.client.post(f"/v1/media/{media_id}/save", headers=stranger), 404, "not_found")
    error(api.client.delete(f"/v1/media/{media_id}", headers=stranger), 404, "not_found")
    saved = api.client.post(f"/v1/media/{media_id}/save", headers=headers)
    assert saved.status_code == 200, saved.text
    assert saved.json()["saved"] is True
    deleted = api.client.delete(f"/v1/media/{media_id}", headers=headers)
    assert deleted.status_code == 200
    assert deleted.json()["deleted_at"] is not None
    error(api.client.post(f"/v1/media/{media_id}/save", headers=headers), 404, "not_found")


def test_balance_and_ledger(api: Api) -> None:
    _, headers = api.user()
    for _ in range(3):
        api.generate(headers)
    bal = api.client.get("/v1/balance", headers=headers)
    assert bal.status_code == 200
    assert bal.json()["balance"] == 1000 - 3 * 33
    first = api.client.get("/v1/ledger", params={"limit": 2}, headers=headers).json()
    assert [e["entry_type"] for e in first["items"]] == ["spend", "spend"]
    assert first["items"][0]["balance_after"] == 1000 - 3 * 33
    rest = api.client.get(
        "/v1/ledger", params={"limit": 2, "before": first["next_cursor"]}, headers=headers
    ).json()
    assert [e["entry_type"] for e in rest["items"]] == ["spend", "signup_bonus"]
    assert rest["next_cursor"] is None


# --- waiting ------------------------------------------------------------------------------


def _settle_soon(db: dbutil.TestDatabase, delay: float) -> threading.Thread:
    """A stand-in worker: claim the queued job after ``delay`` and settle it as failed."""

    def work() -> None:
        time.sleep(delay)
        with pgrest.connect(db.api_url) as conn:
            jobs = pgrest.rpc(conn, "service_claim_generations", {"worker_id": "test-worker"})
            assert len(jobs) == 1
            job = jobs[0]
            pgrest.rpc(
                conn,
                "service_settle_generation",
                {
                    "generation_id": job["generation_id"],
                    "worker_id": "test-worker",
                    "lease_token": job["lease_token"],
                    "outcome": {
                        "status": "failed",
                        "retryable": False,
                        "error": {"code": "provider_error", "message": "boom"},
                    },
                },
                casts={
                    "generation_id": "uuid",
                    "worker_id": "text",
                    "lease_token": "text",
                    "outcome": "jsonb",
                },
            )

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_wait_returns_the_finished_generation(api: Api) -> None:
    user_id, headers = api.user()
    worker = _settle_soon(api.db, 0.5)
    started = time.monotonic()
    response = api.generate(headers, params={"wait": 10})
    elapsed = time.monotonic() - started
    worker.join(5)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "failed"
    assert body["generation"]["status"] == "failed"
    assert body["generation"]["id"] == body["generation_id"]
    assert 0.4 < elapsed < 4
    assert balance(api.db, user_id) == 1000  # failed -> refunded in full


def test_wait_times_out_with_current_status(api: Api) -> None:
    _, headers = api.user()
    started = time.monotonic()
    response = api.generate(headers, params={"wait": "0.3"})
    assert 0.25 < time.monotonic() - started < 3
    assert response.status_code == 201
    assert response.json()["generation"]["status"] == "queued"
    for bad_wait in ("-1", "nan", "inf", "soon"):
        bad = api.generate(headers, params={"wait": bad_wait})
        assert error(bad, 400, "invalid_request")["details"]["field"] == "wait"


def test_wait_is_capped_by_the_server(db: dbutil.TestDatabase, tmp_path: Path) -> None:
    seed_models(db)
    user_id = create_user(db)
    with running(settings_for(db, tmp_path, wait_max_seconds=0.2)) as url:
        started = time.monotonic()
        response = httpx.post(
            f"{url}/v1/generations?wait=30",
            json=IMG,
            headers={**auth(user_id), "Idempotency-Key": "k"},
            timeout=30,
        )
    assert response.status_code == 201
    assert time.monotonic() - started < 3


def test_notifier_wakes_the_waiter_of_the_notified_generation(db: dbutil.TestDatabase) -> None:
    import asyncio

    from creditgate.api.waiter import CHANNEL, GenerationNotifier

    async def scenario() -> None:
        notifier = GenerationNotifier(db.api_url)
        await notifier.start()
        try:
            mine, other = uuid.uuid4(), uuid.uuid4()
            with notifier.subscribe(mine) as woken, notifier.subscribe(other) as untouched:
                await asyncio.wait_for(notifier.listening.wait(), timeout=10)
                woken.clear()
                untouched.clear()
                with owner(db) as conn:
                    conn.execute("select pg_notify(%s, %s)", [CHANNEL, str(mine)])
                await asyncio.wait_for(woken.wait(), timeout=5)
                assert not untouched.is_set()
                with owner(db) as conn:  # a payload it cannot read wakes everyone
                    conn.execute("select pg_notify(%s, %s)", [CHANNEL, "something else"])
                await asyncio.wait_for(untouched.wait(), timeout=5)
        finally:
            await notifier.stop()

    asyncio.run(scenario())
