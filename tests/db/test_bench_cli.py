"""`creditgate bench` end to end with tiny settings: it builds its own database, seeds it,
runs every pgbench workload and prints every ratio. No timing is asserted (the machine
decides those); what is checked is that the benchmark runs and reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from creditgate import bench, localdb
from tests import dbutil

CLI = [sys.executable, "-m", "creditgate.cli", "bench"]
TINY = ["--users", "200", "--duration", "1", "--clients", "2", "--jobs", "1"]


@pytest.fixture
def bench_db() -> Iterator[str]:
    name = f"cg_bench_{dbutil.RUN_ID}_{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        localdb.drop_database(dbutil.ADMIN_URL, name)


def run_bench(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CREDITGATE_ADMIN_URL=dbutil.ADMIN_URL, COLUMNS="250", NO_COLOR="1")
    return subprocess.run(
        [*CLI, *TINY, "--database", name, *args],
        capture_output=True, text=True, env=env, timeout=300,
    )


def test_bench_prints_every_workload_and_ratio(bench_db: str) -> None:
    proc = run_bench(bench_db)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for ratio in bench.TARGETS:
        assert ratio in proc.stdout, proc.stdout
    for workload in ("baseline spend, random user of 200", "spend_credits, random user of 200",
                     "baseline spend, one hot user", "spend_credits, one hot user",
                     "request_generation"):
        assert workload in proc.stdout, proc.stdout
    assert "seed users" in proc.stderr  # progress goes to stderr


def test_bench_json(bench_db: str) -> None:
    proc = run_bench(bench_db, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    runs = {r["name"]: r for r in report["runs"]}
    assert set(runs) == {"baseline_spread", "spend_spread", "baseline_hot", "spend_hot",
                         "request_generation"}
    for name in ("baseline_spread", "spend_spread", "baseline_hot", "spend_hot"):
        assert runs[name]["tps"] > 0 and runs[name]["failed"] == 0
    ratios = {r["name"]: r for r in report["ratios"]}
    assert set(ratios) == set(bench.TARGETS)
    assert ratios["spend/baseline spread"]["value"] > 0
    assert ratios["spend/baseline hot"]["value"] > 0
    # request_generation is measured whenever it exists (it is being built alongside).
    if runs["request_generation"]["skipped"] is None:
        assert ratios["request_generation/baseline"]["value"] > 0
    assert report["config"]["users"] == 200
