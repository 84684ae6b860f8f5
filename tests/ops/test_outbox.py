"""The transactional outbox (DESIGN §8): every event type is written exactly when its cause
commits and never when it rolls back; balance.low fires once per crossing, also under 50
concurrent spends that cross together. Real connections; causes run as the owner, the way
the definer functions run them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests import dbutil
from tests.db.race import assert_audit_ok, fire
from tests.ops.helpers import events, grant, new_user, owner, set_setting, value

PROMPT = "a secret lighthouse prompt"


def claim(conn: psycopg.Connection, gid: uuid.UUID) -> str:
    row = conn.execute(
        "select creditgate.service_claim_generations(worker_id => 'w-test', max_jobs => 10)"
    ).fetchone()
    assert row is not None
    jobs = {j["generation_id"]: j for j in row[0]}
    return str(jobs[str(gid)]["lease_token"])


def settle(conn: psycopg.Connection, gid: uuid.UUID, token: str, outcome: dict[str, Any]) -> Any:
    row = conn.execute(
        "select creditgate.service_settle_generation(generation_id => %s, worker_id => 'w-test',"
        " lease_token => %s, outcome => %s)",
        [gid, token, Jsonb(outcome)],
    ).fetchone()
    assert row is not None
    return row[0]


def queued(db: dbutil.TestDatabase, user: uuid.UUID, max_attempts: int = 1) -> uuid.UUID:
    return uuid.UUID(
        str(
            value(
                db,
                "select tests.make_queued_generation(%s, 'img-test', 100, %s, %s)",
                user,
                Jsonb({"prompt": PROMPT}),
                max_attempts,
            )
        )
    )


Cause = Callable[[psycopg.Connection], None]


def run_cause(db: dbutil.TestDatabase, cause: Cause, *, commit: bool) -> None:
    with owner(db) as conn, conn.transaction(force_rollback=not commit):
        cause(conn)


def check_commit_and_rollback(
    db: dbutil.TestDatabase, event_type: str, user: uuid.UUID | None, cause: Cause
) -> dict[str, Any]:
    before = len(events(db, event_type, user))
    run_cause(db, cause, commit=False)
    assert len(events(db, event_type, user)) == before, f"{event_type} written by a rollback"
    run_cause(db, cause, commit=True)
    after = events(db, event_type, user)
    assert len(after) == before + 1, f"{event_type}: {len(after) - before} events on commit"
    payload = after[-1]
    assert PROMPT not in json.dumps(payload)
    return payload


def test_credits_added_on_grant_purchase_and_refund(db: dbutil.TestDatabase) -> None:
    user = new_user(db)
    payload = check_commit_and_rollback(db, "credits.added", user, lambda c: _grant(c, user, 170))
    assert payload["entry_type"] == "grant" and payload["amount"] == 170
    assert payload["user_id"] == str(user) and payload["balance_after"] == 170
    assert {"entry_id", "created_at"} <= payload.keys()

    # A spend is not credits.added; its refund is.
    gid = queued(db, user, max_attempts=1)
    assert len(events(db, "credits.added", user)) == 1
    with owner(db) as conn:
        token = claim(conn, gid)

    def fail_it(conn: psycopg.Connection) -> None:
        settle(
            conn,
            gid,
            token,
            {
                "status": "failed",
                "retryable": False,
                "error": {"code": "provider_error", "message": PROMPT},
            },
        )

    refund = check_commit_and_rollback(db, "credits.added", user, fail_it)
    assert refund["entry_type"] == "refund" and refund["generation_id"] == str(gid)

    # A Stripe purchase.
    with owner(db) as conn:
        conn.execute(
            "insert into creditgate.credit_packs (id, name, credits, price_cents,"
            " stripe_price_id) values ('starter', 'Starter', 500, 500, 'price_starter')"
        )

    def buy(conn: psycopg.Connection) -> None:
        conn.execute(
            "select creditgate.service_apply_checkout(event_id => %s, user_id => %s,"
            " price_id => 'price_starter', amount_total => 500, currency => 'usd')",
            [f"evt_{uuid.uuid4().hex}", user],
        )

    purchase = check_commit_and_rollback(db, "credits.added", user, buy)
    assert purchase["entry_type"] == "purchase" and purchase["amount"] == 500


def _grant(conn: psycopg.Connection, user: uuid.UUID, amount: int) -> None:
    grant(conn, user, amount)


def test_generation_succeeded_and_failed(db: dbutil.TestDatabase) -> None:
    user = new_user(db, credits=1000)
    ok_gid = queued(db, user)
    with owner(db) as conn:
        token = claim(conn, ok_gid)
    media = [{"storage_key": f"media/{ok_gid}/1-0.png", "content_type": "image/png", "bytes": 10}]
    payload = check_commit_and_rollback(
        db,
        "generation.succeeded",
        user,
        lambda c: settle(c, ok_gid, token, {"status": "succeeded", "media": media}),
    )
    assert payload["generation_id"] == str(ok_gid) and payload["cost"] == 100
    assert payload["model_id"] == "img-test" and payload["finished_at"]
    assert events(db, "generation.failed", user) == []

    bad_gid = queued(db, user)
    with owner(db) as conn:
        token = claim(conn, bad_gid)
    failure = {
        "status": "failed",
        "retryable": False,
        "error": {"code": "provider_error", "message": PROMPT},
    }
    payload = check_commit_and_rollback(
        db, "generation.failed", user, lambda c: settle(c, bad_gid, token, failure)
    )
    assert payload["generation_id"] == str(bad_gid) and payload["error_code"] == "provider_error"

    # A retryable failure with attempts left goes back to the queue: no event yet.
    retry_gid = queued(db, user, max_attempts=3)
    with owner(db) as conn:
        token = claim(conn, retry_gid)
        settle(conn, retry_gid, token, {**failure, "retryable": True})
    assert [p["generation_id"] for p in events(db, "generation.failed", user)] == [str(bad_gid)]


def test_balance_low_once_per_crossing_and_rearms(db: dbutil.TestDatabase) -> None:
    user = new_user(db, credits=250)  # default threshold 100

    def spend(amount: int) -> Cause:
        def cause(conn: psycopg.Connection) -> None:
            conn.execute(
                "select creditgate_private.spend_credits(%s, %s, %s)",
                [user, amount, f"spend-{uuid.uuid4()}"],
            )

        return cause

    run_cause(db, spend(100), commit=True)  # 250 -> 150: above the threshold
    assert events(db, "balance.low", user) == []
    payload = check_commit_and_rollback(db, "balance.low", user, spend(100))  # 150 -> 50
    assert payload["balance"] == 50 and payload["threshold"] == 100
    assert payload["previous_balance"] == 150
    run_cause(db, spend(10), commit=True)  # 50 -> 40: still below, no second event
    assert len(events(db, "balance.low", user)) == 1
    with owner(db) as conn:
        grant(conn, user, 60)  # 100: at the threshold again, re-armed
    run_cause(db, spend(1), commit=True)  # 99: a new crossing
    assert len(events(db, "balance.low", user)) == 2

    # A per-plan override replaces the default.
    pro = new_user(db, credits=3000, plan="pro")
    set_setting(db, "plan_low_balance_thresholds", {"pro": 2000})
    with owner(db) as conn:
        conn.execute(
            "select creditgate_private.spend_credits(%s, 1500, %s)", [pro, f"s-{uuid.uuid4()}"]
        )
    assert [p["threshold"] for p in events(db, "balance.low", pro)] == [2000]

    # Raising the default after the fact takes effect at once (the trigger's bounds follow).
    rich = new_user(db, credits=1000)
    set_setting(db, "low_balance_threshold", 300)
    with owner(db) as conn:
        conn.execute(
            "select creditgate_private.spend_credits(%s, 750, %s)", [rich, f"s-{uuid.uuid4()}"]
        )
    assert [(p["threshold"], p["balance"]) for p in events(db, "balance.low", rich)] == [(300, 250)]


def test_balance_low_once_under_50_concurrent_spends(db: dbutil.TestDatabase) -> None:
    user = new_user(db, credits=520)  # 50 x 10 takes it to 20, across the threshold of 100

    def spend(conn: psycopg.Connection) -> Any:
        with conn.transaction():
            return conn.execute(
                "select creditgate_private.spend_credits(%s, 10, %s)",
                [user, f"race-{uuid.uuid4()}"],
            ).fetchone()

    outcomes = fire(db.owner_url, [spend] * 50, size=50)
    assert [o.sqlstate for o in outcomes] == [None] * 50
    assert value(db, "select balance from creditgate.balances where user_id = %s", user) == 20
    low = events(db, "balance.low", user)
    assert len(low) == 1, low
    assert low[0]["previous_balance"] >= 100 > low[0]["balance"]
    assert_audit_ok(db)


def test_clawback_owed(db: dbutil.TestDatabase) -> None:
    user = new_user(db, credits=30)

    def clawback(conn: psycopg.Connection) -> None:
        conn.execute(
            "select creditgate.service_clawback(event_id => %s, user_id => %s, amount => 100,"
            " reason => 'dispute')",
            [f"evt_{uuid.uuid4().hex}", user],
        )

    payload = check_commit_and_rollback(db, "clawback.owed", user, clawback)
    assert payload["requested"] == 100 and payload["taken"] == 30 and payload["owed"] == 70
    assert payload["kind"] == "clawback"

    # A Stripe dispute of a pack the user has spent from: what it cannot take is owed.
    def dispute(conn: psycopg.Connection) -> None:
        conn.execute(
            "select creditgate.service_stripe_dispute(dispute_id => %s, user_id => %s,"
            " payment_id => 'ch_test', credits => 50, reason => 'fraudulent')",
            [f"dp_{uuid.uuid4().hex}", user],
        )

    payload = check_commit_and_rollback(db, "clawback.owed", user, dispute)
    assert payload["kind"] == "dispute" and payload["payment_id"] == "ch_test"
    assert payload["taken"] == 0 and payload["owed"] == payload["requested"] > 0
    # A clawback that takes everything it asks for owes nothing: no event.
    rich = new_user(db, credits=500)
    with owner(db) as conn:
        conn.execute(
            "select creditgate.service_clawback(event_id => 'evt_full', user_id => %s,"
            " amount => 100, reason => 'refund')",
            [rich],
        )
    assert events(db, "clawback.owed", rich) == []


def test_credits_expiring_once_per_lot(db: dbutil.TestDatabase) -> None:
    user = new_user(db)
    soon = datetime.now(UTC) + timedelta(days=3)
    later = datetime.now(UTC) + timedelta(days=30)
    with owner(db) as conn:
        grant(conn, user, 40, expires_at=soon)
        grant(conn, user, 50, expires_at=later)
        grant(conn, user, 60)

    def sweep(conn: psycopg.Connection) -> None:
        conn.execute("select creditgate_private.run_job('expire-credits', 'test')")

    payload = check_commit_and_rollback(db, "credits.expiring", user, sweep)
    assert payload["remaining"] == 40
    assert datetime.fromisoformat(payload["expires_at"]) == soon.replace(
        microsecond=soon.microsecond
    )
    run_cause(db, sweep, commit=True)  # the same lot: not again
    assert len(events(db, "credits.expiring", user)) == 1
    set_setting(db, "credits_expiring_days", 40)
    run_cause(db, sweep, commit=True)  # now the 30-day lot is within the window, once
    assert sorted(p["remaining"] for p in events(db, "credits.expiring", user)) == [40, 50]


def test_audit_failed_and_stored(db: dbutil.TestDatabase) -> None:
    user = new_user(db, credits=10)

    def audit(conn: psycopg.Connection) -> None:
        conn.execute("select creditgate_private.run_job('audit', 'test')")

    run_cause(db, audit, commit=True)
    assert events(db, "audit.failed") == []
    assert (
        value(db, "select ok from creditgate_private.audit_runs order by id desc limit 1") is True
    )

    with owner(db) as conn:  # a balance that disagrees with its ledger
        conn.execute(
            "update creditgate.balances set balance = balance + 5 where user_id = %s", [user]
        )
    payload = check_commit_and_rollback(db, "audit.failed", None, audit)
    assert payload["failures"] >= 1 and payload["checks"]
    run = value(
        db,
        "select jsonb_build_object('id', id, 'ok', ok) from creditgate_private.audit_runs"
        " order by id desc limit 1",
    )
    assert run == {"id": payload["audit_run_id"], "ok": False}


@pytest.mark.parametrize("event_type", ["credits.added"])
def test_events_fan_out_to_subscribed_endpoints_only(
    db: dbutil.TestDatabase, event_type: str
) -> None:
    with owner(db) as conn:
        wanted = conn.execute(
            "select creditgate_private.webhook_add('https://example.com/a', array[%s])",
            [event_type],
        ).fetchone()
        other = conn.execute(
            "select creditgate_private.webhook_add('https://example.com/b', array['audit.failed'])"
        ).fetchone()
        every = conn.execute(
            "select creditgate_private.webhook_add('https://example.com/c', array['*'])"
        ).fetchone()
    assert wanted and other and every
    user = new_user(db, credits=5)
    rows = value(
        db,
        "select jsonb_agg(d.endpoint_id order by d.endpoint_id) from creditgate_private.webhook_deliveries as d"
        " join creditgate_private.events as e on e.id = d.event_id where e.user_id = %s",
        user,
    )
    assert sorted(rows) == sorted([wanted[0]["endpoint_id"], every[0]["endpoint_id"]])
