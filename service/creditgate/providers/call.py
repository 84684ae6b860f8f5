"""HTTP plumbing for one try of a job: requests, error mapping, polling and downloads.

A `Call` is created by the gateway for each attempt. It attaches the adapter's auth headers
only to URLs on the job's endpoint origin (so a key never leaks to a CDN or to a URL a
provider handed back), bounds every request by the attempt's deadline, maps HTTP failures
to `ProviderError` codes and redacts secrets from messages.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx

from creditgate.providers.base import MediaBlob, ProviderError, ProviderJob, media_type

DEFAULT_MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
# Transient failures tolerated in a row while polling or downloading before the whole try
# fails: re-submitting a job costs money at the provider, re-reading its status does not.
POLL_TOLERANCE = 3
_TRANSIENT = frozenset({"server_error", "network", "rate_limited"})
_MESSAGE_LIMIT = 300


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return text


def _body_message(resp: httpx.Response) -> tuple[str, float | None]:
    """A short human message from an error body, plus HF's `estimated_time` if present."""
    estimated: float | None = None
    try:
        body = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return resp.text[:_MESSAGE_LIMIT].strip(), None
    message: Any = body
    if isinstance(body, Mapping):
        est = body.get("estimated_time")
        if isinstance(est, int | float) and not isinstance(est, bool) and est >= 0:
            estimated = float(est)
        for key in ("error", "detail", "message"):
            if body.get(key):
                message = body[key]
                break
        if isinstance(message, Mapping) and message.get("message"):
            message = message["message"]
    text = message if isinstance(message, str) else json.dumps(message, default=str)
    return text[:_MESSAGE_LIMIT].strip(), estimated


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # HTTP-date form: not worth parsing, backoff covers it
    return seconds if seconds >= 0 else None


class Call:
    """HTTP access for one attempt of one job."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        job: ProviderJob,
        auth_headers: Mapping[str, str],
        secrets: Sequence[str],
        deadline: float,
        poll_interval: float,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
    ) -> None:
        self.http = http
        self.job = job
        self.endpoint = job.endpoint.rstrip("/")
        self.poll_interval = poll_interval
        self.max_download_bytes = max_download_bytes
        self.last_status: int | None = None
        self._auth = dict(auth_headers)
        self._secrets = tuple(secrets)
        self._deadline = deadline
        self._origin = _origin(self.endpoint)

    # --- building blocks ---------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.endpoint}/{path.lstrip('/')}"

    def remaining(self) -> float:
        return max(self._deadline - time.monotonic(), 0.001)

    def error(self, code: str, message: str, **kwargs: Any) -> ProviderError:
        return ProviderError(code, redact(message, self._secrets), **kwargs)

    def _headers(self, url: str, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = dict(self._auth) if _origin(url) == self._origin else {}
        headers.update(extra or {})
        return headers

    def _where(self, method: str, url: str) -> str:
        return f"{method} {urlsplit(url).path or '/'}"

    def _raise_for(self, method: str, url: str, resp: httpx.Response) -> None:
        status = resp.status_code
        if 200 <= status < 300:
            return
        detail, estimated = _body_message(resp)
        where = self._where(method, url)
        message = f"{where} -> HTTP {status}" + (f": {detail}" if detail else "")
        hint = _retry_after(resp)
        if estimated is not None:  # HF "model is currently loading"
            hint = estimated if hint is None else max(hint, estimated)
        if status == 429:
            code = "rate_limited"
        elif status in (401, 403):
            code = "unauthorized"
        elif status == 408:
            code = "timeout"
        elif status >= 500:
            code = "server_error"
        elif status >= 400:
            code = "bad_request"
        else:
            code = "provider_failed"  # unexpected redirect or informational status
        raise self.error(code, message, http_status=status, retry_after=hint)

    @asynccontextmanager
    async def _transport_errors(self, method: str, url: str) -> AsyncIterator[None]:
        where = self._where(method, url)
        try:
            yield
        except httpx.TimeoutException as exc:
            raise self.error("timeout", f"{where}: {type(exc).__name__}") from exc
        except httpx.UnsupportedProtocol as exc:
            raise self.error("provider_failed", f"{where}: unsupported URL") from exc
        except httpx.TransportError as exc:
            raise self.error("network", f"{where}: {type(exc).__name__}: {exc}") from exc
        except httpx.InvalidURL as exc:
            raise self.error("provider_failed", f"{where}: invalid URL") from exc

    # --- requests ----------------------------------------------------------------------------

    async def send(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        files: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One request; returns the 2xx response or raises a normalized ProviderError."""
        async with self._transport_errors(method, url):
            resp = await self.http.request(
                method,
                url,
                json=json_body,
                content=content,
                files=files,
                headers=self._headers(url, headers),
                timeout=self.remaining(),
                follow_redirects=False,
            )
        self.last_status = resp.status_code
        self._raise_for(method, url, resp)
        return resp

    async def send_json(self, method: str, url: str, **kwargs: Any) -> Any:
        resp = await self.send(method, url, **kwargs)
        return self.parse_json(resp, self._where(method, url))

    def parse_json(self, resp: httpx.Response, where: str) -> Any:
        try:
            return resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
            raise self.error("provider_failed", f"{where}: response is not JSON") from exc

    async def poll_json(self, url: str) -> Any:
        """GET a status URL, tolerating a few transient failures in a row."""
        failures = 0
        while True:
            try:
                return await self.send_json("GET", url)
            except ProviderError as exc:
                failures += 1
                if exc.code not in _TRANSIENT or failures >= POLL_TOLERANCE:
                    raise
            await self.pause()

    async def pause(self) -> None:
        await asyncio.sleep(min(self.poll_interval, self.remaining()))

    @asynccontextmanager
    async def stream(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """A streamed request (SSE); the 2xx response is yielded unread."""
        async with (
            self._transport_errors(method, url),
            self.http.stream(
                method,
                url,
                headers=self._headers(url, headers),
                timeout=self.remaining(),
                follow_redirects=False,
            ) as resp,
        ):
            self.last_status = resp.status_code
            if not 200 <= resp.status_code < 300:
                await resp.aread()
                self._raise_for(method, url, resp)
            yield resp

    # --- outputs -----------------------------------------------------------------------------

    def decode_base64(self, value: Any, declared: str | None = None) -> MediaBlob:
        """A base64 string (optionally a data: URI) as a MediaBlob."""
        if not isinstance(value, str):
            raise self.error("provider_failed", "expected a base64 string")
        payload = value
        if value.startswith("data:"):
            header, _, payload = value.partition(",")
            declared = header[5:].split(";", 1)[0] or declared
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self.error("provider_failed", "invalid base64 output") from exc
        return MediaBlob(data, media_type(data, declared))

    async def download(self, url: Any, declared: str | None = None) -> MediaBlob:
        """Fetch one output URL (or decode a data: URI) within the attempt's deadline."""
        if not isinstance(url, str) or not url:
            raise self.error("provider_failed", "output without a URL")
        if url.startswith("data:"):
            return self.decode_base64(url, declared)
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise self.error("provider_failed", "output URL is not http(s)")
        failures = 0
        while True:
            try:
                return await self._download_once(url, declared)
            except ProviderError as exc:
                failures += 1
                if exc.code not in _TRANSIENT or failures >= POLL_TOLERANCE:
                    raise
            await self.pause()

    async def _download_once(self, url: str, declared: str | None) -> MediaBlob:
        where = self._where("GET", url)
        async with (
            self._transport_errors("GET", url),
            self.http.stream(
                "GET",
                url,
                headers=self._headers(url, None),
                timeout=self.remaining(),
                follow_redirects=True,
            ) as resp,
        ):
            self.last_status = resp.status_code
            if not 200 <= resp.status_code < 300:
                await resp.aread()
                self._raise_for("GET", url, resp)
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > self.max_download_bytes:
                    raise self.error("provider_failed", f"{where}: output too large")
                chunks.append(chunk)
            data = b"".join(chunks)
            content_type = media_type(data, resp.headers.get("content-type"))
            if content_type == "application/octet-stream":
                content_type = media_type(data, declared)
            return MediaBlob(data, content_type)
