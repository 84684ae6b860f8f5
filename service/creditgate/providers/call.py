"""HTTP plumbing for one try of a job: requests, error mapping, polling and downloads.

A `Call` is created by the gateway for each attempt. It attaches the adapter's auth headers
only to URLs on the job's endpoint origin (so a key never leaks to a CDN or to a URL a
provider handed back), bounds every request by the attempt's deadline, maps HTTP failures
to `ProviderError` codes and redacts secrets from messages.

A provider is not trusted beyond its answers (docs/security.md, "Hostile providers"):

- every URL it hands back (status, result, output files) passes the outbound address policy
  (`creditgate.netpolicy`) after DNS resolution, and again on every redirect hop; the job's
  endpoint origin, configured by the operator, is trusted; route option `allow_local_urls`
  lets an explicitly local route (a Gradio app or CDN on the private network) through;
- every body is read through one byte cap (route option `max_download_bytes`), counted as
  the bytes arrive: JSON, raw images, SSE streams, downloads and error bodies alike;
- output media types come from the bytes, never from a declared type, and an output
  declared as an image that is not one fails the try (`invalid_output`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx

from creditgate.netpolicy import BlockedURL, NetPolicy, guarded_request, origin_of
from creditgate.providers.base import (
    MediaBlob,
    ProviderError,
    ProviderJob,
    declared_image,
    media_type,
)

DEFAULT_MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
# Error bodies are read this far at most: enough for any provider's error message.
ERROR_BODY_BYTES = 64 * 1024
MAX_REDIRECTS = 5
# Transient failures tolerated in a row while polling or downloading before the whole try
# fails: re-submitting a job costs money at the provider, re-reading its status does not.
POLL_TOLERANCE = 3
_TRANSIENT = frozenset({"server_error", "network", "rate_limited"})
# Longest provider text kept (for provider_calls and the logs), cut only after redaction.
MESSAGE_LIMIT = 1000
# Credentials a provider may echo back that are not in our key list (another tenant's,
# a token in a URL): redacted by shape as well.
_SECRET_SHAPES = re.compile(
    r"(?i)\b(?:bearer|key|token)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|\b(?:sk|hf|fal|ws|pk|rk)[-_][A-Za-z0-9_-]{16,}"
    r"|(?<=[?&])(?:key|token|api_key|apikey|signature|sig|x-amz-signature)=[^&\s\"']+"
)


def _origin(url: str) -> tuple[str, str, int | None]:
    try:
        return origin_of(url)
    except BlockedURL:
        return "", "", None


def redact(text: str, secrets: Sequence[str], limit: int | None = None) -> str:
    """Secrets (exact values, then credential-shaped tokens) replaced; then cut to `limit`.

    Redaction runs on the whole text before any truncation, so a secret cut at the limit
    cannot leave its first characters behind.
    """
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    text = _SECRET_SHAPES.sub("[redacted]", text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text


def _body_message(body: bytes) -> tuple[str, float | None]:
    """A human message from an error body, plus HF's `estimated_time` if present."""
    estimated: float | None = None
    try:
        parsed = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return body.decode("utf-8", "replace").strip(), None
    message: Any = parsed
    if isinstance(parsed, Mapping):
        est = parsed.get("estimated_time")
        if isinstance(est, int | float) and not isinstance(est, bool) and est >= 0:
            estimated = float(est)
        for key in ("error", "detail", "message"):
            if parsed.get(key):
                message = parsed[key]
                break
        if isinstance(message, Mapping) and message.get("message"):
            message = message["message"]
    text = message if isinstance(message, str) else json.dumps(message, default=str)
    return text.strip(), estimated


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # HTTP-date form: not worth parsing, backoff covers it
    return seconds if seconds >= 0 else None


def _rebuilt(resp: httpx.Response, body: bytes) -> httpx.Response:
    """A complete response holding the (already decoded, capped) body."""
    headers = [
        (k, v)
        for k, v in resp.headers.multi_items()
        if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(resp.status_code, headers=headers, content=body, request=resp.request)


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
        policy: NetPolicy | None = None,
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
        base = policy or NetPolicy(allow_local=job.options.get("allow_local_urls") is True)
        # The endpoint is the operator's choice; what the provider hands back is not.
        try:
            self.policy = base.with_trusted([self.endpoint]) if self.endpoint else base
        except BlockedURL:  # a malformed endpoint: its first request fails, normalized
            self.policy = base

    # --- building blocks ---------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.endpoint}/{path.lstrip('/')}"

    def remaining(self) -> float:
        return max(self._deadline - time.monotonic(), 0.001)

    def error(self, code: str, message: str, **kwargs: Any) -> ProviderError:
        return ProviderError(code, redact(message, self._secrets, MESSAGE_LIMIT), **kwargs)

    def _headers(self, url: str, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = dict(self._auth) if _origin(url) == self._origin else {}
        headers.update(extra or {})
        return headers

    def _where(self, method: str, url: str) -> str:
        return f"{method} {urlsplit(url).path or '/'}"

    def _raise_for(self, method: str, url: str, resp: httpx.Response, body: bytes) -> None:
        status = resp.status_code
        if 200 <= status < 300:
            return
        detail, estimated = _body_message(body)
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
        except BlockedURL as exc:
            raise self.error(
                "blocked_url", f"{where}: refused by the address policy: {exc}", retryable=False
            ) from exc
        except httpx.TooManyRedirects as exc:
            raise self.error("provider_failed", f"{where}: too many redirects") from exc
        except httpx.TimeoutException as exc:
            raise self.error("timeout", f"{where}: {type(exc).__name__}") from exc
        except httpx.UnsupportedProtocol as exc:
            raise self.error("provider_failed", f"{where}: unsupported URL") from exc
        except httpx.TransportError as exc:
            raise self.error("network", f"{where}: {type(exc).__name__}: {exc}") from exc
        except httpx.InvalidURL as exc:
            raise self.error("provider_failed", f"{where}: invalid URL") from exc

    @asynccontextmanager
    async def _open(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        redirects: int = 0,
        **kwargs: Any,
    ) -> AsyncIterator[httpx.Response]:
        """A streamed request through the address policy; non-2xx answers raise.

        Redirects are followed by netpolicy.guarded_request, one checked hop at a time; with
        `redirects=0` a redirect is an error (`provider_failed`), as for API calls.
        """
        async with self._transport_errors(method, url):
            resp = await guarded_request(
                self.http,
                method,
                url,
                policy=self.policy,
                headers=self._headers(url, headers),
                max_redirects=redirects,
                stream=True,
                timeout=self.remaining(),
                **kwargs,
            )
        try:
            self.last_status = resp.status_code
            if not 200 <= resp.status_code < 300:
                body = await self._read(resp, method, url, limit=ERROR_BODY_BYTES, cut=True)
                self._raise_for(method, url, resp, body)
            yield resp
        finally:
            await resp.aclose()

    async def _read(
        self,
        resp: httpx.Response,
        method: str,
        url: str,
        *,
        limit: int | None = None,
        cut: bool = False,
    ) -> bytes:
        """The body, counted as it arrives: over `limit` raises `too_large` (or, with
        `cut`, stops there and keeps what came)."""
        limit = self.max_download_bytes if limit is None else limit
        where = self._where(method, url)
        declared = resp.headers.get("content-length", "")
        if not cut and declared.isdigit() and int(declared) > limit:
            raise self.error("too_large", f"{where}: response of {declared} bytes over {limit}")
        chunks: list[bytes] = []
        size = 0
        async with self._transport_errors(method, url):
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    if cut:
                        chunks.append(chunk[: limit - (size - len(chunk))])
                        break
                    raise self.error("too_large", f"{where}: response over {limit} bytes")
                chunks.append(chunk)
        return b"".join(chunks)

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
        """One request; returns the 2xx response (body read under the cap) or raises a
        normalized ProviderError."""
        kwargs: dict[str, Any] = {}
        if json_body is not None:
            kwargs["json"] = json_body
        if content is not None:
            kwargs["content"] = content
        if files is not None:
            kwargs["files"] = files
        async with self._open(method, url, headers=headers, **kwargs) as resp:
            body = await self._read(resp, method, url)
        return _rebuilt(resp, body)

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

    async def lines(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None
    ) -> AsyncGenerator[str, None]:
        """The lines of a streamed response (SSE), under the same byte cap as any body.

        The cap counts every byte of the stream, so neither one endless line nor an endless
        run of heartbeats can outgrow it.
        """
        limit = self.max_download_bytes
        where = self._where(method, url)
        async with self._open(method, url, headers=headers) as resp:
            pending = b""
            size = 0
            async with self._transport_errors(method, url):
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise self.error("too_large", f"{where}: stream over {limit} bytes")
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    for raw in complete:
                        yield raw.removesuffix(b"\r").decode("utf-8", "replace")
            if pending:
                yield pending.removesuffix(b"\r").decode("utf-8", "replace")

    # --- outputs -----------------------------------------------------------------------------

    def blob(self, data: bytes, declared: str | None = None) -> MediaBlob:
        """Output bytes as a MediaBlob typed by the bytes; a declared image must be one."""
        if len(data) > self.max_download_bytes:
            raise self.error("too_large", f"output over {self.max_download_bytes} bytes")
        content_type = media_type(data)
        if content_type == "application/octet-stream":
            # Not an image or video format the service stores: HTML, SVG, text, a PDF...
            raise self.error(
                "invalid_output",
                f"output declared as {str(declared or 'nothing')[:100]!r} is not known media",
                retryable=False,
            )
        if declared_image(declared) and not content_type.startswith("image/"):
            raise self.error(
                "invalid_output",
                f"output declared as {str(declared)[:100]!r} is not an image",
                retryable=False,
            )
        return MediaBlob(data, content_type)

    def decode_base64(self, value: Any, declared: str | None = None) -> MediaBlob:
        """A base64 string (optionally a data: URI) as a MediaBlob."""
        if not isinstance(value, str):
            raise self.error("provider_failed", "expected a base64 string")
        payload = value
        if value.startswith("data:"):
            header, _, payload = value.partition(",")
            declared = header[5:].split(";", 1)[0] or declared
        if len(payload) // 4 * 3 > self.max_download_bytes:
            raise self.error("too_large", f"output over {self.max_download_bytes} bytes")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self.error("provider_failed", "invalid base64 output") from exc
        return self.blob(data, declared)

    async def download(self, url: Any, declared: str | None = None) -> MediaBlob:
        """Fetch one output URL (or decode a data: URI) within the attempt's deadline."""
        if not isinstance(url, str) or not url:
            raise self.error("provider_failed", "output without a URL")
        if url.startswith("data:"):
            return self.decode_base64(url, declared)
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise self.error("blocked_url", "output URL is not http(s)", retryable=False)
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
        async with self._open("GET", url, redirects=MAX_REDIRECTS) as resp:
            data = await self._read(resp, "GET", url)
            header = resp.headers.get("content-type")
        return self.blob(data, declared if declared_image(declared) else header)
