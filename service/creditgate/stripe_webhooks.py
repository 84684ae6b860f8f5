"""Stripe webhooks: verify the signature, then hand the event to SQL functions.

Verification uses the ``stripe`` library (``stripe.WebhookSignature.verify_header``) on the raw
body with the configured tolerance; a bad signature or a stale timestamp is a 400 and nothing
is granted. Every grant and clawback is keyed by what it is about (the Checkout Session, the
refund, the dispute), so retries, concurrent deliveries and the several events Stripe sends
for one payment are harmless by construction: the database applies each key once and
replays the result afterwards. All money arithmetic (credits per price, proportional
clawbacks) happens in SQL.

Events handled (anything else is acknowledged with 200 and ignored):

``checkout.session.completed`` (only with ``payment_status == "paid"``) and
``checkout.session.async_payment_succeeded``
    -> ``service_apply_checkout(event_id, user_id, price_id, quantity, amount_total,
    currency, session_id, amount_tax)`` as ``service_role``, keyed by the Checkout Session
    (``stripe:checkout:<cs id>``): both events of one session grant once.
    *user_id*: ``client_reference_id``, else ``metadata.user_id`` (create the Checkout
    Session with ``client_reference_id=<supabase user id>``).
    *price_id*, *quantity*: Stripe does not put line items in the event, and the service
    does not call Stripe's API, so the convention is: set ``metadata.price_id`` (and
    optionally ``metadata.quantity``, default 1) on the Checkout Session. If the event
    carries expanded ``line_items`` they are used instead (each with its own amount); with
    several items, item *i* (from 0) is keyed ``<cs id>:<i>`` so each is granted once.
    How many credits a price buys comes from ``creditgate.credit_packs``, never from Stripe
    metadata, and only if the session paid the pack's price times quantity in its
    currency (``amount_total`` less ``total_details.amount_tax``). Otherwise nothing is
    granted: the database records a hold (``creditgate_private.checkout_holds``, reported by
    ``creditgate audit``), the service logs ``stripe_checkout_held`` at error level, and the
    event is acknowledged (a retry would not change what was paid).

``charge.refunded``
    -> ``service_stripe_refund(refund_id, user_id, payment_id, credits, payment_amount,
    amount_refunded)`` for each refund the charge lists (``refunds.data``, failed and
    canceled ones left out), or, when the event does not list them (recent API versions),
    once under ``<charge id>@<amount_refunded>``. The database claws back
    ``floor(credits * amount_refunded / amount)`` for the charge in total, so partial
    refunds add up, never pass the pack, and arrive in any order. *user_id* and *credits*
    come from the charge's ``metadata.user_id`` / ``metadata.credits``: the credits that
    payment bought, which the app records on the payment (``payment_intent_data.metadata``
    at Checkout).

``charge.dispute.created``
    -> ``service_stripe_dispute(dispute_id, user_id, payment_id, credits)`` with
    ``metadata.user_id`` / ``metadata.credits`` of the dispute, or of its ``charge`` when
    Stripe sends it expanded. It takes the payment's credits less what its refunds took; what
    the user no longer has is owed and paid from the next credits they get.

``charge.dispute.closed`` with status ``won`` (or ``warning_closed``: an inquiry that never
became a chargeback), and ``charge.dispute.funds_reinstated``
    -> ``service_stripe_dispute_won(dispute_id, user_id, payment_id)``: what the dispute
    took comes back, what is still owed is cancelled, once per dispute whichever of these
    events arrive, in any order (a win seen before the dispute makes the dispute take
    nothing). A lost dispute is acknowledged and changes nothing.

Refunds and disputes name their payment by the charge id, whatever its prefix (``ch_``,
``py_``...), else by the payment intent (``pi_``): the database sums what every refund and
open dispute of one payment asked for, so a refund and a dispute of one charge never take
the credits twice.

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
        "charge.dispute.closed",
        "charge.dispute.funds_reinstated",
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


def _amount(value: Any, field: str) -> int:
    """A non-negative integer amount in the currency's smallest unit, as Stripe sends it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _invalid(field, "required: a non-negative integer amount")
    return value


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _invalid(field, "required")
    return value.strip()


def _checkout_items(session: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each item bought: price, quantity, and what was paid for it (amount, tax, currency)."""
    currency = session.get("currency")
    line_items = _dict(session.get("line_items")).get("data")
    if isinstance(line_items, list) and line_items:
        items = []
        for i, raw in enumerate(line_items):
            item = _dict(raw)
            price = item.get("price")
            price_id = _dict(price).get("id") if isinstance(price, dict) else price
            if not isinstance(price_id, str) or not price_id:
                raise _invalid(f"line_items.data.{i}.price", "required")
            items.append(
                {
                    "price_id": price_id,
                    "quantity": _positive_int(item.get("quantity"), "quantity", 1),
                    "amount_total": _amount(
                        item.get("amount_total"), f"line_items.data.{i}.amount_total"
                    ),
                    "amount_tax": _amount(
                        item.get("amount_tax", 0), f"line_items.data.{i}.amount_tax"
                    ),
                    "currency": _text(
                        item.get("currency", currency), f"line_items.data.{i}.currency"
                    ),
                }
            )
        return items
    metadata = _dict(session.get("metadata"))
    price_id = metadata.get("price_id")
    if not isinstance(price_id, str) or not price_id.strip():
        raise _invalid("metadata.price_id", "required (the Stripe price bought)")
    return [
        {
            "price_id": price_id.strip(),
            "quantity": _positive_int(metadata.get("quantity"), "metadata.quantity", 1),
            "amount_total": _amount(session.get("amount_total"), "amount_total"),
            "amount_tax": _amount(
                _dict(session.get("total_details")).get("amount_tax", 0),
                "total_details.amount_tax",
            ),
            "currency": _text(currency, "currency"),
        }
    ]


async def _checkout(db: Database, event_id: str, session: Mapping[str, Any]) -> Any:
    metadata = _dict(session.get("metadata"))
    user_id = _user_id(session.get("client_reference_id"), metadata.get("user_id"))
    session_id = _text(session.get("id"), "id")
    items = _checkout_items(session)
    bind(user_id=user_id)
    results = []
    for i, item in enumerate(items):
        key = session_id if len(items) == 1 else f"{session_id}:{i}"
        result = await db.call(
            "service_apply_checkout",
            {
                "event_id": Arg(event_id, "text"),
                "user_id": Arg(user_id, "uuid"),
                "price_id": Arg(item["price_id"], "text"),
                "quantity": Arg(item["quantity"], "integer"),
                "amount_total": Arg(item["amount_total"], "bigint"),
                "currency": Arg(item["currency"], "text"),
                "session_id": Arg(key, "text"),
                "amount_tax": Arg(item["amount_tax"], "bigint"),
            },
            role="service_role",
        )
        if _dict(result).get("held"):
            # Paid, but not the pack's price: nothing granted; an operator must look.
            log.error(
                "stripe_checkout_held",
                session_id=key,
                price_id=item["price_id"],
                quantity=item["quantity"],
                reason=result.get("reason"),
                expected_amount=result.get("expected_amount"),
                expected_currency=result.get("expected_currency"),
                amount=result.get("amount"),
                currency=result.get("currency"),
            )
        results.append(result)
    return results[0] if len(results) == 1 else results


def _payment_id(charge: Any, payment_intent: Any) -> str:
    """The payment a refund or dispute is about: the charge id whatever its prefix (ch_,
    py_...), else the payment intent. Both event kinds carry the charge, so a refund and a
    dispute of one charge always name the same payment."""
    charge_id = charge if isinstance(charge, str) else _dict(charge).get("id")
    if isinstance(charge_id, str) and charge_id.strip():
        return charge_id.strip()
    pi = payment_intent if isinstance(payment_intent, str) else _dict(payment_intent).get("id")
    if isinstance(pi, str) and pi.strip():
        return pi.strip()
    raise _invalid("charge", "a refund or dispute must name its charge or payment intent")


def _owner(source: Mapping[str, Any]) -> tuple[str, int]:
    metadata = _dict(source.get("metadata"))
    user_id = _user_id(metadata.get("user_id"))
    credits = _positive_int(metadata.get("credits"), "metadata.credits")
    bind(user_id=user_id)
    return user_id, credits


async def _refunds(db: Database, charge: Mapping[str, Any]) -> Any:
    user_id, credits = _owner(charge)
    payment_id = _payment_id(charge.get("id"), charge.get("payment_intent"))
    payment_amount = _positive_int(charge.get("amount"), "amount")
    amount_refunded = _amount(charge.get("amount_refunded"), "amount_refunded")
    listed = _dict(charge.get("refunds")).get("data")
    refund_ids: list[str] = []
    if isinstance(listed, list) and listed:
        for i, refund in enumerate(listed):
            if _dict(refund).get("status") in ("failed", "canceled"):
                continue
            refund_ids.append(_text(_dict(refund).get("id"), f"refunds.data.{i}.id"))
    elif amount_refunded > 0:
        # Recent API versions do not list the refunds: key by the running total instead.
        refund_ids.append(f"{payment_id}@{amount_refunded}")
    results = [
        await db.call(
            "service_stripe_refund",
            {
                "refund_id": Arg(refund_id, "text"),
                "user_id": Arg(user_id, "uuid"),
                "payment_id": Arg(payment_id, "text"),
                "credits": Arg(credits, "bigint"),
                "payment_amount": Arg(payment_amount, "bigint"),
                "amount_refunded": Arg(amount_refunded, "bigint"),
            },
            role="service_role",
        )
        for refund_id in refund_ids
    ]
    if not results:
        return None
    return results[0] if len(results) == 1 else results


def _dispute_parts(event_id: str, dispute: Mapping[str, Any]) -> tuple[str, str, Mapping[str, Any]]:
    """The dispute id, its payment, and where its metadata lives: the dispute's own, else
    an expanded charge's."""
    charge = dispute.get("charge")
    source = dispute if _dict(dispute.get("metadata")).get("user_id") else _dict(charge) or dispute
    dispute_id = dispute.get("id")
    if not isinstance(dispute_id, str) or not dispute_id.strip():
        dispute_id = event_id
    return dispute_id.strip(), _payment_id(charge, dispute.get("payment_intent")), source


async def _dispute(db: Database, event_id: str, dispute: Mapping[str, Any]) -> Any:
    dispute_id, payment_id, source = _dispute_parts(event_id, dispute)
    user_id, credits = _owner(source)
    return await db.call(
        "service_stripe_dispute",
        {
            "dispute_id": Arg(dispute_id, "text"),
            "user_id": Arg(user_id, "uuid"),
            "payment_id": Arg(payment_id, "text"),
            "credits": Arg(credits, "bigint"),
        },
        role="service_role",
    )


async def _dispute_won(db: Database, event_id: str, dispute: Mapping[str, Any]) -> Any:
    dispute_id, payment_id, source = _dispute_parts(event_id, dispute)
    user_id = _user_id(_dict(source.get("metadata")).get("user_id"))
    bind(user_id=user_id)
    return await db.call(
        "service_stripe_dispute_won",
        {
            "dispute_id": Arg(dispute_id, "text"),
            "user_id": Arg(user_id, "uuid"),
            "payment_id": Arg(payment_id, "text"),
        },
        role="service_role",
    )


# A dispute closed with one of these left the merchant the money (won: the bank ruled for
# the merchant; warning_closed: an inquiry that never became a chargeback).
_REINSTATED = frozenset({"won", "warning_closed"})


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
        result = await _refunds(db, obj)
        if result is None:
            return {**ack, "ignored": "nothing_refunded"}
        return {**ack, "result": result}
    if event_type == "charge.dispute.created":
        return {**ack, "result": await _dispute(db, event_id, obj)}
    if event_type == "charge.dispute.closed" and obj.get("status") not in _REINSTATED:
        return {**ack, "ignored": f"dispute_{obj.get('status') or 'closed'}"}
    return {**ack, "result": await _dispute_won(db, event_id, obj)}


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
    result = _dict(ack.get("result"))
    outcome = ack.get("ignored") or (
        "held" if result.get("held") else "replayed" if result.get("replayed") else "applied"
    )
    STRIPE_EVENTS.labels(label, outcome).inc()
    log.info("stripe_event", outcome=outcome)
    return ack
