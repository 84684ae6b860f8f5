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
        "amount_total": 1000,
        "currency": "usd",
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
        user,
        client_reference_id=None,
        amount_total=500,
        metadata={"price_id": PRICE, "user_id": user},
    )
    response = hook.post(stripe_event("checkout.session.async_payment_succeeded", session))
    assert response.status_code == 200, response.text
    assert balance(hook.db, user) == 1100


def test_expanded_line_items_are_used(hook: Hook) -> None:
    user = create_user(hook.db)
    session = checkout(
        user,
        metadata={},
        line_items={
            "object": "list",
            "data": [
                {"price": {"id": PRICE}, "quantity": 3, "amount_total": 1500, "currency": "usd"}
            ],
        },
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


def charge(user: str, charge_id: str, refunded: int, **extra: Any) -> dict[str, Any]:
    """A charge for 2 packs (1000 cents, 200 credits) with `refunded` cents refunded so far."""
    return {
        "id": charge_id,
        "object": "charge",
        "amount": 1000,
        "amount_refunded": refunded,
        "refunded": refunded >= 1000,
        "metadata": {"user_id": user, "credits": "200"},
        **extra,
    }


def refund_list(*refunds: tuple[str, int]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": rid, "object": "refund", "amount": amount, "status": "succeeded"}
                 for rid, amount in refunds],
    }


def test_refund_claws_back(hook: Hook) -> None:
    user = create_user(hook.db)
    hook.post(stripe_event("checkout.session.completed", checkout(user)))
    assert balance(hook.db, user) == 1200
    full = stripe_event("charge.refunded", charge(user, "ch_1", 1000))
    response = hook.post(full)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["taken"] == 200
    assert balance(hook.db, user) == 1000
    assert hook.post(full).json()["result"]["replayed"] is True
    assert balance(hook.db, user) == 1000


def test_partial_refunds_claw_back_in_proportion_delivered_twice_and_out_of_order(
    hook: Hook,
) -> None:
    """Three partial refunds of a 1000-cent charge that bought 200 credits (333 + 333 + 334
    cents), each reported by its own charge.refunded listing the refunds so far. Delivered
    newest first, then oldest, then each again: 66, then 0, then the rest, never more."""
    user = create_user(hook.db)
    hook.post(stripe_event("checkout.session.completed", checkout(user)))
    assert balance(hook.db, user) == 1200
    first = stripe_event(
        "charge.refunded", charge(user, "ch_p", 333, refunds=refund_list(("re_a", 333)))
    )
    second = stripe_event(
        "charge.refunded",
        charge(user, "ch_p", 666, refunds=refund_list(("re_b", 333), ("re_a", 333))),
    )
    third = stripe_event(
        "charge.refunded",
        charge(
            user, "ch_p", 1000, refunds=refund_list(("re_c", 334), ("re_b", 333), ("re_a", 333))
        ),
    )
    response = hook.post(second)
    assert response.status_code == 200, response.text
    # floor(200 * 666 / 1000) = 133 for the charge so far, under whichever refund comes first.
    assert [r["taken"] for r in response.json()["result"]] == [133, 0]
    assert balance(hook.db, user) == 1200 - 133
    assert hook.post(first).json()["result"]["replayed"] is True
    assert hook.post(second).status_code == 200
    assert balance(hook.db, user) == 1200 - 133
    result = hook.post(third).json()["result"]
    # re_c is new and takes the rest; re_b and re_a replay their original figures.
    assert [(r["taken"], r["replayed"]) for r in result] == [(67, False), (133, True), (0, True)]
    for payload in (third, first, second):
        assert hook.post(payload).status_code == 200
    assert balance(hook.db, user) == 1000, "the three refunds clawed back the pack, once"
    assert scalar(
        hook.db,
        "select sum(amount) from creditgate.ledger where user_id = %s and entry_type = 'clawback'",
        [user],
    ) == 200


def test_partial_refunds_without_a_refund_list_use_the_running_total(hook: Hook) -> None:
    """Recent API versions send charge.refunded without the refunds: each event is keyed by
    the running total it reports, so a redelivery replays and an older event adds nothing."""
    user = create_user(hook.db)
    hook.post(stripe_event("checkout.session.completed", checkout(user)))
    later = stripe_event("charge.refunded", charge(user, "py_n", 500))
    earlier = stripe_event("charge.refunded", charge(user, "py_n", 250))
    assert hook.post(later).json()["result"]["taken"] == 100
    assert hook.post(earlier).json()["result"]["taken"] == 0
    assert hook.post(later).json()["result"]["replayed"] is True
    assert balance(hook.db, user) == 1100
    assert hook.post(stripe_event("charge.refunded", charge(user, "py_n", 999))).json()[
        "result"
    ]["taken"] == 99, "rounded down: 199 of the pack for 999 of 1000 cents"
    assert hook.post(stripe_event("charge.refunded", charge(user, "py_n", 1000))).json()[
        "result"
    ]["taken"] == 1
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


@pytest.mark.parametrize("charge_id", ["ch_9", "py_9"])
def test_refund_and_dispute_of_one_charge_claw_back_once(hook: Hook, charge_id: str) -> None:
    """Whatever the charge id's prefix (py_ charges were clawed back twice), and in either
    order."""
    user = create_user(hook.db)
    hook.post(stripe_event("checkout.session.completed", checkout(user)))
    assert balance(hook.db, user) == 1200
    meta = {"user_id": user, "credits": "200"}
    refund = stripe_event(
        "charge.refunded", charge(user, charge_id, 1000, payment_intent=f"pi_{charge_id}")
    )
    dispute = stripe_event(
        "charge.dispute.created",
        {"id": f"dp_{charge_id}", "object": "dispute", "charge": charge_id,
         "payment_intent": f"pi_{charge_id}", "metadata": meta},
    )
    assert hook.post(refund).status_code == 200
    assert balance(hook.db, user) == 1000
    response = hook.post(dispute)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["taken"] == 0
    assert hook.post(dispute).json()["result"]["replayed"] is True
    assert hook.post(refund).json()["result"]["replayed"] is True
    assert balance(hook.db, user) == 1000

    # The other order, on a second purchase: the dispute first, the refund after it.
    other = create_user(hook.db)
    hook.post(stripe_event("checkout.session.completed", checkout(other)))
    other_meta = {"user_id": other, "credits": "200"}
    assert hook.post(stripe_event(
        "charge.dispute.created",
        {"id": f"dp2_{charge_id}", "object": "dispute", "charge": f"{charge_id}_2",
         "metadata": other_meta},
    )).json()["result"]["taken"] == 200
    late_refund = charge(other, f"{charge_id}_2", 1000)
    assert hook.post(stripe_event("charge.refunded", late_refund)).json()["result"]["taken"] == 0
    assert balance(hook.db, other) == 1000


def test_dispute_without_a_charge_is_keyed_by_its_payment_intent(hook: Hook) -> None:
    user = create_user(hook.db)
    meta = {"user_id": user, "credits": "300"}
    first = {"id": "dp_pi_1", "object": "dispute", "payment_intent": "pi_only", "metadata": meta}
    second = {**first, "id": "dp_pi_2"}
    assert hook.post(stripe_event("charge.dispute.created", first)).json()["result"]["taken"] == 300
    response = hook.post(stripe_event("charge.dispute.created", second))
    assert response.json()["result"]["requested"] == 0, "one payment intent, clawed back once"
    assert balance(hook.db, user) == 700
    nothing = {"id": "dp_none", "object": "dispute", "metadata": meta}
    response = hook.post(stripe_event("charge.dispute.created", nothing))
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "charge"


def test_won_dispute_returns_credits_once_delivered_twice_and_out_of_order(hook: Hook) -> None:
    user = create_user(hook.db)
    hook.post(stripe_event("checkout.session.completed", checkout(user)))
    meta = {"user_id": user, "credits": "1500"}
    dispute = {"id": "dp_w", "object": "dispute", "charge": "ch_w", "metadata": meta,
               "status": "needs_response"}
    response = hook.post(stripe_event("charge.dispute.created", dispute))
    assert response.json()["result"]["taken"] == 1200
    assert response.json()["result"]["shortfall"] == 300
    assert balance(hook.db, user) == 0
    # Credits arriving while 300 are owed pay the debt first.
    assert hook.post(stripe_event("checkout.session.completed", checkout(user))).json()[
        "result"
    ]["owed_paid"] == 200
    assert balance(hook.db, user) == 0

    won = stripe_event("charge.dispute.closed", {**dispute, "status": "won"})
    reinstated = stripe_event("charge.dispute.funds_reinstated", {**dispute, "status": "won"})
    response = hook.post(won)
    assert response.status_code == 200, response.text
    assert response.json()["result"] | {"entry_id": None} == {
        "returned": 1400, "cancelled": 100, "balance": 1400, "entry_id": None,
        "replayed": False,
    }
    for payload in (won, reinstated, stripe_event("charge.dispute.created", dispute)):
        assert hook.post(payload).json()["result"]["replayed"] is True
    assert balance(hook.db, user) == 1400
    assert scalar(
        hook.db, "select owed from creditgate.balances where user_id = %s", [user]
    ) == 0

    # Closed (won) before the dispute itself arrives: the dispute then takes nothing.
    early = {"id": "dp_e", "object": "dispute", "charge": "ch_e", "metadata": meta}
    assert hook.post(stripe_event("charge.dispute.closed", {**early, "status": "won"})).json()[
        "result"
    ]["returned"] == 0
    assert hook.post(stripe_event("charge.dispute.created", early)).json()["result"] == {
        "requested": 0, "taken": 0, "shortfall": 0, "entry_id": None, "balance": 1400,
        "replayed": True,
    }
    # A lost dispute changes nothing.
    lost = hook.post(stripe_event("charge.dispute.closed", {**early, "status": "lost"}))
    assert lost.json()["ignored"] == "dispute_lost"
    assert balance(hook.db, user) == 1400


def test_checkout_paying_less_than_the_pack_is_held_not_granted(
    hook: Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    """A paid session with amount_total 1 in jpy naming the pack granted the pack's credits."""
    user = create_user(hook.db)
    cheap = checkout(user, amount_total=1, currency="jpy")
    payload = stripe_event("checkout.session.completed", cheap)
    response = hook.post(payload)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["held"] is True
    assert response.json()["result"]["reason"] == "currency_mismatch"
    assert hook.post(payload).json()["result"]["held"] is True
    assert balance(hook.db, user) == 1000
    assert purchases(hook.db, user) == 0
    rows = scalar(
        hook.db,
        "select json_agg(json_build_array(reason, expected_amount, expected_currency,"
        " amount_total, currency)) from creditgate_private.checkout_holds where user_id = %s",
        [user],
    )
    assert rows == [["currency_mismatch", 1000, "usd", 1, "jpy"]]
    underpaid = checkout(user, amount_total=999)
    assert hook.post(stripe_event("checkout.session.completed", underpaid)).json()["result"][
        "reason"
    ] == "amount_mismatch"
    assert balance(hook.db, user) == 1000
    logged = capsys.readouterr().err
    assert '"event": "stripe_checkout_held"' in logged, logged[-2000:]
    taxed = checkout(user, amount_total=1100, total_details={"amount_tax": 100})
    assert hook.post(stripe_event("checkout.session.completed", taxed)).json()["result"][
        "credits"
    ] == 200, "tax on top of the pack's price is not a mismatch"


def test_completed_and_async_payment_of_one_session_grant_once(hook: Hook) -> None:
    user = create_user(hook.db)
    session = checkout(user)
    completed = stripe_event("checkout.session.completed", session)
    succeeded = stripe_event("checkout.session.async_payment_succeeded", session)
    for payload in (completed, succeeded, succeeded, completed):
        assert hook.post(payload).status_code == 200
    assert balance(hook.db, user) == 1200
    assert purchases(hook.db, user) == 1
    assert scalar(
        hook.db,
        "select idempotency_key from creditgate.ledger where user_id = %s"
        " and entry_type = 'purchase'",
        [user],
    ) == f"stripe:checkout:{session['id']}"


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
