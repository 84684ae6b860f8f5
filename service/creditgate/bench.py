"""`creditgate bench`: what creditgate's guarantees cost, measured with pgbench and over HTTP.

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

and, unless ``--no-http``, one more through the running service:

  f. POST /v1/generations to ``creditgate serve`` (a subprocess on 127.0.0.1 against the
     bench database), from C concurrent httpx clients, each request for a random user of N
     with its own bearer token (HS256, a secret made up for the run) and Idempotency-Key.
     The request path only: no worker runs, generations stay queued (as in e), so the
     figure is e's plus HTTP, JSON, JWT verification, the pool and logging.

The pgbench workloads a-e run ``--rounds`` times, round-robin (a b c d e, a b c d e, ...),
so a baseline and what is compared with it always run minutes apart at most: a shared
machine's slow patches hit both. Each ratio is computed per round and the median reported
(with every round's value); each workload's TPS is the median of its rounds.

It reports TPS, latencies (p50/p99 over HTTP) and the ratios spend/baseline (spread, hot),
request_generation/baseline against their targets, and HTTP/request_generation.

``--growth`` adds the ledger-growth figures, in a second database (``<database>_growth``,
dropped at the end) with ``--growth-users`` users holding only their signup bonus:

  - bytes per generation: ``pg_total_relation_size`` of every table a generation writes,
    before and after ``--growth-cycles`` request_generation + claim + settle cycles (as the
    service makes them), after VACUUM, divided by the cycles; WAL per call (EXPLAIN
    (ANALYZE, WAL)) for those calls and for spend_credits and the baseline spend;
  - balance reads: ``creditgate.get_balance()`` as PostgREST calls it, via pgbench (best of
    three runs), with the ledger at ``--growth-small-rows`` and then ``--growth-large-rows``
    rows. The history in between is made by the real primitives (a purchase, then 49
    spends, per 50 entries per user), in parallel batches, and ``creditgate.audit()`` must
    pass afterwards.

Timings are the machine's; the ratios are what to compare.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import random
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from creditgate import localdb, migrate
from creditgate.auth import mint_token

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

# Informational ratios (no target): name -> (numerator workload, denominator workload).
INFO_RATIOS: dict[str, tuple[str, str]] = {
    "http/request_generation": ("http_request_generation", "request_generation"),
}
GROWTH_RATIO = "balance reads large/small"
GROWTH_TARGET = 0.8  # "about flat": a balance read must not slow down with history

HTTP_WARMUP_SECONDS = 1.0
HTTP_READY_SECONDS = 30.0
# Growth history: per user, a purchase of HISTORY_GRANT credits, then spends of
# HISTORY_SPEND, one purchase every HISTORY_BLOCK entries (49 * 20 = 980 <= 1000: every
# block pays for itself, so no spend can fail and old lots end up (nearly) exhausted).
HISTORY_BLOCK = 50
HISTORY_GRANT = 1000
HISTORY_SPEND = 20
HISTORY_BATCH = 20_000  # entries per transaction
# Balance reads are read-only, so CPU-bound: on a shared machine other processes' bursts
# only ever slow a run down. Each size is measured this many times; the best run counts.
BALANCE_REPEATS = 3
WAL_SAMPLES = 500  # spend_credits / baseline calls measured with EXPLAIN (ANALYZE, WAL)
# What a generation writes: the ledger and its lot movements, the lots it burns, the
# balance, the generation, its media and the provider-call log of its attempt.
GROWTH_TABLES = (
    "creditgate.ledger",
    "creditgate_private.lot_movements",
    "creditgate.credit_lots",
    "creditgate.balances",
    "creditgate.generations",
    "creditgate.media",
    "creditgate_private.provider_calls",
)

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
    rounds: int = 3
    model_id: str | None = None
    params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    http: bool = True
    http_duration: int | None = None  # default: duration
    http_clients: int | None = None  # default: clients
    growth: bool = False
    growth_users: int = 1_000
    growth_cycles: int = 2_000
    growth_small_rows: int = 10_000
    growth_large_rows: int = 1_000_000

    def __post_init__(self) -> None:
        if self.users < 2:
            raise ValueError("--users must be at least 2")
        if self.duration < 1:
            raise ValueError("--duration must be at least 1 second")
        if self.clients < 1 or self.jobs < 1:
            raise ValueError("--clients and --jobs must be at least 1")
        if self.rounds < 1:
            raise ValueError("--rounds must be at least 1")
        if self.http_duration is not None and self.http_duration < 1:
            raise ValueError("--http-duration must be at least 1 second")
        if self.http_clients is not None and self.http_clients < 1:
            raise ValueError("--http-clients must be at least 1")
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.database):
            raise ValueError("--database must be a plain lowercase identifier")
        if self.growth:
            if len(self.growth_database) > 63:
                raise ValueError("--database is too long for its _growth companion")
            if self.growth_users < 2 or self.growth_cycles < 1:
                raise ValueError("--growth-users must be at least 2, --growth-cycles at least 1")
            # Seeding leaves one signup entry per user and one spend per cycle.
            samples = min(WAL_SAMPLES, self.growth_cycles)
            floor = self.growth_users + self.growth_cycles + 2 * samples
            if self.growth_small_rows <= floor:
                raise ValueError(
                    f"--growth-small-rows must exceed {floor:,} (one signup entry per growth "
                    "user, one spend per cycle, the WAL samples)"
                )
            if self.growth_large_rows <= self.growth_small_rows:
                raise ValueError("--growth-large-rows must exceed --growth-small-rows")

    def url(self, user: str = localdb.DEPLOYER_ROLE) -> str:
        return localdb.dsn_for(self.admin_url, dbname=self.database, user=user)

    @property
    def growth_database(self) -> str:
        return f"{self.database}_growth"

    @property
    def http_seconds(self) -> int:
        return self.http_duration or self.duration

    @property
    def http_concurrency(self) -> int:
        return self.http_clients or self.clients


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
    # HTTP only: latency percentiles, and CPU used per wall-clock second (1.0 = one core)
    # by the service process, the load generator and the service's database backends.
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu: dict[str, float | None] | None = None
    # pgbench workloads: TPS of each round (tps is their median).
    tps_rounds: list[float] | None = None


@dataclass
class Ratio:
    name: str
    value: float | None
    target: float | None  # None: informational
    rounds: list[float] | None = None  # per-round values (value is their median)

    @property
    def met(self) -> bool | None:
        if self.value is None or self.target is None:
            return None
        return self.value >= self.target

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "target": self.target, "met": self.met,
                "rounds": self.rounds}


@dataclass
class WalUse:
    """WAL written by one kind of call, summed over ``calls`` (EXPLAIN (ANALYZE, WAL))."""

    operation: str
    calls: int = 0
    records: int = 0
    fpi: int = 0
    bytes: int = 0

    def add(self, usage: tuple[int, int, int]) -> None:
        self.calls += 1
        self.records += usage[0]
        self.fpi += usage[1]
        self.bytes += usage[2]

    def to_json(self) -> dict[str, Any]:
        per = max(self.calls, 1)
        return {
            "operation": self.operation,
            "calls": self.calls,
            "records_per_call": round(self.records / per, 2),
            "fpi_per_call": round(self.fpi / per, 3),
            "bytes_per_call": round(self.bytes / per, 1),
        }


@dataclass
class TableGrowth:
    table: str
    rows_per_generation: float
    bytes_per_generation: float


@dataclass
class BalanceReads:
    ledger_rows: int
    ledger_bytes: int
    lots: int
    run: RunResult  # the best of BALANCE_REPEATS runs
    tps_runs: list[float]


@dataclass
class GrowthReport:
    users: int
    cycles: int
    tables: list[TableGrowth]
    wal: list[WalUse]
    balance_reads: list[BalanceReads]
    ratio: Ratio
    audit_ok: bool
    history_seconds: float

    @property
    def bytes_per_generation(self) -> float:
        return round(sum(t.bytes_per_generation for t in self.tables), 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "cycles": self.cycles,
            "bytes_per_generation": self.bytes_per_generation,
            "tables": [asdict(t) for t in self.tables],
            "wal": [w.to_json() for w in self.wal],
            "balance_reads": [
                {"ledger_rows": b.ledger_rows, "ledger_bytes": b.ledger_bytes, "lots": b.lots,
                 "tps_runs": b.tps_runs, **asdict(b.run)}
                for b in self.balance_reads
            ],
            "ratio": self.ratio.to_json(),
            "audit_ok": self.audit_ok,
            "history_seconds": self.history_seconds,
        }


@dataclass
class BenchReport:
    config: dict[str, Any]
    runs: list[RunResult]
    ratios: list[Ratio]
    growth: GrowthReport | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "runs": [asdict(r) for r in self.runs],
            "ratios": [r.to_json() for r in self.ratios],
            "growth": self.growth.to_json() if self.growth is not None else None,
        }

    def targets_met(self) -> bool:
        """Every ratio with a target has a value that meets it (growth's included)."""
        ratios = [*self.ratios, *([self.growth.ratio] if self.growth else [])]
        return all(q.met is True for q in ratios if q.target is not None)


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
    conn: psycopg.Connection,
    users: int,
    advance: Callable[[int], None],
    *,
    grant: bool = True,
) -> None:
    """N auth users (the signup trigger creates balances and the bonus), each granted plenty
    of paid credits through creditgate_private.grant_credits (unless not ``grant``: then
    they hold their signup bonus only) and funded in the baseline."""
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
            if grant:
                conn.execute(
                    """
                    select creditgate_private.grant_credits(
                      u.user_id, %(plenty)s::bigint, 'grant', 'bench-seed:' || u.user_id,
                      'paid')
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


def seed(
    cfg: BenchConfig, advance: Callable[[int], None], *, grant: bool = True
) -> tuple[str | None, str]:
    """In cfg's migrated database: the baseline schema, cfg.users users (seed_users), then
    prepare_request_generation's (model id, note)."""
    with psycopg.connect(cfg.url(), autocommit=True) as conn:
        conn.execute("set client_min_messages = warning")
        install_baseline(conn)
        seed_users(conn, cfg.users, advance, grant=grant)
        return prepare_request_generation(conn, cfg)


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


def _as_service(conn: psycopg.Connection) -> None:
    conn.execute(
        "select set_config('role', 'service_role', true),"
        " set_config('request.jwt.claims', '{\"role\": \"service_role\"}', true)"
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
AS_USER_SCRIPT = """\
select set_config('role', 'authenticated', true),
  set_config('request.jwt.claims', json_build_object('sub', u.user_id, 'role', 'authenticated',
    'aud', 'authenticated')::text, true),
  set_config('request.headers', json_build_object('x-forwarded-for',
    '198.51.100.' || (:n % 250 + 1))::text, true)
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


# --------------------------------------------------------------------------- HTTP


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


# --------------------------------------------------------------------------- ledger growth


GROWTH_SQL = """
create table bench.history (
  user_id uuid primary key,
  entries integer not null default 0
);
comment on table bench.history is 'Benchmark only: history entries made so far per user.';

-- p_entries history entries for each user, through the real primitives: entry i of a user
-- is a purchase of p_grant when i % p_block = 0, a spend of p_spend otherwise.
create function bench.add_history(
  p_users uuid[], p_entries integer, p_block integer, p_grant bigint, p_spend bigint
) returns bigint
language plpgsql
as $$
declare
  v_user uuid;
  v_done integer;
  v_i integer;
begin
  foreach v_user in array p_users loop
    select h.entries into strict v_done from bench.history as h where h.user_id = v_user;
    for v_i in v_done .. v_done + p_entries - 1 loop
      if v_i % p_block = 0 then
        perform creditgate_private.grant_credits(
          v_user, p_grant, 'purchase', 'history:' || v_user || ':' || v_i, 'paid');
      else
        perform creditgate_private.spend_credits(
          v_user, p_spend, 'history:' || v_user || ':' || v_i);
      end if;
    end loop;
    update bench.history set entries = v_done + p_entries where user_id = v_user;
  end loop;
  return cardinality(p_users)::bigint * p_entries;
end
$$;

insert into bench.history (user_id) select user_id from bench.users;
"""


def _explain_wal(
    conn: psycopg.Connection, query: str, params: list[Any] | None = None
) -> tuple[int, int, int]:
    """Run ``query`` for real under EXPLAIN (ANALYZE, WAL): (records, full-page images, bytes)
    of WAL it wrote (nested function calls included; the commit record is not)."""
    row = conn.execute(
        "explain (analyze, wal, timing off, costs off, format json) " + query, params
    ).fetchone()
    assert row is not None
    plan = row[0][0]["Plan"]
    return (int(plan.get("WAL Records", 0)), int(plan.get("WAL FPI", 0)),
            int(plan.get("WAL Bytes", 0)))


def _sizes(conn: psycopg.Connection) -> dict[str, tuple[int, int]]:
    """table -> (rows, pg_total_relation_size)."""
    sizes = {}
    for table in GROWTH_TABLES:
        row = conn.execute(
            sql.SQL("select count(*), pg_total_relation_size({}::regclass) from {}").format(
                sql.Literal(table), sql.Identifier(*table.split("."))
            )
        ).fetchone()
        assert row is not None
        sizes[table] = (int(row[0]), int(row[1]))
    return sizes


def generation_cycles(
    gcfg: BenchConfig, model_id: str, advance: Callable[[int], None]
) -> list[WalUse]:
    """``growth_cycles`` generations through their whole life as the service drives it:
    request_generation as a random user (PostgREST-style), claimed and settled succeeded
    with one stored image as service_role. Returns the WAL each call wrote."""
    wal = {op: WalUse(op) for op in
           ("request_generation", "service_claim_generations", "service_settle_generation")}
    rng = random.Random(5)
    with psycopg.connect(gcfg.url(), autocommit=True) as conn:
        users = [str(r[0]) for r in conn.execute("select user_id from bench.users")]
        for i in range(gcfg.growth_cycles):
            user, key = rng.choice(users), f"growth:{i}"
            with conn.transaction():
                _as_user(conn, user)
                wal["request_generation"].add(_explain_wal(
                    conn,
                    "select creditgate.request_generation(model_id => %s,"
                    " params => %s::jsonb, idempotency_key => %s)",
                    [model_id, json.dumps(gcfg.params), key],
                ))
            found = conn.execute(
                "select id::text from creditgate.generations"
                " where user_id = %s and idempotency_key = %s",
                [user, key],
            ).fetchone()
            assert found is not None
            generation_id = str(found[0])
            with conn.transaction():
                _as_service(conn)
                wal["service_claim_generations"].add(_explain_wal(
                    conn,
                    "select creditgate.service_claim_generations(worker_id => 'bench-growth',"
                    " max_jobs => 1, lease_seconds => 300)",
                ))
            leased = conn.execute(
                "select lease_token::text from creditgate_private.generation_leases"
                " where generation_id = %s",
                [generation_id],
            ).fetchone()
            if leased is None or leased[0] is None:
                raise BenchError(f"generation {generation_id} was not claimed")
            outcome = {
                "status": "succeeded",
                "retryable": False,
                "media": [{"storage_key": f"media/{generation_id}/0.png",
                           "content_type": "image/png", "bytes": 400_000,
                           "width": 512, "height": 512}],
                "provider": {"name": "local", "http_status": 200, "latency_ms": 1500},
            }
            with conn.transaction():
                _as_service(conn)
                wal["service_settle_generation"].add(_explain_wal(
                    conn,
                    "select creditgate.service_settle_generation(generation_id => %s,"
                    " worker_id => 'bench-growth', lease_token => %s, outcome => %s::jsonb)",
                    [generation_id, leased[0], json.dumps(outcome)],
                ))
            advance(1)
        row = conn.execute(
            "select count(*) from creditgate.generations where status = 'succeeded'"
        ).fetchone()
        if row is None or row[0] != gcfg.growth_cycles:
            raise BenchError(f"{row[0] if row else 0} of {gcfg.growth_cycles} generations "
                             "succeeded")
    return list(wal.values())


def spend_wal(gcfg: BenchConfig) -> list[WalUse]:
    """WAL per call of spend_credits and of the baseline spend, random growth users."""
    samples = min(WAL_SAMPLES, gcfg.growth_cycles)
    spend, baseline = WalUse("spend_credits"), WalUse("baseline spend")
    rng = random.Random(6)
    with psycopg.connect(gcfg.url(), autocommit=True) as conn:
        users = [str(r[0]) for r in conn.execute("select user_id from bench.users")]
        for i in range(samples):
            user = rng.choice(users)
            spend.add(_explain_wal(
                conn, "select creditgate_private.spend_credits(%s::uuid, 1, %s)",
                [user, f"growth-wal:{i}"],
            ))
            baseline.add(_explain_wal(conn, "select bench.spend(%s::uuid, 1)", [user]))
    return [spend, baseline]


def ledger_rows(gcfg: BenchConfig) -> int:
    with psycopg.connect(gcfg.url(), autocommit=True) as conn:
        row = conn.execute("select count(*) from creditgate.ledger").fetchone()
    return int(row[0]) if row else 0


def add_history(gcfg: BenchConfig, target_rows: int, advance: Callable[[int], None]) -> None:
    """Grow the ledger to exactly ``target_rows`` with bench.add_history: full rounds over
    every user, then one partial round; users are split over ``jobs`` parallel connections,
    each committing every HISTORY_BATCH entries or so."""
    need = target_rows - ledger_rows(gcfg)
    if need <= 0:
        return
    with psycopg.connect(gcfg.url(), autocommit=True) as conn:
        users = [str(r[0]) for r in conn.execute("select user_id from bench.users order by n")]
    rounds, extra = divmod(need, len(users))
    plan: list[tuple[list[str], int]] = []  # (users, entries each)
    if rounds:
        plan.append((users, rounds))
    if extra:
        plan.append((users[:extra], 1))

    def work(part: int) -> None:
        with psycopg.connect(gcfg.url(), autocommit=True) as conn:
            conn.execute("set client_min_messages = warning")
            for group, entries in plan:
                mine = group[part::gcfg.jobs]
                step = max(1, HISTORY_BATCH // entries)
                for i in range(0, len(mine), step):
                    batch = mine[i:i + step]
                    conn.execute(
                        "select bench.add_history(%s::uuid[], %s, %s, %s, %s)",
                        [batch, entries, HISTORY_BLOCK, HISTORY_GRANT, HISTORY_SPEND],
                    )
                    advance(len(batch) * entries)

    with ThreadPoolExecutor(max_workers=gcfg.jobs) as pool:
        for future in [pool.submit(work, part) for part in range(gcfg.jobs)]:
            future.result()


def audit_ok(gcfg: BenchConfig) -> tuple[bool, list[str]]:
    with psycopg.connect(gcfg.url(), autocommit=True) as conn, conn.transaction():
        _as_service(conn)
        row = conn.execute("select creditgate.audit()").fetchone()
    assert row is not None
    report = row[0]
    failing = [c["name"] for c in report.get("checks", []) if c.get("failures")]
    return bool(report.get("ok")), failing


def run_growth(cfg: BenchConfig, progress: Progress, workdir: Path) -> GrowthReport:
    """The ledger-growth figures, in ``<database>_growth`` (dropped at the end)."""
    gcfg = dataclasses.replace(cfg, database=cfg.growth_database, users=cfg.growth_users)
    say = progress.console.print
    try:
        setup = progress.add_task("growth database", total=1, unit="", note="")
        prepare_database(gcfg, say)
        progress.update(setup, completed=1)
        seeding = progress.add_task("growth users", total=gcfg.users, unit="users", note="")
        model_id, note = seed(gcfg, lambda n: progress.advance(seeding, n), grant=False)
        with psycopg.connect(gcfg.url(), autocommit=True) as conn:
            conn.execute(GROWTH_SQL.encode(), prepare=False)
        if model_id is None:
            raise BenchError(f"growth needs request_generation: {note}")
        settle(gcfg)

        with psycopg.connect(gcfg.url(), autocommit=True) as conn:
            before = _sizes(conn)
        cycles = progress.add_task("generations", total=gcfg.growth_cycles, unit="", note="")
        wal = generation_cycles(gcfg, model_id, lambda n: progress.advance(cycles, n))
        settle(gcfg)
        with psycopg.connect(gcfg.url(), autocommit=True) as conn:
            after = _sizes(conn)
        n = gcfg.growth_cycles
        tables = [
            TableGrowth(table, round((after[table][0] - before[table][0]) / n, 3),
                        round((after[table][1] - before[table][1]) / n, 1))
            for table in GROWTH_TABLES
        ]
        wal += spend_wal(gcfg)

        reads: list[BalanceReads] = []
        history_seconds = 0.0
        for label, rows in (("small", gcfg.growth_small_rows), ("large", gcfg.growth_large_rows)):
            need = rows - ledger_rows(gcfg)
            task = progress.add_task(f"history {rows:,}", total=max(need, 0), unit="rows",
                                     note="")
            started = time.monotonic()

            def grew(k: int, task: TaskID = task) -> None:
                progress.advance(task, k)

            add_history(gcfg, rows, grew)
            history_seconds += time.monotonic() - started
            settle(gcfg)
            with psycopg.connect(gcfg.url(), autocommit=True) as conn:
                row = conn.execute(
                    "select (select count(*) from creditgate.ledger),"
                    " pg_total_relation_size('creditgate.ledger'),"
                    " (select count(*) from creditgate.credit_lots)"
                ).fetchone()
            assert row is not None
            workload = Workload(
                f"balance_{label}",
                f"get_balance at {int(row[0]):,} ledger rows, random user of {gcfg.users}",
                "authenticator",
                f"\\set n random(1, {gcfg.users})\n" + BALANCE_SCRIPT,
            )
            total = gcfg.duration * BALANCE_REPEATS
            bench_task = progress.add_task(workload.name, total=total, unit="s", note="")
            results: list[RunResult] = []
            for repeat in range(BALANCE_REPEATS):

                def tick(seconds: float, tps: float, task: TaskID = bench_task,
                         done: float = repeat * gcfg.duration) -> None:
                    progress.update(task, completed=done + seconds, note=f"{tps:,.0f} tps")

                results.append(run_pgbench(gcfg, workload, workdir, tick))
            best = max(results, key=lambda r: r.tps or 0.0)
            progress.update(bench_task, completed=total, note=f"best {best.tps:,.0f} tps")
            reads.append(BalanceReads(int(row[0]), int(row[1]), int(row[2]), best,
                                      [r.tps or 0.0 for r in results]))

        ok, failing = audit_ok(gcfg)
        if not ok:
            raise BenchError(f"creditgate.audit() fails after the history: {', '.join(failing)}")
        small, large = reads[0].run.tps, reads[1].run.tps
        ratio = Ratio(GROWTH_RATIO,
                      round(large / small, 3) if small and large is not None else None,
                      GROWTH_TARGET)
        return GrowthReport(gcfg.users, n, tables, wal, reads, ratio, ok,
                            round(history_seconds, 1))
    except psycopg.Error as exc:
        raise BenchError(f"growth failed in {gcfg.database}: {exc}") from exc
    except migrate.MigrationError as exc:
        raise BenchError(f"cannot prepare database {gcfg.database}: {exc}") from exc
    finally:
        try:
            localdb.drop_database(cfg.admin_url, gcfg.database)
        except psycopg.Error:
            pass


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
