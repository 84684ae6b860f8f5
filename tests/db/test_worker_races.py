"""The worker functions under real concurrency: claim, settle and reap, PostgREST style.

Every call is its own transaction on its own ``authenticator`` connection as
``service_role`` (tests.pgrest). Threads line up on a barrier and fire together, so the
database, not the test, decides who wins. Each test ends with a clean ``audit()``.

The server's max_connections is shared with other test runs, so "N at once" uses up to
``pool_size()`` connections, each firing its share of the calls back to back.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests import dbutil, pgrest
from tests.db.race import Call, assert_audit_ok, fire, owner_rows

UUID = {"generation_id": "uuid"}


def service(
    fn: str, args: dict[str, Any] | None = None, casts: dict[str, str] | None = None
) -> Call:
    return lambda conn: pgrest.rpc(conn, fn, args or {}, role="service_role", casts=casts)


def call(
    db: dbutil.TestDatabase,
    fn: str,
    args: dict[str, Any] | None = None,
    casts: dict[str, str] | None = None,
) -> Any:
    with pgrest.connect(db.api_url) as conn:
        return pgrest.rpc(conn, fn, args or {}, role="service_role", casts=casts)


def ledger_snapshot(db: dbutil.TestDatabase) -> list[tuple[Any, ...]]:
    return owner_rows(
        db, "select id, user_id, entry_type, amount from creditgate.ledger order by id"
    )


def new_users(db: dbutil.TestDatabase, n: int, credits: int = 10_000) -> list[str]:
    rows = owner_rows(
        db,
        "select u, creditgate_private.grant_credits(u, %s, 'grant', 'race-grant:' || u)"
        " from (select tests.create_user() as u from generate_series(1, %s)) as x",
        [credits, n],
    )
    return [str(r[0]) for r in rows]


def queue(
    db: dbutil.TestDatabase, user: str, n: int, model: str = "img-test", cost: int = 100
) -> list[str]:
    """n charged, queued generations of `user`, in creation order."""
    rows = owner_rows(
        db,
        "select tests.make_queued_generation(%s, %s, %s) from generate_series(1, %s) as i order by i",
        [user, model, cost, n],
    )
    return [str(r[0]) for r in rows]


def claim(
    db: dbutil.TestDatabase, worker: str, max_jobs: int = 1, lease_seconds: int = 120
) -> list[dict[str, Any]]:
    return call(
        db,
        "service_claim_generations",
        {"worker_id": worker, "max_jobs": max_jobs, "lease_seconds": lease_seconds},
    )


def image_success(generation_id: str, files: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "status": "succeeded",
        "media": [
            {
                "storage_key": f"media/{generation_id}/{i}.png",
                "content_type": "image/png",
                "bytes": 1000 + i,
                "width": 512,
                "height": 512,
            }
            for i in range(files)
        ],
        "provider": {"name": "local", "http_status": 200, "latency_ms": 42},
        **extra,
    }


def settle_args(job: dict[str, Any], worker: str, outcome: dict[str, Any]) -> dict[str, Any]:
    return {
        "generation_id": job["generation_id"],
        "worker_id": worker,
        "lease_token": job["lease_token"],
        "outcome": outcome,
    }


@pytest.fixture(scope="module")
def seeded(module_db: dbutil.TestDatabase) -> Iterator[dbutil.TestDatabase]:
    owner_rows(module_db, "select tests.seed_models()")
    yield module_db


def test_four_workers_claim_a_thousand_jobs_each_exactly_once(seeded: dbutil.TestDatabase) -> None:
    db = seeded
    users = new_users(db, 20)
    # Real requests through request_generation: 50 per user, 1,000 in all.
    owner_rows(
        db,
        "select tests.request_as(u, 'img-test', jsonb_build_object('prompt', 'job ' || i), 'race-' || i)"
        " from unnest(%s::uuid[]) as u cross join generate_series(1, 50) as i",
        [users],
    )
    queued = {
        str(r[0])
        for r in owner_rows(
            db,
            "select id from creditgate.generations where status = 'queued' and user_id = any(%s::uuid[])",
            [users],
        )
    }
    assert len(queued) == 1000
    balances_before = dict(owner_rows(db, "select user_id::text, balance from creditgate.balances"))

    claimed: dict[str, list[str]] = {}
    failed_ids: set[str] = set()
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        mine: list[str] = []
        claimed[name] = mine
        try:
            with pgrest.connect(db.api_url) as conn:
                barrier.wait(timeout=60)
                while True:
                    jobs = pgrest.rpc(
                        conn,
                        "service_claim_generations",
                        {"worker_id": name, "max_jobs": 25, "lease_seconds": 300},
                    )
                    if not jobs:
                        break
                    for job in jobs:
                        assert job["attempt"] == 1 and job["route"]["provider"] == "local"
                        mine.append(job["generation_id"])
                        # Every tenth job fails for good (refunded); the rest succeed.
                        if int(uuid.UUID(job["generation_id"])) % 10 == 0:
                            outcome = {"status": "failed", "error": {"code": "bad_request"}}
                            failed_ids.add(job["generation_id"])
                        else:
                            outcome = image_success(job["generation_id"])
                        pgrest.rpc(
                            conn,
                            "service_settle_generation",
                            settle_args(job, name, outcome),
                            casts=UUID,
                        )
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(f"worker-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    if errors:
        raise errors[0]

    everything = [g for ids in claimed.values() for g in ids]
    assert len(everything) == 1000, "no job lost"
    assert set(everything) == queued, "exactly the queued jobs"
    assert Counter(everything).most_common(1)[0][1] == 1, "no job claimed twice"
    assert all(claimed.values()), (
        f"every worker got work: { {k: len(v) for k, v in claimed.items()} }"
    )

    rows = owner_rows(
        db,
        "select g.id::text, g.status, g.attempts, count(c.id), min(c.worker_id)"
        " from creditgate.generations as g"
        " left join creditgate_private.provider_calls as c on c.generation_id = g.id"
        " group by g.id",
    )
    by_worker = {g: name for name, ids in claimed.items() for g in ids}
    for generation_id, status, attempts, calls, worker_id in rows:
        assert attempts == 1 and calls == 1
        assert worker_id == by_worker[generation_id]
        assert status == ("failed" if generation_id in failed_ids else "succeeded")

    # Money: each user paid exactly for their succeeded jobs.
    owed = Counter(
        {
            str(u): int(c)
            for u, c in owner_rows(
                db,
                "select user_id, sum(cost) from creditgate.generations"
                " where status = 'succeeded' group by user_id",
            )
        }
    )
    spent_before = dict(
        owner_rows(
            db, "select user_id::text, sum(cost) from creditgate.generations group by user_id"
        )
    )
    after = dict(owner_rows(db, "select user_id::text, balance from creditgate.balances"))
    for user in users:
        assert after[user] == balances_before[user] + spent_before[user] - owed[user]
    assert_audit_ok(db)


@pytest.mark.parametrize("kind", ["succeeded_below_cost", "failed"])
def test_fifty_identical_settles_take_effect_once(seeded: dbutil.TestDatabase, kind: str) -> None:
    db = seeded
    (user,) = new_users(db, 1)
    (generation_id,) = queue(db, user, 1, cost=100)
    owner_rows(
        db,
        "update creditgate.generations set created_at = '1999-01-01' where id = %s",
        [generation_id],
    )
    (job,) = claim(db, f"w-{kind}")
    assert job["generation_id"] == generation_id
    if kind == "failed":
        outcome: dict[str, Any] = {
            "status": "failed",
            "retryable": False,
            "error": {"code": "provider_failed", "message": "x"},
        }
    else:
        outcome = image_success(generation_id, files=2, actual_cost=90)
    before = owner_rows(
        db, "select balance from creditgate.balances where user_id = %s", [user]
    )[0][0]

    outcomes = fire(
        db,
        [service("service_settle_generation", settle_args(job, f"w-{kind}", outcome), UUID)] * 50,
    )

    assert [(o.sqlstate, o.message) for o in outcomes if o.sqlstate] == []
    results = [o.result for o in outcomes]
    assert all(r == results[0] for r in results), "all 50 callers get the identical result"
    refunds = owner_rows(
        db,
        "select count(*), coalesce(sum(amount), 0) from creditgate.ledger"
        " where charge_key = %s and entry_type = 'refund'",
        [f"charge:{generation_id}"],
    )[0]
    media = owner_rows(
        db, "select count(*) from creditgate.media where generation_id = %s", [generation_id]
    )[0][0]
    calls = owner_rows(
        db,
        "select count(*) from creditgate_private.provider_calls where generation_id = %s",
        [generation_id],
    )[0][0]
    after = owner_rows(
        db, "select balance from creditgate.balances where user_id = %s", [user]
    )[0][0]
    if kind == "failed":
        assert results[0]["status"] == "failed" and results[0]["refunded"] == 100
        assert refunds == (1, 100) and media == 0
        assert after == before + 100
    else:
        assert results[0]["status"] == "succeeded" and results[0]["refunded"] == 10
        assert len(results[0]["media"]) == 2
        assert refunds == (1, 10) and media == 2
        assert after == before + 10
    assert calls == 1, "one attempt logged"
    assert_audit_ok(db)


def test_expired_worker_settling_after_a_reclaim_gets_lease_lost(
    seeded: dbutil.TestDatabase,
) -> None:
    db = seeded
    (user,) = new_users(db, 1)
    (generation_id,) = queue(db, user, 1, cost=100)
    owner_rows(
        db,
        "update creditgate.generations set created_at = '1998-01-01' where id = %s",
        [generation_id],
    )
    (job_a,) = claim(db, "worker-a", lease_seconds=5)
    assert job_a["generation_id"] == generation_id

    # Worker A goes silent; the reaper (its clock moved past the lease) takes the job back.
    db_now = owner_rows(db, "select now()")[0][0]
    reaped = call(db, "service_reap_expired_leases", {"now": db_now + timedelta(seconds=10)})
    assert reaped["requeued"] >= 1
    (job_b,) = claim(db, "worker-b", lease_seconds=300)
    assert job_b["generation_id"] == generation_id and job_b["attempt"] == 2

    ledger_before = ledger_snapshot(db)
    late = fire(
        db,
        [
            service(
                "service_settle_generation",
                settle_args(job_a, "worker-a", image_success(generation_id)),
                UUID,
            )
        ],
    )
    assert (late[0].sqlstate, late[0].message) == ("PT409", "lease_lost")
    late = fire(
        db,
        [
            service(
                "service_settle_generation",
                settle_args(job_a, "worker-a", {"status": "failed", "error": {"code": "timeout"}}),
                UUID,
            )
        ],
    )
    assert (late[0].sqlstate, late[0].message) == ("PT409", "lease_lost")
    late = fire(
        db,
        [
            service(
                "service_heartbeat",
                {
                    "generation_id": generation_id,
                    "worker_id": "worker-a",
                    "lease_token": job_a["lease_token"],
                    "lease_seconds": 60,
                },
                UUID,
            )
        ],
    )
    assert (late[0].sqlstate, late[0].message) == ("PT409", "lease_lost")
    assert ledger_snapshot(db) == ledger_before, "the stale worker moved no credit"
    assert owner_rows(
        db,
        "select status, lease_owner, lease_token::text from tests.generations_full where id = %s",
        [generation_id],
    )[0] == ("running", "worker-b", job_b["lease_token"])
    assert (
        owner_rows(
            db, "select count(*) from creditgate.media where generation_id = %s", [generation_id]
        )[0][0]
        == 0
    )

    result = call(
        db,
        "service_settle_generation",
        settle_args(job_b, "worker-b", image_success(generation_id)),
        UUID,
    )
    assert result["status"] == "succeeded" and result["refunded"] == 0
    assert (
        owner_rows(
            db,
            "select string_agg(attempt || ':' || worker_id || ':' || outcome, ',' order by id)"
            " from creditgate_private.provider_calls where generation_id = %s",
            [generation_id],
        )[0][0]
        == "1:worker-a:lease_expired,2:worker-b:succeeded"
    )
    assert_audit_ok(db)


def test_settles_racing_the_reaper_each_lease_ends_once(seeded: dbutil.TestDatabase) -> None:
    """Leases that just expired: the worker's settle and the reaper race for each job.
    Whoever comes second sees the other's effect: settle -> lease_lost, or reaper -> skip."""
    db = seeded
    users = new_users(db, 5)
    ids = [g for u in users for g in queue(db, u, 8, cost=100)]
    owner_rows(
        db,
        "update creditgate.generations set created_at = '1997-01-01' where id = any(%s::uuid[])",
        [ids],
    )
    jobs = claim(db, "racer", max_jobs=40, lease_seconds=5)
    assert {j["generation_id"] for j in jobs} == set(ids)
    db_now = owner_rows(db, "select now()")[0][0]
    reap = service("service_reap_expired_leases", {"now": db_now + timedelta(seconds=30)})
    # Half the jobs fail (refund on settle), half succeed; three reapers join in.
    settles = [
        service(
            "service_settle_generation",
            settle_args(
                j,
                "racer",
                image_success(j["generation_id"])
                if i % 2
                else {"status": "failed", "error": {"code": "bad_request"}},
            ),
            UUID,
        )
        for i, j in enumerate(jobs)
    ]
    outcomes = fire(db, [reap, *settles[:20], reap, *settles[20:], reap])

    unexpected = [(o.sqlstate, o.message) for o in outcomes if o.sqlstate and o.sqlstate != "PT409"]
    assert unexpected == [], "no deadlock, no other error"
    settled = {
        j["generation_id"]
        for j, o in zip(jobs, outcomes[1:21] + outcomes[22:42], strict=True)
        if o.sqlstate is None
    }
    lost = {
        j["generation_id"]
        for j, o in zip(jobs, outcomes[1:21] + outcomes[22:42], strict=True)
        if o.message == "lease_lost"
    }
    assert settled | lost == set(ids) and not settled & lost
    reaped = sum(
        o.result["requeued"] + o.result["failed"] for o in (outcomes[0], outcomes[21], outcomes[42])
    )
    assert reaped == len(lost), "every job was ended once: by its worker or by the reaper"
    rows = owner_rows(
        db,
        "select g.id::text, g.status, count(c.id), bool_and(c.outcome = 'lease_expired')"
        " from creditgate.generations as g join creditgate_private.provider_calls as c on c.generation_id = g.id"
        " where g.id = any(%s::uuid[]) group by g.id, g.status",
        [ids],
    )
    for generation_id, status, calls, expired in rows:
        assert calls == 1, "one outcome per lease"
        if generation_id in lost:
            assert expired and status == "queued"
        else:
            assert not expired and status in ("succeeded", "failed")

    # The re-queued ones run again and finish; the queue is empty for the next test.
    for job in claim(db, "drain", max_jobs=100):
        call(
            db,
            "service_settle_generation",
            settle_args(job, "drain", image_success(job["generation_id"])),
            UUID,
        )
    assert (
        owner_rows(
            db, "select count(*) from creditgate.generations where status in ('queued', 'running')"
        )[0][0]
        == 0
    )
    assert_audit_ok(db)


def test_a_requeue_wakes_listening_workers(seeded: dbutil.TestDatabase) -> None:
    db = seeded
    (user,) = new_users(db, 1)
    (generation_id,) = queue(db, user, 1, cost=100)
    owner_rows(
        db,
        "update creditgate.generations set created_at = '1996-01-01' where id = %s",
        [generation_id],
    )
    (job,) = claim(db, "w-notify")
    with psycopg.connect(db.owner_url, autocommit=True) as listener:
        listener.execute("listen creditgate_generations")
        result = call(
            db,
            "service_settle_generation",
            settle_args(
                job,
                "w-notify",
                {"status": "failed", "retryable": True, "error": {"code": "timeout"}},
            ),
            UUID,
        )
        assert result["requeued"] is True
        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert payloads == [generation_id]
    (again,) = claim(db, "w-notify-2")
    assert again["generation_id"] == generation_id and again["attempt"] == 2
    call(
        db,
        "service_settle_generation",
        settle_args(again, "w-notify-2", image_success(generation_id)),
        UUID,
    )
    assert_audit_ok(db)
