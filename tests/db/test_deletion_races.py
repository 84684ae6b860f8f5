"""Deleting a user while their requests, settles, cancels and grants are in flight.

GoTrue's delete (``delete from auth.users`` as supabase_auth_admin) fires at the same
instant as the user's own calls and the workers' settles, each on its own connection. The
database decides the order; whatever it picks, the delete succeeds, nothing deadlocks,
every other call either lands before the delete (and is then undone: refunded, forfeited,
erased) or is refused cleanly after it, and the books stay whole.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from tests import dbutil, pgrest
from tests.db.race import Call, Outcome, assert_audit_ok, fire, owner_rows, owner_value


def _rpc(fn: str, args: dict[str, Any], role: str, user: str | None = None) -> Call:
    return lambda conn: pgrest.rpc(conn, fn, args, role=role, user_id=user)


def _delete(user: str) -> Call:
    def run(conn: psycopg.Connection) -> Any:
        with conn.transaction():
            conn.execute("set local role supabase_auth_admin")
            return conn.execute("delete from auth.users where id = %s", [user]).rowcount

    return run


def test_delete_racing_the_users_requests_settles_cancels_and_grants(
    db: dbutil.TestDatabase,
) -> None:
    owner_rows(db, "select tests.seed_models()")
    user = str(owner_value(db, "select tests.create_user()"))
    owner_rows(db, "select creditgate_private.grant_credits(%s, 5000, 'purchase', 'stripe:race', 'paid')", [user])
    queued = [
        str(r[0])
        for r in owner_rows(
            db, "select tests.make_queued_generation(%s) from generate_series(1, 12)", [user]
        )
    ]
    with pgrest.connect(db.api_url) as conn:
        jobs = pgrest.rpc(
            conn, "service_claim_generations", {"worker_id": "w-race", "max_jobs": 6}, role="service_role"
        )
    assert len(jobs) == 6
    to_cancel = [q for q in queued if q not in {j["generation_id"] for j in jobs}][:3]

    calls: list[Call] = [_delete(user)]
    calls += [
        _rpc(
            "request_generation",
            {"model_id": "img-test", "params": {"prompt": "PRIVATE-RACE"}, "idempotency_key": str(uuid.uuid4())},
            "authenticated",
            user,
        )
        for _ in range(20)
    ]
    calls += [
        _rpc(
            "service_settle_generation",
            {
                "generation_id": j["generation_id"],
                "worker_id": "w-race",
                "lease_token": j["lease_token"],
                "outcome": (
                    {
                        "status": "succeeded",
                        "actual_cost": 40,
                        "output": {"caption": "PRIVATE-RACE"},
                        "media": [
                            {
                                "storage_key": f"media/{j['generation_id']}/0.png",
                                "content_type": "image/png",
                                "bytes": 10,
                            }
                        ],
                    }
                    if i % 2 == 0
                    else {"status": "failed", "retryable": True, "error": {"code": "timeout", "message": "PRIVATE-RACE"}}
                ),
            },
            "service_role",
        )
        for i, j in enumerate(jobs)
    ]
    calls += [_rpc("cancel_generation", {"generation_id": g}, "authenticated", user) for g in to_cancel]
    calls += [
        _rpc(
            "service_grant_credits",
            {"user_id": user, "amount": 7, "entry_type": "grant", "idempotency_key": f"race-grant-{i}"},
            "service_role",
        )
        for i in range(5)
    ]

    outcomes: list[Outcome] = fire(db.admin_url, calls, size=min(len(calls), 24))

    assert outcomes[0].sqlstate is None and outcomes[0].result == 1, outcomes[0]
    allowed = {None, "PT401", "PT402", "PT404", "PT409"}
    bad = [(i, o) for i, o in enumerate(outcomes) if o.sqlstate not in allowed]
    assert not bad, bad  # no deadlock (40P01), no constraint violation, no internal error
    # Every settle took effect, before or after the delete. A retryable failure before it
    # was re-queued (and then canceled by the delete); after it, it is final.
    for o in outcomes[21:27]:
        assert o.sqlstate is None, o

    assert owner_value(db, "select balance from creditgate.balances where user_id = %s", user) == 0
    assert owner_value(
        db,
        "select count(*) from creditgate.generations where user_id = %s and status in ('queued', 'running')",
        user,
    ) == 0
    assert owner_value(db, "select count(*) from creditgate.media where user_id = %s", user) == 0
    assert owner_value(
        db,
        "select count(*) from creditgate.generations where user_id = %s and (params <> '{}' or output is not null)",
        user,
    ) == 0
    # Each settled success uploaded one file; each is queued for purge, none is lost.
    assert owner_value(
        db,
        "select count(*) from creditgate_private.media_purges where storage_key = any(%s)",
        [f"media/{j['generation_id']}/0.png" for i, j in enumerate(jobs) if i % 2 == 0],
    ) == 3
    # Grants that landed before the delete were forfeited with the rest; later ones refused.
    granted = sum(1 for o in outcomes[-5:] if o.sqlstate is None)
    assert granted + sum(1 for o in outcomes[-5:] if o.sqlstate == "PT404") == 5
    assert_audit_ok(db)
