"""Webhook delivery against a real receiver on 127.0.0.1 that verifies every signature with
the `standardwebhooks` library: retries keep the webhook-id, a hanging receiver times out,
410 disables the endpoint, a worker SIGKILLed mid-delivery leads to redelivery, SSRF targets
are refused (when added, and again after DNS at delivery), `redeliver` sends again."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from creditgate.db import Database
from creditgate.netpolicy import guarded_client
from creditgate.webhooks import WebhookDeliverer
from tests import dbutil
from tests.ops.helpers import (
    CliResult,
    Receiver,
    events,
    grant,
    new_user,
    owner,
    run_cli,
    set_setting,
    value,
    worker_process,
)
from tests.polling import eventually


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def fast_retries(db: dbutil.TestDatabase) -> None:
    set_setting(db, "webhook_allow_loopback", True)
    set_setting(db, "webhook_backoff_base_seconds", 0.05)
    set_setting(db, "webhook_backoff_max_seconds", 0.2)


def add_endpoint(db: dbutil.TestDatabase, receiver: Receiver, url: str, *types: str) -> str:
    result = value(
        db,
        "select creditgate_private.webhook_add(%s, %s::text[])",
        url,
        list(types) or ["credits.added"],
    )
    receiver.secret = result["secret"]
    return str(result["endpoint_id"])


def cause_event(db: dbutil.TestDatabase) -> uuid.UUID:
    """A grant: one credits.added event (the user has no signup bonus)."""
    user = new_user(db)
    with owner(db) as conn:
        grant(conn, user, 25)
    return user


def deliver_until(db: dbutil.TestDatabase, done: str, *, timeout_s: float = 0.5,
                  limit: float = 30.0) -> None:
    """Run an in-process deliverer (real HTTP, real database) until ``done`` (SQL) is true."""

    async def go() -> None:
        database = Database(db.api_url, min_size=1, max_size=4)
        await database.open()
        deliverer = WebhookDeliverer(database, "w-test", timeout_seconds=timeout_s)
        try:
            async with guarded_client(timeout=timeout_s) as client:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + limit
                while not value(db, done):
                    assert loop.time() < deadline, f"timed out waiting for: {done}"
                    if not await deliverer.run_once(client):
                        await asyncio.sleep(0.05)
        finally:
            await database.close()

    asyncio.run(go())


def deliveries(db: dbutil.TestDatabase) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = value(db, "select creditgate_private.webhook_deliveries()")
    return result


def test_signed_delivery_verified_by_the_receiver(
    db: dbutil.TestDatabase, receiver: Receiver
) -> None:
    fast_retries(db)
    add_endpoint(db, receiver, receiver.start())
    user = cause_event(db)
    deliver_until(
        db, "select bool_and(status = 'delivered') from creditgate_private.webhook_deliveries"
    )
    assert len(receiver.received) == 1
    got = receiver.received[0]
    assert isinstance(got.verified, dict), got.verified  # the library accepted the signature
    assert got.verified["type"] == "credits.added"
    assert got.verified["data"]["user_id"] == str(user) and got.verified["data"]["amount"] == 25
    event_id = value(db, "select id from creditgate_private.events")
    assert got.headers["webhook-id"] == "msg_" + str(event_id).replace("-", "")
    # A tampered body fails verification with the same library (the check can fail).
    with pytest.raises(Exception, match="signature"):
        from standardwebhooks.webhooks import Webhook

        Webhook(receiver.secret).verify(got.body.replace(b"25", b"26"), got.headers)
    [row] = deliveries(db)
    assert row["status"] == "delivered" and row["attempts"] == 1
    assert row["history"][0]["http_status"] == 200 and row["history"][0]["latency_ms"] >= 0


def test_three_failures_then_success_same_webhook_id(
    db: dbutil.TestDatabase, receiver: Receiver
) -> None:
    fast_retries(db)
    receiver.plan = [500, 502, 503, 200]
    add_endpoint(db, receiver, receiver.start())
    cause_event(db)
    deliver_until(
        db, "select bool_and(status = 'delivered') from creditgate_private.webhook_deliveries"
    )
    ids = receiver.ids()
    assert len(ids) == 4 and len(set(ids)) == 1, ids
    assert all(isinstance(r.verified, dict) for r in receiver.received)
    [row] = deliveries(db)
    assert [(a["outcome"], a["http_status"]) for a in row["history"]] == [
        ("failed", 500), ("failed", 502), ("failed", 503), ("delivered", 200)
    ]
    # Delivered: nothing is sent again.
    deliver_until(db, "select true")
    assert len(receiver.received) == 4


def test_hanging_receiver_times_out_and_budget_parks(
    db: dbutil.TestDatabase, receiver: Receiver
) -> None:
    fast_retries(db)
    set_setting(db, "webhook_retry_budget_hours", 0.001)  # 3.6 s
    receiver.plan = [("hang", 5.0)]
    receiver.default = 500
    add_endpoint(db, receiver, receiver.start())
    cause_event(db)
    deliver_until(
        db,
        "select bool_and(status = 'parked') from creditgate_private.webhook_deliveries",
        timeout_s=0.5,
    )
    [row] = deliveries(db)
    first = row["history"][0]
    assert first["outcome"] == "failed" and first["http_status"] is None
    assert "timed out" in first["error"] and 400 <= first["latency_ms"] < 3000
    assert all(a["outcome"] == "failed" for a in row["history"])
    status = value(db, "select creditgate.service_ops_status()")
    assert status["outbox"]["parked"] == 1


def test_410_disables_the_endpoint(db: dbutil.TestDatabase, receiver: Receiver) -> None:
    fast_retries(db)
    receiver.default = 410
    endpoint = add_endpoint(db, receiver, receiver.start())
    cause_event(db)
    deliver_until(
        db, "select bool_and(status = 'canceled') from creditgate_private.webhook_deliveries"
    )
    assert len(receiver.received) == 1
    assert value(
        db, "select enabled from creditgate_private.webhook_endpoints where id = %s", endpoint
    ) is False
    cause_event(db)  # a later event is not queued for the disabled endpoint
    assert len(deliveries(db)) == 1 and len(events(db, "credits.added")) == 2


def test_worker_killed_mid_delivery_redelivers(
    db: dbutil.TestDatabase, receiver: Receiver, tmp_path: Path
) -> None:
    fast_retries(db)
    receiver.plan = [("hang", 30.0)]  # the first attempt never gets an answer in time
    add_endpoint(db, receiver, receiver.start())
    env = {"CREDITGATE_WEBHOOK_TIMEOUT_SECONDS": "2", "CREDITGATE_WEBHOOK_POLL_SECONDS": "0.2",
           "CREDITGATE_JOBS_POLL_SECONDS": "0"}
    first, _ = worker_process(db, tmp_path, "wh-1", **env)
    try:
        cause_event(db)
        eventually(lambda: len(receiver.received) == 1, 60, "the first attempt")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert value(db, "select status from creditgate_private.webhook_deliveries") == "delivering"
    second, second_log = worker_process(db, tmp_path, "wh-2", **env)
    try:
        eventually(
            lambda: value(db, "select status from creditgate_private.webhook_deliveries")
            == "delivered",
            60,
            "redelivery after the lease expired\n" + second_log.read_text(),
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    ids = receiver.ids()
    assert len(ids) == 2 and ids[0] == ids[1]
    [row] = deliveries(db)
    assert [a["outcome"] for a in row["history"]] == ["lease_expired", "delivered"]


def cli(db: dbutil.TestDatabase, *args: str) -> CliResult:
    return run_cli(db, *args)


def test_ssrf_targets_are_refused(db: dbutil.TestDatabase, receiver: Receiver) -> None:
    url = receiver.start()
    local_name = f"https://localhost:{receiver.port}/hook"  # resolves to 127.0.0.1
    for target in ("http://169.254.169.254/", "http://10.0.0.1/", "https://169.254.169.254/",
                   "https://10.0.0.1/", local_name):
        added = cli(db, "webhooks", "add", target)
        assert added.returncode == 1 and "refused" in added.stderr, (target, added.stderr)
    assert value(db, "select count(*) from creditgate_private.webhook_endpoints") == 0

    # Endpoints that got in some other way are refused again at delivery, after DNS.
    fast_retries(db)
    set_setting(db, "webhook_allow_loopback", False)
    with owner(db) as conn:
        for target in ("https://169.254.169.254/latest", "https://10.0.0.1/", local_name,
                       url):
            conn.execute(
                "insert into creditgate_private.webhook_endpoints (url, secret, event_types)"
                " values (%s, %s, array['*'])",
                [target, "whsec_" + "A" * 32],
            )
    cause_event(db)
    deliver_until(
        db, "select bool_and(status = 'parked') from creditgate_private.webhook_deliveries"
    )
    rows = deliveries(db)
    assert len(rows) == 4
    assert all(r["history"][0]["outcome"] == "refused" for r in rows), rows
    assert all("refused" in r["last_error"] for r in rows)
    assert receiver.received == []


def test_cli_add_list_deliveries_redeliver_disable(
    db: dbutil.TestDatabase, receiver: Receiver
) -> None:
    fast_retries(db)
    url = receiver.start()
    added = cli(db, "webhooks", "add", url, "--event", "credits.added")
    assert added.returncode == 0, added.stderr
    endpoint = json.loads(added.stdout)
    receiver.secret = endpoint["secret"]
    assert endpoint["secret"].startswith("whsec_") and endpoint["event_types"] == ["credits.added"]
    listed = cli(db, "webhooks", "list")
    assert listed.returncode == 0 and endpoint["endpoint_id"] in listed.stdout
    assert endpoint["secret"] not in listed.stdout

    cause_event(db)
    deliver_until(
        db, "select bool_and(status = 'delivered') from creditgate_private.webhook_deliveries"
    )
    shown = cli(db, "webhooks", "deliveries", "--json")
    [row] = json.loads(shown.stdout)
    assert row["status"] == "delivered" and row["history"][0]["http_status"] == 200

    again = cli(db, "webhooks", "redeliver", str(row["delivery_id"]))
    assert again.returncode == 0, again.stderr
    assert value(db, "select status from creditgate_private.webhook_deliveries") == "pending"
    deliver_until(
        db, "select bool_and(status = 'delivered') from creditgate_private.webhook_deliveries"
    )
    ids = receiver.ids()
    assert len(ids) == 2 and ids[0] == ids[1]
    assert all(isinstance(r.verified, dict) for r in receiver.received)

    off = cli(db, "webhooks", "disable", endpoint["endpoint_id"])
    assert off.returncode == 0, off.stderr
    refused = cli(db, "webhooks", "redeliver", str(row["delivery_id"]))
    assert refused.returncode == 1 and "invalid_state" in refused.stderr
    missing = cli(db, "webhooks", "redeliver", "999999")
    assert missing.returncode == 1 and "not_found" in missing.stderr
