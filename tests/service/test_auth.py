"""JWT verification: HS256 secret, ES256/RS256 via a real local JWKS server, and the attacks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from creditgate.auth import AuthError, JWTVerifier, Principal, bearer_token, mint_token
from tests.service.apiutil import ServerThread

SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
USER = "6f1f2a8e-3c1d-4b8e-9a55-0a3c9c1b7e21"
T = TypeVar("T")


# --- a real JWKS endpoint: Starlette on uvicorn, 127.0.0.1, background thread ----------------


@dataclass
class JWKSState:
    keys: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    hits: int = 0
    document: Any = None  # served instead of {"keys": keys} when set


_state = JWKSState()


async def _jwks(request: Request) -> JSONResponse:
    _state.hits += 1
    body = _state.document if _state.document is not None else {"keys": _state.keys}
    return JSONResponse(body, status_code=_state.status)


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[str]:
    app = Starlette(routes=[Route("/auth/v1/.well-known/jwks.json", _jwks)])
    with ServerThread(app, lifespan="off") as server:
        yield f"{server.url}/auth/v1/.well-known/jwks.json"


@pytest.fixture
def jwks(jwks_server: str) -> Iterator[JWKSState]:
    _state.keys, _state.status, _state.hits, _state.document = [], 200, 0, None
    yield _state


# --- keys and tokens ------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: Any

    @property
    def jwk(self) -> dict[str, Any]:
        algo = ECAlgorithm if self.alg == "ES256" else RSAAlgorithm
        data: dict[str, Any] = algo.to_jwk(self.private.public_key(), as_dict=True)
        return {**data, "kid": self.kid, "alg": self.alg, "use": "sig", "key_ops": ["verify"]}

    @property
    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def sign(self, claims: dict[str, Any], **headers: Any) -> str:
        headers = {"kid": self.kid, **headers}
        return jwt.encode(claims, self.private, algorithm=self.alg, headers=headers)


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return SigningKey("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="module")
def ec_key2() -> SigningKey:
    return SigningKey("ec-2", "ES256", ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey("rsa-1", "RS256", private)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": USER,
        "aud": "authenticated",
        "role": "authenticated",
        "email": "a@example.test",
        "iat": now,
        "exp": now + 600,
        "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
        "app_metadata": {"provider": "email"},
        "user_metadata": {},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def hs256(key: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(key, data, hashlib.sha256).digest()


# --- running verifiers ------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(fn: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    async def main() -> T:
        async with httpx.AsyncClient() as http:
            return await fn(http)

    return asyncio.run(main())


def verify(token: str, **kwargs: Any) -> Principal:
    kwargs.setdefault("hs256_secret", SECRET)
    kwargs.setdefault("jwks_url", None)

    async def go(http: httpx.AsyncClient) -> Principal:
        return await JWTVerifier(http=http, **kwargs).verify(token)

    return run(go)


def rejected(token: str, **kwargs: Any) -> str:
    with pytest.raises(AuthError) as info:
        verify(token, **kwargs)
    return info.value.reason


# --- tests ------------------------------------------------------------------------------------


def test_bearer_token() -> None:
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("bearer  abc.def.ghi ") == "abc.def.ghi"
    for bad in (None, "", "Bearer", "Bearer ", "Basic abc", "abc.def.ghi", "Bearer a b"):
        with pytest.raises(AuthError) as info:
            bearer_token(bad)
        assert info.value.reason == "missing_token"


def test_mint_token_round_trips() -> None:
    token = mint_token(SECRET, USER, email="a@example.test", extra={"iss": "http://x/auth/v1"})
    principal = verify(token, issuer="http://x/auth/v1")
    assert principal.user_id == USER
    assert principal.role == "authenticated"
    assert not principal.is_anonymous
    c = principal.claims
    assert c["sub"] == USER and c["aud"] == "authenticated" and c["email"] == "a@example.test"
    assert c["aal"] == "aal1" and c["is_anonymous"] is False
    assert c["exp"] - c["iat"] == 3600
    assert uuid.UUID(c["session_id"])
    assert c["app_metadata"] == {"provider": "email", "providers": ["email"]}
    assert c["user_metadata"] == {}
    # the verified payload is handed on verbatim
    assert c == jwt.decode(token, SECRET, algorithms=["HS256"], audience="authenticated")
    with pytest.raises(ValueError):
        mint_token(SECRET, "not-a-uuid")
    with pytest.raises(ValueError):
        mint_token("short", USER)


def test_hs256_accepted_even_with_kid_header() -> None:
    assert verify(jwt.encode(claims(), SECRET, algorithm="HS256")).user_id == USER
    token = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"kid": "legacy"})
    assert verify(token).user_id == USER


def test_user_metadata_never_grants_a_role() -> None:
    token = jwt.encode(
        claims(user_metadata={"role": "service_role", "is_admin": True}), SECRET, algorithm="HS256"
    )
    assert verify(token).role == "authenticated"


def test_leeway() -> None:
    now = int(time.time())
    token = jwt.encode(claims(iat=now - 100, exp=now - 5), SECRET, algorithm="HS256")
    assert rejected(token) == "expired"
    assert verify(token, leeway=30).user_id == USER


@pytest.mark.parametrize(
    ("overrides", "reason", "options"),
    [
        ({"exp": int(time.time()) - 1}, "expired", {}),
        ({"exp": None}, "missing_claim", {}),
        ({"sub": None}, "missing_claim", {}),
        ({"role": None}, "missing_claim", {}),
        ({"aud": "somebody-else"}, "wrong_audience", {}),
        ({"aud": None}, "wrong_audience", {}),
        ({"iat": int(time.time()) + 3600}, "not_yet_valid", {}),
        ({"iss": "https://evil/auth/v1"}, "wrong_issuer", {"issuer": "https://good/auth/v1"}),
        ({}, "missing_claim", {"issuer": "https://good/auth/v1"}),
        ({"sub": "not-a-uuid"}, "invalid_claims", {}),
        ({"sub": 42}, "invalid_token", {}),
        ({"role": "anon"}, "forbidden_role", {}),
        ({"role": "service_role"}, "forbidden_role", {}),
    ],
)
def test_bad_claims_rejected(
    overrides: dict[str, Any], reason: str, options: dict[str, Any]
) -> None:
    token = jwt.encode(claims(**overrides), SECRET, algorithm="HS256")
    assert rejected(token, **options) == reason


def test_wider_allowed_roles_return_the_role() -> None:
    token = jwt.encode(claims(role="service_role"), SECRET, algorithm="HS256")
    principal = verify(token, allowed_roles=frozenset({"authenticated", "service_role"}))
    assert principal.role == "service_role"


def test_wrong_secret_and_tampering_rejected() -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert rejected(jwt.encode(claims(), "x" * 40, algorithm="HS256")) == "invalid_token"
    head, payload, sig = token.split(".")
    evil = b64(json.dumps(claims(sub=str(uuid.uuid4()))).encode())
    assert rejected(f"{head}.{evil}.{sig}") == "invalid_token"
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    assert rejected(f"{head}.{payload}.{flipped}") == "invalid_token"
    assert rejected(f"{head}.{payload}.") == "invalid_token"
    for garbage in ("x", "a.b.c", "", "....", token + "x"):
        with pytest.raises(AuthError):
            verify(garbage)


def test_alg_none_rejected(jwks: JWKSState, jwks_server: str, ec_key: SigningKey) -> None:
    jwks.keys = [ec_key.jwk]
    for header in ({"alg": "none", "typ": "JWT"}, {"alg": "none", "kid": ec_key.kid}):
        token = forge(header, claims(), lambda _: b"")
        assert rejected(token) == "invalid_token"
        assert rejected(token, jwks_url=jwks_server) == "invalid_token"
        assert rejected(token, hs256_secret=None, jwks_url=jwks_server) == "invalid_token"


def test_es256_and_rs256_via_jwks(
    jwks: JWKSState, jwks_server: str, ec_key: SigningKey, rsa_key: SigningKey
) -> None:
    jwks.keys = [ec_key.jwk, rsa_key.jwk]

    async def go(http: httpx.AsyncClient) -> list[Principal]:
        v = JWTVerifier(hs256_secret=SECRET, jwks_url=jwks_server, http=http)
        return [
            await v.verify(ec_key.sign(claims())),
            await v.verify(rsa_key.sign(claims())),
            await v.verify(ec_key.sign(claims())),
            await v.verify(jwt.encode(claims(), SECRET, algorithm="HS256")),
        ]

    principals = run(go)
    assert [p.user_id for p in principals] == [USER] * 4
    assert jwks.hits == 1  # cached


def test_asymmetric_tokens_rejected(
    jwks: JWKSState, jwks_server: str, ec_key: SigningKey, ec_key2: SigningKey, rsa_key: SigningKey
) -> None:
    jwks.keys = [ec_key.jwk, rsa_key.jwk]
    opts = {"jwks_url": jwks_server}
    assert rejected(ec_key.sign(claims(exp=int(time.time()) - 1)), **opts) == "expired"
    assert rejected(ec_key.sign(claims(aud="other")), **opts) == "wrong_audience"
    assert rejected(ec_key.sign(claims(role="anon")), **opts) == "forbidden_role"
    # signed by a key that is not published, but naming a published kid
    impostor = SigningKey(ec_key.kid, "ES256", ec_key2.private)
    assert rejected(impostor.sign(claims()), **opts) == "invalid_token"
    # tampered payload
    head, _, sig = ec_key.sign(claims()).split(".")
    evil = b64(json.dumps(claims(role="service_role")).encode())
    assert rejected(f"{head}.{evil}.{sig}", **opts) == "invalid_token"
    # the header may not pick another algorithm for a key: RS256 header naming the EC key ...
    token = jwt.encode(claims(), rsa_key.private, algorithm="RS256", headers={"kid": ec_key.kid})
    assert rejected(token, **opts) == "invalid_token"
    # ... nor ES384, nor RS512 on the RSA key
    p384 = ec.generate_private_key(ec.SECP384R1())
    token = jwt.encode(claims(), p384, algorithm="ES384", headers={"kid": ec_key.kid})
    assert rejected(token, **opts) == "invalid_token"
    token = jwt.encode(claims(), rsa_key.private, algorithm="RS512", headers={"kid": rsa_key.kid})
    assert rejected(token, **opts) == "invalid_token"
    # asymmetric token without kid
    token = jwt.encode(claims(), ec_key.private, algorithm="ES256")
    assert rejected(token, **opts) == "invalid_token"
    # asymmetric token when only the secret is configured
    assert rejected(ec_key.sign(claims())) == "invalid_token"


@pytest.mark.parametrize("key_name", ["ec_key", "rsa_key"])
def test_hs256_signed_with_public_key_rejected(
    request: pytest.FixtureRequest, jwks: JWKSState, jwks_server: str, key_name: str
) -> None:
    """Key confusion: HMAC over the token using the published public key as the secret."""
    key: SigningKey = request.getfixturevalue(key_name)
    jwks.keys = [key.jwk]
    signers = [hs256(key.public_pem), hs256(json.dumps(key.jwk).encode())]
    for signer in signers:
        for header in ({"alg": "HS256", "kid": key.kid}, {"alg": "HS256"}):
            token = forge({**header, "typ": "JWT"}, claims(), signer)
            assert rejected(token, jwks_url=jwks_server) == "invalid_token"
            assert rejected(token, hs256_secret=None, jwks_url=jwks_server) == "invalid_token"


def test_symmetric_keys_in_jwks_are_ignored(jwks: JWKSState, jwks_server: str) -> None:
    oct_key = {"kty": "oct", "kid": "hmac", "alg": "HS256", "k": b64(SECRET.encode())}
    jwks.keys = [oct_key]
    token = forge({"alg": "HS256", "kid": "hmac"}, claims(), hs256(SECRET.encode()))
    # HS256 never goes to the JWKS, and with no secret configured it is refused outright
    assert rejected(token, hs256_secret=None, jwks_url=jwks_server) == "invalid_token"
    token = forge({"alg": "HS512", "kid": "hmac"}, claims(), lambda d: hmac.new(
        SECRET.encode(), d, hashlib.sha512).digest())
    assert rejected(token, hs256_secret=None, jwks_url=jwks_server) == "unknown_key"


def test_unknown_kid_rejected_and_refetch_rate_limited(
    jwks: JWKSState, jwks_server: str, ec_key: SigningKey, ec_key2: SigningKey
) -> None:
    jwks.keys = [ec_key.jwk]
    clock = FakeClock()
    stranger = ec_key2.sign(claims())

    async def go(http: httpx.AsyncClient) -> None:
        v = JWTVerifier(
            hs256_secret=None, jwks_url=jwks_server, http=http,
            jwks_min_refresh_interval=30, clock=clock,
        )
        await v.verify(ec_key.sign(claims()))
        assert jwks.hits == 1
        with pytest.raises(AuthError) as info:  # the set was fetched just now: no refetch
            await v.verify(stranger)
        assert info.value.reason == "unknown_key"
        assert jwks.hits == 1
        clock.now += 30
        for _ in range(20):
            with pytest.raises(AuthError) as info:
                await v.verify(stranger)
            assert info.value.reason == "unknown_key"
            clock.now += 1  # 20 s in all: still inside the refresh interval
        assert jwks.hits == 2  # one refetch for the first unknown kid, none after
        for _ in range(50):  # made-up kids do not add fetches either
            made_up = SigningKey(uuid.uuid4().hex, "ES256", ec_key2.private)
            with pytest.raises(AuthError):
                await v.verify(made_up.sign(claims()))
        assert jwks.hits == 2
        await v.verify(ec_key.sign(claims()))  # known kid: served from cache
        assert jwks.hits == 2
        clock.now += 10  # interval over: one more refetch, still unknown
        with pytest.raises(AuthError) as info:
            await v.verify(stranger)
        assert info.value.reason == "unknown_key"
        assert jwks.hits == 3

    run(go)


def test_concurrent_unknown_kids_fetch_once(
    jwks: JWKSState, jwks_server: str, ec_key: SigningKey, ec_key2: SigningKey
) -> None:
    jwks.keys = [ec_key.jwk]

    async def go(http: httpx.AsyncClient) -> list[Any]:
        v = JWTVerifier(hs256_secret=None, jwks_url=jwks_server, http=http)
        token = ec_key2.sign(claims())
        return await asyncio.gather(*(v.verify(token) for _ in range(25)), return_exceptions=True)

    results = run(go)
    assert all(isinstance(r, AuthError) and r.reason == "unknown_key" for r in results)
    assert jwks.hits == 1


def test_key_rotation(
    jwks: JWKSState, jwks_server: str, ec_key: SigningKey, rsa_key: SigningKey
) -> None:
    jwks.keys = [ec_key.jwk]
    clock = FakeClock()

    async def go(http: httpx.AsyncClient) -> None:
        v = JWTVerifier(
            hs256_secret=None, jwks_url=jwks_server, http=http,
            jwks_ttl=600, jwks_min_refresh_interval=30, clock=clock,
        )
        await v.verify(ec_key.sign(claims()))
        clock.now += 60
        jwks.keys = [ec_key.jwk, rsa_key.jwk]  # new key published
        assert (await v.verify(rsa_key.sign(claims()))).user_id == USER
        assert jwks.hits == 2
        jwks.keys = [rsa_key.jwk]  # old key revoked: dropped once the cache is refreshed
        await v.verify(ec_key.sign(claims()))
        clock.now += 600
        # The expired set still answers at once; the refresh runs behind it.
        await v.verify(ec_key.sign(claims()))
        await v.refreshed()
        with pytest.raises(AuthError) as info:
            await v.verify(ec_key.sign(claims()))
        assert info.value.reason == "unknown_key"
        assert jwks.hits == 3
        await v.verify(rsa_key.sign(claims()))
        assert jwks.hits == 3

    run(go)


def test_jwks_unavailable(jwks: JWKSState, jwks_server: str, ec_key: SigningKey) -> None:
    jwks.keys = [ec_key.jwk]
    jwks.status = 503
    clock = FakeClock()

    async def go(http: httpx.AsyncClient) -> None:
        v = JWTVerifier(
            hs256_secret=None, jwks_url=jwks_server, http=http,
            jwks_ttl=600, jwks_min_refresh_interval=30, clock=clock,
        )
        with pytest.raises(AuthError) as info:
            await v.verify(ec_key.sign(claims()))
        assert info.value.reason == "jwks_unavailable"
        with pytest.raises(AuthError):  # no retry inside the interval
            await v.verify(ec_key.sign(claims()))
        assert jwks.hits == 1
        clock.now += 30
        jwks.status = 200
        await v.verify(ec_key.sign(claims()))
        assert jwks.hits == 2
        # once the cache expires and the endpoint fails, the last good set is kept
        clock.now += 601
        jwks.status = 500
        await v.verify(ec_key.sign(claims()))
        await v.refreshed()
        assert jwks.hits == 3
        await v.verify(ec_key.sign(claims()))
        # ... and so is it when the endpoint answers something that is not a JWKS
        clock.now += 30
        jwks.status, jwks.document = 200, {"error": "maintenance"}
        await v.verify(ec_key.sign(claims()))
        await v.refreshed()
        assert jwks.hits == 4
        await v.verify(ec_key.sign(claims()))

    run(go)


def test_configuration_checked() -> None:
    async def go(http: httpx.AsyncClient) -> None:
        with pytest.raises(ValueError):
            JWTVerifier(hs256_secret=None, jwks_url=None, http=http)
        with pytest.raises(ValueError):
            JWTVerifier(hs256_secret="too-short", jwks_url=None, http=http)

    run(go)
