"""`creditgate bench` end to end with tiny settings: it builds its own database, seeds it,
runs every pgbench workload, the HTTP workload through a real `creditgate serve` and (with
--growth) the ledger-growth section, and prints every figure and ratio. No timing is asserted
(the machine decides those); what is checked is that the benchmark runs and reports."""

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
TINY = ["--users", "200", "--duration", "1", "--clients", "2", "--jobs", "1", "--rounds", "1"]
# Growth users hold one signup entry each; the cycles add one spend each, the WAL samples
# two more each: 50 + 20 + 40 = 110 < 500.
TINY_GROWTH = ["--growth", "--growth-users", "50", "--growth-cycles", "20",
               "--growth-small-rows", "500", "--growth-large-rows", "2000"]
PGBENCH_RUNS = ("baseline_spread", "spend_spread", "baseline_hot", "spend_hot",
                "baseline_envelope", "request_generation")
HTTP_RUN = "http_request_generation"


@pytest.fixture
def bench_db() -> Iterator[str]:
    name = f"cg_bench_{dbutil.RUN_ID}_{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        localdb.drop_database(dbutil.ADMIN_URL, name)
        localdb.drop_database(dbutil.ADMIN_URL, f"{name}_growth")


def run_bench(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CREDITGATE_ADMIN_URL=dbutil.ADMIN_URL, COLUMNS="250", NO_COLOR="1")
    return subprocess.run(
        [*CLI, *TINY, "--database", name, *args],
        capture_output=True, text=True, env=env, timeout=300,
    )


def test_bench_prints_every_workload_figure_and_ratio(bench_db: str) -> None:
    proc = run_bench(bench_db, *TINY_GROWTH)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for ratio in (*bench.TARGETS, *bench.INFO_RATIOS, bench.GROWTH_RATIO):
        assert ratio in proc.stdout, proc.stdout
    for workload in ("baseline spend, random user of 200", "spend_credits, random user of 200",
                     "baseline spend, one hot user", "spend_credits, one hot user",
                     "request_generation",
                     "POST /v1/generations via creditgate serve, 2 clients, random user of 200"):
        assert workload in proc.stdout, proc.stdout
    for figure in ("p50", "p99", "HTTP CPU", "bytes / generation", "WAL per call",
                   "creditgate.ledger", "service_settle_generation", "spend_credits",
                   "get_balance", "balance reads", "audit after the history: ok"):
        assert figure in proc.stdout, proc.stdout
    assert "seed users" in proc.stderr  # progress goes to stderr
    assert "growth users" in proc.stderr
    # The growth database is the run's own and is gone afterwards.
    assert not localdb.database_exists(dbutil.ADMIN_URL, f"{bench_db}_growth")


def test_bench_json_with_http(bench_db: str) -> None:
    # The last --rounds wins over TINY's: every pgbench workload runs twice, round-robin.
    proc = run_bench(bench_db, "--json", "--http-duration", "2", "--http-clients", "3",
                     "--rounds", "2")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["config"]["rounds"] == 2
    runs = {r["name"]: r for r in report["runs"]}
    assert set(runs) == {*PGBENCH_RUNS, HTTP_RUN}
    for name in ("baseline_spread", "spend_spread", "baseline_hot", "spend_hot",
                 "baseline_envelope"):
        assert runs[name]["tps"] > 0 and runs[name]["failed"] == 0
        assert len(runs[name]["tps_rounds"]) == 2
        assert runs[name]["tps"] == pytest.approx(sum(runs[name]["tps_rounds"]) / 2)
    ratios = {r["name"]: r for r in report["ratios"]}
    assert set(ratios) == {*bench.TARGETS, *bench.INFO_RATIOS}
    for name in ("spend/baseline spread", "spend/baseline hot",
                 "baseline envelope/baseline bare"):
        assert ratios[name]["value"] > 0
        assert len(ratios[name]["rounds"]) == 2
        assert ratios[name]["value"] == pytest.approx(sum(ratios[name]["rounds"]) / 2, abs=1e-3)
    assert report["config"]["users"] == 200
    assert report["growth"] is None
    # request_generation is measured whenever it exists (it is being built alongside), and
    # so is the same request over HTTP.
    if runs["request_generation"]["skipped"] is None:
        # The fair ratio (same PostgREST envelope on both sides) has the target; the bare
        # one is reported for continuity without one.
        fair = ratios["request_generation/baseline envelope"]
        assert fair["value"] > 0 and fair["target"] == 0.40 and len(fair["rounds"]) == 2
        bare = ratios["request_generation/baseline bare"]
        assert bare["value"] > 0 and bare["target"] is None
        http = runs[HTTP_RUN]
        assert http["skipped"] is None and http["failed"] == 0
        assert http["tps"] > 0 and http["transactions"] > 0
        assert 0 < http["p50_ms"] <= http["p99_ms"]
        assert set(http["cpu"]) == {"service", "load generator", "database backends"}
        assert http["description"].startswith("POST /v1/generations via creditgate serve, 3 ")
        assert ratios["http/request_generation"]["value"] > 0
        assert ratios["http/request_generation"]["target"] == 0.40
        assert ratios["http/request_generation"]["met"] is not None


def test_bench_json_growth_without_http(bench_db: str) -> None:
    proc = run_bench(bench_db, "--json", "--no-http", *TINY_GROWTH)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    runs = {r["name"]: r for r in report["runs"]}
    assert runs[HTTP_RUN]["skipped"] == "--no-http" and runs[HTTP_RUN]["tps"] is None
    ratios = {r["name"]: r for r in report["ratios"]}
    assert ratios["http/request_generation"]["value"] is None

    growth = report["growth"]
    assert (growth["users"], growth["cycles"]) == (50, 20)
    tables = {t["table"]: t for t in growth["tables"]}
    assert set(tables) == set(bench.GROWTH_TABLES)
    # A succeeded generation at its quoted price: one spend, one generation, one media row,
    # one provider call (refund-free, so exactly one ledger entry).
    for table in ("creditgate.ledger", "creditgate.generations", "creditgate.media",
                  "creditgate_private.provider_calls"):
        assert tables[table]["rows_per_generation"] == 1.0, tables[table]
    assert tables["creditgate_private.lot_movements"]["rows_per_generation"] >= 1.0
    assert growth["bytes_per_generation"] > 0
    assert growth["bytes_per_generation"] == pytest.approx(
        sum(t["bytes_per_generation"] for t in growth["tables"]), abs=0.5
    )
    wal = {w["operation"]: w for w in growth["wal"]}
    assert set(wal) == {"request_generation", "service_claim_generations",
                        "service_settle_generation", "spend_credits", "baseline spend"}
    assert wal["request_generation"]["calls"] == 20
    for use in wal.values():
        assert use["bytes_per_call"] > 0 and use["records_per_call"] > 0
    reads = growth["balance_reads"]
    assert [b["ledger_rows"] for b in reads] == [500, 2000]
    assert all(b["tps"] > 0 and b["failed"] == 0 for b in reads)
    # Each size is measured BALANCE_REPEATS times; the best run is the figure.
    assert all(len(b["tps_runs"]) == bench.BALANCE_REPEATS for b in reads)
    assert all(b["tps"] == max(b["tps_runs"]) for b in reads)
    assert reads[1]["ledger_bytes"] > reads[0]["ledger_bytes"]
    assert growth["ratio"]["name"] == bench.GROWTH_RATIO
    assert growth["ratio"]["value"] > 0 and growth["ratio"]["target"] == bench.GROWTH_TARGET
    assert growth["audit_ok"] is True


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"growth_small_rows": 100}, "--growth-small-rows must exceed"),
        ({"growth_large_rows": 10_000}, "--growth-large-rows must exceed"),
        ({"growth_users": 1}, "--growth-users"),
        ({"database": "x" * 60}, "too long"),
        ({"http_clients": 0}, "--http-clients"),
    ],
)
def test_bench_config_refuses_impossible_growth(overrides: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"admin_url": dbutil.ADMIN_URL, "growth": True, **overrides}
    with pytest.raises(ValueError, match=message):
        bench.BenchConfig(**values)  # type: ignore[arg-type]


def test_ratios_are_the_median_of_each_rounds_ratio() -> None:
    """A slow patch of the machine during one round moves that round's ratio, not the
    reported one: each ratio is taken per round (both sides measured in the same round),
    then the median of those."""
    def run(name: str, rounds: list[float]) -> bench.RunResult:
        return bench.combine_rounds([
            bench.RunResult(name, name, tps=t, latency_ms=1000 / t, transactions=int(t), failed=0)
            for t in rounds
        ])

    baseline = run("baseline_spread", [1000.0, 400.0, 500.0])
    spend = run("spend_spread", [800.0, 300.0, 100.0])
    assert baseline.tps == 500.0 and baseline.tps_rounds == [1000.0, 400.0, 500.0]
    assert spend.tps == 300.0 and spend.transactions == 1200 and spend.failed == 0
    ratios = {q.name: q for q in bench.compute_ratios([baseline, spend])}
    spread = ratios["spend/baseline spread"]
    assert spread.rounds == [0.8, 0.75, 0.2]
    assert spread.value == 0.75  # the median round's ratio (the medians' ratio is 0.6)
    assert spread.met is True
    # Unmeasured sides give no value; a single-run side (HTTP) gives the plain TPS ratio.
    assert ratios["spend/baseline hot"].value is None
    http = bench.RunResult("http_request_generation", "http", tps=50.0)
    request = run("request_generation", [100.0, 200.0, 300.0])
    info = {q.name: q for q in bench.compute_ratios([http, request])}
    assert info["http/request_generation"].value == 0.25
    assert info["http/request_generation"].rounds is None
