"""db/schema/0008_daily_usage.sql fills today's usage counters from the ledger.

The migration runs on databases that already hold today's charges and refunds; its
backfill must give every user the figure the ledger trigger would have kept.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests import dbutil

MIGRATION = Path(dbutil.ROOT) / "db" / "schema" / "0008_daily_usage.sql"


def backfill_sql() -> str:
    text = MIGRATION.read_text()
    return text[text.index("with today as ("):]


def test_backfill_gives_the_counters_the_trigger_keeps(db: dbutil.TestDatabase) -> None:
    with psycopg.connect(db.owner_url) as conn:
        conn.execute("select tests.seed_models()")
        users = [conn.execute("select tests.create_user()").fetchone()[0] for _ in range(3)]  # type: ignore[index]
        heavy, light, idle = users
        ids = []
        for n in range(4):
            conn.execute("select tests.as_user(%s)", [heavy])
            row = conn.execute(
                "select creditgate.request_generation('img-test', %s::jsonb, %s) ->> 'generation_id'",
                [f'{{"prompt": "p{n}"}}', f"h-{n}"],
            ).fetchone()
            assert row is not None
            ids.append(row[0])
        conn.execute("select creditgate.cancel_generation(%s)", [ids[0]])  # refunded in full
        conn.execute("select tests.as_user(%s)", [light])
        conn.execute("select creditgate.request_generation('img-test', '{\"prompt\": \"x\"}', 'l-1')")
        conn.execute("select tests.as_owner()")
        kept = dict(
            conn.execute(
                "select user_id, daily_used::bigint from creditgate.balances"
                " where user_id = any(%s)", [users]
            ).fetchall()
        )
        assert kept == {heavy: 3 * 33, light: 33, idle: 0}

        # As before the migration: no counters. Then its backfill.
        conn.execute("update creditgate.balances set daily_used = 0, daily_used_on = null")
        conn.execute(backfill_sql())
        filled = dict(
            conn.execute(
                "select user_id, daily_used::bigint from creditgate.balances"
                " where user_id = any(%s)", [users]
            ).fetchall()
        )
        assert filled == kept
        row = conn.execute(
            "select c ->> 'failures' from jsonb_array_elements(creditgate.audit() -> 'checks') as c"
            " where c ->> 'name' = 'daily_usage_matches_ledger'"
        ).fetchone()
        assert row is not None and row[0] == "0"
        conn.rollback()
