"""Account pages (any signed-in user): balance, packs, generate, gallery, ledger, sign-in.

Every read and write goes through the SQL the API uses: ``get_balance``,
``quote``, ``request_generation``, ``save_media``/``delete_media`` and the RLS reads of
:mod:`creditgate.api.queries`. Nothing here computes a price or a balance.
"""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from creditgate.api import queries
from creditgate.api.waiter import TERMINAL
from creditgate.auth import AuthError, mint_token
from creditgate.console import links
from creditgate.console.checkout import CheckoutError, create_checkout_session
from creditgate.console.errors import describe
from creditgate.console.framework import Page, redirect
from creditgate.console.gotrue import GoTrue, GoTrueError
from creditgate.console.session import forget_session
from creditgate.db import ApiError, Arg
from creditgate.observability import get_logger

log = get_logger("creditgate.console")

NOTICES = {
    "signed_out": "You are signed out.",
    "saved": "Saved to your gallery: it will not expire.",
    "deleted": "Deleted.",
    "checkout_success": "Thank you! Your credits appear as soon as the payment is confirmed.",
    "checkout_canceled": "Checkout canceled; nothing was charged.",
}
PACKS_QUERY = """
select coalesce(jsonb_agg(jsonb_build_object(
  'id', p.id, 'name', p.name, 'credits', p.credits, 'price_cents', p.price_cents,
  'currency', p.currency, 'stripe_price_id', p.stripe_price_id
) order by p.price_cents, p.id), '[]'::jsonb)
from creditgate.credit_packs as p
where p.active
"""
LEDGER_PAGE_SIZE = 25
CSV_PAGE_SIZE = 500
GALLERY_PAGE_SIZE = 12


def _safe_next(value: str) -> str:
    # Only paths of this console: never an absolute URL (no open redirect).
    if value.startswith("/console") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console/"


def _notice(current: Page) -> str | None:
    return NOTICES.get(current.request.query_params.get("notice", ""))


async def _packs(current: Page) -> list[dict[str, Any]]:
    result = await current.services.db.query_as(
        PACKS_QUERY, {}, role="anon", claims={"role": "anon"}, headers=current.db_headers
    )
    return list(result or [])


# --- sign in and out ----------------------------------------------------------------------


async def login_form(current: Page) -> Response:
    if current.caller is not None:
        return redirect("/console/")
    return current.render(
        "login.html",
        next=_safe_next(current.request.query_params.get("next", "")),
        notice=_notice(current),
        email="",
    )


async def login(current: Page) -> Response:
    email = current.field("email", 320).strip()
    password = current.field("password", 1024)
    target = _safe_next(current.field("next", 2000))
    if not current.console.gotrue_enabled:
        return current.render(
            "login.html", status=503, next=target, email=email,
            error="Password sign-in is not configured on this server (SUPABASE_URL and "
            "SUPABASE_ANON_KEY). On the embedded default use the one-time link that "
            "`creditgate up` printed.",
        )  # fmt: skip
    gotrue = GoTrue(current.services.http, current.console.supabase_url, current.console.anon_key)
    try:
        result = await gotrue.password(email, password)
        await current.services.verifier.verify(result.access_token)
    except (GoTrueError, AuthError) as exc:
        unreachable = isinstance(exc, GoTrueError) and exc.code == "auth_unreachable"
        log.info("console_login_failed", reason=str(exc))
        message = (
            "The sign-in service cannot be reached right now. Please try again shortly."
            if unreachable
            else "That email and password do not match an account. Please try again."
        )
        return current.render(
            "login.html", status=503 if unreachable else 401, next=target, email=email,
            error=message,
        )  # fmt: skip
    current.jar.set_session(
        {"src": "gotrue", "at": result.access_token, "rt": result.refresh_token}
    )
    return redirect(target)


async def link_login(current: Page) -> Response:
    """A one-time link from `creditgate up`: redeemed once, then it is gone."""
    token = str(current.request.path_params["token"])
    identity = await run_in_threadpool(links.consume_link, current.console.links_file, token)
    settings = current.services.settings
    if identity is None or not settings.jwt_secret:
        return current.render(
            "error.html",
            status=403,
            title="This link cannot be used",
            message="Sign-in links work once and for a few minutes. Run `creditgate up` again "
            "for fresh links, or sign in with your password.",
            code="link_used",
        )
    session_id = await run_in_threadpool(
        links.open_session, current.console.links_file, identity, current.console.session_max_age
    )
    access = mint_token(
        settings.jwt_secret,
        identity.user_id,
        email=identity.email,
        ttl_seconds=current.console.dev_token_ttl,
    )
    current.jar.set_session({"src": "link", "at": access, "sid": session_id})
    log.info("console_link_login", user_id=identity.user_id)
    # A page, not a redirect: the SameSite=Strict cookie then travels with the next,
    # same-site navigation even when the link was opened from another application.
    return current.render("signed_in.html", email=identity.email)


async def logout(current: Page) -> Response:
    data = current.jar.session or {}
    if data.get("src") == "gotrue" and current.console.gotrue_enabled:
        gotrue = GoTrue(
            current.services.http, current.console.supabase_url, current.console.anon_key
        )
        access = data.get("at")
        if isinstance(access, str):
            if current.caller is not None:
                forget_session(current.caller.principal.claims)
            try:
                await gotrue.logout(access)
            except GoTrueError as exc:
                log.warning("console_logout_failed", reason=exc.code)
    elif data.get("src") == "link" and isinstance(data.get("sid"), str):
        await run_in_threadpool(links.close_session, current.console.links_file, data["sid"])
    current.jar.set_session(None)
    return redirect("/console/login?notice=signed_out")


# --- balance and packs --------------------------------------------------------------------


async def home(current: Page) -> Response:
    balance = await current.call("get_balance")
    return current.render(
        "account/home.html",
        balance=balance,
        packs=await _packs(current),
        notice=_notice(current),
        payments=bool(current.console.stripe_secret_key),
    )


async def buy(current: Page) -> Response:
    pack_id = current.field("pack_id", 200)
    pack = next((p for p in await _packs(current) if p["id"] == pack_id), None)
    if pack is None:
        return current.error(404, "not_found")
    if not current.console.stripe_secret_key:
        return current.error(503, "payments_not_configured")
    base = str(current.request.base_url).rstrip("/")
    key = current.field("request_key", 100)
    try:
        UUID(key)
    except ValueError:
        key = str(uuid.uuid4())
    assert current.caller is not None
    try:
        url = await create_checkout_session(
            secret_key=current.console.stripe_secret_key,
            api_base=current.console.stripe_api_base,
            user_id=current.user_id,
            email=current.caller.email,
            pack=pack,
            success_url=f"{base}/console/?notice=checkout_success",
            cancel_url=f"{base}/console/?notice=checkout_canceled",
            idempotency_key=f"console-checkout:{current.user_id}:{key}",
        )
    except CheckoutError as exc:
        log.warning("console_checkout_failed", reason=str(exc))
        return current.error(502, "payment_unavailable")
    log.info("console_checkout_created", pack=pack_id)
    return redirect(url)


# --- generate -----------------------------------------------------------------------------


async def _models(current: Page) -> list[dict[str, Any]]:
    catalog = await queries.models(current.services.db, current.db_headers)
    return list(catalog.get("models", []))


async def _images(current: Page) -> list[dict[str, Any]]:
    """The caller's recent images, for the edit models' source picker."""
    page = await queries.generations_page(
        current.services.db, current.claims, current.db_headers, limit=20, before=None
    )
    images = []
    for item in page["items"]:
        if item["status"] == "succeeded" and item["kind"] in ("image", "edit"):
            detail = await _generation(current, UUID(item["id"]))
            for media in detail["media"] if detail else []:
                if media["url"] and str(media["content_type"]).startswith("image/"):
                    images.append({"id": media["id"], "label": _prompt_of(item)[:60]})
    return images


def _prompt_of(generation: dict[str, Any]) -> str:
    params = generation.get("params") or {}
    if isinstance(params.get("prompt"), str):
        return str(params["prompt"])
    messages = params.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        return str(messages[-1].get("content", ""))
    return ""


def _int_field(current: Page, name: str) -> int | None:
    raw = current.field(name, 20).strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(
            400, "invalid_request", "", {"field": name, "reason": "must be a whole number"}
        ) from None


def _params(current: Page, kind: str) -> dict[str, Any]:
    """The form as request_generation's params (validation stays in SQL)."""
    prompt = current.field("prompt")
    if kind == "chat":
        params: dict[str, Any] = {"messages": [{"role": "user", "content": prompt}]}
        if (tokens := _int_field(current, "max_tokens")) is not None:
            params["max_tokens"] = tokens
        return params
    params = {"prompt": prompt}
    if negative := current.field("negative_prompt").strip():
        params["negative_prompt"] = negative
    names = {"image": ("width", "height", "steps", "seed"), "edit": ("width", "height", "steps")}
    for name in names.get(kind, ("width", "height", "duration_seconds")):
        if (value := _int_field(current, name)) is not None:
            params[name] = value
    if kind == "edit" and (source := current.field("init_media_id", 64).strip()):
        params["init_media_id"] = source
    return params


def _model_kind(models: list[dict[str, Any]], model_id: str) -> str:
    found = next((m for m in models if m["id"] == model_id), None)
    if found is None:
        raise ApiError(404, "model_unavailable" if model_id else "not_found", "", None)
    return str(found["kind"])


async def generate_form(current: Page) -> Response:
    models = await _models(current)
    chosen = current.request.query_params.get("model", "")
    if not any(m["id"] == chosen for m in models):
        chosen = models[0]["id"] if models else ""
    return current.render(
        "account/generate.html",
        models=models,
        chosen=chosen,
        values={},
        images=await _images(current),
        request_key=str(uuid.uuid4()),
        balance=await current.call("get_balance"),
    )


async def quote(current: Page) -> Response:
    """The live quote: JSON for the generate page's script."""
    models = await _models(current)
    model_id = current.field("model_id", 200)
    try:
        kind = _model_kind(models, model_id)
        result = await current.call(
            "quote",
            {
                "model_id": Arg(model_id, "text"),
                "params": Arg(Jsonb(_params(current, kind)), "jsonb"),
            },
        )
    except ApiError as exc:
        return JSONResponse(
            {"ok": False, "message": describe(exc.code, exc.details)}, status_code=exc.status
        )
    return JSONResponse({"ok": True, "cost": result.get("cost"), "quote": result})


async def generate(current: Page) -> Response:
    models = await _models(current)
    model_id = current.field("model_id", 200)
    key = current.field("request_key", 100)
    try:
        UUID(key)
    except ValueError:
        key = str(uuid.uuid4())
    try:
        kind = _model_kind(models, model_id)
        result = await current.call(
            "request_generation",
            {
                "model_id": Arg(model_id, "text"),
                "params": Arg(Jsonb(_params(current, kind)), "jsonb"),
                "idempotency_key": Arg(f"console:{key}", "text"),
            },
        )
    except ApiError as exc:
        values = {name: current.field(name) for name in current.form or {} if name != "csrf_token"}
        return current.render(
            "account/generate.html",
            status=exc.status,
            models=models,
            chosen=model_id,
            values=values,
            images=await _images(current),
            request_key=str(uuid.uuid4()),
            balance=await current.call("get_balance"),
            error=describe(exc.code, exc.details),
            error_code=exc.code,
        )
    return redirect(f"/console/generations/{result['generation_id']}")


async def _generation(current: Page, generation_id: UUID) -> dict[str, Any] | None:
    generation = await queries.generation(
        current.services.db, current.claims, current.db_headers, generation_id
    )
    if generation is None:
        return None
    storage, ttl = current.services.storage, current.services.settings.signed_url_ttl
    for media in generation["media"]:
        gone = bool(media.pop("purged", False)) or bool(media.get("deleted"))
        media["url"] = None if gone else await storage.signed_url(media["key"], ttl)
    return generation


def _uuid_param(current: Page) -> UUID:
    try:
        return UUID(str(current.request.path_params["id"]))
    except ValueError:
        raise ApiError(404, "not_found", "", None) from None


async def generation(current: Page) -> Response:
    found = await _generation(current, _uuid_param(current))
    if found is None:
        return current.error(404, "not_found")
    text = None
    output = found.get("output")
    if isinstance(output, dict) and isinstance(output.get("text"), str):
        text = output["text"]
    error = found.get("error")
    return current.render(
        "account/generation.html",
        generation=found,
        prompt=_prompt_of(found),
        text=text,
        done=found["status"] in TERMINAL,
        failure=describe(str(error.get("code")), None) if isinstance(error, dict) else None,
        error_code=error.get("code") if isinstance(error, dict) else None,
    )


async def generation_status(current: Page) -> Response:
    status = await queries.generation_status(
        current.services.db, current.claims, current.db_headers, _uuid_param(current)
    )
    if status is None:
        return JSONResponse({"status": None}, status_code=404)
    return JSONResponse({"status": status, "done": status in TERMINAL})


# --- gallery ------------------------------------------------------------------------------


async def gallery(current: Page) -> Response:
    before = current.request.query_params.get("before") or None
    page = await queries.generations_page(
        current.services.db,
        current.claims,
        current.db_headers,
        limit=GALLERY_PAGE_SIZE,
        before=before,
    )
    items = []
    for item in page["items"]:
        detail = (
            await _generation(current, UUID(item["id"])) if item["status"] == "succeeded" else None
        )
        media = [m for m in (detail or {}).get("media", []) if m["url"]]
        text = None
        if detail and isinstance(detail.get("output"), dict):
            value = detail["output"].get("text")
            text = value if isinstance(value, str) else None
        items.append({**item, "media": media, "prompt": _prompt_of(item), "text": text})
    return current.render(
        "account/gallery.html",
        items=items,
        next_cursor=page["next_cursor"],
        notice=_notice(current),
    )


async def save_media(current: Page) -> Response:
    media_id = _uuid_param(current)
    await current.call("save_media", {"media_id": Arg(media_id, "uuid")})
    return redirect("/console/gallery?notice=saved")


async def delete_media(current: Page) -> Response:
    media_id = _uuid_param(current)
    await current.call("delete_media", {"media_id": Arg(media_id, "uuid")})
    return redirect("/console/gallery?notice=deleted")


# --- ledger -------------------------------------------------------------------------------


def _before(current: Page) -> int | None:
    raw = current.request.query_params.get("before", "")
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


async def ledger(current: Page) -> Response:
    page = await queries.ledger_page(
        current.services.db,
        current.claims,
        current.db_headers,
        limit=LEDGER_PAGE_SIZE,
        before=_before(current),
    )
    return current.render(
        "account/ledger.html", items=page["items"], next_cursor=page["next_cursor"]
    )


CSV_COLUMNS = (
    "id", "created_at", "entry_type", "amount", "delta", "balance_after", "reason", "generation_id",
)  # fmt: skip


def _csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # Spreadsheet formula injection: a reason typed by an admin must stay text.
    return (
        "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _number(text) else text
    )


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


async def ledger_csv(current: Page) -> Response:
    """Every ledger entry of the caller, newest first, as CSV."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    before: int | None = None
    while True:
        page = await queries.ledger_page(
            current.services.db,
            current.claims,
            current.db_headers,
            limit=CSV_PAGE_SIZE,
            before=before,
        )
        for item in page["items"]:
            writer.writerow([_csv_cell(item.get(c)) for c in CSV_COLUMNS])
        before = page["next_cursor"]
        if before is None:
            break
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="ledger.csv"'},
    )


__all__ = [
    "buy",
    "delete_media",
    "gallery",
    "generate",
    "generate_form",
    "generation",
    "generation_status",
    "home",
    "ledger",
    "ledger_csv",
    "link_login",
    "login",
    "login_form",
    "logout",
    "quote",
    "save_media",
]
