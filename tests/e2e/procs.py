"""Real `creditgate` processes for end-to-end tests: start with a log file, wait, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

CLI = [sys.executable, "-m", "creditgate.cli"]


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} ignored {sig!r}:\n{self.output()}") from None
        return self.proc.returncode


def start(name: str, args: list[str], env: Mapping[str, str], logs: Path) -> Proc:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*CLI, *args], env=dict(env), stdout=out, stderr=subprocess.STDOUT)
    return Proc(name, proc, log)


def wait_until(
    ready: Callable[[], bool], procs: list[Proc], timeout: float = 60.0, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        for p in procs:
            if not p.alive():
                raise AssertionError(f"{p.name} exited ({p.proc.returncode}):\n{p.output()}")
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.output()[-3000:]}" for p in procs)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.1)


def http_ok(url: str, headers: Mapping[str, str] | None = None) -> bool:
    try:
        return httpx.get(url, headers=dict(headers or {}), timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def base_env() -> dict[str, str]:
    """The test process's environment minus anything that would point elsewhere."""
    env = dict(os.environ)
    for name in list(env):
        if name == "DATABASE_URL" or name.startswith(("CREDITGATE_", "SUPABASE_", "STRIPE_")):
            if name != "CREDITGATE_ADMIN_URL":
                env.pop(name)
    env["PYTHONUNBUFFERED"] = "1"
    return env
