"""The bench database: built from nothing, the tutorial baseline, seeded users."""

from __future__ import annotations

import json
from collections.abc import Callable

import psycopg

from creditgate import localdb, migrate
from creditgate.bench.config import (
    BENCH_MODEL_ID,
    PLENTY,
    REQUEST_GENERATION,
    SEED_BATCH,
    BenchConfig,
)


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

-- The same spend as a Supabase RPC, as the tutorials publish it: the caller is auth.uid(),
-- the function runs as its owner. Called through the PostgREST envelope, it is the fair
-- baseline for request_generation.
create function bench.rpc_spend(amount bigint) returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_balance bigint;
begin
  update bench.balances
  set balance = balance - amount
  where user_id = (select auth.uid()) and balance >= amount
  returning balance into v_balance;
  if not found then
    raise exception 'insufficient credits';
  end if;
  insert into bench.ledger (user_id, delta) values ((select auth.uid()), -amount);
  return v_balance;
end
$$;
revoke all on function bench.rpc_spend(bigint) from public;

-- The enveloped scripts look the user up as authenticator (PostgREST's role), then call as
-- authenticated.
grant usage on schema bench to authenticator, authenticated;
grant select on bench.users to authenticator;
grant execute on function bench.rpc_spend(bigint) to authenticated;
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
                as_user(conn, str(user[0]))
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


def as_user(conn: psycopg.Connection, user_id: str) -> None:
    conn.execute(
        "select set_config('role', 'authenticated', true),"
        " set_config('request.jwt.claims', %s, true),"
        " set_config('request.headers', %s, true)",
        [
            json.dumps({"sub": user_id, "role": "authenticated", "aud": "authenticated"}),
            json.dumps({"x-forwarded-for": "198.51.100.1", "cf-connecting-ip": "198.51.100.1"}),
        ],
    )


def as_service(conn: psycopg.Connection) -> None:
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

