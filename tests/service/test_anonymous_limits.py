"""Routes that need no token (/v1/models, /v1/quote, /media-files) are limited per client
address at the HTTP layer, over real HTTP: past the burst a 429 ``rate_limited`` with
``details.scope = "ip"`` and Retry-After; a client cannot step out of its bucket with a
forged X-Forwarded-For, and other addresses and authenticated routes are unaffected."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import dbutil
from tests.service.apiutil import auth, create_user, running, seed_models, settings_for

QUOTE = {"model_id": "img-test", "params": {"prompt": "quote"}}


@pytest.fixture(scope="module")
def seeded(module_db: dbutil.TestDatabase) -> dbutil.TestDatabase:
    seed_models(module_db)
    return module_db


def assert_429(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["details"]["scope"] == "ip"
    assert error["details"]["retry_after_seconds"] >= 1
    assert int(response.headers["retry-after"]) >= 1
    assert error["request_id"] == response.headers["x-request-id"]


@pytest.fixture
def url(seeded: dbutil.TestDatabase, tmp_path: Path) -> Iterator[str]:
    settings = settings_for(seeded, tmp_path, anon_burst=5, anon_rate=0.01)
    with running(settings) as base:
        yield base


def test_anonymous_routes_share_a_bucket_per_address(seeded: dbutil.TestDatabase, url: str) -> None:
    user = create_user(seeded)
    with httpx.Client(base_url=url, timeout=10) as client:
        assert [client.get("/v1/models").status_code for _ in range(3)] == [200] * 3
        assert [client.post("/v1/quote", json=QUOTE).status_code for _ in range(2)] == [200] * 2
        assert_429(client.get("/v1/models"))
        assert_429(client.post("/v1/quote", json=QUOTE))
        assert_429(client.get("/media-files/anything?exp=1&sig=x"))
        # Forged client-address headers do not open a new bucket (no trusted proxy here).
        for forged in ("198.51.100.7", "203.0.113.9, 198.51.100.8"):
            headers = {"X-Forwarded-For": forged, "CF-Connecting-IP": forged}
            assert_429(client.get("/v1/models", headers=headers))
        # Routes that need a token are limited by the database, not by this bucket.
        assert client.get("/v1/balance", headers=auth(user)).status_code == 200
        assert client.get("/healthz").status_code == 200


def test_each_address_has_its_own_bucket_behind_a_trusted_proxy(
    seeded: dbutil.TestDatabase, tmp_path: Path
) -> None:
    settings = settings_for(seeded, tmp_path, anon_burst=2, anon_rate=0.01, trusted_proxy=True)
    with running(settings) as base, httpx.Client(base_url=base, timeout=10) as client:

        def models(address: str) -> httpx.Response:
            return client.get("/v1/models", headers={"X-Forwarded-For": f"6.6.6.6, {address}"})

        assert [models("198.51.100.1").status_code for _ in range(2)] == [200, 200]
        assert_429(models("198.51.100.1"))
        assert models("198.51.100.2").status_code == 200
        media = client.get(
            "/media-files/x?exp=1&sig=x", headers={"X-Forwarded-For": "198.51.100.3"}
        )
        assert media.status_code == 403  # reaches the signature check
