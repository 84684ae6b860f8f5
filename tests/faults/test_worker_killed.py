"""A worker SIGKILLed in the middle of a provider call.

Nothing of the dead worker runs any more: no heartbeat, no settle, no cleanup. Its lease
(CREDITGATE_LEASE_SECONDS=5) runs out and the periodic reaper of a *second* worker process
(every 5 s with that lease) takes the job back:

* attempts left -> re-queued, claimed by the second worker, completed: charged exactly once,
  one output (stored under attempt 2), no refund;
* out of attempts (setting max_attempts = 1) -> failed with ``lease_expired`` and refunded in
  full exactly once; the provider is never called again.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests import dbutil
from tests.fakes import FakeA1111
from tests.faults.harness import (
    IMG_COST,
    PROMPT,
    RUNNER_SECRET,
    SIGNUP_BONUS,
    as_service_role,
    assert_money,
    generation,
    media_rows,
    new_user,
    post_generation,
    provider_calls,
    running_stack,
    seed,
    set_setting,
    stored_files,
    wait_status,
)
from tests.polling import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

LEASE_SECONDS = 5
WORKER_ENV = {
    "CREDITGATE_LEASE_SECONDS": str(LEASE_SECONDS),
    "CREDITGATE_HEARTBEAT_SECONDS": "1",
    # Only NOTIFY (and the reaper's wake-up) may start a job within the test's time.
    "CREDITGATE_IDLE_POLL_SECONDS": "60",
}


@pytest.mark.parametrize(
    ("max_attempts", "expected"),
    [
        pytest.param(3, "succeeded", id="requeued-then-completed-charged-once"),
        pytest.param(1, "failed", id="out-of-attempts-failed-and-refunded-once"),
    ],
)
def test_sigkill_mid_provider_call(
    db: dbutil.TestDatabase, tmp_path: Path, max_attempts: int, expected: str
) -> None:
    with FakeA1111(keys={RUNNER_SECRET}, hang_seconds=60.0) as fake:
        seed(db.owner_url, fake.url, {"timeout_seconds": 60, "max_attempts": 1})
        set_setting(db.owner_url, "max_attempts", max_attempts)
        user = new_user(db.owner_url)

        with running_stack(db.owner_url, db.api_url, tmp_path, WORKER_ENV) as stack:
            stack.serve()
            doomed = stack.worker("worker-doomed", "--concurrency", "1")
            client = stack.client(user)

            response = post_generation(client, {"prompt": PROMPT, "seed": 11})
            assert response.status_code == 201, response.text
            gid = response.json()["generation_id"]
            assert response.json()["cost"] == IMG_COST

            # The kill must land during the provider call: the fake holds the request.
            eventually(lambda: len(fake.gated_requests) == 1, 20, "the provider call")
            row = generation(db.owner_url, gid)
            assert (row["status"], row["lease_owner"], row["attempts"]) == (
                "running",
                "worker-doomed",
                1,
            )
            assert row["max_attempts"] == max_attempts
            assert doomed.stop(signal.SIGKILL) == -signal.SIGKILL
            killed_at = time.monotonic()
            fake.faults.hang_seconds = 0  # the next attempt gets an answer at once

            # Dead workers do not renew: the job stays "running" until the lease runs out.
            frozen = generation(db.owner_url, gid)
            assert frozen["status"] == "running"
            lease_end = frozen["lease_expires_at"]  # final: nobody heartbeats any more
            rescuer = stack.worker("worker-rescuer", "--concurrency", "1")
            row = wait_status(
                db.owner_url, gid, {"succeeded", "failed"}, timeout=45, procs=stack.live()
            )
            recovered_after = time.monotonic() - killed_at
            assert row["status"] == expected, stack.logs()

            # Whatever happens later (more reaper rounds, a manual reap) changes nothing.
            [reaped] = as_service_role(
                db.api_url, "select creditgate.service_reap_expired_leases() as r"
            )
            assert reaped["r"] == {"requeued": 0, "failed": 0, "refunded": 0}
            detail = client.get(f"/v1/generations/{gid}")
            assert detail.status_code == 200, detail.text
            balance = client.get("/v1/balance").json()["balance"]
            assert rescuer.alive(), rescuer.output()
            codes = stack.close()
        assert codes == {"worker-rescuer": 0, "service": -signal.SIGTERM}, stack.logs()
        # The provider saw the doomed attempt and, only if attempts were left, the rescue.
        assert len(fake.gated_requests) == (2 if expected == "succeeded" else 1)

    calls = provider_calls(db.owner_url, gid)
    # The job came back through lease expiry, not sooner, and the rescuer's periodic reaper
    # (every 5 s with this lease) took it within a period or so after.
    reaped_after = (calls[0]["created_at"] - lease_end).total_seconds()
    assert 0 <= reaped_after <= LEASE_SECONDS + 3, reaped_after
    assert recovered_after < 30, recovered_after
    assert calls[0]["outcome"] == "lease_expired"
    assert calls[0]["worker_id"] == "worker-doomed"
    assert calls[0]["error_code"] == "lease_expired"
    assert row["lease_token"] is None and row["lease_owner"] is None

    if expected == "succeeded":
        assert row["attempts"] == 2 and row["actual_cost"] == IMG_COST
        assert [(c["outcome"], c["worker_id"]) for c in calls] == [
            ("lease_expired", "worker-doomed"),
            ("succeeded", "worker-rescuer"),
        ]
        [media] = media_rows(db.owner_url, gid)
        assert media["storage_key"] == f"media/{gid}/2-0.png"
        assert detail.json()["status"] == "succeeded"
        assert [m["id"] for m in detail.json()["media"]] == [str(media["id"])]
        # Only the rescuing attempt's object (and its content-type side file) is stored.
        assert stored_files(stack.media_root) == [
            media["storage_key"],
            media["storage_key"] + "~content-type",
        ]
        final = assert_money(db.owner_url, db.api_url, user, charged={gid: IMG_COST}, refunded={})
        assert final == balance == SIGNUP_BONUS - IMG_COST
    else:
        assert row["attempts"] == 1 and row["actual_cost"] == 0
        assert row["error"]["code"] == "lease_expired"
        assert len(calls) == 1
        assert media_rows(db.owner_url, gid) == []
        assert detail.json()["status"] == "failed"
        assert stored_files(stack.media_root) == []
        final = assert_money(
            db.owner_url, db.api_url, user, charged={gid: IMG_COST}, refunded={gid: IMG_COST}
        )
        assert final == balance == SIGNUP_BONUS
