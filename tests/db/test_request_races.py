"""request_generation and cancel_generation under real concurrency, PostgREST style.

Every call is its own transaction on its own ``authenticator`` connection with the role,
JWT claims and request headers set exactly as PostgREST sets them (tests.pgrest). Threads
line up on a barrier and fire together, so the database (not the test) decides who wins.

The server's max_connections is shared with other test runs, so "N calls at once" uses up
to ``pool_size()`` connections, each firing its share of the calls back to back.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests import dbutil, pgrest
from tests.db.race import Call, assert_audit_ok, fire, owner_rows


def as_user(
    user_id: str, fn: str, args: dict[str, Any], ip: str = "203.0.113.10"
) -> Call:
    return lambda conn: pgrest.rpc(
        conn, fn, args, role="authenticated", user_id=user_id, headers={"x-forwarded-for": ip}
    )


def new_user(db: dbutil.TestDatabase) -> str:
    return str(owner_rows(db, "select tests.create_user()")[0][0])


@pytest.fixture(scope="module")
def seeded(module_db: dbutil.TestDatabase) -> Iterator[dbutil.TestDatabase]:
    owner_rows(module_db, "select tests.seed_models()")
    owner_rows(
        module_db,
        "insert into creditgate.models (id, kind, name, price_base, max_loras, defaults)"
        " values ('race-flat', 'image', 'Flat 100', 100, 0, '{}')",
    )
    yield module_db


def test_one_key_many_callers_one_generation(seeded: dbutil.TestDatabase) -> None:
    db = seeded
    user = new_user(db)
    call = as_user(
        user,
        "request_generation",
        {"model_id": "img-test", "params": {"prompt": "a race"}, "idempotency_key": "same-key"},
    )
    outcomes = fire(db, [call] * 100)

    assert [o.sqlstate for o in outcomes if o.sqlstate] == []
    ids = {o.result["generation_id"] for o in outcomes}
    assert len(ids) == 1
    assert Counter(o.result["replayed"] for o in outcomes) == Counter({True: 99, False: 1})
    assert {(o.result["cost"], o.result["balance"], o.result["status"]) for o in outcomes} == {
        (33, 967, "queued")
    }

    (generation_id,) = ids
    assert (
        owner_rows(
            db, "select count(*) from creditgate.generations where user_id = %s", [user]
        )[0][0]
        == 1
    )
    assert owner_rows(
        db,
        "select count(*), sum(amount) from creditgate.ledger"
        " where user_id = %s and entry_type = 'spend' and generation_id = %s",
        [user, generation_id],
    )[0] == (1, 33)
    assert (
        owner_rows(db, "select balance from creditgate.balances where user_id = %s", [user])[0][0]
        == 967
    )
    assert_audit_ok(db)


def test_credits_for_exactly_n(seeded: dbutil.TestDatabase) -> None:
    db = seeded
    user = new_user(db)  # 1000 credits of signup bonus; race-flat costs 100 -> exactly 10
    n = 10
    calls = [
        as_user(
            user,
            "request_generation",
            {"model_id": "race-flat", "params": {"prompt": f"p{i}"}, "idempotency_key": f"k-{i}"},
        )
        for i in range(3 * n)
    ]
    outcomes = fire(db, calls)

    passed = [o for o in outcomes if o.sqlstate is None]
    refused = [o for o in outcomes if o.sqlstate is not None]
    assert len(passed) == n
    assert {(o.sqlstate, o.message) for o in refused} == {("PT402", "insufficient_credits")}
    assert sorted(o.result["balance"] for o in passed) == list(range(0, 1000, 100))
    assert (
        owner_rows(db, "select balance from creditgate.balances where user_id = %s", [user])[0][0]
        == 0
    )
    assert (
        owner_rows(
            db, "select count(*) from creditgate.generations where user_id = %s", [user]
        )[0][0]
        == n
    )
    assert (
        owner_rows(
            db,
            "select count(*) from creditgate.ledger where user_id = %s and entry_type = 'spend'",
            [user],
        )[0][0]
        == n
    )
    assert_audit_ok(db)


def _wait_for_room_in_window(window_seconds: int, needed: float = 30.0) -> None:
    """Windows are aligned to the epoch: don't start a burst just before one rolls over."""
    left = window_seconds - time.time() % window_seconds
    if left < needed:
        time.sleep(left + 0.5)


@pytest.mark.parametrize("scope", ["user", "ip"])
def test_rate_limit_exact_under_concurrency(seeded: dbutil.TestDatabase, scope: str) -> None:
    db = seeded
    n = 7
    rule_id = f"race_{scope}_{uuid.uuid4().hex[:6]}"
    owner_rows(db, "update creditgate_private.rate_limit_rules set enabled = false")
    owner_rows(
        db,
        "insert into creditgate_private.rate_limit_rules (id, scope, window_seconds, max_requests)"
        " values (%s, %s, 3600, %s)",
        [rule_id, scope, n],
    )
    ip = f"198.51.100.{ {'user': 31, 'ip': 32}[scope] }"
    # Per user: one user sends everything. Per IP: three users share one address.
    users = [new_user(db)] if scope == "user" else [new_user(db) for _ in range(3)]
    calls = [
        as_user(
            users[i % len(users)],
            "request_generation",
            {"model_id": "img-test", "params": {"prompt": f"r{i}"}, "idempotency_key": f"rl-{i}"},
            ip=ip,
        )
        for i in range(3 * n)
    ]
    _wait_for_room_in_window(3600)
    try:
        outcomes = fire(db, calls)
    finally:
        owner_rows(
            db, "delete from creditgate_private.rate_limit_counters where rule_id = %s", [rule_id]
        )
        owner_rows(db, "delete from creditgate_private.rate_limit_rules where id = %s", [rule_id])

    passed = [o for o in outcomes if o.sqlstate is None]
    refused = [o for o in outcomes if o.sqlstate is not None]
    assert len(passed) == n, [(o.sqlstate, o.message) for o in refused]
    assert {(o.sqlstate, o.message) for o in refused} == {("PT429", "rate_limited")}
    assert (
        owner_rows(
            db,
            "select count(*) from creditgate.generations where user_id = any(%s::uuid[])",
            [users],
        )[0][0]
        == n
    )
    assert_audit_ok(db)


def test_concurrent_cancels_refund_once(seeded: dbutil.TestDatabase) -> None:
    db = seeded
    user = new_user(db)
    with pgrest.connect(db.api_url) as conn:
        created = pgrest.rpc(
            conn,
            "request_generation",
            {"model_id": "video-test", "params": {"prompt": "x"}, "idempotency_key": "c-1"},
            role="authenticated",
            user_id=user,
        )
    outcomes = fire(
        db, [as_user(user, "cancel_generation", {"generation_id": created["generation_id"]})] * 20
    )

    assert sum(o.sqlstate is None for o in outcomes) == 1
    assert {(o.sqlstate, o.message) for o in outcomes if o.sqlstate} == {("PT409", "invalid_state")}
    assert (
        owner_rows(db, "select balance from creditgate.balances where user_id = %s", [user])[0][0]
        == 1000
    )
    assert (
        owner_rows(
            db,
            "select count(*) from creditgate.ledger where user_id = %s and entry_type = 'refund'",
            [user],
        )[0][0]
        == 1
    )
    assert_audit_ok(db)


def test_request_notifies_workers_when_the_queue_was_empty(db: dbutil.TestDatabase) -> None:
    """The first job of an empty queue wakes the workers; a job queued behind it does not
    notify (a NOTIFY serializes every commit on a database-wide lock): whoever claims the
    first job claims it too, and workers take a second look after every claim."""
    owner_rows(db, "select tests.seed_models()")
    user = new_user(db)
    with (
        psycopg.connect(db.owner_url, autocommit=True) as listener,
        pgrest.connect(db.api_url) as conn,
    ):
        listener.execute("listen creditgate_generations")

        def request(key: str) -> str:
            created = pgrest.rpc(
                conn,
                "request_generation",
                {"model_id": "img-test", "params": {"prompt": "ping"}, "idempotency_key": key},
                role="authenticated",
                user_id=user,
            )
            return str(created["generation_id"])

        first = request("n-1")
        assert [n.payload for n in listener.notifies(timeout=5, stop_after=1)] == [first]
        second = request("n-2")  # behind a queued job
        assert [n.payload for n in listener.notifies(timeout=1)] == []
        for gid in (first, second):  # the queue empties again...
            pgrest.rpc(
                conn, "cancel_generation", {"generation_id": gid},
                role="authenticated", user_id=user,
            )
        third = request("n-3")  # ...so the next job notifies
        assert [n.payload for n in listener.notifies(timeout=5, stop_after=1)] == [third]
    assert_audit_ok(db)


def test_terminal_status_notifies_waiters_not_workers(seeded: dbutil.TestDatabase) -> None:
    """Cancel (like settle and reap) wakes HTTP waiters on their own channel; workers,
    listening on creditgate_generations, are not woken for a finished job."""
    db = seeded
    user = new_user(db)
    with (
        psycopg.connect(db.owner_url, autocommit=True) as listener,
        pgrest.connect(db.api_url) as conn,
    ):
        created = pgrest.rpc(
            conn,
            "request_generation",
            {"model_id": "img-test", "params": {"prompt": "bye"}, "idempotency_key": "n-2"},
            role="authenticated",
            user_id=user,
        )
        listener.execute("listen creditgate_generation_settled")
        listener.execute("listen creditgate_generations")
        pgrest.rpc(
            conn, "cancel_generation", {"generation_id": created["generation_id"]},
            role="authenticated", user_id=user,
        )
        got = [(n.channel, n.payload) for n in listener.notifies(timeout=3)]
    assert got == [("creditgate_generation_settled", created["generation_id"])]
