"""Buying a credit pack: a Stripe Checkout Session created by the service.

The session names the buyer (``client_reference_id`` and ``metadata.user_id``) and the
price (``metadata.price_id``), and puts ``user_id`` and ``credits`` on the payment
(``payment_intent_data.metadata``), which is what the existing webhook handler
(:mod:`creditgate.stripe_webhooks`) reads to credit the pack, or claw it back on a refund
or dispute. How many credits a price buys still comes from ``creditgate.credit_packs`` when
the webhook arrives, never from this metadata.
"""

from __future__ import annotations

from typing import Any

import stripe

__all__ = ["CheckoutError", "create_checkout_session"]


class CheckoutError(Exception):
    """Stripe refused or could not be reached."""


async def create_checkout_session(
    *,
    secret_key: str,
    api_base: str,
    user_id: str,
    email: str,
    pack: dict[str, Any],
    success_url: str,
    cancel_url: str,
    idempotency_key: str,
) -> str:
    """Create the session and return its URL (where the browser is sent to pay)."""
    client = stripe.StripeClient(
        secret_key,
        base_addresses={"api": api_base} if api_base else None,
        http_client=stripe.HTTPXClient(timeout=20),
        max_network_retries=2,
    )
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [{"price": pack["stripe_price_id"], "quantity": 1}],
        "client_reference_id": user_id,
        "metadata": {"user_id": user_id, "price_id": pack["stripe_price_id"], "quantity": "1"},
        "payment_intent_data": {"metadata": {"user_id": user_id, "credits": str(pack["credits"])}},
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    if email:
        params["customer_email"] = email
    try:
        session = await client.v1.checkout.sessions.create_async(
            params,  # type: ignore[arg-type]
            {"idempotency_key": idempotency_key},
        )
    except stripe.StripeError as exc:
        raise CheckoutError(type(exc).__name__) from None
    url = getattr(session, "url", None)
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise CheckoutError("no_url")
    return url
