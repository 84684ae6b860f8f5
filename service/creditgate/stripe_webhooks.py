"""Stripe webhooks: verify the signature, then hand the event to one SQL function.

Verification uses the ``stripe`` library (``stripe.WebhookSignature.verify_header``) on the raw
body with the configured tolerance; a bad signature or a stale timestamp is a 400 and nothing
is granted. Every grant or clawback is keyed by the Stripe event id (``stripe:<event_id>``
in the ledger), so retries and concurrent deliveries of one event are harmless by
construction: the database applies the key once and replays the result afterwards.

Events handled (anything else is acknowledged with 200 and ignored):

``checkout.session.completed`` (only with ``payment_status == "paid"``) and
``checkout.session.async_payment_succeeded``
    -> ``service_apply_checkout(event_id, user_id, price_id, quantity)`` as ``service_role``.
    *user_id*: ``client_reference_id``, else ``metadata.user_id`` (create the Checkout
    Session with ``client_reference_id=<supabase user id>``).
    *price_id*, *quantity*: Stripe does not put line items in the event, and the service
    does not call Stripe's API, so the convention is: set ``metadata.price_id`` (and
    optionally ``metadata.quantity``, default 1) on the Checkout Session. If the event
    carries expanded ``line_items`` they are used instead; with several items, item *i*
    (from 0) is applied under the event id ``<event_id>:<i>`` so each is granted once.
    How many credits a price buys comes from ``creditgate.credit_packs``, never from Stripe
    metadata.

``charge.refunded``
    -> ``service_clawback(event_id, user_id, credits, reason)`` when the charge is fully
    refunded (``refunded == true``). *user_id* and *credits* come from the charge's
    ``metadata.user_id`` / ``metadata.credits``: the credits that payment bought, which the
    app records on the payment (``payment_intent_data.metadata`` at Checkout). Partial
    refunds are acknowledged and not clawed back automatically (a proportional share would
    be money arithmetic outside the database; an admin can adjust), and a later event that
    completes the refund claws back the whole amount once.

Clawbacks are keyed by the charge (``charge:<charge id>``), not the event, so a refund and
a dispute of the same charge take the credits back once.

``charge.dispute.created``
    -> ``service_clawback`` with ``metadata.user_id`` / ``metadata.credits`` of the dispute,
    or of its ``charge`` when Stripe sends it expanded. The clawback takes at most what is
    left and the database records any shortfall.

An event that is authentic but unusable (no user id, unknown price...) is answered with a
4xx error and nothing granted, so Stripe shows it as failed and retries it: an operator can
fix the cause (e.g. add the credit pack) and the retry then succeeds.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

import stripe

from creditgate.db import ApiError, Arg, Database
from creditgate.observability import STRIPE_EVENTS, bind, get_logger

__all__ = ["HANDLED_TYPES", "StripeSignatureError", "handle_event", "verify_event"]

HANDLED_TYPES = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "charge.refunded",
        "charge.dispute.created",
    }
)

log = get_logger("creditgate.stripe")


class StripeSignatureError(Exception):
    """The payload is not a recent event signed with our webhook secret."""


def verify_event(
    payload: bytes, signature: str | None, secret: str, tolerance: int
) -> dict[str, Any]:
    """Verify ``Stripe-Signature`` over the raw body and return the event as a dict."""
    try:
        stripe.WebhookSignature.verify_header(payload, signature, secret, tolerance)
    except stripe.SignatureVerificationError as exc:
        raise StripeSignatureError(str(exc)) from None
    except UnicodeDecodeError:
        raise StripeSignatureError("the body is not UTF-8") from None
    try:
        event = json.loads(payload)
    except ValueError:
        raise StripeSignatureError("the body is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise StripeSignatureError("the body is not a Stripe event")
    return event


def _invalid(field: str, reason: str) -> ApiError:
    return ApiError(
        400,
        "invalid_request",
        "The Stripe event cannot be applied; see details.",
        {"field": field, "reason": reason},
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _user_id(*candidates: Any) -> str:
    for value in candidates:
        if isinstance(value, str) and value.strip():
            try:
                return str(uuid.UUID(value.strip()))
            except ValueError:
                raise _invalid("user_id", "not a UUID") from None
    raise _invalid("user_id", "set client_reference_id or metadata.user_id")


def _positive_int(value: Any, field: str, default: int | None = None) -> int:
    if value is None or value == "":
        if default is None:
            raise _invalid(field, "required")
        return default
    if isinstance(value, bool):
        raise _invalid(field, "must be a positive integer")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise _invalid(field, "must be a positive integer") from None
    if number <= 0:
        raise _invalid(field, "must be a positive integer")
    return number


def _checkout_items(session: Mapping[str, Any]) -> list[tuple[str, int]]:
    line_items = _dict(session.get("line_items")).get("data")
    if isinstance(line_items, list) and line_items:
        items = []
        for i, item in enumerate(line_items):
            price = _dict(item).get("price")
            price_id = _dict(price).get("id") if isinstance(price, dict) else price
            if not isinstance(price_id, str) or not price_id:
                raise _invalid(f"line_items.data.{i}.price", "required")
            items.append((price_id, _positive_int(_dict(item).get("quantity"), "quantity", 1)))
        return items
    metadata = _dict(session.get("metadata"))
    price_id = metadata.get("price_id")
    if not isinstance(price_id, str) or not price_id.strip():
        raise _invalid("metadata.price_id", "required (the Stripe price bought)")
    return [(price_id.strip(), _positive_int(metadata.get("quantity"), "metadata.quantity", 1))]


async def _checkout(db: Database, event_id: str, session: Mapping[str, Any]) -> Any:
    metadata = _dict(session.get("metadata"))
    user_id = _user_id(session.get("client_reference_id"), metadata.get("user_id"))
    items = _checkout_items(session)
    bind(user_id=user_id)
    results = []
    for i, (price_id, quantity) in enumerate(items):
        key = event_id if len(items) == 1 else f"{event_id}:{i}"
        results.append(
            await db.call(
                "service_apply_checkout",
                {
                    "event_id": Arg(key, "text"),
                    "user_id": Arg(user_id, "uuid"),
                    "price_id": Arg(price_id, "text"),
                    "quantity": Arg(quantity, "integer"),
                },
                role="service_role",
            )
        )
    return results[0] if len(results) == 1 else results


async def _clawback(db: Database, event_id: str, source: Mapping[str, Any], reason: str) -> Any:
    metadata = _dict(source.get("metadata"))
    user_id = _user_id(metadata.get("user_id"))
    credits = _positive_int(metadata.get("credits"), "metadata.credits")
    bind(user_id=user_id)
    return await db.call(
        "service_clawback",
        {
            "event_id": Arg(event_id, "text"),
            "user_id": Arg(user_id, "uuid"),
            "amount": Arg(credits, "bigint"),
            "reason": Arg(reason, "text"),
        },
        role="service_role",
    )


async def _apply(db: Database, event: Mapping[str, Any]) -> dict[str, Any]:
    event_id, event_type = str(event["id"]), str(event.get("type", ""))
    obj = _dict(_dict(event.get("data")).get("object"))
    ack: dict[str, Any] = {"received": True, "event_id": event_id, "type": event_type}
    if event_type not in HANDLED_TYPES:
        return {**ack, "ignored": "unhandled_type"}
    if event_type.startswith("checkout.session."):
        if obj.get("payment_status") != "paid":
            return {**ack, "ignored": "not_paid"}
        return {**ack, "result": await _checkout(db, event_id, obj)}
    if event_type == "charge.refunded":
        if obj.get("refunded") is not True:
            return {**ack, "ignored": "partial_refund"}
        key = _clawback_key(event_id, obj.get("id"))
        return {**ack, "result": await _clawback(db, key, obj, "stripe refund")}
    # charge.dispute.created: the dispute's own metadata, else an expanded charge's.
    charge = obj.get("charge")
    source = obj if _dict(obj.get("metadata")).get("user_id") else _dict(charge) or obj
    charge_id = charge if isinstance(charge, str) else _dict(charge).get("id")
    key = _clawback_key(event_id, charge_id)
    return {**ack, "result": await _clawback(db, key, source, "stripe dispute")}


def _clawback_key(event_id: str, charge_id: Any) -> str:
    """Claw back once per charge: a refund and a dispute of one charge share the key, so
    the second one replays the first instead of taking the credits twice."""
    if isinstance(charge_id, str) and charge_id.startswith("ch_"):
        return f"charge:{charge_id}"
    return event_id


async def handle_event(db: Database, event: Mapping[str, Any]) -> dict[str, Any]:
    """Apply a verified event; returns the acknowledgement body. Raises ApiError."""
    event_type = str(event.get("type", ""))
    label = event_type if event_type in HANDLED_TYPES else "other"
    bind(stripe_event_id=str(event.get("id")), stripe_event_type=event_type)
    try:
        ack = await _apply(db, event)
    except ApiError as exc:
        STRIPE_EVENTS.labels(label, exc.code).inc()
        log.warning("stripe_event_failed", code=exc.code, details=exc.details)
        raise
    outcome = ack.get("ignored") or (
        "replayed" if _dict(ack.get("result")).get("replayed") else "applied"
    )
    STRIPE_EVENTS.labels(label, outcome).inc()
    log.info("stripe_event", outcome=outcome)
    return ack
