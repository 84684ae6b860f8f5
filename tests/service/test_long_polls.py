"""``?wait=`` long-polls cannot saturate the service (issue 18, item 7), over real HTTP.

- a user holds at most ``wait_per_user`` open waits: an extra wait answers at once with the
  generation's current state;
- at most ``wait_max_open`` waits are open in all;
- a waiter is woken by the settle/cancel notification and reads the status again then, not
  by polling: a waiter costs no queries while nothing happens;
- a retry of a request this process already answered (a replay) takes a token from the
  user's replay bucket: past its burst, replays are 429 ``rate_limited`` (scope ``replays``)
  before any SQL runs; new requests are not affected.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from creditgate.api import queries
from tests import dbutil
from tests.service.apiutil import auth, create_user, running, scalar, seed_models, settings_for

IMG = {"model_id": "img-test", "params": {"prompt": "a lighthouse at dusk"}}


def post(
    url: str, user: str, *, wait: float | None = None, key: str | None = None
) -> httpx.Response:
    headers = {**auth(user), "Idempotency-Key": key or str(uuid.uuid4())}
    params = {"wait": wait} if wait is not None else None
    return httpx.post(f"{url}/v1/generations", json=IMG, headers=headers, params=params, timeout=30)


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def until_created(db: dbutil.TestDatabase, users: list[str]) -> None:
    """Wait until these users' generations exist (one per entry): their waits open next."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        counts = {u: scalar(db, GENERATIONS_OF, [u]) for u in set(users)}
        if all(counts[u] >= users.count(u) for u in users):
            time.sleep(0.3)  # from the insert's commit to the open wait: no query, no await
            return
        time.sleep(0.05)
    raise AssertionError("the held requests were not created")


GENERATIONS_OF = "select count(*) from creditgate.generations where user_id = %s"


@pytest.fixture
def seeded(db: dbutil.TestDatabase) -> dbutil.TestDatabase:
    seed_models(db)
    return db


def test_per_user_cap_answers_extra_waits_at_once(
    seeded: dbutil.TestDatabase, tmp_path: Path
) -> None:
    alice, bob = create_user(seeded), create_user(seeded)
    settings = settings_for(seeded, tmp_path, wait_max_seconds=5.0, wait_per_user=2)
    with running(settings) as url, ThreadPoolExecutor(4) as pool:
        held = [pool.submit(timed, lambda: post(url, alice, wait=5)) for _ in range(2)]
        until_created(seeded, [alice, alice])  # both waits are open now
        extra, extra_seconds = timed(lambda: post(url, alice, wait=5))
        other, other_seconds = timed(lambda: post(url, bob, wait=1))
        results = [f.result(timeout=30) for f in held]
    assert extra.status_code == 201, extra.text
    assert extra_seconds < 2.5, extra_seconds  # it would wait 5 s
    body = extra.json()
    assert body["status"] == "queued" and body["generation"]["status"] == "queued"
    assert other.status_code == 201 and other_seconds >= 0.9  # the cap is Alice's, not Bob's
    for response, seconds in results:
        assert response.status_code == 201 and seconds >= 4.5  # these did wait


def test_global_cap_answers_extra_waits_at_once(
    seeded: dbutil.TestDatabase, tmp_path: Path
) -> None:
    users = [create_user(seeded) for _ in range(3)]
    settings = settings_for(
        seeded, tmp_path, wait_max_seconds=5.0, wait_per_user=5, wait_max_open=2
    )
    with running(settings) as url, ThreadPoolExecutor(3) as pool:
        held = [pool.submit(timed, lambda u=u: post(url, u, wait=5)) for u in users[:2]]
        until_created(seeded, users[:2])
        extra, extra_seconds = timed(lambda: post(url, users[2], wait=5))
        results = [f.result(timeout=30) for f in held]
        # Once they are done, waiting works again.
        later, later_seconds = timed(lambda: post(url, users[2], wait=1))
    assert extra.status_code == 201 and extra_seconds < 2.5, extra_seconds
    assert extra.json()["generation"]["status"] == "queued"
    assert all(seconds >= 4.5 for _, seconds in results)
    assert later.status_code == 201 and later_seconds >= 0.9


def test_waiters_are_woken_by_the_notification_not_by_polling(
    seeded: dbutil.TestDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    real_status = queries.generation_status

    async def counting(*args: Any, **kwargs: Any) -> str | None:
        status = await real_status(*args, **kwargs)
        reads.append(str(status))
        return status

    monkeypatch.setattr(queries, "generation_status", counting)
    users = [create_user(seeded) for _ in range(6)]
    settings = settings_for(seeded, tmp_path, wait_max_seconds=10.0)
    with running(settings) as url, ThreadPoolExecutor(6) as pool:
        keys = [str(uuid.uuid4()) for _ in users]
        created = [
            post(url, u, key=k).json()["generation_id"] for u, k in zip(users, keys, strict=True)
        ]
        waits = [
            pool.submit(timed, lambda u=u, k=k: post(url, u, wait=10, key=k))
            for u, k in zip(users, keys, strict=True)
        ]
        time.sleep(3.0)  # six waiters, three seconds, nothing happening
        idle_reads = len(reads)
        started = time.monotonic()
        for u, g in zip(users, created, strict=True):  # cancel notifies each waiter
            cancel = httpx.post(f"{url}/v1/generations/{g}/cancel", headers=auth(u))
            assert cancel.status_code == 200, cancel.text
        results = [f.result(timeout=30) for f in waits]
        woken_after = time.monotonic() - started
    # One read per waiter when it starts, none while it waits.
    assert idle_reads <= len(users), reads
    for response, seconds in results:
        assert response.status_code == 200, response.text  # a replay of the created request
        assert response.json()["generation"]["status"] == "canceled"
        assert seconds < 9.0
    assert woken_after < 3.0


def test_replays_are_limited_per_user(seeded: dbutil.TestDatabase, tmp_path: Path) -> None:
    user, other = create_user(seeded), create_user(seeded)
    settings = settings_for(seeded, tmp_path, replay_burst=3, replay_rate=0.01)
    with running(settings) as url:
        key = str(uuid.uuid4())
        assert post(url, user, key=key).status_code == 201
        replays = [post(url, user, key=key) for _ in range(3)]
        limited = post(url, user, key=key)
        fresh = post(url, user)  # a new request is not a replay
        others = post(url, other, key=key)  # nor is another user's key
    assert [r.status_code for r in replays] == [200, 200, 200]
    assert limited.status_code == 429, limited.text
    error = limited.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["details"]["scope"] == "replays"
    assert error["details"]["retry_after_seconds"] >= 1
    assert int(limited.headers["retry-after"]) >= 1
    assert fresh.status_code == 201 and others.status_code == 201


def test_replay_flood_is_refused_at_once(seeded: dbutil.TestDatabase, tmp_path: Path) -> None:
    user = create_user(seeded)
    settings = settings_for(seeded, tmp_path, replay_burst=2, replay_rate=0.01)
    with running(settings) as url:
        key = str(uuid.uuid4())
        assert post(url, user, key=key).status_code == 201
        with httpx.Client(base_url=url, headers={**auth(user), "Idempotency-Key": key}) as client:
            flood_started = time.monotonic()
            statuses = [
                client.post("/v1/generations", json=IMG, params={"wait": 0.5}).status_code
                for _ in range(40)
            ]
            flood_seconds = time.monotonic() - flood_started
            started = time.monotonic()
            balance = client.get("/v1/balance")
            balance_seconds = time.monotonic() - started
    assert statuses.count(429) >= 37, statuses
    assert flood_seconds < 8.0, flood_seconds  # 40 waits of 0.5 s would take 20 s
    assert balance.status_code == 200 and balance_seconds < 1.0
