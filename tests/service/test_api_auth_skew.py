"""Clock skew and a hanging JWKS endpoint, over a real socket.

A token minted by a clock a little ahead of (or behind) ours is accepted within the leeway
(``jwt_leeway``, default 30 s, applied to ``iat``, ``nbf`` and ``exp``) and refused beyond it.
A JWKS endpoint that stops answering must not hold up requests whose key is already cached:
the key set is refreshed in the background, and an unknown ``kid`` waits at most the JWKS
timeout.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests import dbutil
from tests.service.apiutil import ServerThread, create_user, running, settings_for, token

EC_KEY = ec.generate_private_key(ec.SECP256R1())
KID = "skew-es256"


@dataclass
class FakeJWKS:
    hang_seconds: float = 0.0
    hits: int = 0


def es256_token(user_id: str, *, kid: str = KID, **extra: Any) -> str:
    now = int(time.time())
    claims = {
        "sub": user_id,
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + 600,
        **extra,
    }
    return jwt.encode(claims, EC_KEY, algorithm="ES256", headers={"kid": kid})


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[tuple[str, FakeJWKS]]:
    state = FakeJWKS()

    async def keys(request: Request) -> JSONResponse:
        state.hits += 1
        if state.hang_seconds:
            await asyncio.sleep(state.hang_seconds)  # accepts, then never answers in time
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True)
        return JSONResponse({"keys": [{**jwk, "kid": KID, "alg": "ES256", "use": "sig"}]})

    app = Starlette(routes=[Route("/jwks.json", keys)])
    with ServerThread(app, lifespan="off") as server:
        yield f"{server.url}/jwks.json", state


@pytest.fixture(scope="module")
def user(module_db: dbutil.TestDatabase) -> str:
    return create_user(module_db)


@pytest.fixture(scope="module")
def base_url(
    module_db: dbutil.TestDatabase,
    jwks_server: tuple[str, FakeJWKS],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    root = tmp_path_factory.mktemp("skew")
    with running(settings_for(module_db, root, jwks_url=jwks_server[0])) as url:
        yield url


def status(url: str, bearer: str) -> tuple[int, str | None]:
    response = httpx.get(f"{url}/v1/balance", headers={"Authorization": f"Bearer {bearer}"})
    reason = None
    if response.status_code == 401:
        reason = response.json()["error"]["details"]["reason"]
    return response.status_code, reason


def test_default_leeway_accepts_small_skew(base_url: str, user: str) -> None:
    now = int(time.time())
    for claims in (
        {"iat": now + 2},  # the reported case: issued by a clock 2 s ahead
        {"iat": now + 20},
        {"nbf": now + 20},
        {"exp": now - 20},
    ):
        assert status(base_url, token(user, **claims)) == (200, None), claims
        assert status(base_url, es256_token(user, **claims)) == (200, None), claims


def test_default_leeway_refuses_larger_skew(base_url: str, user: str) -> None:
    now = int(time.time())
    for claims, reason in (
        ({"iat": now + 90}, "not_yet_valid"),
        ({"nbf": now + 90}, "not_yet_valid"),
        ({"exp": now - 90}, "expired"),
    ):
        assert status(base_url, token(user, **claims)) == (401, reason), claims
        assert status(base_url, es256_token(user, **claims)) == (401, reason), claims


def test_leeway_is_a_setting(module_db: dbutil.TestDatabase, user: str, tmp_path: Path) -> None:
    now = int(time.time())
    with running(settings_for(module_db, tmp_path, jwt_leeway=0)) as url:
        assert status(url, token(user, iat=now + 5)) == (401, "not_yet_valid")
        assert status(url, token(user, exp=now - 5)) == (401, "expired")
    with running(settings_for(module_db, tmp_path, jwt_leeway=120)) as url:
        assert status(url, token(user, iat=now + 90)) == (200, None)
        assert status(url, token(user, exp=now - 90)) == (200, None)


def test_hanging_jwks_does_not_stall_cached_keys(
    module_db: dbutil.TestDatabase,
    jwks_server: tuple[str, FakeJWKS],
    user: str,
    tmp_path: Path,
) -> None:
    jwks_url, state = jwks_server
    settings = settings_for(module_db, tmp_path, jwks_url=jwks_url, jwks_ttl=1.0, jwks_timeout=3.0)
    with running(settings) as url:
        assert status(url, es256_token(user)) == (200, None)  # fetched and cached
        state.hang_seconds = 8.0
        try:
            time.sleep(1.2)  # the cached set is now due for a refresh
            hits = state.hits
            timings = []
            for _ in range(5):
                started = time.monotonic()
                assert status(url, es256_token(user)) == (200, None)
                timings.append(time.monotonic() - started)
            assert max(timings) < 1.5, timings  # a stalled one takes 3 s
            # An unknown kid waits for the (hanging) fetch, at most the JWKS timeout, while
            # requests with the cached kid keep flowing.
            unknown: dict[str, Any] = {}

            def ask_unknown() -> None:
                started = time.monotonic()
                unknown["result"] = status(url, es256_token(user, kid="rotated-in"))
                unknown["seconds"] = time.monotonic() - started

            time.sleep(1.0)  # let the background refresh's minimum interval pass
            thread = threading.Thread(target=ask_unknown)
            thread.start()
            time.sleep(0.2)
            started = time.monotonic()
            assert status(url, es256_token(user)) == (200, None)
            assert time.monotonic() - started < 1.5
            thread.join(timeout=15)
            assert unknown["result"][0] == 401
            assert unknown["seconds"] < 5.5, unknown
            assert state.hits > hits  # a refresh was attempted in the background
        finally:
            state.hang_seconds = 0.0
