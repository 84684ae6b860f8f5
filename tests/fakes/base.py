"""Common machinery of the fake providers: request log, auth check and fault injection.

Every fake is a small Starlette app speaking one provider's documented wire API. Knobs
(`Faults`) apply to the fake's *gated* requests (the ones that start a generation):

    fail_times / fail_status   the first N gated requests fail with that status
    always_status              every gated request fails with that status
    hang_seconds               gated requests stall that long (to trigger client timeouts)
    hang_downloads             output file downloads stall that long
    empty                      succeed with no output (no images, blank text)
    fail_job                   accepted, but the job fails at the provider (polling APIs)
    pending_polls              polls answered "still running" before completion
    rate_limited_keys          these API keys always get 429
    retry_after                Retry-After header (seconds) on 429s
    loading_times              Hugging Face: first N requests get 503 "model loading"
    reply_text                 chat reply

Hostile provider knobs (docs/security.md, "Hostile providers"):

    output_bytes, output_type  the image bytes handed out instead of the tiny PNG, and the
                               content type declared for them (a lie, a bomb, HTML...)
    output_url                 the output URL handed back instead of the fake's own file URL
                               (an internal address, a metadata endpoint, file://...)
    status_url                 fal: the status URL handed back on submit
    redirect_files_to          output file downloads answer 302 to this URL
    huge_body                  the main response (HF image, fal/Wavespeed submit JSON, A1111
                               JSON, Gradio SSE) streams this many bytes
    huge_files                 output file downloads stream this many bytes
    error_text                 the message of injected failures (internal paths, echoed keys)

`keys` (constructor) is the set of accepted API keys; None disables the auth check.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.server import LiveServer

# A minimal MP4 header: enough for content sniffing ("ftyp" box), not a playable video.
FAKE_MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 16


def tiny_png(label: str = "fake", size: tuple[int, int] = (8, 8)) -> bytes:
    """A deterministic small PNG whose colour depends on `label`."""
    digest = uuid.uuid5(uuid.NAMESPACE_OID, label).bytes
    buf = io.BytesIO()
    Image.new("RGB", size, (digest[0], digest[1], digest[2])).save(buf, "PNG")
    return buf.getvalue()


def tiny_gif(frames: int = 3, label: str = "fake") -> bytes:
    digest = uuid.uuid5(uuid.NAMESPACE_OID, label).bytes
    images = [Image.new("RGB", (8, 8), (digest[i % 16], 40 * i % 256, 90)) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return buf.getvalue()


def wants_video(model: str, body: Any = None) -> bool:
    """Fakes answer with an MP4 for video models (by name) or requests with a duration."""
    if any(tag in model.lower() for tag in ("video", "t2v", "i2v")):
        return True
    if isinstance(body, dict):
        params = body.get("parameters")
        return "duration" in (params if isinstance(params, dict) else body)
    return False


@dataclass
class Faults:
    fail_times: int = 0
    fail_status: int = 500
    always_status: int | None = None
    hang_seconds: float = 0.0
    hang_downloads: float = 0.0
    empty: bool = False
    fail_job: bool = False
    pending_polls: int = 1
    rate_limited_keys: set[str] = field(default_factory=set)
    retry_after: float | None = None
    loading_times: int = 0
    reply_text: str = "Hello from the fake provider."
    output_bytes: bytes | None = None
    output_type: str | None = None
    output_url: str | None = None
    status_url: str | None = None
    redirect_files_to: str | None = None
    huge_body: int = 0
    huge_files: int = 0
    error_text: str | None = None


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    gated: bool

    def json(self) -> Any:
        return json.loads(self.body)


class FakeProvider:
    """Base class; subclasses define `routes()` and the auth header convention."""

    name: ClassVar[str] = "fake"
    auth_header: ClassVar[str] = "authorization"
    auth_scheme: ClassVar[str | None] = "Bearer"  # None: the header holds the bare key

    def __init__(
        self, *, keys: Iterable[str] | None = None, file_host: str | None = None, **faults: Any
    ) -> None:
        self.keys = set(keys) if keys is not None else None
        # Host name used in output file URLs: e.g. "localhost" gives the files another
        # origin than the API (http://127.0.0.1:PORT), like a provider's CDN.
        self.file_host = file_host
        self.faults = Faults(**faults)
        self.requests: list[Recorded] = []
        self.outputs: list[bytes] = []  # media bytes handed out, in order
        self.files: dict[str, tuple[bytes, str]] = {}
        self.streamed = 0  # bytes of huge bodies actually sent (the client may hang up early)
        self.url = ""
        self._gated = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: LiveServer | None = None
        self.app = Starlette(routes=self.routes())

    # --- lifecycle ---------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def start(self) -> str:
        self._server = LiveServer(self.app)
        self.url = self._server.start()
        return self.url

    def stop(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> FakeProvider:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- inspection --------------------------------------------------------------------------

    @property
    def gated_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.gated]

    def keys_seen(self) -> list[str | None]:
        """The API key of each gated request, in order."""
        return [self._key(r.headers) for r in self.gated_requests]

    # --- helpers for subclasses --------------------------------------------------------------

    def _key(self, headers: dict[str, str]) -> str | None:
        value = headers.get(self.auth_header)
        if value is None:
            return None
        if self.auth_scheme is None:
            return value
        scheme, _, key = value.partition(" ")
        return key if scheme == self.auth_scheme and key else None

    async def _record(self, request: Request, gated: bool) -> Recorded:
        body = await request.body()
        rec = Recorded(request.method, request.url.path, dict(request.headers), body, gated)
        request.state.recorded = rec
        with self._lock:
            self.requests.append(rec)
        return rec

    def error(self, status: int, message: str) -> Response:
        """The provider's error body; subclasses override for their own shape."""
        return JSONResponse({"error": message}, status_code=status)

    async def check(self, request: Request, *, gated: bool = False) -> Response | None:
        """Record the request, check its key and, for gated requests, inject faults."""
        rec = await self._record(request, gated)
        key = self._key(rec.headers)
        if self.keys is not None and key not in self.keys:
            return self.error(401, "invalid or missing credentials")
        if not gated:
            return None
        f = self.faults
        with self._lock:
            self._gated += 1
            number = self._gated
        if key is not None and key in f.rate_limited_keys:
            headers = {"Retry-After": f"{f.retry_after:g}"} if f.retry_after is not None else {}
            resp = self.error(429, "rate limit exceeded for this key")
            resp.headers.update(headers)
            return resp
        if f.always_status is not None:
            return self.error(
                f.always_status, f.error_text or f"injected failure {f.always_status}"
            )
        if number <= f.fail_times:
            return self.error(f.fail_status, f.error_text or f"injected failure {f.fail_status}")
        if f.hang_seconds:
            await self._hang(f.hang_seconds)
        return None

    async def _hang(self, seconds: float) -> None:
        # Sleep in slices so stop() (another thread) can end the hang without waiting it out.
        for _ in range(max(int(seconds / 0.02), 1)):
            if self._closing.is_set():
                return
            await asyncio.sleep(0.02)

    def image(self, label: str) -> tuple[bytes, str]:
        """The image this fake hands out: a tiny PNG, or the hostile `output` bytes."""
        if self.faults.output_bytes is not None:
            return self.faults.output_bytes, self.faults.output_type or "image/png"
        return tiny_png(label), "image/png"

    def huge(self, size: int, prefix: bytes = b"", media_type: str = "image/png") -> Response:
        """A streamed body of `size` bytes (prefix, then filler) that counts what it sent."""

        async def chunks() -> Any:
            sent = 0
            piece = b"A" * 65536
            if prefix:
                yield prefix
                sent = len(prefix)
            while sent < size:
                part = piece[: size - sent]
                sent += len(part)
                with self._lock:
                    self.streamed = sent
                yield part

        return StreamingResponse(chunks(), media_type=media_type)

    def handed_url(self, url: str) -> str:
        return self.faults.output_url or url

    def add_file(self, data: bytes, content_type: str, suffix: str) -> str:
        """Store an output file; returns its download URL (GET /files/{name}, no auth)."""
        name = f"{uuid.uuid4().hex}.{suffix}"
        with self._lock:
            self.files[name] = (data, content_type)
            self.outputs.append(data)
        base = self.url.replace("127.0.0.1", self.file_host) if self.file_host else self.url
        return f"{base}/files/{name}"

    async def serve_file(self, request: Request) -> Response:
        await self._record(request, False)
        if self.faults.hang_downloads:
            await self._hang(self.faults.hang_downloads)
        if self.faults.redirect_files_to:
            return RedirectResponse(self.faults.redirect_files_to, status_code=302)
        if self.faults.huge_files:
            return self.huge(self.faults.huge_files, tiny_png("huge")[:33])
        found = self.files.get(request.path_params["name"])
        if found is None:
            return self.error(404, "no such file")
        return Response(found[0], media_type=found[1])

    def file_route(self) -> Route:
        return Route("/files/{name}", self.serve_file, methods=["GET"])
