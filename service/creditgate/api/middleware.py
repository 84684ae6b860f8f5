"""Per-request context: request id, structured access log, metrics, and the last-resort 500.

A pure ASGI middleware (no BaseHTTPMiddleware), so the handler runs in the same task and
context: fields bound with :func:`creditgate.observability.bind` inside the handler are on
the access line too. ``X-Request-Id``: a sane incoming value is kept (so a proxy's id flows
through), anything else is replaced by a fresh one; it is on every response and log line.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from creditgate.api.context import client_ip
from creditgate.api.errors import REQUEST_ID_KEY, error_response
from creditgate.config import Settings
from creditgate.observability import HTTP_LATENCY, HTTP_REQUESTS, get_logger, http_labels

__all__ = ["RequestContextMiddleware"]

_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
log = get_logger("creditgate.http")


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"x-request-id":
            text = value.decode("latin-1").strip()
            return text if _REQUEST_ID.fullmatch(text) else None
    return None


def _route_template(scope: Scope) -> str | None:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope[REQUEST_ID_KEY] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            request_id=request_id, method=scope["method"], path=scope["path"]
        )
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                headers = MutableHeaders(scope=message)
                headers["X-Request-Id"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Logged with its traceback here; the client learns nothing but the request id.
            log.exception("unhandled_exception")
            if not response_started:
                status = 500
                response = error_response(scope, 500, "internal_error")
                await response(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            labels = http_labels(scope["method"], route, status)
            HTTP_REQUESTS.labels(*labels).inc()
            HTTP_LATENCY.labels(*labels).observe(elapsed)
            log.info(
                "request",
                route=route or "other",
                http_status=status,
                duration_ms=round(elapsed * 1000, 2),
                client_ip=client_ip(scope, self.settings),
            )
            structlog.contextvars.clear_contextvars()
