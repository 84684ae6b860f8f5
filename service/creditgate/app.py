"""The HTTP service: ``create_app(settings)`` builds the Starlette app.

The lifespan owns the psycopg pool (connecting like PostgREST, as the ``authenticator``
role), the shared ``httpx.AsyncClient`` (JWKS fetches), the storage client, the JWT verifier
and the LISTEN connection used to wait for generations. It runs no DDL: migrations are a
separate, explicit step (``creditgate migrate apply``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TypedDict

import anyio
import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from creditgate.api import OPERATIONS, Services
from creditgate.api.errors import exception_handlers
from creditgate.api.framework import to_route
from creditgate.api.limits import AnonymousLimitMiddleware, HttpLimits
from creditgate.api.middleware import RequestContextMiddleware
from creditgate.api.openapi import ExtraRoute, build_openapi
from creditgate.api.waiter import GenerationNotifier
from creditgate.auth import JWTVerifier
from creditgate.config import Settings
from creditgate.console import console_routes
from creditgate.db import Database
from creditgate.observability import configure_logging, get_logger, start_metrics_server
from creditgate.storage import LocalStorage, S3Storage
from creditgate.wiring import make_storage

__all__ = ["create_app"]

log = get_logger("creditgate.app")

_MEDIA_FILES = ExtraRoute(
    method="GET",
    path="/media-files/{key:path}",
    summary="Download a stored output through a signed URL (local storage only)",
    tag="media",
    operation={
        "operationId": "media_file",
        "description": "URLs come from GET /v1/generations/{id}; they expire.",
        "parameters": [
            {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "exp", "in": "query", "required": True, "schema": {"type": "integer"}},
            {"name": "sig", "in": "query", "required": True, "schema": {"type": "string"}},
        ],
        "responses": {
            "200": {"description": "The object", "content": {"*/*": {}}},
            "403": {"description": "Bad or expired signature"},
            "404": {"description": "No such object"},
            "429": {"description": "Too many requests from this address"},
        },
    },
)


class State(TypedDict):
    services: Services


def _verifier(settings: Settings, http: httpx.AsyncClient) -> JWTVerifier:
    return JWTVerifier(
        hs256_secret=settings.jwt_secret or None,
        jwks_url=settings.jwks_url or None,
        http=http,
        issuer=settings.jwt_issuer or None,
        leeway=settings.jwt_leeway,
        jwks_ttl=settings.jwks_ttl,
        jwks_timeout=settings.jwks_timeout,
        # Never wait longer than a key set's lifetime between two fetch attempts.
        jwks_min_refresh_interval=min(30.0, settings.jwks_ttl),
    )


def create_app(settings: Settings) -> Starlette:
    """The service's ASGI app. Serve it with uvicorn (``creditgate serve``)."""
    configure_logging(settings.log_level)
    storage = make_storage(settings)  # fail fast on bad storage settings
    routes: list[BaseRoute] = [to_route(op) for op in OPERATIONS]
    extra: list[ExtraRoute] = []
    if isinstance(storage, LocalStorage):
        routes.append(storage.route())
        extra.append(_MEDIA_FILES)
    routes.extend(console_routes())  # the web pages under /console (DESIGN §9)

    limits = HttpLimits.from_settings(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        db = Database(
            settings.service_database_url,
            min_size=settings.pool_min,
            max_size=settings.pool_max,
            timeout=settings.pool_timeout,
        )
        notifier = GenerationNotifier(settings.service_database_url)
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as http:
            services = Services(
                settings=settings,
                db=db,
                http=http,
                storage=storage,
                verifier=_verifier(settings, http),
                notifier=notifier,
                limits=limits,
            )
            await db.open()
            await notifier.start()
            app.state.services = services
            app.state.metrics_limiter = anyio.CapacityLimiter(1)  # one render at a time
            stop_metrics = (
                start_metrics_server(
                    settings.metrics_host, settings.metrics_port, settings.metrics_token
                )
                if settings.metrics_port
                else None
            )
            log.info("service_started", storage=settings.storage)
            try:
                yield {"services": services}
            finally:
                if stop_metrics is not None:
                    stop_metrics()
                await notifier.stop()
                await db.close()
                if isinstance(storage, S3Storage):
                    storage.close()
                log.info("service_stopped")

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestContextMiddleware, settings=settings),
            Middleware(AnonymousLimitMiddleware, settings=settings, limits=limits),
        ],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    app.state.openapi = build_openapi(OPERATIONS, extra)
    return app
