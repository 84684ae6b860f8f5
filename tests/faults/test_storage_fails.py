"""Output storage that fails on upload, with `creditgate worker` as a real process.

The provider succeeds every time; storing its output does not. Each attempt reports a
retryable ``storage_error`` after deleting whatever it may have written; once the attempts
(default 3) are used up the generation fails and is refunded in full. Afterwards there is no
media row and no stored object or file left behind. Storage faults:

* S3 (moto behind a proxy) answering PutObject with 500 InternalError;
* S3 storing the object but answering 500 (a lost acknowledgement): the object exists and
  must be deleted by the worker;
* S3 unreachable (connection refused);
* local storage whose directory cannot be created (the ``media`` path under the root is a
  regular file: a broken volume, as root ignores read-only permissions).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests import dbutil
from tests.fakes import FakeA1111, free_port
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
    stored_files,
)
from tests.faults.s3proxy import ACCESS_KEY, REGION, FaultyS3

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

ATTEMPTS = 3  # the default max_attempts setting


def s3_env(endpoint: str, bucket: str) -> dict[str, str]:
    return {
        "CREDITGATE_STORAGE": "s3",
        "CREDITGATE_S3_BUCKET": bucket,
        "CREDITGATE_S3_ENDPOINT_URL": endpoint,
        "CREDITGATE_S3_REGION": REGION,
        "CREDITGATE_S3_ACCESS_KEY_ID": ACCESS_KEY[0],
        "CREDITGATE_S3_SECRET_ACCESS_KEY": ACCESS_KEY[1],
    }


@pytest.mark.parametrize(
    "fault", ["s3-put-500", "s3-ack-lost", "s3-unreachable", "local-unwritable"]
)
def test_upload_failure_fails_refunds_and_leaves_nothing(
    db: dbutil.TestDatabase, tmp_path: Path, fault: str
) -> None:
    with FakeA1111(keys={RUNNER_SECRET}) as fake, FaultyS3() as s3:
        seed(db.owner_url, fake.url, {"timeout_seconds": 30})
        user = new_user(db.owner_url)
        bucket = s3.bucket()
        env: dict[str, str] = {"CREDITGATE_IDLE_POLL_SECONDS": "60"}
        if fault == "s3-put-500":
            s3.mode = "fail_puts"
            env |= s3_env(s3.endpoint, bucket)
        elif fault == "s3-ack-lost":
            s3.mode = "ack_lost"
            env |= s3_env(s3.endpoint, bucket)
        elif fault == "s3-unreachable":
            env |= s3_env(f"http://127.0.0.1:{free_port()}", bucket)  # nothing listens
        else:
            (tmp_path / "media").mkdir()
            (tmp_path / "media" / "media").write_bytes(b"not a directory")

        with running_stack(db.owner_url, db.api_url, tmp_path, env) as stack:
            stack.serve()
            stack.worker("worker-1")
            client = stack.client(user)
            response = post_generation(client, {"prompt": PROMPT}, wait=30)
            assert response.status_code == 201, response.text
            body: dict[str, Any] = response.json()
            gid = body["generation_id"]
            assert body["status"] == "failed", (body, stack.logs())
            assert body["generation"]["error"]["code"] == "storage_error"
            assert body["generation"]["media"] == []
            assert client.get("/v1/balance").json()["balance"] == SIGNUP_BONUS
            codes = stack.close()
        assert codes == {"worker-1": 0, "service": -signal.SIGTERM}, stack.logs()
        # The provider did its part on every attempt; only storing failed.
        assert len(fake.gated_requests) == ATTEMPTS

        keys = [f"media/{gid}/{attempt}-0.png" for attempt in range(1, ATTEMPTS + 1)]
        assert s3.objects(bucket) == []  # nothing left in the bucket, whatever happened
        if fault.startswith("s3-") and fault != "s3-unreachable":
            puts = {s.path for s in s3.requests("PUT")}
            assert puts == {f"/{bucket}/{key}" for key in keys}, s3.seen
            assert all(s.status == 500 for s in s3.requests("PUT"))
            # Each attempt deleted what it might have written.
            deleted = {s.path for s in s3.requests("DELETE") if s.status == 204}
            assert deleted == puts, s3.seen
            if fault == "s3-ack-lost":  # the objects did exist before the cleanup
                assert set(s3.stored_unacknowledged) == puts

    if fault == "local-unwritable":
        assert stored_files(tmp_path / "media") == ["media"]  # the blocker only: no temp files
    row = generation(db.owner_url, gid)
    assert (row["status"], row["attempts"], row["actual_cost"]) == ("failed", ATTEMPTS, 0)
    assert row["error"]["code"] == "storage_error"
    calls = provider_calls(db.owner_url, gid)
    assert [(c["outcome"], c["error_code"], c["http_status"]) for c in calls] == [
        ("failed", "storage_error", 200)
    ] * ATTEMPTS
    assert media_rows(db.owner_url, gid) == []
    assert_money(db.owner_url, db.api_url, user, charged={gid: IMG_COST}, refunded={gid: IMG_COST})
