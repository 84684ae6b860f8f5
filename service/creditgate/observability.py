"""Structured JSON logs (structlog) and Prometheus metrics for the service and the workers.

Logs: one JSON object per line on stderr. Request-scoped fields (``request_id``, ``user_id``,
``generation_id``, ``idempotency_key``, ``model``, ``cost``, ``status``...) are bound with
:func:`bind` into structlog's context variables, so every line logged while handling a
request carries them; the access line written at the end of the request carries them too.

Metrics live in one module-level :data:`REGISTRY` served at ``/metrics``. Import the metric
objects instead of creating new ones (a name can be registered only once per registry):

* ``HTTP_REQUESTS`` / ``HTTP_LATENCY`` -- labels ``method`` (a standard method, else
  ``other``), ``route`` (the route template, never the raw path, so ids do not explode
  cardinality; ``other`` when no route matched), ``status``. Every label value is drawn from
  a bounded set: a client can add no series (see :func:`http_labels`).
* ``GENERATIONS_CREATED`` -- labels ``model``, ``status``: new (non-replayed) generations.
* ``GENERATION_REJECTIONS`` -- label ``code``: requests refused by SQL
  (``insufficient_credits``, ``rate_limited``...); no model label, as the id is client input.
* ``PROVIDER_LATENCY`` -- histogram, labels ``provider``, ``kind``, ``outcome``
  (``succeeded``/``failed``), seconds per provider attempt.
* ``PROVIDER_ERRORS`` -- labels ``provider``, ``code`` (normalized provider error code).
* ``GENERATIONS_SETTLED`` -- labels ``model``, ``status`` (final or re-queued status
  returned by ``service_settle_generation``).
* ``STRIPE_EVENTS`` -- labels ``type`` (known types, else ``other``), ``outcome``.
"""

from __future__ import annotations

import hmac
import logging
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    make_wsgi_app,
)
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

__all__ = [
    "GENERATIONS_CREATED",
    "GENERATIONS_SETTLED",
    "GENERATION_REJECTIONS",
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "METRICS_CONTENT_TYPE",
    "PROVIDER_ERRORS",
    "PROVIDER_LATENCY",
    "REGISTRY",
    "STRIPE_EVENTS",
    "bind",
    "configure_logging",
    "get_logger",
    "http_labels",
    "metrics_token_ok",
    "render_metrics",
    "start_metrics_server",
]

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_PROVIDER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)

HTTP_REQUESTS = Counter(
    "creditgate_http_requests_total",
    "HTTP requests handled, by route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "creditgate_http_request_duration_seconds",
    "HTTP request latency, by route template and status.",
    ["method", "route", "status"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
GENERATIONS_CREATED = Counter(
    "creditgate_generations_created_total",
    "Generations created (charged) through the HTTP API; replays are not counted.",
    ["model", "status"],
    registry=REGISTRY,
)
GENERATION_REJECTIONS = Counter(
    "creditgate_generation_rejections_total",
    "Generation requests refused by the database, by error code.",
    ["code"],
    registry=REGISTRY,
)
PROVIDER_LATENCY = Histogram(
    "creditgate_provider_latency_seconds",
    "Latency of one provider attempt.",
    ["provider", "kind", "outcome"],
    buckets=_PROVIDER_BUCKETS,
    registry=REGISTRY,
)
PROVIDER_ERRORS = Counter(
    "creditgate_provider_errors_total",
    "Failed provider attempts, by normalized error code.",
    ["provider", "code"],
    registry=REGISTRY,
)
GENERATIONS_SETTLED = Counter(
    "creditgate_generations_settled_total",
    "Generations settled by workers, by resulting status.",
    ["model", "status"],
    registry=REGISTRY,
)
STRIPE_EVENTS = Counter(
    "creditgate_stripe_events_total",
    "Stripe webhook deliveries, by event type and outcome.",
    ["type", "outcome"],
    registry=REGISTRY,
)

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


#: Methods counted under their own name; any other becomes ``other``.
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def http_labels(method: str, route: str | None, status: int) -> tuple[str, str, str]:
    """Bounded ``(method, route, status)`` label values for the HTTP metrics.

    ``route`` is a route template of the app (or None when nothing matched): the caller
    never passes a raw path. Invented methods become ``other``, so no request can create a
    series.
    """
    return (
        method if method in _HTTP_METHODS else "other",
        route or "other",
        str(status) if 100 <= status <= 599 else "other",
    )


def render_metrics() -> bytes:
    """The Prometheus text exposition of :data:`REGISTRY` (blocking: call it off the loop)."""
    return generate_latest(REGISTRY)


def metrics_token_ok(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <token>`` (constant time)."""
    if not token:
        return True
    expected = f"Bearer {token}".encode()
    return hmac.compare_digest((authorization or "").strip().encode("latin-1", "replace"), expected)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _guarded(app: Callable[..., Iterable[bytes]], token: str) -> Callable[..., Iterable[bytes]]:
    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        if not metrics_token_ok(environ.get("HTTP_AUTHORIZATION"), token):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")],
            )
            return [b"unauthorized\n"]
        return app(environ, start_response)

    return guarded


def start_metrics_server(host: str, port: int, token: str = "") -> Callable[[], None]:
    """Serve ``/metrics`` of :data:`REGISTRY` on ``host:port`` in a thread of its own.

    prometheus_client's WSGI app behind its threading server (as ``start_http_server`` does),
    wrapped to require ``Authorization: Bearer <token>`` when a token is given. Returns a
    function that stops the server.
    """
    app = _guarded(make_wsgi_app(REGISTRY), token)
    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="creditgate-metrics", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


_configured = False


class _StderrHandler(logging.StreamHandler[Any]):
    """Writes to whatever ``sys.stderr`` is at emit time (test capture, redirection)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: str = "info") -> None:
    """Send structlog and stdlib logging to stderr as one JSON object per line.

    Idempotent; a later call only changes the level.
    """
    global _configured
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if not _configured:
        structlog.configure(
            processors=[
                *shared,
                structlog.processors.StackInfoRenderer(),
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=True,
        )
        formatter = structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.dict_tracebacks,
                structlog.processors.JSONRenderer(),
            ],
        )
        handler = _StderrHandler()
        handler.setFormatter(formatter)
        handler.set_name("creditgate-json")
        root = logging.getLogger()
        root.handlers = [h for h in root.handlers if h.get_name() != "creditgate-json"]
        root.addHandler(handler)
        # uvicorn's own handlers would print plain text; route its records through ours.
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logger = logging.getLogger(name)
            logger.handlers = []
            logger.propagate = True
        logging.getLogger("uvicorn.access").disabled = True  # the service logs each request
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per JWKS fetch is noise
        _configured = True
    logging.getLogger().setLevel(numeric)


def get_logger(name: str = "creditgate") -> Any:
    """A structlog logger; its lines carry every field bound with :func:`bind`."""
    return structlog.stdlib.get_logger(name)


def bind(**fields: Any) -> None:
    """Bind fields (``generation_id``, ``model``, ``cost``...) to the current request's logs."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in fields.items() if v is not None})
