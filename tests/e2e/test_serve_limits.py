"""`creditgate serve` as a real process: uvicorn's limit_concurrency (setting
CREDITGATE_LIMIT_CONCURRENCY) answers 503 at once past the limit instead of queueing more
work behind open long-polls, and the service recovers when they end."""

from __future__ import annotations

import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg

from creditgate.auth import mint_token
from tests import dbutil
from tests.e2e.procs import base_env, http_ok, start, wait_until
from tests.fakes import free_port

JWT_SECRET = "e2e-limits-jwt-secret-with-at-least-32-chars"


def test_limit_concurrency_sheds_load_past_the_limit(
    db: dbutil.TestDatabase, tmp_path: Path
) -> None:
    with psycopg.connect(db.owner_url, autocommit=True) as conn:
        conn.execute("select tests.seed_models()")
        users = [str(conn.execute("select tests.create_user()").fetchone()[0]) for _ in range(3)]  # type: ignore[index]
    port = free_port()
    env = {
        **base_env(),
        "CREDITGATE_SERVICE_DATABASE_URL": db.api_url,
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "CREDITGATE_SIGNING_SECRET": "e2e-limits-signing-secret-0123456789abcdef",
        "CREDITGATE_RUNNER_SECRET": "e2e-limits-runner-secret-0123456789",
        "CREDITGATE_STORAGE_ROOT": str(tmp_path / "media"),
        "CREDITGATE_STATE_DIR": str(tmp_path / "state"),
        "CREDITGATE_HOST": "127.0.0.1",
        "CREDITGATE_PORT": str(port),
        "CREDITGATE_WAIT_MAX_SECONDS": "4",
        "CREDITGATE_LIMIT_CONCURRENCY": "4",  # uvicorn counts the new connection too
    }
    url = f"http://127.0.0.1:{port}"
    service = start("service", ["serve"], env, tmp_path)
    try:
        wait_until(lambda: http_ok(f"{url}/healthz"), [service], what="the service")

        def long_poll(user: str) -> int:
            headers = {
                "Authorization": f"Bearer {mint_token(JWT_SECRET, user)}",
                "Idempotency-Key": str(uuid.uuid4()),
            }
            body = {"model_id": "img-test", "params": {"prompt": "hold"}}
            response = httpx.post(
                f"{url}/v1/generations",
                params={"wait": 4},
                json=body,
                headers=headers,
                timeout=30,
            )
            return response.status_code

        with ThreadPoolExecutor(3) as pool:
            held = [pool.submit(long_poll, u) for u in users]
            time.sleep(1.5)  # three open long-polls; a fourth connection reaches the limit
            started = time.monotonic()
            shed = httpx.get(f"{url}/healthz", timeout=10)
            shed_seconds = time.monotonic() - started
            statuses = [f.result(timeout=30) for f in held]
        assert shed.status_code == 503, shed.text
        assert shed_seconds < 2.0
        assert statuses == [201, 201, 201]
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    finally:
        code = service.stop()
    assert code in (0, -signal.SIGTERM), service.output()
