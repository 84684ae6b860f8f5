"""The credit ledger under real concurrency: no overdraft, no double grant, no double
refund, no deadlock.

Every call runs in its own transaction on its own connection: the private primitives as the
owner (as request_generation calls them inside its transaction), the API functions the way
PostgREST calls them (tests.pgrest, over ``authenticator``). Threads line up on a barrier and
fire together, so the database, not the test, decides who wins. The server's
max_connections is shared with other test runs, so "N at once" uses up to ``pool_size()``
connections, each firing its share of the calls back to back. Every test ends with
creditgate.audit() ok=true.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from tests import dbutil, pgrest
from tests.db.race import Call, assert_audit_ok, fire, owner_rows, owner_value, pool_size
from tests.polling import eventually


def owner_call(sql: str, *params: Any) -> Call:
    def call(conn: psycopg.Connection) -> Any:
        row = conn.execute(sql, list(params)).fetchone()
        return row[0] if row else None

    return call


def new_user(db: dbutil.TestDatabase, bonus: int = 0) -> uuid.UUID:
    """A user whose only credits are the signup bonus (0: none)."""
    with psycopg.connect(db.owner_url, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "insert into creditgate_private.settings (key, value) values ('signup_bonus', %s)"
            " on conflict (key) do update set value = excluded.value",
            [Jsonb(bonus)],
        )
        row = conn.execute("select tests.create_user()").fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def grant(
    db: dbutil.TestDatabase, user: uuid.UUID, amount: int, key: str, **kw: Any
) -> dict[str, Any]:
    with pgrest.connect(db.api_url) as conn:
        result: dict[str, Any] = pgrest.rpc(
            conn,
            "service_grant_credits",
            {"user_id": user, "amount": amount, "entry_type": "grant", "idempotency_key": key}
            | kw,
            casts={"amount": "bigint"},
        )
    return result


# --------------------------------------------------------------------------- spends


def test_200_concurrent_spends_against_10_spends_worth_never_overdraw(
    db: dbutil.TestDatabase,
) -> None:
    user = new_user(db)
    # 70 credits in three lots of different kinds: exactly ten spends of 7.
    grant(db, user, 25, "lot-a", category="paid", priority=10)
    grant(db, user, 30, "lot-b", expires_at=datetime.now(UTC) + timedelta(days=1))
    grant(db, user, 15, "lot-c")

    stop = threading.Event()
    seen: list[tuple[int, int]] = []

    def watch() -> None:
        """Sample the balance and spendable credits while the spends race."""
        with psycopg.connect(db.owner_url, autocommit=True) as conn:
            while not stop.is_set():
                row = conn.execute(
                    "select b.balance, creditgate_private.available_credits(b.user_id, now())"
                    " from creditgate.balances as b where b.user_id = %s",
                    [user],
                ).fetchone()
                assert row is not None
                seen.append((int(row[0]), int(row[1])))
                time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    calls = [
        owner_call("select creditgate_private.spend_credits(%s, 7, %s)", user, f"spend-{i}")
        for i in range(200)
    ]
    try:
        outcomes = fire(db.owner_url, calls, pool_size(db, 200), join_timeout=120)
    finally:
        stop.set()
        watcher.join()

    won = [o for o in outcomes if o.sqlstate is None]
    lost = [o for o in outcomes if o.sqlstate is not None]
    assert len(won) == 10
    assert {(o.sqlstate, o.message) for o in lost} == {("PT402", "insufficient_credits")}
    assert len(lost) == 190
    assert sorted(o.result["balance"] for o in won) == list(range(0, 70, 7))
    assert len({o.result["entry_id"] for o in won}) == 10
    assert owner_value(db, "select balance from creditgate.balances where user_id = %s", user) == 0
    assert owner_value(
        db, "select count(*) from creditgate.ledger where user_id = %s and entry_type = 'spend'",
        user,
    ) == 10
    assert owner_value(
        db, "select sum(remaining) from creditgate.credit_lots where user_id = %s", user
    ) == 0
    assert seen and min(min(b, a) for b, a in seen) >= 0
    assert_audit_ok(db)


# --------------------------------------------------------------------------- checkout


def test_50_concurrent_deliveries_of_one_checkout_grant_once(db: dbutil.TestDatabase) -> None:
    user = new_user(db)
    owner_value(
        db,
        "insert into creditgate.credit_packs (id, name, credits, price_cents, stripe_price_id)"
        " values ('pack', 'Pack', 500, 500, 'price_pack') returning id",
    )
    calls: list[Call] = [
        lambda conn: pgrest.rpc(
            conn, "service_apply_checkout",
            {"event_id": "evt_race", "user_id": user, "price_id": "price_pack",
             "amount_total": 500, "currency": "usd"},
            casts={"amount_total": "bigint"},
        )
        for _ in range(50)
    ]
    outcomes = fire(db.api_url, calls, pool_size(db, 50), join_timeout=120)

    assert [o.sqlstate for o in outcomes] == [None] * 50
    assert len({o.result["entry_id"] for o in outcomes}) == 1
    assert Counter(o.result["replayed"] for o in outcomes) == {False: 1, True: 49}
    assert {o.result["balance"] for o in outcomes} == {500}
    assert owner_value(
        db, "select count(*) from creditgate.ledger where idempotency_key = 'stripe:evt_race'"
    ) == 1
    assert owner_value(
        db, "select balance from creditgate.balances where user_id = %s", user
    ) == 500
    assert_audit_ok(db)


# --------------------------------------------------------------------------- refunds


def _charged_user(db: dbutil.TestDatabase, charge: int) -> uuid.UUID:
    user = new_user(db)
    grant(db, user, 40, "r-lot-a", priority=10)
    grant(db, user, 100, "r-lot-b", category="paid")
    owner_value(db, "select creditgate_private.spend_credits(%s, %s, 'the-charge')", user, charge)
    return user


def test_50_concurrent_refunds_with_one_key_refund_once(db: dbutil.TestDatabase) -> None:
    user = _charged_user(db, 100)
    calls = [
        owner_call(
            "select creditgate_private.refund_credits(%s, 'the-charge', 100, 'refund-once')", user
        )
        for _ in range(50)
    ]
    outcomes = fire(db.owner_url, calls, pool_size(db, 50), join_timeout=120)

    assert [o.sqlstate for o in outcomes] == [None] * 50
    assert len({o.result["entry_id"] for o in outcomes}) == 1
    assert Counter(o.result["replayed"] for o in outcomes) == {False: 1, True: 49}
    assert {o.result["refunded"] for o in outcomes} == {100}
    assert owner_value(
        db, "select count(*) from creditgate.ledger where charge_key = 'the-charge'"
    ) == 1
    assert owner_value(
        db, "select balance from creditgate.balances where user_id = %s", user
    ) == 140
    assert_audit_ok(db)


def test_50_concurrent_refunds_with_distinct_keys_refund_exactly_the_charge(
    db: dbutil.TestDatabase,
) -> None:
    user = _charged_user(db, 100)
    # 50 x 7 = 350 asked for a charge of 100: 14 get 7, one gets 2, the rest get 0.
    calls = [
        owner_call(
            "select creditgate_private.refund_credits(%s, 'the-charge', 7, %s)", user, f"refund-{i}"
        )
        for i in range(50)
    ]
    outcomes = fire(db.owner_url, calls, pool_size(db, 50), join_timeout=120)

    assert [o.sqlstate for o in outcomes] == [None] * 50
    refunded = [o.result["refunded"] for o in outcomes]
    assert sum(refunded) == 100
    assert Counter(refunded) == {7: 14, 2: 1, 0: 35}
    assert owner_value(
        db, "select sum(amount) from creditgate.ledger where charge_key = 'the-charge'"
    ) == 100
    assert owner_value(
        db, "select balance from creditgate.balances where user_id = %s", user
    ) == 140
    assert owner_value(
        db, "select array_agg(remaining::bigint order by priority) from creditgate.credit_lots"
        " where user_id = %s", user,
    ) == [40, 100]
    assert_audit_ok(db)


# --------------------------------------------------------------------------- everything at once


@dataclass
class MixStats:
    ops: Counter[str]
    errors: Counter[tuple[str, str]]


def test_random_mix_for_20_seconds_has_no_deadlock_and_audits_clean(
    db: dbutil.TestDatabase,
) -> None:
    """Grants, checkouts, admin recharges, spends, refunds, clawbacks, expiry sweeps and
    balance reads on 100 users from 16 threads for 20 seconds. Lots expire during the run,
    so spends, refunds and sweeps race over the same lots."""
    users = [new_user(db, bonus=200) for _ in range(100)]
    admin = users[0]
    owner_value(db, "select tests.make_admin(%s)", admin)
    owner_value(
        db,
        "insert into creditgate.credit_packs (id, name, credits, price_cents, stripe_price_id,"
        " expires_after) values ('mix', 'Mix', 80, 100, 'price_mix', interval '3 seconds')"
        " returning id",
    )
    charges: list[tuple[uuid.UUID, str, int]] = []
    charges_lock = threading.Lock()
    deadline = time.monotonic() + 20
    threads_n = 16
    stats = [MixStats(Counter(), Counter()) for _ in range(threads_n)]
    crashes: list[BaseException] = []
    barrier = threading.Barrier(threads_n)

    def pick(rng: random.Random) -> str:
        roll = rng.random()
        for op, upto in (("spend", 0.40), ("refund", 0.55), ("grant", 0.70), ("checkout", 0.75),
                         ("admin", 0.80), ("clawback", 0.87), ("sweep", 0.92)):
            if roll < upto:
                return op
        return "read"

    def run(op: str, rng: random.Random, owner: psycopg.Connection, api: psycopg.Connection,
            tag: str) -> None:
        user = rng.choice(users)
        if op == "spend":
            amount = rng.randint(1, 60)
            owner.execute(
                "select creditgate_private.spend_credits(%s, %s, %s)", [user, amount, tag]
            )
            with charges_lock:
                charges.append((user, tag, amount))
        elif op == "refund":
            with charges_lock:
                picked = rng.choice(charges) if charges else None
            if picked is not None:
                owner.execute(
                    "select creditgate_private.refund_credits(%s, %s, %s, %s)",
                    [picked[0], picked[1], rng.randint(1, picked[2]), tag],
                )
        elif op == "grant":
            expires = rng.choice([None, datetime.now(UTC) + timedelta(seconds=rng.uniform(1, 6))])
            pgrest.rpc(
                api, "service_grant_credits",
                {"user_id": user, "amount": rng.randint(1, 120), "entry_type": "grant",
                 "idempotency_key": tag, "category": rng.choice(["paid", "promotional"]),
                 "expires_at": expires, "priority": rng.choice([10, 50, 90])},
                casts={"amount": "bigint", "expires_at": "timestamptz"},
            )
        elif op == "checkout":
            pgrest.rpc(
                api, "service_apply_checkout",
                {"event_id": tag, "user_id": user, "price_id": "price_mix",
                 "amount_total": 100, "currency": "usd"},
                casts={"amount_total": "bigint"},
            )
        elif op == "admin":
            pgrest.rpc(
                api, "admin_add_credits",
                {"user_id": user, "amount": rng.randint(1, 50), "reason": "mix",
                 "idempotency_key": tag},
                role="authenticated", user_id=str(admin), casts={"amount": "bigint"},
            )
        elif op == "clawback":
            pgrest.rpc(
                api, "service_clawback",
                {"event_id": tag, "user_id": user, "amount": rng.randint(1, 100),
                 "reason": "mix"},
                casts={"amount": "bigint"},
            )
        elif op == "sweep":
            pgrest.rpc(api, "service_expire_credits", {"max_lots": rng.choice([5, 50, 10000])})
        else:
            balance = pgrest.rpc(api, "get_balance", role="authenticated", user_id=str(user))
            assert balance["balance"] >= balance["available"] >= 0

    def worker(slot: int) -> None:
        rng = random.Random(slot)
        try:
            with psycopg.connect(db.owner_url, autocommit=True) as owner, \
                    pgrest.connect(db.api_url) as api:
                barrier.wait(timeout=60)
                n = 0
                while time.monotonic() < deadline:
                    n += 1
                    op = pick(rng)
                    try:
                        run(op, rng, owner, api, f"mix-{slot}-{n}")
                        stats[slot].ops[op] += 1
                    except psycopg.Error as exc:
                        stats[slot].errors[(str(exc.diag.sqlstate), op)] += 1
        except BaseException as exc:  # surfaced below
            crashes.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not crashes, crashes[0]

    ops: Counter[str] = sum((s.ops for s in stats), Counter())
    errors: Counter[tuple[str, str]] = sum((s.errors for s in stats), Counter())
    assert not any(state == "40P01" for state, _ in errors), errors
    # The only refusal the contract allows here: a spend larger than what is spendable.
    assert set(errors) <= {("PT402", "spend")}, errors
    for op in ("spend", "refund", "grant", "checkout", "admin", "clawback", "sweep", "read"):
        assert ops[op] > 0, ops
    assert errors[("PT402", "spend")] > 0, "the mix never ran anyone dry; raise spend amounts"

    assert owner_value(
        db, "select count(*) from creditgate.ledger where entry_type = 'expire'"
    ) > 0, "no lot lapsed during the run: sweeps never raced spends and refunds"
    # Let every short-lived lot lapse and sweep it, then check the books.
    with pgrest.connect(db.api_url) as api:
        pgrest.rpc(api, "service_expire_credits", {"now": datetime.now(UTC) + timedelta(days=1)},
                   casts={"now": "timestamptz"})
    assert owner_value(db, "select min(balance) from creditgate.balances") >= 0
    assert_audit_ok(db)


# --------------------------------------------------------------------------- clawbacks


def test_one_clawback_event_raced_for_two_users_is_applied_once(db: dbutil.TestDatabase) -> None:
    """A misrouted Stripe event delivered for two users at once: one user's clawback is
    recorded, every other call replays it or gets PT409, never an unexpected error."""
    users = [new_user(db) for _ in range(2)]  # nothing spendable: taken = 0, no ledger entry
    calls: list[Call] = [
        (lambda user: lambda conn: pgrest.rpc(
            conn, "service_clawback",
            {"event_id": "evt_dispute", "user_id": user, "amount": 10, "reason": "dispute"},
            casts={"amount": "bigint"},
        ))(users[i % 2])
        for i in range(40)
    ]
    outcomes = fire(db.api_url, calls, pool_size(db, 40), join_timeout=120)

    assert {o.sqlstate for o in outcomes} <= {None, "PT409"}, [o.message for o in outcomes]
    assert {o.message for o in outcomes if o.sqlstate} <= {"idempotency_key_reused"}
    done = [o.result for o in outcomes if o.sqlstate is None]
    assert Counter(r["replayed"] for r in done)[False] == 1
    assert owner_value(
        db, "select count(*) from creditgate_private.clawbacks where idempotency_key = 'stripe:evt_dispute'"
    ) == 1
    assert_audit_ok(db)


# --------------------------------------------------------------------------- one key, two users


def _someone_waits_for_a_lock(db: dbutil.TestDatabase) -> bool:
    return bool(owner_value(
        db,
        "select count(*) > 0 from pg_stat_activity"
        " where datname = current_database() and wait_event_type = 'Lock'",
    ))


def _second_call_while_first_is_open(
    db: dbutil.TestDatabase, first: Call, second: Call, *, commit: bool
) -> tuple[Any, BaseException | None, Any]:
    """Run `first` in an open transaction; start `second` on another connection and wait
    until it waits for a lock (the key's); then commit (or roll back) the first and return
    (first's result, second's error, second's result)."""
    outcome: dict[str, Any] = {}

    def run_second() -> None:
        try:
            with pgrest.connect(db.api_url) as conn:
                outcome["result"] = second(conn)
        except BaseException as exc:  # reported to the test below
            outcome["error"] = exc

    with pgrest.connect(db.api_url) as conn:
        conn.autocommit = False
        conn.execute("select 1")  # an open transaction: pgrest.rpc's becomes a savepoint in it
        first_result = first(conn)
        thread = threading.Thread(target=run_second)
        thread.start()
        try:
            eventually(lambda: _someone_waits_for_a_lock(db), 30, "the second call to wait")
            assert thread.is_alive()
        finally:
            if commit:
                conn.commit()
            else:
                conn.rollback()
        thread.join(timeout=30)
    assert not thread.is_alive()
    return first_result, outcome.get("error"), outcome.get("result")


def test_one_grant_key_for_two_users_at_once_is_pt409_for_the_later(
    db: dbutil.TestDatabase,
) -> None:
    """Each call holds only its own user's balance lock; the key's lock makes the later
    call wait, find the committed entry and refuse with the contract's error instead of
    a unique violation."""
    alice, bob = new_user(db), new_user(db)

    def grant_to(user: uuid.UUID) -> Call:
        return lambda conn: pgrest.rpc(
            conn, "service_grant_credits",
            {"user_id": user, "amount": 40, "entry_type": "grant", "idempotency_key": "shared"},
            casts={"amount": "bigint"},
        )

    first, error, _ = _second_call_while_first_is_open(db, grant_to(alice), grant_to(bob),
                                                       commit=True)
    assert first["replayed"] is False
    assert isinstance(error, psycopg.Error)
    assert (error.diag.sqlstate, error.diag.message_primary) == ("PT409", "idempotency_key_reused")
    assert owner_value(db, "select count(*) from creditgate.ledger where idempotency_key = 'shared'") == 1
    assert owner_value(db, "select balance from creditgate.balances where user_id = %s", bob) == 0
    assert_audit_ok(db)


def test_a_key_freed_by_a_rollback_goes_to_the_waiting_user(db: dbutil.TestDatabase) -> None:
    alice, bob = new_user(db), new_user(db)

    def grant_to(user: uuid.UUID) -> Call:
        return lambda conn: pgrest.rpc(
            conn, "service_grant_credits",
            {"user_id": user, "amount": 40, "entry_type": "grant", "idempotency_key": "undone"},
            casts={"amount": "bigint"},
        )

    _, error, second = _second_call_while_first_is_open(db, grant_to(alice), grant_to(bob),
                                                        commit=False)
    assert error is None
    assert second["replayed"] is False and second["balance"] == 40
    assert owner_value(db, "select user_id from creditgate.ledger where idempotency_key = 'undone'") == bob
    assert owner_value(db, "select balance from creditgate.balances where user_id = %s", alice) == 0
    assert_audit_ok(db)


def test_one_clawback_event_that_takes_credits_raced_for_two_users(
    db: dbutil.TestDatabase,
) -> None:
    """Both users hold credits, so the first clawback posts a ledger entry under the
    event's key: the second, for the other user, waits for the key and gets PT409."""
    alice, bob = new_user(db, bonus=100), new_user(db, bonus=100)

    def clawback_from(user: uuid.UUID) -> Call:
        return lambda conn: pgrest.rpc(
            conn, "service_clawback",
            {"event_id": "evt_shared", "user_id": user, "amount": 30, "reason": "dispute"},
            casts={"amount": "bigint"},
        )

    first, error, _ = _second_call_while_first_is_open(
        db, clawback_from(alice), clawback_from(bob), commit=True
    )
    assert first["taken"] == 30
    assert isinstance(error, psycopg.Error)
    assert (error.diag.sqlstate, error.diag.message_primary) == ("PT409", "idempotency_key_reused")
    assert owner_value(db, "select balance from creditgate.balances where user_id = %s", bob) == 100
    assert_audit_ok(db)


def test_40_spends_with_one_key_for_two_users_charge_one(db: dbutil.TestDatabase) -> None:
    """The primitive as request_generation calls it: every call replays the one charge or
    gets PT409, never an unexpected error."""
    users = [new_user(db, bonus=100) for _ in range(2)]
    calls: list[Call] = [
        owner_call("select creditgate_private.spend_credits(%s, 7, 'one-charge')", users[i % 2])
        for i in range(40)
    ]
    outcomes = fire(db.owner_url, calls, pool_size(db, 40), join_timeout=120)

    assert {o.sqlstate for o in outcomes} <= {None, "PT409"}, [o.message for o in outcomes]
    done = [o.result for o in outcomes if o.sqlstate is None]
    assert Counter(r["replayed"] for r in done)[False] == 1
    assert owner_value(
        db, "select count(*) from creditgate.ledger where idempotency_key = 'one-charge'"
    ) == 1
    assert owner_value(db, "select sum(balance) from creditgate.balances where user_id = any(%s)",
                       users) == 193
    assert_audit_ok(db)


# --------------------------------------------------------------------------- owed credits


def test_a_dispute_racing_settles_and_cancels_never_gives_disputed_credits_back(
    db: dbutil.TestDatabase,
) -> None:
    """DESIGN §3 (turn 2): a user holds most of a disputed pack in queued and running work.
    The dispute, ten settles (five fail and are refunded, five succeed) and ten cancels all
    fire at once. Whatever the order, the refunds pay the dispute's debt: the user ends
    with nothing spendable, owes exactly what the successful work used, and the books
    audit clean. Three rounds, so several interleavings are tried."""
    owner_value(db, "select tests.seed_models()")
    for round_ in range(3):
        user = new_user(db)
        owner_value(
            db,
            "select creditgate_private.grant_credits(%s, 1000, 'purchase', %s, 'paid')",
            user, f"pack-{round_}",
        )
        owner_value(
            db,
            "select count(tests.make_queued_generation(%s, 'img-test', 40))"
            " from generate_series(1, 20)",
            user,
        )
        with pgrest.connect(db.api_url) as api:
            jobs = pgrest.rpc(
                api, "service_claim_generations",
                {"worker_id": f"w{round_}", "max_jobs": 10, "lease_seconds": 300},
            )
        assert len(jobs) == 10
        queued = [
            str(r[0])
            for r in owner_rows(
                db,
                "select id from creditgate.generations where user_id = %s and status = 'queued'",
                [user],
            )
        ]
        assert len(queued) == 10

        def settle(job: dict[str, Any], ok: bool, worker: str = f"w{round_}") -> Call:
            outcome: dict[str, Any] = (
                {"status": "succeeded", "media": [{
                    "storage_key": f"media/{job['generation_id']}/0.png",
                    "content_type": "image/png", "bytes": 10, "width": 512, "height": 512}]}
                if ok
                else {"status": "failed", "retryable": False,
                      "error": {"code": "provider_error", "message": "boom"}}
            )
            return lambda conn: pgrest.rpc(
                conn, "service_settle_generation",
                {"generation_id": job["generation_id"], "worker_id": worker,
                 "lease_token": job["lease_token"], "outcome": outcome},
                casts={"generation_id": "uuid"},
            )

        def cancel(generation_id: str, who: uuid.UUID = user) -> Call:
            return lambda conn: pgrest.rpc(
                conn, "cancel_generation", {"generation_id": generation_id},
                role="authenticated", user_id=str(who), casts={"generation_id": "uuid"},
            )

        dispute: Call = lambda conn, who=user, r=round_: pgrest.rpc(  # noqa: E731
            conn, "service_stripe_dispute",
            {"dispute_id": f"dp_race_{r}", "user_id": who, "payment_id": f"ch_race_{r}",
             "credits": 1000},
            casts={"credits": "bigint"},
        )
        calls: list[Call] = [dispute]
        calls += [settle(job, ok=i % 2 == 0) for i, job in enumerate(jobs)]
        calls += [cancel(g) for g in queued]
        random.Random(round_).shuffle(calls)
        outcomes = fire(db.api_url, calls, len(calls), join_timeout=120)
        assert [(o.sqlstate, o.message) for o in outcomes] == [(None, None)] * len(calls)

        # 1000 bought, 5 x 40 used by successes: 800 came back, all of it to the debt.
        assert owner_rows(
            db,
            "select balance, owed, creditgate_private.available_credits(user_id, now())"
            " from creditgate.balances where user_id = %s",
            [user],
        ) == [(0, 200, 0)]
        assert owner_rows(
            db,
            "select requested, taken + collected, cancelled from creditgate_private.clawbacks"
            " where idempotency_key = %s",
            [f"stripe:dispute:dp_race_{round_}"],
        ) == [(1000, 800, 0)]
        assert owner_value(
            db,
            "select sum(amount) from creditgate.ledger where user_id = %s"
            " and entry_type = 'refund'",
            user,
        ) == 15 * 40, "every failed or canceled job was refunded in full, once"
        assert owner_value(
            db,
            "select sum(amount) from creditgate.ledger where user_id = %s"
            " and entry_type = 'clawback'",
            user,
        ) == 800
    assert_audit_ok(db)


def test_dispute_and_its_win_delivered_ten_times_each_at_once_settle_to_the_same_books(
    db: dbutil.TestDatabase,
) -> None:
    """Stripe retries and reorders events: a dispute and its win, ten deliveries each, race
    ten grants to the same user. Whichever arrives first, the win leaves the user exactly
    what they would have had without the dispute, nothing owed, and at most one return."""
    for round_ in range(3):
        user = new_user(db)
        owner_value(
            db,
            "select creditgate_private.grant_credits(%s, 300, 'purchase', %s, 'paid')",
            user, f"pack-w-{round_}",
        )
        # 200 of the 300 spent: the dispute can take 100 at most, 200 is owed.
        owner_value(
            db, "select creditgate_private.spend_credits(%s, 200, %s)", user, f"spent-w-{round_}"
        )
        args = {"dispute_id": f"dp_w_{round_}", "user_id": user, "payment_id": f"ch_w_{round_}"}
        calls: list[Call] = []
        for i in range(10):
            calls.append(lambda conn: pgrest.rpc(
                conn, "service_stripe_dispute", args | {"credits": 300},
                casts={"credits": "bigint"},
            ))
            calls.append(lambda conn: pgrest.rpc(conn, "service_stripe_dispute_won", args))
            calls.append(lambda conn, i=i: pgrest.rpc(
                conn, "service_grant_credits",
                {"user_id": user, "amount": 10, "entry_type": "grant",
                 "idempotency_key": f"w-{round_}-{i}"},
                casts={"amount": "bigint"},
            ))
        random.Random(round_).shuffle(calls)
        outcomes = fire(db.api_url, calls, len(calls), join_timeout=120)
        assert [(o.sqlstate, o.message) for o in outcomes] == [(None, None)] * len(calls)
        # 300 - 200 spent + 10 x 10 granted, whether the win came first or last.
        assert owner_rows(
            db, "select balance, owed from creditgate.balances where user_id = %s", [user]
        ) == [(200, 0)]
        assert owner_value(
            db, "select count(*) from creditgate.ledger where idempotency_key = %s",
            f"stripe:dispute-won:dp_w_{round_}",
        ) <= 1
        assert owner_rows(
            db,
            "select resolution, taken + collected = returned from creditgate_private.clawbacks"
            " where idempotency_key = %s",
            [f"stripe:dispute:dp_w_{round_}"],
        ) == [("won", True)]
    assert_audit_ok(db)
