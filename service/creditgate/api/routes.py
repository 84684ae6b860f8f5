"""The HTTP API (DESIGN.md §6). Each handler validates, calls one SQL function, maps nothing.

Money never moves here: prices, charges, refunds and grants are computed by the database.
Handlers bind the fields a log line needs (generation id, model, idempotency key, cost,
status) and count what the metrics need.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import anyio
import anyio.to_thread
from psycopg.types.json import Jsonb
from starlette.responses import Response

from creditgate.api import queries, schemas
from creditgate.api.errors import error_response, invalid
from creditgate.api.framework import Ctx, Header, Operation, json, read_body
from creditgate.api.limits import rate_limited
from creditgate.api.waiter import TERMINAL, wait_for_terminal
from creditgate.auth import AuthError
from creditgate.db import ApiError, Arg
from creditgate.observability import (
    GENERATION_REJECTIONS,
    GENERATIONS_CREATED,
    METRICS_CONTENT_TYPE,
    bind,
    get_logger,
    metrics_token_ok,
    render_metrics,
)
from creditgate.ops_status import refresh_gauges as refresh_ops_gauges
from creditgate.stripe_webhooks import StripeSignatureError, handle_event, verify_event

__all__ = ["OPERATIONS"]

log = get_logger("creditgate.api")

IDEMPOTENCY_KEY = Header(
    "Idempotency-Key",
    "Unique per logical request (e.g. a UUID). Retrying with the same key and body returns "
    "the original result without charging again; the same key with another body is a 409.",
)
_SETTING_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _not_found(kind: str, object_id: UUID) -> ApiError:
    return ApiError(
        404,
        "not_found",
        "Check the id; it may not exist or not be yours.",
        {"object": kind, "id": str(object_id)},
    )


# --- public -------------------------------------------------------------------------------


async def list_models(ctx: Ctx) -> Response:
    """Enabled models and LoRAs with their pricing inputs and limits (no provider routes)."""
    return json(await queries.models(ctx.services.db, ctx.headers))


async def quote(ctx: Ctx) -> Response:
    """Price a request exactly as POST /v1/generations would charge it. Token optional."""
    body = ctx.body(schemas.QuoteRequest)
    bind(model=body.model_id)
    result = await ctx.call(
        "quote",
        {"model_id": Arg(body.model_id, "text"), "params": Arg(Jsonb(body.params), "jsonb")},
    )
    return json(result)


# --- generations --------------------------------------------------------------------------


async def _generation_detail(ctx: Ctx, generation_id: UUID) -> dict[str, Any]:
    generation = await queries.generation(
        ctx.services.db, ctx.user.claims, ctx.headers, generation_id
    )
    if generation is None:
        raise _not_found("generation", generation_id)
    storage, ttl = ctx.services.storage, ctx.services.settings.signed_url_ttl
    for media in generation["media"]:
        gone = bool(media.pop("purged", False)) or bool(media.get("deleted"))
        media["url"] = None if gone else await storage.signed_url(media["key"], ttl)
        media["url_expires_in"] = None if gone else ttl
    return generation


async def create_generation(ctx: Ctx) -> Response:
    """Price, charge and queue a generation in one database transaction.

    201 when created, 200 when the Idempotency-Key replays an earlier request (no new
    charge). With ``?wait=<seconds>`` the response waits (up to a server cap) for the
    generation to finish and includes it with signed media URLs; a user with too many open
    waits (or a process with too many) gets that answer at once, with the current state.
    Retries of a key this process answered are limited per user (429 ``rate_limited``,
    scope ``replays``): replays skip the database's rate limits.
    """
    body = ctx.body(schemas.GenerationRequest)
    wait = ctx.query(schemas.WaitQuery).wait
    key = ctx.header(IDEMPOTENCY_KEY.name)
    bind(model=body.model_id, idempotency_key=key)
    limits, settings = ctx.services.limits, ctx.services.settings
    user_id = ctx.user.user_id
    answered = (user_id, key) in limits.answered
    if answered:  # a retry of a request this process answered: a replay, limited here
        retry = limits.replays.take(user_id)
        if retry > 0:
            details, headers = rate_limited("replays", retry)
            log.info("replay_rate_limited")
            raise ApiError(
                429, "rate_limited", "Too many retries of one request.", details, None, headers
            )
    try:
        result = await ctx.call(
            "request_generation",
            {
                "model_id": Arg(body.model_id, "text"),
                "params": Arg(Jsonb(body.params), "jsonb"),
                "idempotency_key": Arg(key, "text"),
            },
        )
    except ApiError as exc:
        GENERATION_REJECTIONS.labels(exc.code).inc()
        log.info("generation_rejected", code=exc.code, details=exc.details)
        raise
    generation_id = UUID(str(result["generation_id"]))
    replayed = result.get("replayed") is True
    if replayed and not answered:
        limits.replays.take(user_id)
    limits.answered.add((user_id, key))
    bind(generation_id=str(generation_id), cost=result.get("cost"), status=result.get("status"))
    if not replayed:
        GENERATIONS_CREATED.labels(body.model_id, str(result.get("status"))).inc()
    log.info("generation_requested", replayed=replayed)
    if wait is not None:
        timeout = min(wait, settings.wait_max_seconds)
        if result.get("status") not in TERMINAL and timeout > 0:
            notifier = ctx.services.notifier
            with notifier.wait_slot(
                user_id, per_user=settings.wait_per_user, max_open=settings.wait_max_open
            ) as slot:
                if slot:  # else too many open waits: answer now with the current state
                    await wait_for_terminal(
                        notifier,
                        generation_id,
                        lambda: queries.generation_status(
                            ctx.services.db, ctx.user.claims, ctx.headers, generation_id
                        ),
                        timeout,
                    )
                else:
                    log.info("wait_refused", open_waits_capped=True)
        detail = await _generation_detail(ctx, generation_id)
        result = {**result, "status": detail["status"], "generation": detail}
        bind(status=detail["status"])
    return json(result, status=200 if replayed else 201)


async def list_generations(ctx: Ctx) -> Response:
    """The caller's generations, newest first; pass next_cursor as ?before= for more."""
    query = ctx.query(schemas.GenerationsQuery)
    page = await queries.generations_page(
        ctx.services.db, ctx.user.claims, ctx.headers, limit=query.limit, before=query.before
    )
    return json(page)


async def get_generation(ctx: Ctx) -> Response:
    """One of the caller's generations with its media and signed, expiring URLs."""
    generation_id = ctx.path_uuid()
    bind(generation_id=str(generation_id))
    return json(await _generation_detail(ctx, generation_id))


async def cancel_generation(ctx: Ctx) -> Response:
    """Cancel a queued generation; the charge is refunded in full (409 once running)."""
    generation_id = ctx.path_uuid()
    bind(generation_id=str(generation_id))
    result = await ctx.call("cancel_generation", {"generation_id": Arg(generation_id, "uuid")})
    return json(result)


async def save_media(ctx: Ctx) -> Response:
    """Keep a media item beyond the temporary-media TTL."""
    media_id = ctx.path_uuid()
    bind(media_id=str(media_id))
    return json(await ctx.call("save_media", {"media_id": Arg(media_id, "uuid")}))


async def delete_media(ctx: Ctx) -> Response:
    """Delete a media item; its stored object is purged by the cleanup job."""
    media_id = ctx.path_uuid()
    bind(media_id=str(media_id))
    return json(await ctx.call("delete_media", {"media_id": Arg(media_id, "uuid")}))


# --- account ------------------------------------------------------------------------------


async def get_balance(ctx: Ctx) -> Response:
    """Balance, spendable credits, plan, credits expiring soon, today's usage and cap."""
    return json(await ctx.call("get_balance"))


async def list_ledger(ctx: Ctx) -> Response:
    """The caller's ledger entries, newest first; pass next_cursor as ?before= for more."""
    query = ctx.query(schemas.LedgerQuery)
    page = await queries.ledger_page(
        ctx.services.db, ctx.user.claims, ctx.headers, limit=query.limit, before=query.before
    )
    return json(page)


# --- admin --------------------------------------------------------------------------------


async def admin_add_credits(ctx: Ctx) -> Response:
    """Add credits to a user (admin_recharge). 201 when applied, 200 on a key replay."""
    body = ctx.body(schemas.CreditsRequest)
    key = ctx.header(IDEMPOTENCY_KEY.name)
    bind(idempotency_key=key, target_user_id=str(body.user_id), amount=body.amount)
    result = await ctx.call(
        "admin_add_credits",
        {
            "user_id": Arg(body.user_id, "uuid"),
            "amount": Arg(body.amount, "bigint"),
            "reason": Arg(body.reason, "text"),
            "idempotency_key": Arg(key, "text"),
        },
    )
    log.info("admin_add_credits")
    replayed = isinstance(result, dict) and result.get("replayed") is True
    return json(result, status=200 if replayed else 201)


async def admin_set_setting(ctx: Ctx) -> Response:
    """Set an app setting (maintenance_mode, signup_bonus, plan caps, media TTL...)."""
    key = ctx.request.path_params["key"]
    if not _SETTING_KEY.fullmatch(key):
        raise invalid("key", "not a setting name")
    body = ctx.body(schemas.SettingUpdate)
    bind(setting=key)
    result = await ctx.call(
        "admin_set_setting", {"key": Arg(key, "text"), "value": Arg(Jsonb(body.value), "jsonb")}
    )
    log.info("admin_set_setting")
    return json(result)


async def admin_set_model(ctx: Ctx) -> Response:
    """Enable or disable a model."""
    model_id = ctx.request.path_params["id"]
    if not re.fullmatch(schemas.MODEL_ID, model_id):
        raise invalid("id", "not a model id")
    body = ctx.body(schemas.ModelUpdate)
    bind(model=model_id)
    result = await ctx.call(
        "admin_set_model_enabled",
        {"model_id": Arg(model_id, "text"), "enabled": Arg(body.enabled, "boolean")},
    )
    log.info("admin_set_model_enabled", enabled=body.enabled)
    return json(result)


async def admin_stats(ctx: Ctx) -> Response:
    """Users, generations by status/kind/model/day, credit flows, provider failure rates."""
    since = ctx.query(schemas.StatsQuery).since
    args = {"since": Arg(since, "timestamptz")} if since is not None else {}
    return json(await ctx.call("admin_stats", args))


# --- webhooks -----------------------------------------------------------------------------


async def stripe_webhook(ctx: Ctx) -> Response:
    """Stripe events, verified by their Stripe-Signature (see creditgate.stripe_webhooks)."""
    settings = ctx.services.settings
    if not settings.stripe_webhook_secret:
        return error_response(ctx.request.scope, 503, "unavailable", "Stripe is not configured.")
    try:
        event = verify_event(
            await read_body(ctx.request, settings.max_body_bytes),
            ctx.request.headers.get("stripe-signature"),
            settings.stripe_webhook_secret,
            settings.stripe_tolerance,
        )
    except StripeSignatureError as exc:
        log.warning("stripe_signature_rejected", reason=str(exc))
        raise invalid("Stripe-Signature", "signature verification failed") from None
    return json(await handle_event(ctx.services.db, event))


# --- operations ---------------------------------------------------------------------------


async def healthz(ctx: Ctx) -> Response:
    """The process is up."""
    return json({"status": "ok"})


async def readyz(ctx: Ctx) -> Response:
    """The database is reachable (503 otherwise)."""
    if await ctx.services.db.ping():
        return json({"status": "ready"})
    return error_response(ctx.request.scope, 503, "unavailable", headers={"Retry-After": "1"})


async def metrics(ctx: Ctx) -> Response:
    """Prometheus metrics (text exposition format).

    Not served here when a metrics listener of its own is configured; bearer token required
    when one is configured. Rendered in a worker thread, one scrape at a time, so a large
    registry never holds up the event loop.
    """
    settings = ctx.services.settings
    if settings.metrics_port:
        raise ApiError(404, "not_found", "No such resource.")
    if not metrics_token_ok(ctx.request.headers.get("authorization"), settings.metrics_token):
        raise AuthError("invalid_token", "metrics token")
    await refresh_ops_gauges(ctx.services.db)
    limiter = ctx.request.app.state.metrics_limiter
    body = await anyio.to_thread.run_sync(render_metrics, limiter=limiter)
    return Response(body, media_type=METRICS_CONTENT_TYPE)


async def openapi(ctx: Ctx) -> Response:
    """This document."""
    return json(ctx.request.app.state.openapi)


_E = schemas
_USER_ERRORS = (400, 401, 500)

OPERATIONS: Sequence[Operation] = (
    Operation(
        "GET",
        "/v1/models",
        list_models,
        "List models and LoRAs",
        "catalog",
        auth="none",
        responses={200: _E.ModelList},
        errors=(429, 500),
    ),
    Operation(
        "POST",
        "/v1/quote",
        quote,
        "Quote a request",
        "catalog",
        auth="optional",
        body=_E.QuoteRequest,
        responses={200: _E.Quote},
        errors=(400, 401, 404, 429, 500, 503),
    ),
    Operation(
        "POST",
        "/v1/generations",
        create_generation,
        "Request a generation",
        "generations",
        body=_E.GenerationRequest,
        query=_E.WaitQuery,
        headers=(IDEMPOTENCY_KEY,),
        responses={201: _E.GenerationCreated, 200: _E.GenerationCreated},
        errors=(400, 401, 402, 404, 409, 429, 500, 503),
        sql_checks_account=True,
    ),
    Operation(
        "GET",
        "/v1/generations",
        list_generations,
        "List my generations",
        "generations",
        query=_E.GenerationsQuery,
        responses={200: _E.GenerationPage},
        errors=_USER_ERRORS,
    ),
    Operation(
        "GET",
        "/v1/generations/{id}",
        get_generation,
        "Get a generation",
        "generations",
        responses={200: _E.GenerationDetail},
        errors=(*_USER_ERRORS, 404),
    ),
    Operation(
        "POST",
        "/v1/generations/{id}/cancel",
        cancel_generation,
        "Cancel a generation",
        "generations",
        responses={200: _E.JsonObject},
        errors=(*_USER_ERRORS, 404, 409),
        sql_checks_account=True,
    ),
    Operation(
        "POST",
        "/v1/media/{id}/save",
        save_media,
        "Save a media item",
        "media",
        responses={200: _E.JsonObject},
        errors=(*_USER_ERRORS, 404, 409),
        sql_checks_account=True,
    ),
    Operation(
        "DELETE",
        "/v1/media/{id}",
        delete_media,
        "Delete a media item",
        "media",
        responses={200: _E.JsonObject},
        errors=(*_USER_ERRORS, 404, 409),
        sql_checks_account=True,
    ),
    Operation(
        "GET",
        "/v1/balance",
        get_balance,
        "Get my balance",
        "account",
        responses={200: _E.Balance},
        errors=(401, 500),
        sql_checks_account=True,
    ),
    Operation(
        "GET",
        "/v1/ledger",
        list_ledger,
        "List my ledger entries",
        "account",
        query=_E.LedgerQuery,
        responses={200: _E.LedgerPage},
        errors=_USER_ERRORS,
    ),
    Operation(
        "POST",
        "/v1/webhooks/stripe",
        stripe_webhook,
        "Receive a Stripe event",
        "webhooks",
        auth="none",
        headers=(
            Header("Stripe-Signature", "Stripe's signature of the raw body.", max_length=4096),
        ),
        raw_body=_E.StripeEvent,
        responses={200: _E.StripeAck},
        errors=(400, 404, 409, 500, 503),
    ),
    Operation(
        "POST",
        "/v1/admin/credits",
        admin_add_credits,
        "Add credits to a user",
        "admin",
        auth="admin",
        body=_E.CreditsRequest,
        headers=(IDEMPOTENCY_KEY,),
        responses={201: _E.JsonObject, 200: _E.JsonObject},
        errors=(*_USER_ERRORS, 403, 404, 409),
    ),
    Operation(
        "PUT",
        "/v1/admin/settings/{key}",
        admin_set_setting,
        "Change a setting",
        "admin",
        auth="admin",
        body=_E.SettingUpdate,
        responses={200: _E.JsonObject},
        errors=(*_USER_ERRORS, 403),
    ),
    Operation(
        "PUT",
        "/v1/admin/models/{id}",
        admin_set_model,
        "Enable or disable a model",
        "admin",
        auth="admin",
        body=_E.ModelUpdate,
        responses={200: _E.JsonObject},
        errors=(*_USER_ERRORS, 403, 404),
    ),
    Operation(
        "GET",
        "/v1/admin/stats",
        admin_stats,
        "Usage and money statistics",
        "admin",
        auth="admin",
        query=_E.StatsQuery,
        responses={200: _E.JsonObject},
        errors=(*_USER_ERRORS, 403),
    ),
    Operation(
        "GET",
        "/healthz",
        healthz,
        "Liveness",
        "operations",
        auth="none",
        responses={200: _E.Status},
    ),
    Operation(
        "GET",
        "/readyz",
        readyz,
        "Readiness",
        "operations",
        auth="none",
        responses={200: _E.Status},
        errors=(503,),
    ),
    Operation(
        "GET",
        "/metrics",
        metrics,
        "Prometheus metrics",
        "operations",
        auth="none",
        responses={200: None},
        errors=(401, 404),
        content_type="text/plain",
    ),
    Operation(
        "GET",
        "/openapi.json",
        openapi,
        "OpenAPI document",
        "operations",
        auth="none",
        responses={200: None},
    ),
)
