"""Supabase JWT verification (PyJWT) and a dev-only token minter.

A request carries ``Authorization: Bearer <Supabase access token>``. Two kinds of signing key
exist on a Supabase project, and either or both may be configured:

* the legacy shared secret: HS256 only;
* asymmetric signing keys published as a JWKS (``<project>/auth/v1/.well-known/jwks.json``):
  ES256 or RS256, selected by the token's ``kid``.

The token header only says *which key* to try (``alg: HS256`` -> the shared secret, anything
else -> the JWKS entry named by ``kid``). The algorithm that key verifies with comes from the
key itself (HS256 for the secret, the JWK's own ``alg``/curve for a JWKS key), so ``alg: none``,
an HS256 token "signed" with a public key's bytes, or an RS256 token naming an EC key all fail.

The verified payload is returned untouched in :attr:`Principal.claims`; the service passes it
verbatim to PostgreSQL as ``request.jwt.claims``, exactly as PostgREST does. Nothing here reads
``user_metadata`` (users can write it); authorization data lives in the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from jwt.exceptions import (
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAudienceError,
    InvalidIssuerError,
    MissingRequiredClaimError,
    PyJWKError,
    PyJWTError,
)

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "AuthError",
    "JWTVerifier",
    "Principal",
    "bearer_token",
    "mint_token",
]

log = logging.getLogger(__name__)

#: Algorithms accepted for keys taken from the JWKS. Symmetric keys are never taken from it.
ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "RS256"})
#: Claims every accepted token must carry.
_REQUIRED_CLAIMS = ("exp", "sub", "aud", "role")
#: Supabase requires the legacy JWT secret to be at least 32 characters.
_MIN_SECRET_LENGTH = 32
_JWKS_FETCH_TIMEOUT = 5.0


class AuthError(Exception):
    """The request is not authenticated; the app answers 401 (``reason`` goes in the body).

    Reasons: ``missing_token``, ``invalid_token`` (malformed, bad signature, disallowed
    algorithm), ``expired``, ``not_yet_valid``, ``wrong_audience``, ``wrong_issuer``,
    ``missing_claim``, ``invalid_claims``, ``forbidden_role``, ``unknown_key``,
    ``jwks_unavailable``.
    """

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Principal:
    """A verified caller. ``claims`` is the verified payload, for ``request.jwt.claims``."""

    user_id: str
    role: str
    claims: dict[str, Any]

    @property
    def is_anonymous(self) -> bool:
        """Supabase anonymous sign-ins are ``role = authenticated`` with this flag set."""
        return self.claims.get("is_anonymous") is True


def bearer_token(authorization_header: str | None) -> str:
    """Extract the token from an ``Authorization: Bearer <token>`` header value."""
    if not authorization_header:
        raise AuthError("missing_token")
    scheme, _, token = authorization_header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise AuthError("missing_token", "expected 'Authorization: Bearer <token>'")
    return token


class JWTVerifier:
    """Verify Supabase access tokens against the legacy HS256 secret and/or a JWKS.

    ``verify`` checks signature, ``exp`` (required), ``aud``, ``iss`` when configured, and
    that ``sub`` is a UUID (``auth.uid()`` casts it). It then requires ``role`` to be one of
    ``allowed_roles`` -- by default only ``authenticated``: the app's user routes must never
    act for ``anon`` (the publishable/anon key) or ``service_role`` (the service key), and
    they rely on this check rather than repeating it. A verifier built with wider
    ``allowed_roles`` returns the role in :attr:`Principal.role`, and a route using it must
    reject every role it does not serve.

    JWKS handling: fetched with the shared ``httpx.AsyncClient``, fresh for ``jwks_ttl``
    seconds; after that its keys stay in use while a refresh runs in the background, so a
    slow or hanging JWKS endpoint never stalls a request whose key is cached. A ``kid``
    missing from the cache waits for a refetch (key rotation), at most ``jwks_timeout``
    seconds, but at most one fetch happens per ``jwks_min_refresh_interval`` seconds and
    concurrent callers share it, so a flood of tokens with made-up ``kid`` values cannot turn
    into a flood of requests to the JWKS endpoint. If a refetch fails the previous key set
    keeps being used until the next allowed attempt.
    """

    def __init__(
        self,
        *,
        hs256_secret: str | None,
        jwks_url: str | None,
        http: httpx.AsyncClient,
        audience: str = "authenticated",
        issuer: str | None = None,
        leeway: int = 0,
        jwks_ttl: float = 600.0,
        jwks_timeout: float = _JWKS_FETCH_TIMEOUT,
        jwks_min_refresh_interval: float = 30.0,
        allowed_roles: frozenset[str] = frozenset({"authenticated"}),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not hs256_secret and not jwks_url:
            raise ValueError("configure hs256_secret, jwks_url, or both")
        if hs256_secret and len(hs256_secret) < _MIN_SECRET_LENGTH:
            raise ValueError(f"hs256_secret must be at least {_MIN_SECRET_LENGTH} characters")
        if jwks_ttl <= 0 or jwks_min_refresh_interval < 0:
            raise ValueError("jwks_ttl must be > 0 and jwks_min_refresh_interval >= 0")
        self._secret = hs256_secret or None
        self._jwks_url = jwks_url or None
        self._http = http
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway
        self._jwks_ttl = jwks_ttl
        self._jwks_timeout = jwks_timeout
        self._min_refresh = jwks_min_refresh_interval
        self._allowed_roles = allowed_roles
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._fetched_at = 0.0
        self._last_attempt: float | None = None
        self._refresh_task: asyncio.Task[None] | None = None

    async def verify(self, token: str) -> Principal:
        """Return the caller of a valid token; raise :class:`AuthError` otherwise."""
        if not token:
            raise AuthError("missing_token")
        try:
            header = jwt.get_unverified_header(token)
        except PyJWTError as exc:
            raise AuthError("invalid_token", str(exc)) from None

        key: str | jwt.PyJWK
        if header.get("alg") == "HS256":
            if self._secret is None:
                raise AuthError("invalid_token", "HS256 tokens are not accepted")
            key, algorithms = self._secret, ["HS256"]
        else:
            if self._jwks_url is None:
                raise AuthError("invalid_token", "only HS256 tokens are accepted")
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise AuthError("invalid_token", "asymmetric tokens must carry a kid")
            key = await self._jwks_key(kid)
            # The key fixes the algorithm; the header's alg must match it exactly.
            algorithms = [key.algorithm_name]

        claims = self._decode(token, key, algorithms)
        return self._principal(claims)

    def _decode(self, token: str, key: str | jwt.PyJWK, algorithms: list[str]) -> dict[str, Any]:
        require = [*_REQUIRED_CLAIMS, *(["iss"] if self._issuer is not None else [])]
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": require, "verify_iss": self._issuer is not None},
            )
        except ExpiredSignatureError:
            raise AuthError("expired") from None
        except ImmatureSignatureError:
            raise AuthError("not_yet_valid") from None
        except InvalidAudienceError:
            raise AuthError("wrong_audience") from None
        except InvalidIssuerError:
            raise AuthError("wrong_issuer") from None
        except MissingRequiredClaimError as exc:
            if exc.claim == "aud":
                raise AuthError("wrong_audience", "no aud claim") from None
            raise AuthError("missing_claim", exc.claim) from None
        except PyJWTError as exc:
            raise AuthError("invalid_token", str(exc)) from None
        return claims

    def _principal(self, claims: dict[str, Any]) -> Principal:
        sub, role = claims["sub"], claims["role"]
        try:
            uuid.UUID(sub)
        except (TypeError, ValueError, AttributeError):
            raise AuthError("invalid_claims", "sub must be a UUID") from None
        if not isinstance(role, str):
            raise AuthError("invalid_claims", "role must be a string")
        if role not in self._allowed_roles:
            raise AuthError("forbidden_role", role)
        return Principal(user_id=sub, role=role, claims=claims)

    async def _jwks_key(self, kid: str) -> jwt.PyJWK:
        keys = self._keys
        key = keys.get(kid) if keys is not None else None
        if key is not None:
            # A known key is used at once, even from a set past its TTL: the refresh runs in
            # the background, so a slow or hanging JWKS endpoint never holds up its callers.
            if self._clock() - self._fetched_at >= self._jwks_ttl:
                self._start_refresh()
            return key
        # Unknown kid (rotation) or nothing fetched yet: wait for a fetch, bounded by the
        # JWKS timeout and shared by every caller that needs it.
        task = self._start_refresh()
        if task is not None:
            await asyncio.shield(task)  # a caller that goes away does not cancel the fetch
        if self._keys is None:
            raise AuthError("jwks_unavailable")
        key = self._keys.get(kid)
        if key is None:
            raise AuthError("unknown_key", kid)
        return key

    async def refreshed(self) -> None:
        """Wait for the JWKS fetch in flight, if any (shutdown, tests)."""
        task = self._refresh_task
        if task is not None:
            await asyncio.shield(task)

    def _start_refresh(self) -> asyncio.Task[None] | None:
        """The fetch in flight, or a new one unless the last began under the minimum interval
        ago (then None: the current set is what there is)."""
        if self._refresh_task is not None and not self._refresh_task.done():
            return self._refresh_task
        now = self._clock()
        if self._last_attempt is not None and now - self._last_attempt < self._min_refresh:
            return None
        self._last_attempt = now
        self._refresh_task = asyncio.create_task(self._refresh(), name="creditgate-jwks")
        return self._refresh_task

    async def _refresh(self) -> None:
        assert self._jwks_url is not None
        try:
            # One deadline for the whole fetch: httpx's timeouts are per read, so an endpoint
            # that trickles bytes could otherwise hold a fetch open indefinitely.
            async with asyncio.timeout(self._jwks_timeout):
                response = await self._http.get(self._jwks_url, timeout=self._jwks_timeout)
                response.raise_for_status()
                keys = _parse_jwks(response.json())
        except Exception as exc:  # a background task: every failure must end here
            # Keep the previous set (if any); the next attempt waits for the refresh interval.
            log.warning("jwks fetch from %s failed: %s", self._jwks_url, type(exc).__name__)
            return
        self._keys = keys
        self._fetched_at = self._clock()


def _parse_jwks(document: Any) -> dict[str, jwt.PyJWK]:
    """Usable verification keys by kid: asymmetric, ES256/RS256, with a kid, for verifying.

    Raises ValueError for a document that is not a JWKS at all (the previous set is kept).
    """
    keys: dict[str, jwt.PyJWK] = {}
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError("not a JWKS document: no 'keys' list")
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid or entry.get("kty") not in ("EC", "RSA"):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        key_ops = entry.get("key_ops")
        if key_ops is not None and "verify" not in key_ops:
            continue
        try:
            key = jwt.PyJWK(entry)
        except PyJWKError as exc:
            log.warning("skipping jwks key %s: %s", kid, exc)
            continue
        if key.algorithm_name not in ASYMMETRIC_ALGORITHMS:
            log.warning("skipping jwks key %s: algorithm %s", kid, key.algorithm_name)
            continue
        keys[kid] = key
    return keys


def mint_token(
    secret: str,
    user_id: str,
    *,
    email: str | None = None,
    role: str = "authenticated",
    ttl_seconds: int = 3600,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Mint an HS256 access token shaped like Supabase Auth's, for local development and tests.

    ``extra`` is merged last, so it can add claims or override defaults (``iss``, ``exp``...).
    """
    if len(secret) < _MIN_SECRET_LENGTH:
        raise ValueError(f"secret must be at least {_MIN_SECRET_LENGTH} characters")
    uuid.UUID(user_id)  # sub must be a UUID, as auth.uid() casts it
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "aud": "authenticated",
        "role": role,
        "email": email or "",
        "phone": "",
        "iat": now,
        "exp": now + ttl_seconds,
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": now}],
        "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {},
    }
    if extra:
        claims.update(extra)
    return jwt.encode(claims, secret, algorithm="HS256")
