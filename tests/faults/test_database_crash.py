"""PostgreSQL crashes (``pg_ctl stop -m immediate``) under HTTP load and comes back.

Runs on a private, throwaway cluster (creditgate.bench.pgcluster, tests/faults/pgcluster.py): the
shared server is never touched. `creditgate serve` and `creditgate worker` keep running
through the crash -- no restart -- while client threads POST /v1/generations with distinct
Idempotency-Keys:

* while the database is down, every answer is a 503 with the error body (``unavailable``),
  never a 500, never a hang (bounded by the pool's wait), and /readyz says 503 promptly;
* once it is back, requests succeed again on the same service process;
* every generation acknowledged with a 2xx exists, charged exactly once (``charge:<id>``);
  replaying its key returns the same generation (``replayed``) and charges nothing;
* every request that failed, retried with its own key, is applied at most once (201 if the
  crash lost it, 200 ``replayed`` if it had committed before the answer was lost);
* the worker, also never restarted, finishes every generation; each user's balance is
  exactly credits - charges + refunds of failed generations; ``audit()`` is ok.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from creditgate.auth import mint_token
from tests.fakes import FakeA1111
from tests.faults.harness import (
    IMG_COST,
    JWT_SECRET,
    PROMPT,
    RUNNER_SECRET,
    SIGNUP_BONUS,
    as_service_role,
    assert_money,
    media_rows,
    new_user,
    post_generation,
    provider_calls,
    running_stack,
    seed,
    set_setting,
    sql,
    stored_files,
    wait_status,
)
from tests.faults.pgcluster import Cluster
from tests.polling import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

USERS = 4
THREADS = 6
HELD = 3  # requests pinned mid-transaction at the moment of the crash
GRANT = 100_000
PAUSE = 0.02  # between one thread's requests: a steady load the worker keeps up with
DOWN_SECONDS = 2.0
# The service's pool waits up to 30 s (psycopg_pool's default) for a connection.
MAX_ANSWER_SECONDS = 35.0


@dataclass
class Sent:
    user: str
    key: str
    params: dict[str, Any]
    started: float
    finished: float = 0.0
    status: int | None = None  # None: no HTTP answer at all
    body: Any = None
    error: str = ""
    thread: int = -1

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A private PostgreSQL 15 cluster with creditgate migrated in; removed even on failure."""
    with Cluster.create() as c:
        c.prepare_creditgate()
        yield c


def send(
    http: httpx.Client, token: dict[str, str], user: str, key: str, params: dict[str, Any]
) -> Sent:
    sent = Sent(user, key, params, time.monotonic())
    try:
        response = http.post(
            "/v1/generations",
            headers={"Authorization": f"Bearer {token[user]}", "Idempotency-Key": key},
            json={"model_id": "img-test", "params": params},
        )
    except httpx.HTTPError as exc:
        sent.error = repr(exc)
    else:
        sent.status = response.status_code
        try:
            sent.body = response.json()
        except ValueError:
            sent.body = response.text
        sent.error = response.headers.get("retry-after", "")
    sent.finished = time.monotonic()
    return sent


@pytest.mark.parametrize(
    "outage",
    [
        pytest.param("brief", id="down-2s"),
        pytest.param("past-pool-wait", id="down-until-every-client-got-503"),
    ],
)
def test_service_recovers_from_a_database_crash_without_restart(
    cluster: Cluster, tmp_path: Path, outage: str
) -> None:
    owner, api = cluster.owner_url, cluster.api_url
    with FakeA1111(keys={RUNNER_SECRET}) as fake:
        seed(owner, fake.url, {"timeout_seconds": 30})
        set_setting(owner, "plan_daily_caps", {})  # the load, not a daily cap, is the subject
        users = [new_user(owner) for _ in range(USERS)]
        held = new_user(owner)  # whose requests the crash catches mid-transaction
        for user in [*users, held]:
            as_service_role(
                api,
                "select creditgate.service_grant_credits(user_id => %s::uuid, amount => %s,"
                " entry_type => 'grant', idempotency_key => %s)",
                [user, GRANT, f"grant:faults-{user}"],
            )
        tokens = {user: mint_token(JWT_SECRET, user) for user in [*users, held]}
        env = {
            "CREDITGATE_LEASE_SECONDS": "5",
            "CREDITGATE_HEARTBEAT_SECONDS": "1",
            # No fallback poll within the test: after the crash, jobs must still be found
            # through NOTIFY (the worker's LISTEN connection has to come back by itself).
            "CREDITGATE_IDLE_POLL_SECONDS": "300",
            "CREDITGATE_POOL_MAX": "10",
            # After the crash every acknowledged request is retried at once, many per user:
            # the per-user replay limit (tests/service/test_long_polls.py) is not under test.
            "CREDITGATE_REPLAY_RATE": "1000",
            "CREDITGATE_REPLAY_BURST": "10000",
        }
        with running_stack(owner, api, tmp_path, env) as stack:
            service = stack.serve()
            worker = stack.worker("worker-1", "--concurrency", "6")
            service_pid, worker_pid = service.proc.pid, worker.proc.pid

            sent: list[Sent] = []
            lock = threading.Lock()
            stop = threading.Event()
            restarted_at: list[float] = []

            def load(n: int) -> None:
                with httpx.Client(base_url=stack.url, timeout=MAX_ANSWER_SECONDS + 10) as http:
                    i = 0
                    while not stop.is_set():
                        user = users[(n + i) % USERS]
                        params = {"prompt": f"{PROMPT} #{n}-{i}", "seed": n * 100_000 + i}
                        result = send(http, tokens, user, str(uuid.uuid4()), params)
                        result.thread = n
                        with lock:
                            sent.append(result)
                        i += 1
                        time.sleep(PAUSE)

            def hold(k: int) -> Sent:
                with httpx.Client(base_url=stack.url, timeout=MAX_ANSWER_SECONDS + 10) as http:
                    params = {"prompt": f"{PROMPT} pinned {k}", "seed": k}
                    result = send(http, tokens, held, str(uuid.uuid4()), params)
                with lock:
                    sent.append(result)
                return result

            def recovered() -> bool:
                """Every thread got a 2xx for a request sent after the restart."""
                if not restarted_at:
                    return False
                with lock:
                    after = [s for s in sent if s.ok and s.started > restarted_at[0]]
                return len(after) >= 3 * THREADS

            with ThreadPoolExecutor(THREADS + HELD) as pool:
                futures = [pool.submit(load, n) for n in range(THREADS)]
                blocker: psycopg.Connection[Any] | None = None
                pinned: list[Future[Sent]] = []
                try:
                    blocker = psycopg.connect(cluster.superuser_url)
                    time.sleep(2.0)
                    with lock:
                        assert sum(s.ok for s in sent) >= 20, sent[-5:]
                    # Pin HELD requests mid-transaction (waiting for the user's balance lock),
                    # so the crash certainly cuts transactions that were never committed.
                    blocker.execute(
                        "select 1 from creditgate.balances where user_id = %s for update", [held]
                    )
                    pinned = [pool.submit(hold, k) for k in range(HELD)]
                    eventually(lambda: lock_waiters(cluster) >= HELD, 20, "the pinned requests")
                    time.sleep(0.5)  # the load runs on meanwhile
                    crashed_at = time.monotonic()
                    cluster.crash()
                    assert not cluster.accepts_connections()
                    # Down: readiness says so at once (its own short wait), with the body.
                    probe_started = time.monotonic()
                    ready = httpx.get(f"{stack.url}/readyz", timeout=20)
                    assert time.monotonic() - probe_started < 10
                    assert ready.status_code == 503, ready.text
                    assert ready.json()["error"]["code"] == "unavailable"
                    if outage == "brief":
                        time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - crashed_at)))
                    else:
                        # Down until every client thread got its 503 (after the pool's wait).
                        deadline = time.monotonic() + MAX_ANSWER_SECONDS + 5
                        while len(threads_with_503(sent, lock, crashed_at)) < THREADS:
                            assert time.monotonic() < deadline, "POSTs hang while down"
                            time.sleep(0.1)
                    down_seconds = time.monotonic() - crashed_at
                    cluster.start()
                    restarted_at.append(time.monotonic())
                    deadline = time.monotonic() + 45
                    while not recovered():
                        assert time.monotonic() < deadline, "no recovery within 45 s"
                        assert service.alive() and worker.alive(), stack.logs()
                        time.sleep(0.1)
                finally:
                    stop.set()
                    if blocker is not None:
                        blocker.close()
                    for future in futures:
                        future.result(timeout=MAX_ANSWER_SECONDS + 15)
                pinned_sent = [f.result(timeout=MAX_ANSWER_SECONDS + 15) for f in pinned]
            # From the restart to the first 2xx answer: no restart of ours in between.
            recovery_seconds = (
                min(s.finished for s in sent if s.ok and s.finished > restarted_at[0])
                - restarted_at[0]
            )

            # The same processes served before, during and after the crash.
            assert service.alive() and service.proc.pid == service_pid
            assert worker.alive() and worker.proc.pid == worker_pid
            assert http_ready(stack.url)

            # --- what the clients saw ----------------------------------------------------
            failures = [s for s in sent if not s.ok]
            statuses = Counter(s.status for s in sent)
            assert all(s.status is not None for s in sent), [s.error for s in failures][:5]
            assert set(statuses) <= {201, 503}, statuses
            for s in failures:
                assert s.body["error"]["code"] == "unavailable", s.body
                assert s.body["error"]["request_id"], s.body
                assert s.error == "1"  # Retry-After
            slowest = max(s.finished - s.started for s in sent)
            assert slowest < MAX_ANSWER_SECONDS, slowest
            # The crash cut the pinned requests' transactions: 503, nothing committed.
            assert [s.status for s in pinned_sent] == [503] * HELD

            # --- acknowledged requests exist once and replay -------------------------------
            acked = [s for s in sent if s.ok]
            for s in acked:
                assert s.body["replayed"] is False and s.body["cost"] == IMG_COST, s.body
            assert len({s.body["generation_id"] for s in acked}) == len(acked)
            rows = {
                str(r["id"]): r
                for r in sql(
                    owner,
                    "select id, user_id::text, idempotency_key, cost, status"
                    " from creditgate.generations",
                )
            }
            for s in acked:
                row = rows[s.body["generation_id"]]
                assert (row["user_id"], row["idempotency_key"]) == (s.user, s.key)

            with (
                httpx.Client(base_url=stack.url, timeout=30) as http,
                ThreadPoolExecutor(THREADS) as pool,
            ):

                def again(s: Sent) -> Sent:
                    return send(http, tokens, s.user, s.key, s.params)

                replays = list(pool.map(again, acked))
                for s, r in zip(acked, replays, strict=True):
                    assert r.status == 200, (r.status, r.body)
                    assert r.body["replayed"] is True
                    assert r.body["generation_id"] == s.body["generation_id"]
                    assert r.body["cost"] == s.body["cost"]

                # --- failed requests, retried with their own key, apply at most once -------
                retried = list(pool.map(again, failures))
                assert all(r.ok for r in retried), Counter(r.status for r in retried)
                # 201: the crash lost it; 200 replayed: it had committed, the answer was lost.
                outcomes = Counter(r.status for r in retried)
                assert set(outcomes) <= {200, 201}
                for r in retried:
                    assert r.body["replayed"] is (r.status == 200)
                pinned_keys = {s.key for s in pinned_sent}
                assert [r.status for r in retried if r.key in pinned_keys] == [201] * HELD
                twice = list(pool.map(again, failures))
                for first, second in zip(retried, twice, strict=True):
                    assert second.status == 200 and second.body["replayed"] is True
                    assert second.body["generation_id"] == first.body["generation_id"]

            # Nothing else was created: one generation per key ever sent, and no more.
            by_key = Counter(
                (r["user_id"], r["idempotency_key"])
                for r in sql(
                    owner, "select user_id::text, idempotency_key from creditgate.generations"
                )
            )
            assert set(by_key) == {(s.user, s.key) for s in sent}
            assert set(by_key.values()) == {1}

            # --- the worker, never restarted either, finishes everything -------------------
            deadline = time.monotonic() + 60
            while True:
                [pending] = sql(
                    owner,
                    "select count(*) as n from creditgate.generations"
                    " where status in ('queued', 'running')",
                )
                if pending["n"] == 0:
                    break
                assert time.monotonic() < deadline, (pending, stack.logs())
                assert worker.alive(), worker.output()
                time.sleep(0.25)
            assert worker.proc.pid == worker_pid
            # Every stored output belongs to a media row, and every media row has its file.
            objects = {f for f in stored_files(stack.media_root) if "~" not in f}
            keys = {
                r["storage_key"] for r in sql(owner, "select storage_key from creditgate.media")
            }
            orphans = sorted(objects - keys)
            assert keys <= objects, sorted(keys - objects)[:5]

            # The idle, never-restarted worker is woken by NOTIFY again, and the service's
            # ?wait= sees the result: the whole path works as before the crash. (The
            # worker's LISTEN reconnect backs off up to 30 s and it polls no faster
            # meanwhile, so after a long outage the pick-up may take that long.)
            probe = Sent(users[0], str(uuid.uuid4()), {"prompt": "after the storm"}, 0.0)
            with httpx.Client(base_url=stack.url, timeout=60) as http:
                probe.started = time.monotonic()
                response = http.post(
                    "/v1/generations",
                    params={"wait": 30},
                    headers={
                        "Authorization": f"Bearer {tokens[probe.user]}",
                        "Idempotency-Key": probe.key,
                    },
                    json={"model_id": "img-test", "params": probe.params},
                )
            probe.status, probe.body = response.status_code, response.json()
            sent.append(probe)
            assert probe.status == 201, probe.body
            wait_status(
                owner, probe.body["generation_id"], {"succeeded"}, timeout=15, procs=[worker]
            )
            probe.finished = time.monotonic()
            probe_seconds = probe.finished - probe.started
            assert probe_seconds < 45, probe_seconds
            codes = stack.close()
        assert codes == {"worker-1": 0, "service": -signal.SIGTERM}, stack.logs()

    # --- money, per user, to the credit ----------------------------------------------------
    generations = sql(
        owner, "select id::text, user_id::text, cost, status, attempts from creditgate.generations"
    )
    assert len(generations) == len(sent)
    final_status = Counter(g["status"] for g in generations)
    assert set(final_status) <= {"succeeded", "failed"}, final_status
    attempts = Counter(g["attempts"] for g in generations)
    for user in [*users, held]:
        mine = [g for g in generations if g["user_id"] == user]
        assert_money(
            owner,
            api,
            user,
            charged={g["id"]: g["cost"] for g in mine},
            refunded={g["id"]: g["cost"] for g in mine if g["status"] == "failed"},
            credited=SIGNUP_BONUS + GRANT,
        )
    print(
        f"\nsent {len(sent)}: {dict(statuses)}; failed then retried: {dict(outcomes)};"
        f" down {down_seconds:.1f} s, recovered {recovery_seconds:.1f} s after restart; slowest answer {slowest:.1f} s;"
        f" idle pick-up {probe_seconds:.1f} s;"
        f" generations {dict(final_status)}, attempts {dict(attempts)}; orphans {orphans}"
    )


def threads_with_503(sent: list[Sent], lock: threading.Lock, since: float) -> set[int]:
    with lock:
        return {s.thread for s in sent if s.status == 503 and s.started >= since and s.thread >= 0}


def lock_waiters(cluster: Cluster) -> int:
    [row] = sql(
        cluster.admin_url,
        "select count(*) as n from pg_stat_activity"
        " where datname = 'creditgate' and wait_event_type = 'Lock'",
    )
    return int(row["n"])


def http_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_outputs_of_an_attempt_whose_settle_never_landed_are_not_leaked(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The database dies between a job's upload and its settle, longer than the lease.

    The worker stores attempt 1's output and cannot settle it. It keeps retrying the
    (idempotent) settle past its lease until the database is back. Then either the settle
    lands (nobody had taken the job back yet) and attempt 1's file is the output, or the
    reaper got there first, the settle answers lease_lost, the worker deletes its upload and
    attempt 2 produces the output. Money is right either way; what is checked here is that
    no stored file is left that no media row refers to (cleanup could never reach it).
    """
    owner, api = cluster.owner_url, cluster.api_url
    with FakeA1111(keys={RUNNER_SECRET}, hang_seconds=3.0) as fake:
        seed(owner, fake.url, {"timeout_seconds": 30, "max_attempts": 1})
        user = new_user(owner)
        env = {
            "CREDITGATE_LEASE_SECONDS": "5",
            "CREDITGATE_HEARTBEAT_SECONDS": "1",
            "CREDITGATE_IDLE_POLL_SECONDS": "2",
        }
        with running_stack(owner, api, tmp_path, env) as stack:
            stack.serve()
            worker = stack.worker("worker-1", "--concurrency", "1")
            client = stack.client(user)
            response = post_generation(client, {"prompt": PROMPT})
            assert response.status_code == 201, response.text
            gid = response.json()["generation_id"]
            eventually(lambda: len(fake.gated_requests) == 1, 20, "the provider call")

            cluster.crash()  # while the provider works: the upload succeeds, the settle fails
            fake.faults.hang_seconds = 0
            eventually(
                lambda: "settle failed; retrying" in worker.output(), 45, "the settle retries"
            )
            assert (stack.media_root / f"media/{gid}/1-0.png").exists()
            time.sleep(6)  # the 5 s lease is over while the database is still down
            assert "settle failed; retrying" in worker.output()
            cluster.start()

            row = wait_status(owner, gid, {"succeeded", "failed"}, timeout=40, procs=stack.live())
            assert row["status"] == "succeeded", stack.logs()
            codes = stack.close()
        assert codes == {"worker-1": 0, "service": -signal.SIGTERM}, stack.logs()

    # Money: charged once, no refund, audit ok -- the crash cost the user nothing extra.
    outcomes = [c["outcome"] for c in provider_calls(owner, gid)]
    assert_money(owner, api, user, charged={gid: IMG_COST}, refunded={})
    [media] = media_rows(owner, gid)
    if row["attempts"] == 1:  # the retried settle landed
        assert outcomes == ["succeeded"]
        assert media["storage_key"] == f"media/{gid}/1-0.png"
    else:  # the reaper took the job back; the late settle got lease_lost
        assert row["attempts"] == 2
        assert outcomes == ["lease_expired", "succeeded"]
        assert media["storage_key"] == f"media/{gid}/2-0.png"
    # Storage: only what a media row refers to may remain.
    outputs = [f for f in stored_files(stack.media_root) if "~" not in f]
    assert outputs == [media["storage_key"]], "attempt 1's output was leaked"
