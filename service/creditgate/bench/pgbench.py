"""The pgbench workloads a-e, their rounds and ratios."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from creditgate import localdb
from creditgate.bench.config import (
    HOT_USER,
    INFO_RATIOS,
    TARGETS,
    BenchConfig,
    BenchError,
    Ratio,
    RunResult,
    Workload,
)

_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.M)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.M)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)
_PROGRESS = re.compile(r"^progress: ([0-9.]+) s, ([0-9.]+) tps")

# One request_generation call exactly as PostgREST makes it: one transaction, the role and
# the request's JWT claims and headers set transaction-locally, then the function with named
# arguments. (The user lookup rides on the set_config statement, as authenticator.)
AS_USER_SCRIPT = """\
select set_config('role', 'authenticated', true),
  set_config('request.jwt.claims', json_build_object('sub', u.user_id, 'role', 'authenticated',
    'aud', 'authenticated')::text, true),
  set_config('request.headers', json_build_object(
    'x-forwarded-for', '198.51.100.' || (:n % 250 + 1),
    'cf-connecting-ip', '198.51.100.' || (:n % 250 + 1))::text, true)
  from bench.users as u where u.n = :n;
"""
REQUEST_SCRIPT = (
    "begin;\n"
    + AS_USER_SCRIPT
    + """select creditgate.request_generation(model_id => {model_id}, params => {params}::jsonb,
  idempotency_key => 'bench:' || gen_random_uuid()::text);
commit;
"""
)
# The tutorial spend as supabase-js' rpc('rpc_spend', {amount: 1}) makes it through PostgREST:
# the same envelope as REQUEST_SCRIPT.
BASELINE_ENVELOPE_SCRIPT = (
    "begin;\n" + AS_USER_SCRIPT + "select bench.rpc_spend(amount => 1);\ncommit;\n"
)
# A balance read as supabase-js' rpc('get_balance') makes it through PostgREST.
BALANCE_SCRIPT = "begin;\n" + AS_USER_SCRIPT + "select creditgate.get_balance();\ncommit;\n"


def workloads(cfg: BenchConfig, model_id: str | None, unavailable: str) -> list[Workload]:
    pick = f"\\set n random(1, {cfg.users})\n"
    hot = f"\\set n {HOT_USER}\n"
    user_of_n = "(select user_id from bench.users where n = :n)"
    baseline = f"select bench.spend({user_of_n}, 1);\n"
    spend = (
        f"select creditgate_private.spend_credits({user_of_n}, 1,"
        " 'bench:' || gen_random_uuid()::text);\n"
    )
    request: str | None = None
    if model_id is not None:
        request = pick + sql.SQL(REQUEST_SCRIPT).format(
            model_id=sql.Literal(model_id), params=sql.Literal(json.dumps(cfg.params))
        ).as_string()
    deployer = localdb.DEPLOYER_ROLE
    return [
        Workload("baseline_spread", f"baseline spend, random user of {cfg.users}", deployer,
                 pick + baseline),
        Workload("spend_spread", f"spend_credits, random user of {cfg.users}", deployer,
                 pick + spend),
        Workload("baseline_hot", "baseline spend, one hot user", deployer, hot + baseline),
        Workload("spend_hot", "spend_credits, one hot user", deployer, hot + spend),
        Workload("baseline_envelope",
                 f"baseline spend via PostgREST-style transaction, random user of {cfg.users}",
                 "authenticator", pick + BASELINE_ENVELOPE_SCRIPT),
        Workload("request_generation",
                 f"request_generation via PostgREST-style transaction, random user of {cfg.users}",
                 "authenticator", request, None if request else unavailable),
    ]


def pgbench_path() -> str:
    path = shutil.which("pgbench")
    if path is None:
        raise BenchError("pgbench not found: install postgresql-client")
    return path


def run_pgbench(
    cfg: BenchConfig,
    workload: Workload,
    workdir: Path,
    on_progress: Callable[[float, float], None],
) -> RunResult:
    """One pgbench run; on_progress(seconds, tps) is called once a second."""
    assert workload.script is not None
    script = workdir / f"{workload.name}.sql"
    script.write_text(workload.script)
    cmd = [
        pgbench_path(), "-n", "-c", str(cfg.clients), "-j", str(cfg.jobs), "-T", str(cfg.duration),
        "-P", "1", "-f", str(script), cfg.url(workload.user),
    ]
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stderr is not None and proc.stdout is not None
        errors: list[str] = []
        for line in proc.stderr:
            if m := _PROGRESS.match(line):
                on_progress(float(m.group(1)), float(m.group(2)))
            elif line.strip():
                errors.append(line.rstrip())
        stdout = proc.stdout.read()
        code = proc.wait()
    tps = _TPS.search(stdout)
    failed = _FAILED.search(stdout)
    if code != 0 or tps is None or (failed and int(failed.group(1)) > 0):
        detail = "\n".join(errors[-10:]) or stdout[-1000:]
        raise BenchError(f"pgbench {workload.name} failed (exit {code}):\n{detail}")
    latency = _LATENCY.search(stdout)
    processed = _PROCESSED.search(stdout)
    return RunResult(
        workload.name,
        workload.description,
        tps=float(tps.group(1)),
        latency_ms=float(latency.group(1)) if latency else None,
        transactions=int(processed.group(1)) if processed else None,
        failed=int(failed.group(1)) if failed else 0,
    )


def settle(cfg: BenchConfig) -> None:
    """Between runs: vacuum and checkpoint (as the admin connection: CHECKPOINT needs a
    superuser), so one run's dead tuples and dirty pages do not tax the next."""
    try:
        with psycopg.connect(
            localdb.dsn_for(cfg.admin_url, dbname=cfg.database), autocommit=True
        ) as conn:
            conn.execute("vacuum analyze")
            conn.execute("checkpoint")
    except psycopg.Error as exc:
        raise BenchError(f"cannot vacuum and checkpoint {cfg.database}: {exc}") from exc


def combine_rounds(rounds: list[RunResult]) -> RunResult:
    """One workload's rounds as one result: median TPS and latency, summed transactions."""
    first = rounds[0]
    tps = [r.tps for r in rounds if r.tps is not None]
    latency = [r.latency_ms for r in rounds if r.latency_ms is not None]
    return dataclasses.replace(
        first,
        tps=statistics.median(tps) if tps else None,
        latency_ms=round(statistics.median(latency), 3) if latency else None,
        transactions=sum(r.transactions or 0 for r in rounds),
        failed=sum(r.failed or 0 for r in rounds),
        tps_rounds=tps,
    )


def compute_ratios(runs: list[RunResult]) -> list[Ratio]:
    """Each ratio per round where both sides ran in rounds (their median reported), else the
    ratio of the two TPS figures (the HTTP run is a single one)."""
    by_name = {r.name: r for r in runs}

    def ratio(name: str, top: str, bottom: str, target: float | None) -> Ratio:
        a, b = by_name.get(top), by_name.get(bottom)
        if a is None or b is None or a.tps is None or not b.tps:
            return Ratio(name, None, target)
        if a.tps_rounds and b.tps_rounds and len(a.tps_rounds) == len(b.tps_rounds):
            pairs = zip(a.tps_rounds, b.tps_rounds, strict=True)
            per_round = [round(x / y, 3) for x, y in pairs if y]
            return Ratio(name, round(statistics.median(per_round), 3), target, per_round)
        return Ratio(name, round(a.tps / b.tps, 3), target)

    ratios = [ratio(name, top, bottom, target) for name, (top, bottom, target) in TARGETS.items()]
    ratios += [ratio(name, top, bottom, None) for name, (top, bottom) in INFO_RATIOS.items()]
    return ratios

