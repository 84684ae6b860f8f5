"""`creditgate up` itself: a throwaway local database, real children, Ctrl-C stops them all."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from PIL import Image

from creditgate import localdb
from creditgate.migrate import project_root
from tests import dbutil
from tests.e2e.procs import CLI, base_env
from tests.fakes import free_port

BANNER_TIMEOUT = 180.0  # a fresh database: bootstrap + every migration + seed


class Output:
    """Collects a pipe's lines in a thread so the test can wait for a line."""

    def __init__(self, pipe: io.BufferedReader) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: io.BufferedReader) -> None:
        for raw in iter(pipe.readline, b""):
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        pipe.close()

    def wait_for(self, pattern: str, timeout: float, proc: subprocess.Popen[bytes]) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if m := regex.search(line):
                        return m.group(1)
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"no line matching {pattern!r}")
                self._cond.wait(0.2)

    def join(self) -> None:
        self._thread.join(10)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def database_name() -> Iterator[str]:
    name = f"cg_up_{dbutil.RUN_ID}_{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        localdb.drop_database(dbutil.ADMIN_URL, name)


def seed_if_missing(database: str, runner_port: int) -> None:
    """Until supabase/seed.sql exists, give the dev database one image model of its own."""
    if (project_root() / "supabase" / "seed.sql").exists():
        return
    owner_url = localdb.dsn_for(dbutil.ADMIN_URL, dbname=database, user=localdb.DEPLOYER_ROLE)
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(
            "insert into creditgate.models (id, kind, name, price_base, price_per_megapixel,"
            " price_per_step, max_width, max_height, max_steps)"
            " values ('dev-image', 'image', 'Dev image', 5, 10, 1, 1024, 1024, 50)"
        )
        conn.execute(
            "insert into creditgate_private.model_routes (model_id, provider, provider_model,"
            " endpoint) values ('dev-image', 'local', 'sdxl-base', %s)",
            [f"http://127.0.0.1:{runner_port}"],
        )


def test_up_serves_a_generation_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path, database_name: str
) -> None:
    port, runner_port = free_port(), free_port()
    env = {
        **base_env(),
        "CREDITGATE_ADMIN_URL": dbutil.ADMIN_URL,
        "CREDITGATE_DB_NAME": database_name,
        "CREDITGATE_STATE_DIR": str(tmp_path / "state"),
        "CREDITGATE_RUNNER_PORT": str(runner_port),
    }
    stderr = tmp_path / "up.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [*CLI, "up", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    out = Output(proc.stdout)  # type: ignore[arg-type]
    pids: list[int] = []
    try:
        try:
            url = out.wait_for(r"URL:\s+(\S+)", BANNER_TIMEOUT, proc)
            token = out.wait_for(r"token:\s+(\S+)", 5, proc)
            pids = [int(p) for p in re.findall(r"\d+", out.wait_for(r"processes:\s+(.*)", 5, proc))]
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{stderr.read_text()}") from None
        assert url == f"http://127.0.0.1:{port}"
        assert len(pids) == 3 and all(alive(pid) for pid in pids)
        assert (tmp_path / "state" / "dev.env").exists()
        seed_if_missing(database_name, runner_port)

        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as client:
            models = client.get("/v1/models").json()["models"]
            model = next(m["id"] for m in models if m["kind"] == "image")
            before = client.get("/v1/balance").json()["balance"]
            response = client.post(
                "/v1/generations",
                params={"wait": 30},
                headers={"Idempotency-Key": str(uuid.uuid4())},
                json={"model_id": model, "params": {"prompt": "a lighthouse at dusk"}},
            )
            assert response.status_code == 201, response.text
            body = response.json()
            assert body["status"] == "succeeded", (body, stderr.read_text()[-5000:])
            [media] = body["generation"]["media"]
            image = httpx.get(media["url"], timeout=10)
            assert image.status_code == 200
            assert Image.open(io.BytesIO(image.content)).format == "PNG"
            assert client.get("/v1/balance").json()["balance"] == before - body["cost"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        out.join()
    log = stderr.read_text()
    assert code == 0, log
    assert "SIGINT: stopping worker, service and runner" in log
    assert not [pid for pid in pids if alive(pid)], log


def test_up_stops_everything_when_a_child_dies(tmp_path: Path, database_name: str) -> None:
    env = {
        **base_env(),
        "CREDITGATE_ADMIN_URL": dbutil.ADMIN_URL,
        "CREDITGATE_DB_NAME": database_name,
        "CREDITGATE_STATE_DIR": str(tmp_path / "state"),
        "CREDITGATE_RUNNER_PORT": str(free_port()),
    }
    stderr = tmp_path / "up.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [*CLI, "up", "--port", str(free_port())],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    out = Output(proc.stdout)  # type: ignore[arg-type]
    try:
        processes = out.wait_for(r"processes:\s+(.*)", BANNER_TIMEOUT, proc)
        named = dict(re.findall(r"(\w+) (\d+)", processes))
        os.kill(int(named["worker"]), signal.SIGKILL)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.join()
    log = stderr.read_text()
    assert code == 1, log
    assert "error: worker exited unexpectedly with code -9; stopping the other processes" in log
    assert not [pid for pid in map(int, named.values()) if alive(pid)], log
