"""The bench's settings, results and targets."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from creditgate import localdb

DEFAULT_DATABASE = "creditgate_bench"
DEFAULT_PARAMS: dict[str, Any] = {"prompt": "bench", "width": 512, "height": 512, "steps": 20}
REQUEST_GENERATION = "creditgate.request_generation(text,jsonb,text)"
# Created when the database has no enabled image model (a fresh one has none).
BENCH_MODEL_ID = "bench-image"
PLENTY = 10**15  # credits per user: no run can exhaust them
SEED_BATCH = 1000
HOT_USER = 1

# Ratio name -> (numerator workload, denominator workload, target).
# Like is compared with like: request_generation against the tutorial spend called through
# the same PostgREST envelope (role, claims, headers, one transaction); spend_credits against
# the tutorial spend called bare, as both are internal calls.
TARGETS: dict[str, tuple[str, str, float]] = {
    "request_generation/baseline envelope": ("request_generation", "baseline_envelope", 0.40),
    "spend/baseline spread": ("spend_spread", "baseline_spread", 0.65),
    "http/request_generation": ("http_request_generation", "request_generation", 0.40),
}

# Informational ratios (no target): name -> (numerator workload, denominator workload). The
# bare request ratio and the hot-user ratio are kept for continuity with earlier figures.
INFO_RATIOS: dict[str, tuple[str, str]] = {
    "request_generation/baseline bare": ("request_generation", "baseline_spread"),
    "spend/baseline hot": ("spend_hot", "baseline_hot"),
    "baseline envelope/baseline bare": ("baseline_envelope", "baseline_spread"),
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
    "creditgate_private.generation_requests",
    "creditgate_private.generation_leases",
    "creditgate.media",
    "creditgate_private.provider_calls",
)



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

