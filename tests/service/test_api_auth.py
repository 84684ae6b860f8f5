"""Authentication over a real socket: HS256 and ES256 (JWKS) tokens, every rejection is a 401
with the error body, admin rights come from the database only, and the client IP the SQL
sees cannot be forged with X-Forwarded-For."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
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
from tests.service.apiutil import (
    JWT_SECRET,
    ServerThread,
    auth,
    create_user,
    owner,
    running,
    seed_models,
    settings_for,
    token,
)

EC_KEY = ec.generate_private_key(ec.SECP256R1())
KID = "test-es256"


def _jwk() -> dict[str, Any]:
    data: dict[str, Any] = ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True)
    return {**data, "kid": KID, "alg": "ES256", "use": "sig"}


async def _jwks(request: Request) -> JSONResponse:
    return JSONResponse({"keys": [_jwk()]})


def es256_token(user_id: str, *, kid: str = KID, **extra: Any) -> str:
    now = int(time.time())
    claims = {
        "sub": user_id,
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + 600,
        "email": "es@example.test",
        **extra,
    }
    return jwt.encode(claims, EC_KEY, algorithm="ES256", headers={"kid": kid})


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    app = Starlette(routes=[Route("/auth/v1/.well-known/jwks.json", _jwks)])
    with ServerThread(app, lifespan="off") as server:
        yield f"{server.url}/auth/v1/.well-known/jwks.json"


@pytest.fixture(scope="module")
def base_url(
    module_db: dbutil.TestDatabase, jwks_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    seed_models(module_db)
    root = tmp_path_factory.mktemp("auth")
    with running(settings_for(module_db, root, jwks_url=jwks_url)) as url:
        yield url


@pytest.fixture
def user(module_db: dbutil.TestDatabase) -> str:
    return create_user(module_db)


def get_balance(base_url: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{base_url}/v1/balance", headers=headers)


def assert_401(response: httpx.Response, reason: str | None = None) -> None:
    assert response.status_code == 401, response.text
    body = response.json()["error"]
    assert body["code"] == "not_authenticated"
    assert body["request_id"] == response.headers["x-request-id"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    if reason is not None:
        assert body["details"]["reason"] == reason


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_hs256_token_accepted(base_url: str, user: str) -> None:
    response = get_balance(base_url, auth(user))
    assert response.status_code == 200, response.text
    assert response.json()["balance"] == 1000


def test_es256_token_from_jwks_accepted(base_url: str, user: str) -> None:
    response = get_balance(base_url, {"Authorization": f"Bearer {es256_token(user)}"})
    assert response.status_code == 200, response.text
    assert response.json()["balance"] == 1000


def test_missing_or_malformed_header(base_url: str) -> None:
    assert_401(get_balance(base_url, {}), "missing_token")
    assert_401(get_balance(base_url, {"Authorization": "Basic abc"}), "missing_token")
    assert_401(get_balance(base_url, {"Authorization": "Bearer"}), "missing_token")


def test_expired(base_url: str, user: str) -> None:
    expired = token(user, exp=int(time.time()) - 120)  # beyond the 30 s clock-skew leeway
    assert_401(get_balance(base_url, {"Authorization": f"Bearer {expired}"}), "expired")


def test_wrong_audience(base_url: str, user: str) -> None:
    wrong = token(user, aud="someone-else")
    assert_401(get_balance(base_url, {"Authorization": f"Bearer {wrong}"}), "wrong_audience")


def test_alg_none(base_url: str, user: str) -> None:
    claims = jwt.decode(token(user), options={"verify_signature": False})
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    assert_401(get_balance(base_url, {"Authorization": f"Bearer {unsigned}"}), "invalid_token")


def test_tampered_payload(base_url: str, user: str) -> None:
    victim = str(uuid.uuid4())  # act as someone else: the signature no longer matches
    header, _, signature = token(user).split(".")
    claims = jwt.decode(token(user), options={"verify_signature": False})
    forged = f"{header}.{_b64({**claims, 'sub': victim})}.{signature}"
    assert_401(get_balance(base_url, {"Authorization": f"Bearer {forged}"}), "invalid_token")


def test_wrong_secret(base_url: str, user: str) -> None:
    other = jwt.encode(
        {**jwt.decode(token(user), options={"verify_signature": False})},
        "another-secret-of-at-least-thirty-two-chars",
        algorithm="HS256",
    )
    assert_401(get_balance(base_url, {"Authorization": f"Bearer {other}"}), "invalid_token")


def test_unknown_kid(base_url: str, user: str) -> None:
    unknown = es256_token(user, kid="rotated-away")
    assert_401(get_balance(base_url, {"Authorization": f"Bearer {unknown}"}), "unknown_key")


def test_anon_and_service_role_tokens(base_url: str, user: str) -> None:
    anon = jwt.encode(
        {"role": "anon", "iss": "supabase", "exp": int(time.time()) + 60}, JWT_SECRET, "HS256"
    )
    assert_401(get_balance(base_url, {"Authorization": f"Bearer {anon}"}))
    anon_with_sub = token(user, role="anon")
    assert_401(
        get_balance(base_url, {"Authorization": f"Bearer {anon_with_sub}"}), "forbidden_role"
    )
    service = token(user, role="service_role")
    assert_401(get_balance(base_url, {"Authorization": f"Bearer {service}"}), "forbidden_role")


def test_401_body_does_not_echo_the_token(base_url: str, user: str) -> None:
    bad = token(user, aud="x")
    response = get_balance(base_url, {"Authorization": f"Bearer {bad}"})
    assert bad not in response.text


def test_forged_admin_metadata_is_ignored(base_url: str, user: str) -> None:
    forged = token(
        user,
        user_metadata={"is_admin": True, "role": "admin"},
        app_metadata={"provider": "email", "role": "admin", "is_admin": True},
        is_admin=True,
    )
    headers = {"Authorization": f"Bearer {forged}", "Idempotency-Key": "k"}
    requests = [
        ("POST", "/v1/admin/credits", {"user_id": user, "amount": 10, "reason": "x"}),
        ("PUT", "/v1/admin/settings/maintenance_mode", {"value": True}),
        ("PUT", "/v1/admin/models/img-test", {"enabled": False}),
        ("GET", "/v1/admin/stats", None),
    ]
    for method, path, body in requests:
        response = httpx.request(method, f"{base_url}{path}", json=body, headers=headers)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"]["code"] == "forbidden"
    assert get_balance(base_url, auth(user)).json()["balance"] == 1000


# --- the client IP the database sees ------------------------------------------------------


def _generate(url: str, user: str, xff: str | None) -> httpx.Response:
    headers = {**auth(user), "Idempotency-Key": str(uuid.uuid4())}
    if xff is not None:
        headers["X-Forwarded-For"] = xff
        headers["X-Real-IP"] = xff
        headers["CF-Connecting-IP"] = xff
    body = {"model_id": "img-test", "params": {"prompt": "ip"}}
    return httpx.post(f"{url}/v1/generations", json=body, headers=headers)


def _client_ip(db: dbutil.TestDatabase, generation_id: str) -> str:
    with owner(db) as conn:
        row = conn.execute(
            "select host(client_ip) from tests.generations_full where id = %s", [generation_id]
        ).fetchone()
    assert row is not None
    return str(row[0])


def _limit_per_ip(db: dbutil.TestDatabase, max_requests: int) -> None:
    with owner(db) as conn:
        conn.execute(
            "insert into creditgate_private.rate_limit_rules (id, scope, window_seconds,"
            " max_requests) values ('per-ip', 'ip', 3600, %s)",
            [max_requests],
        )


def test_forwarded_for_is_ignored_without_a_trusted_proxy(
    db: dbutil.TestDatabase, tmp_path: Path
) -> None:
    seed_models(db)
    _limit_per_ip(db, 2)
    users = [create_user(db) for _ in range(3)]
    with running(settings_for(db, tmp_path)) as url:
        first = _generate(url, users[0], "198.51.100.1")
        assert first.status_code == 201, first.text
        assert _client_ip(db, first.json()["generation_id"]) == "127.0.0.1"
        assert _generate(url, users[1], "198.51.100.2").status_code == 201
        limited = _generate(url, users[2], "198.51.100.3")
    assert limited.status_code == 429, limited.text
    assert limited.json()["error"]["details"]["scope"] == "ip"


def test_trusted_proxy_uses_the_address_it_appended(
    db: dbutil.TestDatabase, tmp_path: Path
) -> None:
    seed_models(db)
    _limit_per_ip(db, 1)
    users = [create_user(db) for _ in range(3)]
    with running(settings_for(db, tmp_path, trusted_proxy=True)) as url:
        # A client-written entry on the left is ignored; the proxy's (rightmost) one counts.
        a = _generate(url, users[0], "6.6.6.6, 198.51.100.1")
        b = _generate(url, users[1], "6.6.6.6, 198.51.100.2")
        again = _generate(url, users[2], "7.7.7.7, 198.51.100.1")
        junk = _generate(url, users[2], "not-an-ip")
    assert a.status_code == 201 and b.status_code == 201, (a.text, b.text)
    assert _client_ip(db, a.json()["generation_id"]) == "198.51.100.1"
    assert _client_ip(db, b.json()["generation_id"]) == "198.51.100.2"
    assert again.status_code == 429
    # An unparsable entry falls back to the socket peer.
    assert junk.status_code == 201
    assert _client_ip(db, junk.json()["generation_id"]) == "127.0.0.1"


def test_client_cannot_spend_a_victims_ip_bucket(db: dbutil.TestDatabase, tmp_path: Path) -> None:
    """A client writing a victim's address into CF-Connecting-IP (the header SQL reads by
    default) or X-Forwarded-For is counted under its own socket address: the service drops
    both and sets cf-connecting-ip itself."""
    seed_models(db)
    _limit_per_ip(db, 2)
    attacker, victim = create_user(db), create_user(db)
    headers = {"CF-Connecting-IP": "203.0.113.66", "X-Forwarded-For": "203.0.113.66"}
    with running(settings_for(db, tmp_path, trusted_proxy=True)) as url:
        body = {"model_id": "img-test", "params": {"prompt": "ip"}}
        spoofed = [
            httpx.post(
                f"{url}/v1/generations", json=body,
                headers={**auth(attacker), "Idempotency-Key": str(uuid.uuid4()), **headers,
                         "X-Forwarded-For": f"203.0.113.66, 198.51.100.{n}"},
            )
            for n in (1, 2)
        ]
        # The victim's address was only ever written by the attacker: its bucket is whole.
        own = [_generate(url, victim, "203.0.113.66") for _ in range(2)]
    assert [r.status_code for r in spoofed] == [201, 201], [r.text for r in spoofed]
    assert [_client_ip(db, r.json()["generation_id"]) for r in spoofed] == [
        "198.51.100.1", "198.51.100.2"
    ]
    assert [r.status_code for r in own] == [201, 201], [r.text for r in own]


def test_ipv6_clients_share_their_64_bucket(db: dbutil.TestDatabase, tmp_path: Path) -> None:
    seed_models(db)
    _limit_per_ip(db, 1)
    users = [create_user(db) for _ in range(3)]
    with running(settings_for(db, tmp_path, trusted_proxy=True)) as url:
        first = _generate(url, users[0], "2001:DB8:0:7::1")
        same_64 = _generate(url, users[1], "2001:db8:0:7:ffff::2")
        other_64 = _generate(url, users[2], "2001:db8:0:8::1")
    assert first.status_code == 201, first.text
    assert _client_ip(db, first.json()["generation_id"]) == "2001:db8:0:7::1"
    assert same_64.status_code == 429 and same_64.json()["error"]["details"]["scope"] == "ip"
    assert other_64.status_code == 201, other_64.text


def test_token_command_mints_an_accepted_token(
    base_url: str, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from creditgate.cli import app

    monkeypatch.setenv("SUPABASE_JWT_SECRET", JWT_SECRET)
    result = CliRunner().invoke(app, ["token", "--user-id", user, "--ttl", "120"])
    assert result.exit_code == 0, result.output
    minted = result.stdout.strip()
    claims = jwt.decode(minted, options={"verify_signature": False})
    assert claims["sub"] == user and claims["exp"] - claims["iat"] == 120
    response = get_balance(base_url, {"Authorization": f"Bearer {minted}"})
    assert response.status_code == 200, response.text
    bad = CliRunner().invoke(app, ["token", "--user-id", "not-a-uuid"])
    assert bad.exit_code == 1
