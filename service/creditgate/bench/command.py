"""`creditgate bench` itself: run every workload with progress, render, exit code."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import psycopg
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from creditgate import migrate
from creditgate.bench.config import (
    BenchConfig,
    BenchError,
    BenchReport,
    GrowthReport,
    Ratio,
    RunResult,
)
from creditgate.bench.database import prepare_database, seed
from creditgate.bench.growth import run_growth
from creditgate.bench.http import run_http
from creditgate.bench.pgbench import (
    combine_rounds,
    compute_ratios,
    pgbench_path,
    run_pgbench,
    settle,
    workloads,
)


@contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    with Progress(
        TextColumn("[bold]{task.description:<18}"),
        BarColumn(bar_width=20),
        TextColumn("{task.completed:>6.0f}/{task.total:.0f} {task.fields[unit]:<5}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
        transient=False,
    ) as progress:
        yield progress


def run(cfg: BenchConfig, console: Console) -> BenchReport:
    """Build the database, seed it, run every workload; progress goes to console."""
    pgbench_path()
    started = time.monotonic()
    with _progress(console) as progress:
        say = progress.console.print
        setup = progress.add_task("database", total=1, unit="", note="")
        try:
            prepare_database(cfg, say)
        except (psycopg.Error, migrate.MigrationError) as exc:
            raise BenchError(f"cannot prepare database {cfg.database}: {exc}") from exc
        progress.update(setup, completed=1)

        seeding = progress.add_task("seed users", total=cfg.users, unit="users", note="")
        try:
            model_id, note = seed(cfg, lambda n: progress.advance(seeding, n))
        except psycopg.Error as exc:
            raise BenchError(f"cannot seed {cfg.database}: {exc}") from exc
        say(f"request_generation: {'' if model_id else 'unavailable: '}{note}")
        settle(cfg)

        runs: list[RunResult] = []
        growth: GrowthReport | None = None
        task: TaskID
        with tempfile.TemporaryDirectory(prefix="creditgate-bench-") as tmp:
            plan = workloads(cfg, model_id, note)
            rounds: dict[str, list[RunResult]] = {w.name: [] for w in plan}
            for workload in plan:
                if workload.script is None:
                    task = progress.add_task(workload.name, total=1, unit="",
                                             note="[yellow]unavailable")
                    progress.update(task, completed=1)
            for n in range(1, cfg.rounds + 1):
                for workload in plan:
                    if workload.script is None:
                        continue
                    label = (workload.name if cfg.rounds == 1
                             else f"{workload.name} {n}/{cfg.rounds}")
                    task = progress.add_task(label, total=cfg.duration, unit="s", note="")

                    def tick(seconds: float, tps: float, task: TaskID = task) -> None:
                        progress.update(task, completed=seconds, note=f"{tps:,.0f} tps")

                    result = run_pgbench(cfg, workload, Path(tmp), tick)
                    progress.update(task, completed=cfg.duration, note=f"{result.tps:,.0f} tps")
                    rounds[workload.name].append(result)
                    settle(cfg)
            for workload in plan:
                if workload.script is None:
                    runs.append(RunResult(workload.name, workload.description,
                                          skipped=workload.skipped))
                else:
                    runs.append(combine_rounds(rounds[workload.name]))

            http_name = "http_request_generation"
            http_description = "POST /v1/generations via creditgate serve"
            if not cfg.http:
                runs.append(RunResult(http_name, http_description, skipped="--no-http"))
            elif model_id is None:
                runs.append(RunResult(http_name, http_description, skipped=note))
            else:
                task = progress.add_task("http", total=cfg.http_seconds, unit="s", note="")

                def http_tick(seconds: float, rps: float, task: TaskID = task) -> None:
                    progress.update(task, completed=seconds, note=f"{rps:,.0f} req/s")

                result = run_http(cfg, model_id, Path(tmp), http_tick)
                progress.update(task, completed=cfg.http_seconds,
                                note=f"{result.tps:,.0f} req/s")
                runs.append(result)

            if cfg.growth:
                growth = run_growth(cfg, progress, Path(tmp))
    config = asdict(cfg) | {"elapsed_seconds": round(time.monotonic() - started, 1)}
    config.pop("admin_url")
    return BenchReport(config=config, runs=runs, ratios=compute_ratios(runs), growth=growth)


def _ms(value: float | None) -> str:
    return f"{value:.2f} ms" if value is not None else ""


def _bytes(value: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1024 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} GB"  # pragma: no cover


def _ratio_row(table: Table, q: Ratio) -> None:
    target = f">= {q.target}" if q.target is not None else ""
    rounds = " ".join(f"{v:.3f}" for v in q.rounds) if q.rounds and len(q.rounds) > 1 else ""
    if q.value is None:
        table.add_row(q.name, "n/a", target, "[yellow]unavailable[/]", "")
    elif q.target is None:
        table.add_row(q.name, f"{q.value:.3f}", target, "", rounds)
    else:
        table.add_row(q.name, f"{q.value:.3f}", target,
                      "[green]met[/]" if q.met else "[red]below target[/]", rounds)


def render(report: BenchReport, out: Console) -> None:
    runs = Table("workload", "TPS", "avg latency", "p50", "p99", "transactions",
                 title="throughput", title_justify="left")
    for r in report.runs:
        if r.tps is None:
            runs.add_row(r.description, "[yellow]unavailable[/]", "", "", "", r.skipped or "")
        else:
            runs.add_row(r.description, f"{r.tps:,.0f}", _ms(r.latency_ms), _ms(r.p50_ms),
                         _ms(r.p99_ms),
                         f"{r.transactions:,}" if r.transactions is not None else "")
    out.print(runs)
    for r in report.runs:
        if r.cpu:
            used = ", ".join(f"{name} {value:.0%}" for name, value in r.cpu.items()
                             if value is not None)
            out.print(f"HTTP CPU (share of one core): {used}", highlight=False)
    ratios = Table("ratio", "value", "target", "", "rounds", title="ratios",
                   title_justify="left")
    for q in report.ratios:
        _ratio_row(ratios, q)
    out.print(ratios)
    if report.growth is not None:
        render_growth(report.growth, out)


def render_growth(growth: GrowthReport, out: Console) -> None:
    tables = Table("table", "rows / generation", "bytes / generation",
                   title=f"ledger growth: {growth.cycles:,} generations (request, claim, settle)"
                   f" of {growth.users:,} users",
                   title_justify="left")
    for t in growth.tables:
        tables.add_row(t.table, f"{t.rows_per_generation:.2f}", _bytes(t.bytes_per_generation))
    tables.add_row("[bold]total[/]", "", f"[bold]{_bytes(growth.bytes_per_generation)}[/]")
    out.print(tables)
    wal = Table("call", "WAL records", "full-page images", "WAL bytes", title="WAL per call",
                title_justify="left")
    for w in growth.wal:
        j = w.to_json()
        wal.add_row(w.operation, f"{j['records_per_call']:.1f}", f"{j['fpi_per_call']:.2f}",
                    _bytes(j["bytes_per_call"]))
    out.print(wal)
    reads = Table("ledger rows", "ledger size", "lots", "TPS (best)", "avg latency", "runs",
                  title="balance reads (get_balance as PostgREST calls it)",
                  title_justify="left")
    for b in growth.balance_reads:
        reads.add_row(f"{b.ledger_rows:,}", _bytes(b.ledger_bytes), f"{b.lots:,}",
                      f"{b.run.tps:,.0f}" if b.run.tps is not None else "n/a",
                      _ms(b.run.latency_ms), " / ".join(f"{t:,.0f}" for t in b.tps_runs))
    out.print(reads)
    ratio = Table("ratio", "value", "target", "", "rounds", title="growth ratio",
                  title_justify="left")
    _ratio_row(ratio, growth.ratio)
    out.print(ratio)
    out.print(f"audit after the history: {'ok' if growth.audit_ok else 'FAILED'}"
              f" (history built in {growth.history_seconds:,.0f} s)", highlight=False)


def main(cfg: BenchConfig, *, as_json: bool, strict: bool, out: Console, err: Console) -> int:
    """The command: 0 when every workload ran (and, with strict, every target was met)."""
    try:
        report = run(cfg, err)
    except BenchError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    if as_json:
        out.print(json.dumps(report.to_json(), indent=2), markup=False, highlight=False,
                  soft_wrap=True)
    else:
        render(report, out)
    if strict and not report.targets_met():
        return 1
    return 0
