"""What a request handler works with: the app's services, the caller, the client IP.

The service acts for a user exactly as PostgREST does: role ``authenticated``,
``request.jwt.claims`` = the verified JWT payload verbatim, ``request.headers`` = the request
headers (lower-cased names) with ``x-forwarded-for`` set to the real client IP, which the
SQL rate limits read. Credentials (Authorization, Cookie, Stripe-Signature) are left out of
``request.headers``: the claims already say who the caller is.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from starlette.requests import Request

from creditgate.auth import JWTVerifier, Principal, bearer_token
from creditgate.config import Settings
from creditgate.db import Database
from creditgate.storage import Storage

if TYPE_CHECKING:
    from creditgate.api.limits import HttpLimits
    from creditgate.api.waiter import GenerationNotifier

__all__ = ["Services", "authenticate", "client_ip", "db_headers", "services_of"]

_PRINCIPAL_KEY = "creditgate.principal"
#: Never forwarded to SQL: credentials, and client-IP headers a client could forge.
_DROPPED_HEADERS = frozenset(
    {
        "authorization",
        "cookie",
        "proxy-authorization",
        "stripe-signature",
        "forwarded",
        "x-real-ip",
        "x-client-ip",
        "x-forwarded-for",
        "cf-connecting-ip",
        "true-client-ip",
    }
)


@dataclass(frozen=True)
class Services:
    """Everything the lifespan owns; handlers reach it through :func:`services_of`."""

    settings: Settings
    db: Database
    http: httpx.AsyncClient
    storage: Storage
    verifier: JWTVerifier
    notifier: GenerationNotifier
    limits: HttpLimits


def services_of(request: Request) -> Services:
    services = getattr(request.app.state, "services", None)
    if not isinstance(services, Services):
        raise RuntimeError("the app's lifespan has not run")
    return services


def _valid_ip(value: str) -> str | None:
    value = value.strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_ip(scope: Mapping[str, Any], settings: Settings) -> str | None:
    """The real client IP: the socket peer, or (behind trusted proxies) what they report.

    With ``trusted_proxy`` on and ``trusted_proxy_hops = n``, the client is the n-th
    X-Forwarded-For entry from the right: each trusted proxy appends the address it saw, so
    entries further left were written by the client and are ignored.
    """
    client = scope.get("client")
    peer = _valid_ip(str(client[0])) if client else None
    if not settings.trusted_proxy:
        return peer
    values = [
        v.decode("latin-1")
        for k, v in scope.get("headers", [])
        if k.decode("latin-1").lower() == "x-forwarded-for"
    ]
    entries = [e.strip() for e in ",".join(values).split(",") if e.strip()]
    hops = max(1, settings.trusted_proxy_hops)
    if len(entries) >= hops:
        return _valid_ip(entries[-hops]) or peer
    return peer


def db_headers(request: Request, ip: str | None) -> dict[str, str]:
    """``request.headers`` for SQL, as PostgREST builds it, with the trusted client IP.

    Every client-IP header the client sent is dropped; the address :func:`client_ip` found
    (socket peer or trusted proxy) is set as ``cf-connecting-ip``, the header SQL reads by
    default (setting ``client_ip_header``), and as a one-entry ``x-forwarded-for``, so
    ``x-forwarded-for:1`` reads the same address.
    """
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        if key in _DROPPED_HEADERS:
            continue
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if ip is not None:
        headers["cf-connecting-ip"] = ip
        headers["x-forwarded-for"] = ip
    return headers


async def authenticate(request: Request, *, required: bool = True) -> Principal | None:
    """Verify the bearer token; None when absent and not ``required``; AuthError otherwise."""
    cached = request.scope.get(_PRINCIPAL_KEY)
    if isinstance(cached, Principal):
        return cached
    header = request.headers.get("authorization")
    if header is None and not required:
        return None
    token = bearer_token(header)
    principal = await services_of(request).verifier.verify(token)
    request.scope[_PRINCIPAL_KEY] = principal
    return principal
