"""db/schema/0012_account_deletion.sql drops provider error texts from refund metadata.

Refunds of failed generations used to store the provider's error message in the
append-only ledger, where a deleted account's data could never be erased. The migration
removes the message from existing entries, once, and leaves the ledger append-only.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests import dbutil

MIGRATION = Path(dbutil.ROOT) / "db" / "schema" / "0012_account_deletion.sql"


def scrub_sql() -> str:
    text = MIGRATION.read_text()
    return text[text.rindex("do $$"):]


def test_scrub_drops_error_messages_and_keeps_the_ledger_append_only(
    db: dbutil.TestDatabase,
) -> None:
    with psycopg.connect(db.owner_url) as conn:
        conn.execute("select tests.seed_models()")
        user = conn.execute("select tests.create_user()").fetchone()[0]  # type: ignore[index]
        generation = conn.execute("select tests.make_queued_generation(%s)", [user]).fetchone()[0]  # type: ignore[index]
        # A failed generation's refund as service_settle_generation posted them before 0012.
        conn.execute(
            "update creditgate.generations set status = 'failed', actual_cost = 0,"
            " attempts = 1, finished_at = now() where id = %s",
            [generation],
        )
        conn.execute(
            "select creditgate_private.refund_credits(%s, 'charge:' || %s, 100, 'refund:' || %s,"
            " 'generation failed', jsonb_build_object('generation_id', %s::uuid,"
            " 'error', '{\"code\": \"provider_refused\", \"message\": \"refused: PRIVATE\"}'::jsonb))",
            [user, generation, generation, generation],
        )
        before = conn.execute(
            "select id, amount, delta, balance_after from creditgate.ledger order by id"
        ).fetchall()

        conn.execute(scrub_sql())

        metadata = conn.execute(
            "select metadata from creditgate.ledger where idempotency_key = 'refund:' || %s",
            [generation],
        ).fetchone()[0]  # type: ignore[index]
        assert metadata == {"generation_id": str(generation), "error": {"code": "provider_refused"}}
        after = conn.execute(
            "select id, amount, delta, balance_after from creditgate.ledger order by id"
        ).fetchall()
        assert after == before, "the scrub changed money"
        conn.execute("savepoint append_only")
        try:
            conn.execute("update creditgate.ledger set reason = 'x'")
            raise AssertionError("the ledger accepted an update after the scrub")
        except psycopg.errors.InsufficientPrivilege as exc:
            assert "append-only" in str(exc)
        conn.execute("rollback to savepoint append_only")
        report = conn.execute("select creditgate.audit()").fetchone()[0]  # type: ignore[index]
        assert report["ok"], report
        conn.rollback()
