"""A provider that hangs far beyond the route's ``timeout_seconds``.

The gateway cuts every attempt at the route's timeout (``timeout``, retryable); the job goes
back to the queue until the generation's attempts (setting ``max_attempts`` = 2) are used up,
then fails and is refunded in full: the user's balance is exactly what it was. Two ways to
hang:

* the local adapter's call itself never answers (fake A1111), with a timeout *longer than the
  lease*: heartbeats must keep the lease alive, so the reaper never steals the job;
* a polling provider (fake fal) accepts and completes the job, but the output download hangs.

The client waits on ``POST /v1/generations?wait=`` and gets the failure in the response.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests import dbutil
from tests.fakes import FakeA1111, FakeFal, FakeProvider
from tests.faults.harness import (
    IMG_COST,
    PROMPT,
    RUNNER_SECRET,
    SIGNUP_BONUS,
    assert_money,
    generation,
    media_rows,
    new_user,
    post_generation,
    provider_calls,
    running_stack,
    seed,
    set_route,
    set_setting,
    stored_files,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

FAL_KEY = "fal-key-0123456789abcdef"
ATTEMPTS = 2


def local_hang() -> tuple[FakeProvider, dict[str, Any], dict[str, str], float]:
    # 7 s per attempt, longer than the 5 s lease: only heartbeats keep the job this worker's.
    fake = FakeA1111(keys={RUNNER_SECRET}, hang_seconds=600.0)
    return fake, {"timeout_seconds": 7, "max_attempts": 1}, {}, 7.0


def fal_download_hang() -> tuple[FakeProvider, dict[str, Any], dict[str, str], float]:
    fake = FakeFal(keys={FAL_KEY}, hang_downloads=600.0, pending_polls=1)
    options = {"api_key_ref": "fal", "timeout_seconds": 2, "max_attempts": 1, "poll_interval": 0.05}
    return fake, options, {"CREDITGATE_API_KEYS_FAL": FAL_KEY}, 2.0


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(local_hang, id="local-call-hangs-past-the-lease"),
        pytest.param(fal_download_hang, id="fal-output-download-hangs"),
    ],
)
def test_hanging_provider_times_out_and_is_refunded(
    db: dbutil.TestDatabase, tmp_path: Path, make: Any
) -> None:
    fake, options, env, timeout = make()
    with fake:
        seed(db.owner_url, fake.url, options)
        if isinstance(fake, FakeFal):
            set_route(db.owner_url, "img-test", provider="fal", provider_model="fal-ai/flux/dev")
        set_setting(db.owner_url, "max_attempts", ATTEMPTS)
        user = new_user(db.owner_url)
        worker_env = {
            "CREDITGATE_LEASE_SECONDS": "5",
            "CREDITGATE_HEARTBEAT_SECONDS": "1",
            "CREDITGATE_IDLE_POLL_SECONDS": "60",
            **env,
        }
        with running_stack(db.owner_url, db.api_url, tmp_path, worker_env) as stack:
            stack.serve()
            stack.worker("worker-1", "--concurrency", "2")
            client = stack.client(user)
            started = time.monotonic()
            response = post_generation(client, {"prompt": PROMPT}, wait=30)
            elapsed = time.monotonic() - started
            assert response.status_code == 201, response.text
            body = response.json()
            gid = body["generation_id"]
            assert body["cost"] == IMG_COST
            assert body["status"] == "failed", (body, stack.logs())
            assert body["generation"]["error"]["code"] == "timeout"
            assert body["generation"]["media"] == []
            assert client.get("/v1/balance").json()["balance"] == SIGNUP_BONUS
            codes = stack.close()
        assert codes == {"worker-1": 0, "service": -signal.SIGTERM}, stack.logs()
        # One provider request per attempt: the route allows no retry inside an attempt.
        assert len(fake.gated_requests) == ATTEMPTS
        if isinstance(fake, FakeFal):
            downloads = [r for r in fake.requests if r.path.startswith("/files/")]
            assert len(downloads) == ATTEMPTS

    row = generation(db.owner_url, gid)
    assert (row["status"], row["attempts"], row["actual_cost"]) == ("failed", ATTEMPTS, 0)
    assert row["error"]["code"] == "timeout"
    calls = provider_calls(db.owner_url, gid)
    # Every attempt timed out at the worker; none was taken back by the reaper.
    assert [(c["outcome"], c["error_code"], c["worker_id"]) for c in calls] == [
        ("failed", "timeout", "worker-1")
    ] * ATTEMPTS
    for call in calls:
        # Cut at the route's timeout: not earlier, and not when the provider gave up (never).
        assert timeout * 1000 * 0.95 <= call["latency_ms"] <= (timeout + 3) * 1000, call
    assert elapsed < ATTEMPTS * (timeout + 4), elapsed
    assert media_rows(db.owner_url, gid) == []
    assert stored_files(tmp_path / "media") == []
    assert_money(db.owner_url, db.api_url, user, charged={gid: IMG_COST}, refunded={gid: IMG_COST})
