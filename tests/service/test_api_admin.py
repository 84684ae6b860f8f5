"""Admin routes: refused (403) for non-admins before SQL runs, and working for admins."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import dbutil
from tests.service.apiutil import auth, balance, create_user, running, seed_models, settings_for


@pytest.fixture
def client(db: dbutil.TestDatabase, tmp_path: Path) -> Iterator[httpx.Client]:
    seed_models(db)
    with (
        running(settings_for(db, tmp_path)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


def test_non_admin_gets_403_everywhere(db: dbutil.TestDatabase, client: httpx.Client) -> None:
    user = create_user(db)
    headers = {**auth(user), "Idempotency-Key": "k"}
    for method, path, body in [
        ("POST", "/v1/admin/credits", {"user_id": user, "amount": 5, "reason": "gift"}),
        ("PUT", "/v1/admin/settings/signup_bonus", {"value": 5}),
        ("PUT", "/v1/admin/models/img-test", {"enabled": False}),
        ("GET", "/v1/admin/stats", None),
    ]:
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "forbidden"
    assert balance(db, user) == 1000
    assert client.get("/v1/admin/stats").status_code == 401


def test_admin_add_credits(db: dbutil.TestDatabase, client: httpx.Client) -> None:
    admin = auth(create_user(db, admin=True))
    user = create_user(db)
    body = {"user_id": user, "amount": 250, "reason": "support gesture"}
    missing = client.post("/v1/admin/credits", json=body, headers=admin)
    assert missing.status_code == 400
    assert missing.json()["error"]["details"]["field"] == "Idempotency-Key"

    headers = {**admin, "Idempotency-Key": "gift-1"}
    first = client.post("/v1/admin/credits", json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = client.post("/v1/admin/credits", json=body, headers=headers)
    assert again.status_code == 200
    assert again.json()["replayed"] is True
    assert balance(db, user) == 1250

    changed = client.post("/v1/admin/credits", json={**body, "amount": 1}, headers=headers)
    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "idempotency_key_reused"

    for bad, field in [
        ({**body, "amount": 0}, "amount"),
        ({**body, "amount": "250"}, "amount"),
        ({**body, "user_id": "nope"}, "user_id"),
        ({**body, "reason": ""}, "reason"),
    ]:
        response = client.post(
            "/v1/admin/credits", json=bad, headers={**admin, "Idempotency-Key": "x"}
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["details"]["field"] == field
    unknown = {**body, "user_id": str(uuid.uuid4())}
    response = client.post(
        "/v1/admin/credits", json=unknown, headers={**admin, "Idempotency-Key": "u"}
    )
    assert response.status_code == 404


def test_admin_settings_models_and_stats(db: dbutil.TestDatabase, client: httpx.Client) -> None:
    admin = auth(create_user(db, admin=True))
    response = client.put("/v1/admin/settings/signup_bonus", json={"value": 50}, headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["value"] == 50
    assert balance(db, create_user(db)) == 50

    unknown = client.put("/v1/admin/settings/no_such_setting", json={"value": 1}, headers=admin)
    assert unknown.status_code == 400
    bad_value = client.put("/v1/admin/settings/signup_bonus", json={"value": "x"}, headers=admin)
    assert bad_value.status_code == 400
    no_value = client.put("/v1/admin/settings/signup_bonus", json={}, headers=admin)
    assert no_value.json()["error"]["details"]["field"] == "value"

    off = client.put("/v1/admin/models/chat-test", json={"enabled": False}, headers=admin)
    assert off.status_code == 200, off.text
    assert off.json()["enabled"] is False
    missing = client.put("/v1/admin/models/no-such-model", json={"enabled": False}, headers=admin)
    assert missing.status_code == 404
    not_bool = client.put("/v1/admin/models/chat-test", json={"enabled": "no"}, headers=admin)
    assert not_bool.json()["error"]["details"]["field"] == "enabled"

    stats = client.get("/v1/admin/stats", headers=admin)
    assert stats.status_code == 200, stats.text
    assert {"users", "generations", "credits"} <= set(stats.json())
    since = client.get("/v1/admin/stats", params={"since": "2020-01-01T00:00:00Z"}, headers=admin)
    assert since.status_code == 200
    bad = client.get("/v1/admin/stats", params={"since": "yesterday"}, headers=admin)
    assert bad.status_code == 400
    assert bad.json()["error"]["details"]["field"] == "since"
