"""`creditgate instructions`: the server's work per transaction, counted in CPU instructions.

pgbench's TPS on a shared machine drifts by tens of percent between runs; an instruction
count does not. ``valgrind --tool=callgrind`` counts the instructions a process executes,
the same total for the same binary and input whatever else the machine is doing. This
command counts them for the transactions of ``creditgate bench``'s workloads a, b and e
(the baseline spend, spend_credits, request_generation as PostgREST sends it), with the
very statements those pgbench scripts send:

1. a throwaway cluster (``creditgate.bench.pgcluster``), never the shared server;
2. the bench database built as ``creditgate bench`` builds it: every migration, N users
   seeded through the signup trigger and granted plenty of credits, the baseline schema,
   the bench model, no rate-limit rules, no daily caps;
3. the cluster stopped; for each workload a single-user backend (``postgres --single``, one
   transaction per input line, ``fsync=off``) under callgrind, twice: with ``warmup`` lines
   and with ``warmup + calls`` lines. The difference of the two totals divided by ``calls``
   is one transaction, start-up, catalog caching and shutdown excluded;
4. every line must have run: no ERROR in a backend's output, and the rows the runs wrote
   (baseline ledger rows, spend entries, generations) are counted.

A single-user backend runs as the bootstrap superuser; request_generation's line switches
to ``authenticated`` with its ``set_config`` as PostgREST's does (pgbench connects as
``authenticator`` for that).

Only the server is counted: not the client, the kernel or the WAL flush, which both sides
of a ratio pay. So instruction ratios are lower than TPS ratios; what they add is that a
change of one percent is visible.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

from creditgate import bench, migrate
from creditgate.bench.pgcluster import BIN, Cluster, as_server_user, server_owner

DATABASE = "creditgate_instructions"
# What a single-user backend is told (one ERROR fails the run).
SINGLE_USER_SETTINGS = ("fsync=off", "autovacuum=off")
_TOTALS = re.compile(r"^totals:\s+(\d+)", re.M)
_COUNT = re.compile(r'\bcount = "?(\d+)')


class InstructionsError(Exception):
    """The count could not be made (no valgrind, a failed statement, a setup failure)."""


@dataclass(frozen=True)
class InstructionsConfig:
    users: int = 1_000
    calls: int = 1_000
    warmup: int = 200
    seed: int = 1

    def __post_init__(self) -> None:
        if self.users < 2:
            raise ValueError("--users must be at least 2")
        if self.calls < 1 or self.warmup < 1:
            raise ValueError("--calls and --warmup must be at least 1")


@dataclass
class Count:
    name: str
    description: str
    per_transaction: int  # instructions
    totals: tuple[int, int]  # callgrind totals of the short and the long run


@dataclass
class InstructionsReport:
    config: dict[str, Any]
    counts: list[Count] = field(default_factory=list)

    def ratio(self, name: str) -> float:
        """baseline / workload: the fraction of the baseline's work the baseline is."""
        by_name = {c.name: c.per_transaction for c in self.counts}
        return by_name["baseline_spread"] / by_name[name]

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "counts": [
                {"name": c.name, "description": c.description,
                 "instructions_per_transaction": c.per_transaction,
                 "callgrind_totals": list(c.totals),
                 "baseline_over_this": round(self.ratio(c.name), 3)}
                for c in self.counts
            ],
        }


def valgrind_path() -> str:
    path = shutil.which("valgrind")
    if path is None:
        raise InstructionsError("valgrind not found: install valgrind (Debian: valgrind)")
    return path


def statement_lines(script: str, users: int, n: int, rng: random.Random) -> list[str]:
    """n single-line copies of a pgbench script with ``\\set n random(1, users)``: the
    meta-command dropped, ``:n`` replaced by a drawn user, the statements on one line."""
    body = "\n".join(line for line in script.splitlines() if not line.startswith("\\"))
    one_line = " ".join(part.strip() for part in body.splitlines() if part.strip())
    return [re.sub(r":n\b", str(rng.randint(1, users)), one_line) for _ in range(n)]


def run_callgrind(cluster: Cluster, workdir: Path, label: str, lines: list[str]) -> int:
    """The callgrind total of one single-user backend running ``lines``."""
    source = workdir / f"{label}.sql"
    source.write_text("\n".join(lines) + "\n")
    out_file = workdir / f"{label}.callgrind"
    log = workdir / f"{label}.log"
    argv = as_server_user([
        valgrind_path(), "--tool=callgrind", f"--callgrind-out-file={out_file}",
        *cluster.single_user_command(DATABASE, *SINGLE_USER_SETTINGS),
    ])
    with source.open("rb") as stdin, log.open("wb") as sink:
        # valgrind's own temporary files go to $TMPDIR: the work directory, which the
        # server's OS user owns.
        code = subprocess.run(argv, stdin=stdin, stdout=sink, stderr=subprocess.STDOUT,
                              cwd=workdir, env=dict(os.environ, TMPDIR=str(workdir)),
                              check=False).returncode
    output = log.read_text(errors="replace")
    errors = [line for line in output.splitlines() if "ERROR:" in line]
    if code != 0 or errors:
        raise InstructionsError(
            f"{label}: the single-user backend failed (exit {code}): "
            f"{errors[0] if errors else output[-2000:]}"
        )
    try:
        found = _TOTALS.search(out_file.read_text(errors="replace"))
    except OSError as exc:
        raise InstructionsError(f"{label}: no callgrind output ({exc})") from exc
    if found is None:
        raise InstructionsError(f"{label}: no totals in {out_file}")
    return int(found.group(1))


def single_user_count(cluster: Cluster, workdir: Path, query: str) -> int:
    """count(*) of one query in a single-user backend (no valgrind)."""
    proc = subprocess.run(
        as_server_user(cluster.single_user_command(DATABASE)),
        input=(query + "\n").encode(), capture_output=True, cwd=workdir, check=False,
        timeout=120,
    )
    output = (proc.stdout + proc.stderr).decode(errors="replace")
    found = _COUNT.search(output)
    if proc.returncode != 0 or found is None or "ERROR:" in output:
        raise InstructionsError(f"{query}: {output[-1000:]}")
    return int(found.group(1))


# Workload name -> (the query counting what one call writes, as single-user SQL).
WRITES: dict[str, str] = {
    "baseline_spread": "select count(*) from bench.ledger",
    "spend_spread": "select count(*) from creditgate.ledger where idempotency_key like 'bench:%'",
    "request_generation": "select count(*) from creditgate.generations",
}


def build_database(cfg: InstructionsConfig, cluster: Cluster,
                   say: Callable[[str], None]) -> bench.BenchConfig:
    """The bench database, built as `creditgate bench` builds it; its config, with the model
    request_generation uses."""
    bcfg = bench.BenchConfig(admin_url=cluster.admin_url, database=DATABASE, users=cfg.users,
                             http=False)
    try:
        bench.prepare_database(bcfg, say)
        model_id, note = bench.seed(bcfg, lambda n: None)
        bench.settle(bcfg)
    except (psycopg.Error, migrate.MigrationError, bench.BenchError) as exc:
        raise InstructionsError(f"cannot build {DATABASE}: {exc}") from exc
    if model_id is None:
        raise InstructionsError(f"request_generation cannot run: {note}")
    return dataclasses.replace(bcfg, model_id=model_id)


def run(cfg: InstructionsConfig, say: Callable[[str], None]) -> InstructionsReport:
    valgrind_path()
    started = time.monotonic()
    rng = random.Random(cfg.seed)
    report = InstructionsReport(config=asdict(cfg))
    with Cluster.create(prefix="cg-instructions-") as cluster, \
            tempfile.TemporaryDirectory(prefix="cg-instructions-") as tmp:
        workdir = Path(tmp)
        os.chown(workdir, *server_owner())
        say(f"throwaway cluster on port {cluster.port}; building {DATABASE} "
            f"({cfg.users:,} users)")
        bcfg = build_database(cfg, cluster, say)
        plan = [w for w in bench.workloads(bcfg, bcfg.model_id, "") if w.name in WRITES]
        cluster.stop()
        before: dict[str, int] = {}
        for workload in plan:
            assert workload.script is not None
            before[workload.name] = single_user_count(cluster, workdir, WRITES[workload.name])
        for workload in plan:
            assert workload.script is not None
            totals = []
            for n in (cfg.warmup, cfg.warmup + cfg.calls):
                say(f"{workload.name}: {n:,} transactions under callgrind")
                lines = statement_lines(workload.script, cfg.users, n, rng)
                totals.append(run_callgrind(cluster, workdir, f"{workload.name}-{n}", lines))
            written = single_user_count(cluster, workdir, WRITES[workload.name])
            expected = before[workload.name] + 2 * cfg.warmup + cfg.calls
            if written != expected:
                raise InstructionsError(
                    f"{workload.name}: {written - before[workload.name]:,} rows written, "
                    f"{expected - before[workload.name]:,} expected"
                )
            report.counts.append(Count(
                workload.name, workload.description,
                per_transaction=round((totals[1] - totals[0]) / cfg.calls),
                totals=(totals[0], totals[1]),
            ))
    report.config["elapsed_seconds"] = round(time.monotonic() - started, 1)
    report.config["server"] = _server_version()
    return report


def _server_version() -> str:
    proc = subprocess.run([str(BIN / "postgres"), "--version"], capture_output=True, text=True,
                          check=False)
    return proc.stdout.strip()


def render(report: InstructionsReport, out: Console) -> None:
    table = Table(title="server instructions per transaction (callgrind)")
    table.add_column("workload")
    table.add_column("instructions", justify="right")
    table.add_column("baseline / this", justify="right")
    for count in report.counts:
        table.add_row(count.description, f"{count.per_transaction:,}",
                      f"{report.ratio(count.name):.3f}")
    out.print(table)


def main(cfg: InstructionsConfig, *, as_json: bool, out: Console, err: Console) -> int:
    try:
        report = run(cfg, lambda message: err.print(message, highlight=False))
    except (InstructionsError, RuntimeError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    if as_json:
        out.print(json.dumps(report.to_json(), indent=2), markup=False, highlight=False,
                  soft_wrap=True)
    else:
        render(report, out)
    return 0
