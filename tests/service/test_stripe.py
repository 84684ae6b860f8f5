"""Stripe webhooks over a real socket, signed exactly as Stripe signs them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import dbutil
from tests.service.apiutil import (
    STRIPE_SECRET,
    balance,
    create_user,
    owner,
    running,
    scalar,
    settings_for,
    stripe_event,
    stripe_header,
)

PRICE = "price_test_100"


@dataclass
class Hook:
    db: dbutil.TestDatabase
    url: str

    def post(self, payload: bytes, signature: str | None = None) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        headers["Stripe-Signature"] = stripe_header(payload) if signature is None else signature
        return httpx.post(f"{self.url}/v1/webhooks/stripe", content=payload, headers=headers)


@pytest.fixture
def hook(db: dbutil.TestDatabase, tmp_path: Path) -> Iterator[Hook]:
    with owner(db) as conn:
        conn.execute(
            "insert into creditgate.credit_packs (id, name, credits, price_cents, stripe_price_id,"
            " category) values ('pack-100', '100 credits', 100, 500, %s, 'paid')",
            [PRICE],
        )
    with running(settings_for(db, tmp_path)) as url:
        yield Hook(db, url)


def checkout(user_id: str, **overrides: Any) -> dict[str, Any]:
    session = {
        "id": f"cs_test_{uuid.uuid4().hex}",
        "object": "checkout.session",
        "client_reference_id": user_id,
        "payment_status": "paid",
        "status": "complete",
        "metadata": {"price_id": PRICE, "quantity": "2"},
    }
    session.update(overrides)
    return session


def purchases(db: dbutil.TestDatabase, user_id: str) -> int:
    return int(
        scalar(
            db,
            "select count(*) from creditgate.ledger where user_id = %s and entry_type = 'purchase'",
            [user_id],
        )
    )


def test_checkout_delivered_ten_times_at_once_grants_once(hook: Hook) -> None:
    user = create_user(hook.db)
    payload = stripe_event("checkout.session.completed", checkout(user))
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(lambda _: hook.post(payload), range(10)))
    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
    results = [r.json()["result"] for r in responses]
    assert sum(1 for r in results if r["replayed"] is False) == 1
    assert balance(hook.db, user) == 1000 + 200
    assert purchases(hook.db, user) == 1
    # A later retry is still harmless.
    assert hook.post(payload).json()["result"]["replayed"] is True
    assert balance(hook.db, user) == 1200


def test_user_from_metadata_and_async_payment(hook: Hook) -> None:
    user = create_user(hook.db)
    session = checkout(
        user, client_reference_id=None, metadata={"price_id": PRICE, "user_id": user}
    )
    response = hook.post(stripe_event("checkout.session.async_payment_succeeded", session))
    assert response.status_code == 200, response.text
    assert balance(hook.db, user) == 1100


def test_expanded_line_items_are_used(hook: Hook) -> None:
    user = create_user(hook.db)
    session = checkout(
        user,
        metadata={},
        line_items={"object": "list", "data": [{"price": {"id": PRICE}, "quantity": 3}]},
    )
    assert hook.post(stripe_event("checkout.session.completed", session)).status_code == 200
    assert balance(hook.db, user) == 1300


def test_unpaid_checkout_is_acknowledged_not_granted(hook: Hook) -> None:
    user = create_user(hook.db)
    payload = stripe_event("checkout.session.completed", checkout(user, payment_status="unpaid"))
    response = hook.post(payload)
    assert response.status_code == 200
    assert response.json()["ignored"] == "not_paid"
    assert balance(hook.db, user) == 1000


def test_bad_signature_grants_nothing(hook: Hook) -> None:
    user = create_user(hook.db)
    payload = stripe_event("checkout.session.completed", checkout(user))
    wrong_secret = stripe_header(payload, secret="whsec_not_the_right_one")
    for signature in (wrong_secret, "t=1,v1=deadbeef", "garbage", ""):
        response = hook.post(payload, signature=signature)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_request"
    # Signed, then altered: the body no longer matches.
    tampered = payload.replace(b'"quantity": "2"', b'"quantity": "200"')
    assert hook.post(tampered, signature=stripe_header(payload)).status_code == 400
    missing = httpx.post(f"{hook.url}/v1/webhooks/stripe", content=payload)
    assert missing.status_code == 400
    assert missing.json()["error"]["details"]["field"] == "Stripe-Signature"
    assert balance(hook.db, user) == 1000


def test_stale_timestamp_grants_nothing(hook: Hook) -> None:
    user = create_user(hook.db)
    payload = stripe_event("checkout.session.completed", checkout(user))
    stale = stripe_header(payload, timestamp=int(time.time()) - 301)
    response = hook.post(payload, signature=stale)
    assert response.status_code == 400
    assert balance(hook.db, user) == 1000
    fresh = stripe_header(payload, STRIPE_SECRET, timestamp=int(time.time()) - 200)
    assert hook.post(payload, signature=fresh).status_code == 200


def test_refund_claws_back(hook: Hook) -> None:
    user = create_user(hook.db)
    hook.post(stripe_event("checkout.session.completed", checkout(user)))
    assert balance(hook.db, user) == 1200
    partial = {
        "id": "ch_1",
        "object": "charge",
        "refunded": False,
        "amount_refunded": 100,
        "metadata": {"user_id": user, "credits": "200"},
    }
    response = hook.post(stripe_event("charge.refunded", partial))
    assert response.json()["ignored"] == "partial_refund"
    assert balance(hook.db, user) == 1200

    full = {**partial, "refunded": True, "amount_refunded": 1000}
    refund = stripe_event("charge.refunded", full)
    response = hook.post(refund)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["taken"] == 200
    assert balance(hook.db, user) == 1000
    assert hook.post(refund).json()["result"]["replayed"] is True
    assert balance(hook.db, user) == 1000


def test_dispute_claws_back_what_is_left(hook: Hook) -> None:
    user = create_user(hook.db)
    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "charge": "ch_2",
        "metadata": {"user_id": user, "credits": "5000"},
    }
    response = hook.post(stripe_event("charge.dispute.created", dispute))
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["taken"] == 1000 and result["shortfall"] == 4000
    assert balance(hook.db, user) == 0

    other = create_user(hook.db)
    expanded = {
        "id": "dp_2",
        "object": "dispute",
        "metadata": {},
        "charge": {"id": "ch_3", "metadata": {"user_id": other, "credits": "10"}},
    }
    assert hook.post(stripe_event("charge.dispute.created", expanded)).status_code == 200
    assert balance(hook.db, other) == 990


def test_refund_and_dispute_of_one_charge_claw_back_once(hook: Hook) -> None:
    user = create_user(hook.db)
    hook.post(stripe_event("checkout.session.completed", checkout(user)))
    assert balance(hook.db, user) == 1200
    meta = {"user_id": user, "credits": "200"}
    refund = {"id": "ch_9", "object": "charge", "refunded": True, "metadata": meta}
    assert hook.post(stripe_event("charge.refunded", refund)).status_code == 200
    assert balance(hook.db, user) == 1000
    dispute = {"id": "dp_9", "object": "dispute", "charge": "ch_9", "metadata": meta}
    response = hook.post(stripe_event("charge.dispute.created", dispute))
    assert response.status_code == 200, response.text
    assert response.json()["result"]["replayed"] is True
    assert balance(hook.db, user) == 1000


def test_unknown_event_type_is_acknowledged(hook: Hook) -> None:
    response = hook.post(stripe_event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert response.status_code == 200
    assert response.json() == {
        "received": True,
        "event_id": response.json()["event_id"],
        "type": "customer.created",
        "ignored": "unhandled_type",
    }


def test_unusable_events_fail_loudly(hook: Hook) -> None:
    user = create_user(hook.db)
    no_user = checkout(user, client_reference_id=None)
    response = hook.post(stripe_event("checkout.session.completed", no_user))
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "user_id"
    no_price = checkout(user, metadata={})
    response = hook.post(stripe_event("checkout.session.completed", no_price))
    assert response.json()["error"]["details"]["field"] == "metadata.price_id"
    unknown_price = checkout(user, metadata={"price_id": "price_unknown"})
    response = hook.post(stripe_event("checkout.session.completed", unknown_price))
    assert response.status_code == 404
    bad_credits = {"id": "ch", "refunded": True, "metadata": {"user_id": user, "credits": "-5"}}
    response = hook.post(stripe_event("charge.refunded", bad_credits))
    assert response.json()["error"]["details"]["field"] == "metadata.credits"
    assert balance(hook.db, user) == 1000


def test_not_configured(db: dbutil.TestDatabase, tmp_path: Path) -> None:
    with running(settings_for(db, tmp_path, stripe_webhook_secret="")) as url:
        payload = stripe_event("customer.created", {})
        response = httpx.post(
            f"{url}/v1/webhooks/stripe",
            content=payload,
            headers={"Stripe-Signature": stripe_header(payload)},
        )
    assert response.status_code == 503
