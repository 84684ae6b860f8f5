"""`creditgate bench`: what creditgate's guarantees cost, measured with pgbench and over HTTP.

creditgate's charge path (``creditgate_private.spend_credits``: per-user lock, idempotency
key, lots burned in order with per-lot movements, ``balance_after``, a trigger-signed ledger
row) is compared with the minimal atomic spend of common Supabase credit tutorials: one
PL/pgSQL function doing ``update balances set balance = balance - n where user_id = u and
balance >= n`` plus one ledger insert, on its own simple tables (schema ``bench``).

Every run builds a fresh database from nothing (dropped and recreated): the Supabase-parity
bootstrap, every migration applied as ``creditgate_deployer``, N users seeded through the
real signup trigger and granted plenty of credits through the real SQL functions. Then
pgbench (``-n -c CLIENTS -j JOBS -T SECONDS``) runs six workloads:

  a. baseline spend, a random user of N          c. baseline spend, one hot user
  b. spend_credits, a random user of N           d. spend_credits, one hot user
  e. creditgate.request_generation exactly as PostgREST calls it (begin; set_config role,
     request.jwt.claims, request.headers; call with named arguments; commit), random user
  g. the baseline spend published as an RPC (``bench.rpc_spend(amount)``, the caller from
     ``auth.uid()``), called in exactly e's envelope: request_generation's fair baseline

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

from creditgate.bench.command import main, render, run
from creditgate.bench.config import (
    BALANCE_REPEATS,
    GROWTH_RATIO,
    GROWTH_TABLES,
    GROWTH_TARGET,
    INFO_RATIOS,
    TARGETS,
    BenchConfig,
    BenchError,
    BenchReport,
    Ratio,
    RunResult,
    Workload,
)
from creditgate.bench.database import prepare_database, seed
from creditgate.bench.pgbench import combine_rounds, compute_ratios, settle, workloads

__all__ = [
    "BALANCE_REPEATS",
    "GROWTH_RATIO",
    "GROWTH_TABLES",
    "GROWTH_TARGET",
    "INFO_RATIOS",
    "TARGETS",
    "BenchConfig",
    "BenchError",
    "BenchReport",
    "Ratio",
    "RunResult",
    "Workload",
    "combine_rounds",
    "compute_ratios",
    "main",
    "prepare_database",
    "render",
    "run",
    "seed",
    "settle",
    "workloads",
]
