"""Error codes of DESIGN §5 in words a person understands (the same codes as the API)."""

from __future__ import annotations

from typing import Any

__all__ = ["TITLES", "describe"]

TITLES = {
    400: "Please check what you entered",
    401: "Please sign in",
    402: "Not enough credits",
    403: "Not allowed",
    404: "Not found",
    409: "That cannot be done now",
    429: "Please slow down",
    502: "Payment provider unavailable",
    503: "Temporarily unavailable",
}

_FIELD_NAMES = {
    "prompt": "The prompt",
    "negative_prompt": "The negative prompt",
    "messages": "The message",
    "width": "The width",
    "height": "The height",
    "steps": "The number of steps",
    "duration_seconds": "The duration",
    "max_tokens": "The maximum length",
    "init_media_id": "The source image",
    "strength": "The strength",
    "amount": "The amount",
    "reason": "The reason",
    "query": "The search",
    "value": "The value",
    "key": "The setting",
    "since": "The period",
}


def _detail(details: Any, name: str) -> Any:
    return details.get(name) if isinstance(details, dict) else None


def describe(code: str, details: Any = None) -> str:
    """One or two sentences for an error code and its DETAIL."""
    if code == "invalid_request":
        field = _detail(details, "field")
        reason = _detail(details, "reason")
        if isinstance(field, str) and isinstance(reason, str):
            label = _FIELD_NAMES.get(field, f"The field '{field}'")
            return f"{label} is not accepted: {reason}."
        return "Some of the values are not accepted. Please check them and try again."
    if code == "insufficient_credits":
        required, available = _detail(details, "required"), _detail(details, "available")
        if required is not None and available is not None:
            return (
                f"This needs {required} credits and you have {available} available. "
                "Buy a pack to continue."
            )
        return "You do not have enough credits for this. Buy a pack to continue."
    if code == "rate_limited":
        wait = _detail(details, "retry_after_seconds")
        if wait is not None:
            return f"Too many requests in a short time. Please try again in {wait} seconds."
        return "Too many requests in a short time. Please try again shortly."
    if code == "daily_cap_reached":
        cap = _detail(details, "cap")
        resets = _detail(details, "resets_at")
        if cap is not None:
            return (
                f"You have reached today's limit of {cap} credits. "
                f"It resets at {resets or 'midnight UTC'}."
            )
        return "You have reached today's credit limit. It resets at midnight UTC."
    return _MESSAGES.get(code, "Something went wrong on our side. Please try again.")


_MESSAGES = {
    "not_authenticated": "Your session has ended. Please sign in again.",
    "forbidden": "This page is for administrators only.",
    "not_found": (
        "We could not find that. It may have been deleted, or it belongs to another account."
    ),
    "idempotency_key_reused": (
        "This form was already sent with different values. Reload the page and try again."
    ),
    "invalid_state": "That is no longer possible: it has already started or finished.",
    "maintenance": (
        "Generation is paused for maintenance. Your credits are safe; please try again later."
    ),
    "model_unavailable": "This model is switched off at the moment. Please pick another one.",
    "csrf": (
        "This form has expired or did not come from this site. Reload the page and try again."
    ),
    "payment_unavailable": (
        "We could not reach the payment provider. Nothing was charged; please try again."
    ),
    "payments_not_configured": "Buying credits is not set up on this server.",
    "unavailable": "The service cannot reach its database right now. Please retry shortly.",
    "internal_error": "Something went wrong on our side. Please try again.",
}
