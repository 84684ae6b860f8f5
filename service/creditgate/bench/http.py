"""Workload f: POST /v1/generations through a running ``creditgate serve``."""

from __future__ import annotations

import asyncio
import math
import os
import random
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from creditgate import localdb
from creditgate.auth import mint_token
from creditgate.bench.config import (
    HTTP_READY_SECONDS,
    HTTP_WARMUP_SECONDS,
    BenchConfig,
    BenchError,
    RunResult,
)


@dataclass(frozen=True)
class ServiceProcess:
    url: str
    pid: int
    log: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(cfg: BenchConfig, workdir: Path, jwt_secret: str, port: int) -> dict[str, str]:
    """``creditgate serve``'s environment: this process's, minus anything that would point it
    at another database, secret or storage, plus the bench database and a run's secrets."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not (name == "DATABASE_URL" or name.startswith(("CREDITGATE_", "SUPABASE_", "STRIPE_")))
    }
    env.update(
        CREDITGATE_SERVICE_DATABASE_URL=cfg.url("authenticator"),
        SUPABASE_JWT_SECRET=jwt_secret,
        CREDITGATE_SIGNING_SECRET=secrets.token_urlsafe(32),
        CREDITGATE_STORAGE="local",
        CREDITGATE_STORAGE_ROOT=str(workdir / "media"),
        CREDITGATE_STATE_DIR=str(workdir / "state"),
        CREDITGATE_HOST="127.0.0.1",
        CREDITGATE_PORT=str(port),
        # One pooled connection per concurrent request at most, as a deployment would size it.
        CREDITGATE_POOL_MIN=str(cfg.http_concurrency),
        CREDITGATE_POOL_MAX=str(max(10, cfg.http_concurrency)),
        PYTHONUNBUFFERED="1",
    )
    return env


@contextmanager
def running_service(cfg: BenchConfig, workdir: Path, jwt_secret: str) -> Iterator[ServiceProcess]:
    """``creditgate serve`` as a subprocess on 127.0.0.1 (a free port) until /readyz answers;
    stopped with SIGTERM (then killed) on the way out. Its log goes to workdir/serve.log."""
    port = _free_port()
    log = workdir / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "creditgate.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port)],
            env=service_env(cfg, workdir, jwt_secret, port),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + HTTP_READY_SECONDS
        while True:
            if proc.poll() is not None:
                raise BenchError(f"creditgate serve exited ({proc.returncode}):\n{_tail(log)}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"creditgate serve is not ready after "
                                 f"{HTTP_READY_SECONDS:.0f} s:\n{_tail(log)}")
            time.sleep(0.1)
        yield ServiceProcess(url, proc.pid, log)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu_seconds(pid: int) -> float | None:
    """user + system CPU seconds of a process (Linux /proc), None when unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


class CpuMeter:
    """CPU time used by the service process, this process (the load generator) and the
    service's database backends between :meth:`start` and :meth:`stop`, per wall second."""

    def __init__(self, cfg: BenchConfig, service_pid: int) -> None:
        self.cfg = cfg
        self.service_pid = service_pid
        self.started = 0.0
        self.before: dict[str, float | None] = {}
        self.backends: dict[int, float | None] = {}

    def _backend_pids(self) -> list[int]:
        try:
            with psycopg.connect(
                localdb.dsn_for(self.cfg.admin_url, dbname=self.cfg.database), autocommit=True
            ) as conn:
                rows = conn.execute(
                    "select pid from pg_stat_activity"
                    " where datname = current_database() and pid <> pg_backend_pid()"
                ).fetchall()
        except psycopg.Error:
            return []
        return [int(r[0]) for r in rows]

    def start(self) -> None:
        self.backends = {pid: _proc_cpu_seconds(pid) for pid in self._backend_pids()}
        self.before = {"service": _proc_cpu_seconds(self.service_pid),
                       "load generator": time.process_time()}
        self.started = time.monotonic()

    def stop(self) -> dict[str, float | None]:
        wall = max(time.monotonic() - self.started, 1e-9)
        now = {"service": _proc_cpu_seconds(self.service_pid),
               "load generator": time.process_time()}
        used = {name: _per_second(before, now[name], wall) for name, before in self.before.items()}
        backends = [_per_second(before, _proc_cpu_seconds(pid), wall)
                    for pid, before in self.backends.items()]
        known = [share for share in backends if share is not None]
        used["database backends"] = round(sum(known), 2) if known else None
        return used


def _per_second(before: float | None, after: float | None, wall: float) -> float | None:
    return None if before is None or after is None else round((after - before) / wall, 2)


@dataclass
class HttpLoad:
    latencies: list[float]  # seconds, requests completed inside the window
    statuses: Counter[int]  # every response (warm-up included); 0 = transport error
    first_error: str | None
    window: float
    cpu: dict[str, float | None]


async def http_load(
    service: ServiceProcess,
    cfg: BenchConfig,
    tokens: list[str],
    body: dict[str, Any],
    on_progress: Callable[[float, float], None],
) -> HttpLoad:
    """C clients POST /v1/generations back to back for a warm-up second, then for the
    measured window; a request counts when it completes inside the window."""
    clients = cfg.http_concurrency
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    meter = CpuMeter(cfg, service.pid)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    loop_start = time.perf_counter()
    window_start = loop_start + HTTP_WARMUP_SECONDS
    window_end = window_start + cfg.http_seconds
    async with httpx.AsyncClient(base_url=service.url, limits=limits, timeout=60.0) as client:

        async def one_client(seed: int) -> None:
            rng = random.Random(seed)
            while time.perf_counter() < window_end:
                headers = {
                    "Authorization": f"Bearer {rng.choice(tokens)}",
                    "Idempotency-Key": str(uuid.uuid4()),
                }
                sent = time.perf_counter()
                try:
                    response = await client.post("/v1/generations", json=body, headers=headers)
                    status = response.status_code
                    if status != 201 and not errors:
                        errors.append(f"HTTP {status}: {response.text[:500]}")
                except httpx.HTTPError as exc:
                    status = 0
                    if not errors:
                        errors.append(f"{type(exc).__name__}: {exc}")
                done = time.perf_counter()
                statuses[status] += 1
                if status == 201 and window_start <= done <= window_end:
                    latencies.append(done - sent)

        async def ticker() -> None:
            await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
            await asyncio.to_thread(meter.start)  # it queries the database: off the loop
            seen = 0
            while (now := time.perf_counter()) < window_end:
                await asyncio.sleep(min(1.0, window_end - now))
                count = len(latencies)
                on_progress(min(time.perf_counter() - window_start, cfg.http_seconds),
                            float(count - seen))
                seen = count

        tasks = [asyncio.create_task(one_client(i)) for i in range(clients)]
        tick = asyncio.create_task(ticker())
        await asyncio.gather(*tasks)
        await tick
        cpu = meter.stop()
    return HttpLoad(latencies, statuses, errors[0] if errors else None, cfg.http_seconds, cpu)


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def run_http(
    cfg: BenchConfig,
    model_id: str,
    workdir: Path,
    on_progress: Callable[[float, float], None],
) -> RunResult:
    """Workload f: POST /v1/generations through a running ``creditgate serve``."""
    try:
        with psycopg.connect(cfg.url(), autocommit=True) as conn:
            rows = conn.execute("select user_id from bench.users order by n").fetchall()
        user_ids = [str(r[0]) for r in rows]
    except psycopg.Error as exc:
        raise BenchError(f"cannot read the bench users: {exc}") from exc
    jwt_secret = secrets.token_urlsafe(48)
    tokens = [mint_token(jwt_secret, user_id, ttl_seconds=24 * 3600) for user_id in user_ids]
    body = {"model_id": model_id, "params": cfg.params}
    with running_service(cfg, workdir, jwt_secret) as service:
        load = asyncio.run(http_load(service, cfg, tokens, body, on_progress))
        if set(load.statuses) != {201}:
            counts = ", ".join(
                f"{k or 'transport error'}: {v}" for k, v in sorted(load.statuses.items())
            )
            raise BenchError(f"POST /v1/generations answered other than 201 ({counts}); "
                             f"first: {load.first_error}\n{_tail(service.log, 1500)}")
    if not load.latencies:
        raise BenchError("no HTTP request completed inside the measured window")
    ordered = sorted(load.latencies)
    return RunResult(
        "http_request_generation",
        f"POST /v1/generations via creditgate serve, {cfg.http_concurrency} clients,"
        f" random user of {cfg.users}",
        tps=round(len(ordered) / load.window, 1),
        latency_ms=round(1000 * sum(ordered) / len(ordered), 2),
        transactions=len(ordered),
        failed=0,
        p50_ms=round(1000 * _percentile(ordered, 0.50), 2),
        p99_ms=round(1000 * _percentile(ordered, 0.99), 2),
        cpu=load.cpu,
    )

