"""``--growth``: bytes per generation, WAL per call, balance reads as the ledger grows."""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from rich.progress import Progress, TaskID

from creditgate import localdb, migrate
from creditgate.bench.config import (
    BALANCE_REPEATS,
    GROWTH_RATIO,
    GROWTH_TABLES,
    GROWTH_TARGET,
    HISTORY_BATCH,
    HISTORY_BLOCK,
    HISTORY_GRANT,
    HISTORY_SPEND,
    WAL_SAMPLES,
    BalanceReads,
    BenchConfig,
    BenchError,
    GrowthReport,
    Ratio,
    RunResult,
    TableGrowth,
    WalUse,
    Workload,
)
from creditgate.bench.database import as_service, as_user, prepare_database, seed
from creditgate.bench.pgbench import BALANCE_SCRIPT, run_pgbench, settle

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
                as_user(conn, user)
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
                as_service(conn)
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
                as_service(conn)
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
        as_service(conn)
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

