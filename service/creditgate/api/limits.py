"""HTTP-layer limits, in the process's memory: what the SQL rate limits cannot see.

The database limits every new generation (per user and per client address). Two kinds of
request never reach those rules, so the service limits them here, before any SQL runs:

* **replays** -- a retry of a recorded request is answered by ``request_generation`` before
  any rate-limit check (DESIGN.md §3, "replays come first"). A retry of a key this process
  has already answered takes a token from the user's replay bucket; with none left it is a
  429 ``rate_limited`` (``details.scope = "replays"``) and costs no query. Replays the
  database reports for keys this process had not seen take a token afterwards.
* **anonymous routes** -- ``/v1/models``, ``/v1/quote`` and ``/media-files`` need no token,
  so they are limited per client address (the socket peer, or what the trusted proxy
  reports: :func:`creditgate.api.context.client_ip`); an unreadable address shares one
  bucket, so it never skips the limit.

Token buckets are written here rather than taken from a library (``limits``): the buckets
must be checked without awaiting anything, and their number must be bounded whatever a
client invents, which its in-memory storage does not do. Each table keeps at most
``max_keys`` entries and forgets the least recently used one (a forgotten bucket comes back
full, as it would be anyway after ``burst / rate`` seconds of quiet).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from creditgate.api.context import client_ip
from creditgate.api.errors import error_response
from creditgate.config import Settings

__all__ = [
    "ANONYMOUS_PREFIXES",
    "AnonymousLimitMiddleware",
    "HttpLimits",
    "RecentKeys",
    "TokenBuckets",
    "rate_limited",
]

#: Paths served without a token, limited per client address.
ANONYMOUS_PREFIXES = ("/v1/models", "/v1/quote", "/media-files/")
_MAX_KEYS = 100_000


class TokenBuckets:
    """One token bucket per key: ``burst`` tokens, refilled at ``rate`` per second."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = _MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = max(rate, 1e-9)
        self.burst = max(burst, 1)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def _level(self, key: Hashable, now: float) -> float:
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.rate)

    def take(self, key: Hashable) -> float:
        """Take a token: 0.0 when one was there, else the seconds until one will be."""
        now = self._clock()
        tokens = self._level(key, now)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


class RecentKeys:
    """The most recent ``max_keys`` (user, key) pairs seen, kept as digests (a bounded set;
    the least recently seen is forgotten)."""

    def __init__(self, max_keys: int = _MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._keys: OrderedDict[bytes, None] = OrderedDict()

    @staticmethod
    def _digest(key: tuple[str, str]) -> bytes:
        # 16 bytes per entry whatever the key's length (idempotency keys go up to 255).
        return hashlib.blake2b("\0".join(key).encode(), digest_size=16).digest()

    def __contains__(self, key: tuple[str, str]) -> bool:
        return self._digest(key) in self._keys

    def add(self, key: tuple[str, str]) -> None:
        key_digest = self._digest(key)
        self._keys[key_digest] = None
        self._keys.move_to_end(key_digest)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)

    def __len__(self) -> int:
        return len(self._keys)


@dataclass(frozen=True)
class HttpLimits:
    replays: TokenBuckets
    answered: RecentKeys
    anonymous: TokenBuckets

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            replays=TokenBuckets(settings.replay_rate, settings.replay_burst),
            answered=RecentKeys(),
            anonymous=TokenBuckets(settings.anon_rate, settings.anon_burst),
        )


def rate_limited(scope: str, wait: float) -> tuple[dict[str, object], dict[str, str]]:
    """The details and headers of a 429, shaped like the SQL's ``rate_limited`` DETAIL."""
    seconds = max(1, math.ceil(wait))
    return {"scope": scope, "retry_after_seconds": seconds}, {"Retry-After": str(seconds)}


def _bucket_of(address: str | None) -> str:
    """The bucket of a client address: IPv4 as is, IPv6 by its /64 (one subscriber's
    network, whose 2^64 addresses would otherwise each get a fresh bucket)."""
    if address is None:
        return "unknown"
    if ":" in address:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return address


class AnonymousLimitMiddleware:
    """Per-client-address token buckets in front of the routes that need no token."""

    def __init__(self, app: ASGIApp, settings: Settings, limits: HttpLimits) -> None:
        self.app = app
        self.settings = settings
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(ANONYMOUS_PREFIXES):
            wait = self.limits.anonymous.take(_bucket_of(client_ip(scope, self.settings)))
            if wait > 0:
                details, headers = rate_limited("ip", wait)
                response = error_response(
                    scope,
                    429,
                    "rate_limited",
                    "Too many requests from this address; retry later.",
                    details,
                    headers,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
