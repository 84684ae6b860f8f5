"""`creditgate bench`: what creditgate's guarantees cost, measured with pgbench.

creditgate's charge path (``creditgate_private.spend_credits``: per-user lock, idempotency
key, lots burned in order with per-lot movements, ``balance_after``, a trigger-signed ledger
row) is compared with the minimal atomic spend of common Supabase credit tutorials: one
PL/pgSQL function doing ``update balances set balance = balance - n where user_id = u and
balance >= n`` plus one ledger insert, on its own simple tables (schema ``bench``).

Every run builds a fresh database from nothing (dropped and recreated): the Supabase-parity
bootstrap, every migration applied as ``creditgate_deployer``, N users seeded through the
real signup trigger and granted plenty of credits through the real SQL functions. Then
pgbench (``-n -c CLIENTS -j JOBS -T SECONDS``) runs five workloads:

  a. baseline spend, a random user of N          c. baseline spend, one hot user
  b. spend_credits, a random user of N           d. spend_credits, one hot user
  e. creditgate.request_generation exactly as PostgREST calls it (begin; set_config role,
     request.jwt.claims, request.headers; call with named arguments; commit), random user

and reports TPS and the ratios spend/baseline (spread, hot) and request_generation/baseline
against their targets. Timings are the machine's; the ratios are what to compare.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from creditgate import localdb, migrate

DEFAULT_DATABASE = "creditgate_bench"
DEFAULT_PARAMS: dict[str, Any] = {"prompt": "bench", "width": 512, "height": 512, "steps": 20}
REQUEST_GENERATION = "creditgate.request_generation(text,jsonb,text)"
# Created when the database has no enabled image model (a fresh one has none).
BENCH_MODEL_ID = "bench-image"
PLENTY = 10**15  # credits per user: no run can exhaust them
SEED_BATCH = 1000
HOT_USER = 1

# Ratio name -> (numerator workload, denominator workload, target).
TARGETS: dict[str, tuple[str, str, float]] = {
    "spend/baseline spread": ("spend_spread", "baseline_spread", 0.7),
    "spend/baseline hot": ("spend_hot", "baseline_hot", 0.8),
    "request_generation/baseline": ("request_generation", "baseline_spread", 0.5),
}

_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.M)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.M)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)
_PROGRESS = re.compile(r"^progress: ([0-9.]+) s, ([0-9.]+) tps")


class BenchError(Exception):
    """The benchmark could not run (no pgbench, database, migrations or a pgbench failure)."""


@dataclass(frozen=True)
class BenchConfig:
    admin_url: str
    database: str = DEFAULT_DATABASE
    users: int = 10_000
    duration: int = 15
    clients: int = 8
    jobs: int = 2
    model_id: str | None = None
    params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PARAMS))

    def __post_init__(self) -> None:
        if self.users < 2:
            raise ValueError("--users must be at least 2")
        if self.duration < 1:
            raise ValueError("--duration must be at least 1 second")
        if self.clients < 1 or self.jobs < 1:
            raise ValueError("--clients and --jobs must be at least 1")
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.database):
            raise ValueError("--database must be a plain lowercase identifier")

    def url(self, user: str = localdb.DEPLOYER_ROLE) -> str:
        return localdb.dsn_for(self.admin_url, dbname=self.database, user=user)


@dataclass
class Workload:
    name: str
    description: str
    user: str  # the login role pgbench connects as
    script: str | None  # None: unavailable (see skipped)
    skipped: str | None = None


@dataclass
class RunResult:
    name: str
    description: str
    tps: float | None = None
    latency_ms: float | None = None
    transactions: int | None = None
    failed: int | None = None
    skipped: str | None = None


@dataclass
class Ratio:
    name: str
    value: float | None
    target: float

    @property
    def met(self) -> bool | None:
        return None if self.value is None else self.value >= self.target


@dataclass
class BenchReport:
    config: dict[str, Any]
    runs: list[RunResult]
    ratios: list[Ratio]

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "runs": [asdict(r) for r in self.runs],
            "ratios": [
                {"name": r.name, "value": r.value, "target": r.target, "met": r.met}
                for r in self.ratios
            ],
        }


# --------------------------------------------------------------------------- database setup


def prepare_database(cfg: BenchConfig, say: Callable[[str], None]) -> None:
    """Drop and recreate the bench database: bootstrap, then every migration as the deployer."""
    localdb.drop_database(cfg.admin_url, cfg.database)
    localdb.ensure_database(cfg.admin_url, cfg.database)
    plan = migrate.apply(cfg.url())
    say(f"database {cfg.database}: created, {len(plan.actions)} migration file(s) applied")


BASELINE_SQL = """
create schema bench;
comment on schema bench is 'Benchmark only: the tutorial baseline and a user lookup table.';

-- Users numbered 1..N so pgbench can pick one with \\set n random(1, N).
create table bench.users (n integer primary key, user_id uuid not null unique);

-- The minimal atomic spend of common Supabase credit tutorials.
create table bench.balances (
  user_id uuid primary key,
  balance bigint not null check (balance >= 0)
);
create table bench.ledger (
  id bigint generated always as identity primary key,
  user_id uuid not null references bench.balances (user_id),
  delta bigint not null,
  created_at timestamptz not null default now()
);
create index on bench.ledger (user_id);

create function bench.spend(p_user_id uuid, p_amount bigint) returns bigint
language plpgsql
as $$
declare
  v_balance bigint;
begin
  update bench.balances
  set balance = balance - p_amount
  where user_id = p_user_id and balance >= p_amount
  returning balance into v_balance;
  if not found then
    raise exception 'insufficient credits';
  end if;
  insert into bench.ledger (user_id, delta) values (p_user_id, -p_amount);
  return v_balance;
end
$$;

-- request_generation's pgbench script looks the user up as authenticator (PostgREST's role).
grant usage on schema bench to authenticator;
grant select on bench.users to authenticator;
"""


def install_baseline(conn: psycopg.Connection) -> None:
    conn.execute(BASELINE_SQL.encode(), prepare=False)


def seed_users(
    conn: psycopg.Connection, users: int, advance: Callable[[int], None]
) -> None:
    """N auth users (the signup trigger creates balances and the bonus), each granted plenty
    of paid credits through creditgate_private.grant_credits and funded in the baseline."""
    for start in range(1, users + 1, SEED_BATCH):
        stop = min(users, start + SEED_BATCH - 1)
        with conn.transaction():
            conn.execute(
                """
                with made as (
                  insert into bench.users (n, user_id)
                  select n, gen_random_uuid()
                  from generate_series(%(start)s::integer, %(stop)s::integer) as n
                  returning user_id
                )
                insert into auth.users (id, aud, role, email, raw_app_meta_data,
                  raw_user_meta_data, created_at, updated_at)
                select user_id, 'authenticated', 'authenticated', user_id || '@bench.test',
                  '{"provider": "email"}', '{}', now(), now()
                from made
                """,
                {"start": start, "stop": stop},
            )
            conn.execute(
                """
                select creditgate_private.grant_credits(
                  u.user_id, %(plenty)s::bigint, 'grant', 'bench-seed:' || u.user_id, 'paid')
                from bench.users as u
                where u.n between %(start)s::integer and %(stop)s::integer
                """,
                {"plenty": PLENTY, "start": start, "stop": stop},
            )
            conn.execute(
                """
                insert into bench.balances (user_id, balance)
                select u.user_id, %(plenty)s::bigint from bench.users as u
                where u.n between %(start)s::integer and %(stop)s::integer
                """,
                {"plenty": PLENTY, "start": start, "stop": stop},
            )
        advance(stop - start + 1)


def prepare_request_generation(
    conn: psycopg.Connection, cfg: BenchConfig
) -> tuple[str | None, str]:
    """(model id, note) when request_generation can be benchmarked, else (None, why not).

    Uses --model, else the first enabled image model, else creates one; removes rate-limit
    rules and lifts daily caps so neither interferes with throughput.
    """
    row = conn.execute("select to_regprocedure(%s) is not null", [REQUEST_GENERATION]).fetchone()
    if not row or not row[0]:
        return None, "creditgate.request_generation(text, jsonb, text) does not exist yet"
    notes: list[str] = []
    with conn.transaction():
        model_id = cfg.model_id
        if model_id is None:
            found = conn.execute(
                "select id from creditgate.models where kind = 'image' and enabled"
                " order by sort_order, id limit 1"
            ).fetchone()
            model_id = str(found[0]) if found else None
        if model_id is None:
            model_id = BENCH_MODEL_ID
            create_bench_model(conn)
            notes.append(f"created image model {BENCH_MODEL_ID}")
        else:
            exists = conn.execute(
                "select enabled from creditgate.models where id = %s", [model_id]
            ).fetchone()
            if exists is None:
                return None, f"model {model_id!r} does not exist"
            if not exists[0]:
                return None, f"model {model_id!r} is disabled"
        if _regclass(conn, "creditgate_private.rate_limit_rules"):
            if _regclass(conn, "creditgate_private.rate_limit_counters"):
                conn.execute("delete from creditgate_private.rate_limit_counters")
            conn.execute("delete from creditgate_private.rate_limit_rules")
            notes.append("rate-limit rules removed")
        if _regclass(conn, "creditgate_private.settings") and _known_setting(
            conn, "plan_daily_caps"
        ):
            conn.execute(
                """
                insert into creditgate_private.settings (key, value)
                select 'plan_daily_caps', coalesce(jsonb_object_agg(k, %(cap)s::bigint), '{}')
                from jsonb_object_keys(
                  coalesce(creditgate_private.setting('plan_daily_caps'), '{}') || '{"free": 0}'
                ) as k
                on conflict (key) do update set value = excluded.value
                """,
                {"cap": PLENTY},
            )
            notes.append("daily caps lifted")
        # One call as a real client would make it, so a bad model or params fail here,
        # with the contract's error, not as a pgbench abort.
        user = conn.execute("select user_id from bench.users where n = 1").fetchone()
        assert user is not None
        try:
            with conn.transaction():
                _as_user(conn, str(user[0]))
                conn.execute(
                    "select creditgate.request_generation(model_id => %s, params => %s::jsonb,"
                    " idempotency_key => 'bench-probe')",
                    [model_id, json.dumps(cfg.params)],
                )
                raise psycopg.Rollback()  # a probe: leave no generation behind
        except psycopg.Error as exc:
            diag = exc.diag
            return None, (
                f"request_generation({model_id!r}, {json.dumps(cfg.params)}) failed: "
                f"{diag.sqlstate} {diag.message_primary} {diag.message_detail or ''}".strip()
            )
    return model_id, "; ".join(notes)


def _as_user(conn: psycopg.Connection, user_id: str) -> None:
    conn.execute(
        "select set_config('role', 'authenticated', true),"
        " set_config('request.jwt.claims', %s, true),"
        " set_config('request.headers', %s, true)",
        [
            json.dumps({"sub": user_id, "role": "authenticated", "aud": "authenticated"}),
            json.dumps({"x-forwarded-for": "198.51.100.1"}),
        ],
    )


def _regclass(conn: psycopg.Connection, name: str) -> bool:
    row = conn.execute("select to_regclass(%s) is not null", [name]).fetchone()
    return bool(row and row[0])


def _known_setting(conn: psycopg.Connection, key: str) -> bool:
    row = conn.execute(
        "select to_regprocedure('creditgate_private.setting_defaults()') is not null"
    ).fetchone()
    if not row or not row[0]:
        return False
    row = conn.execute(
        "select exists (select 1 from creditgate_private.setting_defaults() as d where d.key = %s)",
        [key],
    ).fetchone()
    return bool(row and row[0])


def create_bench_model(conn: psycopg.Connection) -> None:
    """An enabled image model priced like the test suite's img-test, routed to the local
    runner (never called: the benchmark measures queueing, not generation)."""
    conn.execute(
        """
        insert into creditgate.models (id, kind, name, enabled, price_base, price_per_megapixel,
          price_per_step, max_width, max_height, max_pixels, max_steps, max_prompt_length, defaults)
        values (%s, 'image', 'Bench image', true, 10, 10, 1, 2048, 2048, 2048 * 2048, 100, 1000,
          '{"width": 512, "height": 512, "steps": 20}')
        """,
        [BENCH_MODEL_ID],
    )
    if _regclass(conn, "creditgate_private.model_routes"):
        conn.execute(
            "insert into creditgate_private.model_routes"
            " (model_id, provider, provider_model, endpoint)"
            " values (%s, 'local', 'bench', 'http://127.0.0.1:7860')",
            [BENCH_MODEL_ID],
        )


# --------------------------------------------------------------------------- workloads


# One request_generation call exactly as PostgREST makes it: one transaction, the role and
# the request's JWT claims and headers set transaction-locally, then the function with named
# arguments. (The user lookup rides on the set_config statement, as authenticator.)
REQUEST_SCRIPT = """\
begin;
select set_config('role', 'authenticated', true),
  set_config('request.jwt.claims', json_build_object('sub', u.user_id, 'role', 'authenticated',
    'aud', 'authenticated')::text, true),
  set_config('request.headers', json_build_object('x-forwarded-for',
    '198.51.100.' || (:n % 250 + 1))::text, true)
  from bench.users as u where u.n = :n;
select creditgate.request_generation(model_id => {model_id}, params => {params}::jsonb,
  idempotency_key => 'bench:' || gen_random_uuid()::text);
commit;
"""


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


def compute_ratios(runs: list[RunResult]) -> list[Ratio]:
    tps = {r.name: r.tps for r in runs}
    ratios = []
    for name, (top, bottom, target) in TARGETS.items():
        a, b = tps.get(top), tps.get(bottom)
        ratios.append(Ratio(name, round(a / b, 3) if a is not None and b else None, target))
    return ratios


# --------------------------------------------------------------------------- the command


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
            with psycopg.connect(cfg.url(), autocommit=True) as conn:
                conn.execute("set client_min_messages = warning")
                install_baseline(conn)
                seed_users(conn, cfg.users, lambda n: progress.advance(seeding, n))
                model_id, note = prepare_request_generation(conn, cfg)
        except psycopg.Error as exc:
            raise BenchError(f"cannot seed {cfg.database}: {exc}") from exc
        say(f"request_generation: {'' if model_id else 'unavailable: '}{note}")
        settle(cfg)

        runs: list[RunResult] = []
        task: TaskID
        with tempfile.TemporaryDirectory(prefix="creditgate-bench-") as tmp:
            for workload in workloads(cfg, model_id, note):
                if workload.script is None:
                    runs.append(RunResult(workload.name, workload.description,
                                          skipped=workload.skipped))
                    task = progress.add_task(workload.name, total=1, unit="",
                                             note="[yellow]unavailable")
                    progress.update(task, completed=1)
                    continue
                task = progress.add_task(workload.name, total=cfg.duration, unit="s", note="")

                def tick(seconds: float, tps: float, task: TaskID = task) -> None:
                    progress.update(task, completed=seconds, note=f"{tps:,.0f} tps")

                result = run_pgbench(cfg, workload, Path(tmp), tick)
                progress.update(task, completed=cfg.duration, note=f"{result.tps:,.0f} tps")
                runs.append(result)
                settle(cfg)
    config = asdict(cfg) | {"elapsed_seconds": round(time.monotonic() - started, 1)}
    config.pop("admin_url")
    return BenchReport(config=config, runs=runs, ratios=compute_ratios(runs))


def render(report: BenchReport, out: Console) -> None:
    runs = Table("workload", "TPS", "avg latency", "transactions", title="pgbench",
                 title_justify="left")
    for r in report.runs:
        if r.tps is None:
            runs.add_row(r.description, "[yellow]unavailable[/]", "", r.skipped or "")
        else:
            runs.add_row(r.description, f"{r.tps:,.0f}",
                         f"{r.latency_ms:.2f} ms" if r.latency_ms is not None else "",
                         f"{r.transactions:,}" if r.transactions is not None else "")
    out.print(runs)
    ratios = Table("ratio", "value", "target", "", title="ratios", title_justify="left")
    for q in report.ratios:
        if q.value is None:
            ratios.add_row(q.name, "n/a", f">= {q.target}", "[yellow]unavailable[/]")
        else:
            mark = "[green]met[/]" if q.met else "[red]below target[/]"
            ratios.add_row(q.name, f"{q.value:.3f}", f">= {q.target}", mark)
    out.print(ratios)


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
    if strict and any(q.met is not True for q in report.ratios):
        return 1
    return 0
