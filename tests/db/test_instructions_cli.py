"""`creditgate instructions` end to end with tiny settings: a throwaway cluster, the bench
database, single-user backends under valgrind. What is checked is that it counts and
reports, and cleans up after itself; the figures themselves are the machine's."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from creditgate import bench
from creditgate.bench.instructions import statement_lines

CLI = [sys.executable, "-m", "creditgate.cli", "instructions"]
WORKLOADS = ("baseline_spread", "spend_spread", "request_generation")


@pytest.fixture
def tmpdir_for_postgres() -> Iterator[Path]:
    """A $TMPDIR the postgres OS user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="cg-instructions-test-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_instructions_counts_each_workload_and_removes_its_cluster(
    tmpdir_for_postgres: Path,
) -> None:
    proc = subprocess.run(
        [*CLI, "--users", "50", "--calls", "20", "--warmup", "5", "--json"],
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TMPDIR=str(tmpdir_for_postgres)),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    counts = {c["name"]: c for c in report["counts"]}
    assert tuple(counts) == WORKLOADS
    for count in counts.values():
        short, long = count["callgrind_totals"]
        assert long > short > 0
        assert count["instructions_per_transaction"] == round((long - short) / 20)
    baseline = counts["baseline_spread"]["instructions_per_transaction"]
    spend = counts["spend_spread"]["instructions_per_transaction"]
    request = counts["request_generation"]["instructions_per_transaction"]
    # A charge does everything the baseline does and more; a request charges and more.
    assert 0 < baseline < spend < request
    assert counts["baseline_spread"]["baseline_over_this"] == 1.0
    assert counts["spend_spread"]["baseline_over_this"] == round(baseline / spend, 3)
    assert report["config"]["server"].startswith("postgres (PostgreSQL) 15")
    assert "request_generation: 25 transactions under callgrind" in proc.stderr
    assert list(tmpdir_for_postgres.iterdir()) == []  # cluster and work files are gone


def test_without_valgrind_it_says_what_to_install() -> None:
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))  # no valgrind there
    proc = subprocess.run([*CLI, "--users", "2", "--calls", "1"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "valgrind not found: install valgrind" in proc.stderr


def test_statement_lines_are_the_bench_script_on_one_line_with_a_drawn_user() -> None:
    cfg = bench.BenchConfig(admin_url="postgresql://x@127.0.0.1/postgres", users=7,
                            http=False, model_id="m")
    request = next(w for w in bench.workloads(cfg, "m", "") if w.name == "request_generation")
    assert request.script is not None
    lines = statement_lines(request.script, 7, 50, random.Random(3))
    assert len(lines) == 50
    users = set()
    for line in lines:
        assert "\n" not in line and "\\set" not in line and ":n" not in line
        assert line.startswith("begin; select set_config('role', 'authenticated', true),")
        assert line.endswith("commit;")
        users.add(int(line.split("where u.n = ")[1].split(";")[0]))
    assert users <= set(range(1, 8)) and len(users) > 1
