"""The supabase_realtime publication streams only owner-visible columns of generations
(DESIGN §3, amendments of turn 2), whatever state the publication was in: created empty by
Supabase (and by db/bootstrap), absent, or already holding the whole table (an older
creditgate, or "enable Realtime" in the Supabase dashboard, adds it without a column list)."""

from __future__ import annotations

import psycopg
import pytest

from creditgate import migrate
from tests import dbutil
from tests.foundation.test_migrate import empty_db, run_cli  # noqa: F401  (fixture)

OWNER_VISIBLE = sorted([
    "id", "user_id", "model_id", "kind", "status", "params", "cost", "actual_cost",
    "idempotency_key", "attempts", "max_attempts", "output", "error", "created_at",
    "started_at", "finished_at", "updated_at", "prices",
])
MACHINERY = {
    "lease_owner", "lease_token", "lease_expires_at", "request_hash", "settle_result",
    "settled_lease_token", "client_ip", "charge_key",
}


def published(db: dbutil.TestDatabase) -> list[str] | None:
    """The column list generations is published with; None when it is not published."""
    with psycopg.connect(db.owner_url) as conn:
        row = conn.execute(
            "select attnames::text[] from pg_publication_tables where pubname = 'supabase_realtime'"
            " and schemaname = 'creditgate' and tablename = 'generations'"
        ).fetchone()
        listed = conn.execute(
            "select pr.prattrs is not null from pg_publication_rel as pr"
            " join pg_publication as p on p.oid = pr.prpubid"
            " where p.pubname = 'supabase_realtime' and pr.prrelid = 'creditgate.generations'::regclass"
        ).fetchone()
    if row is None:
        return None
    assert listed == (True,), "generations is published with a column list, not whole"
    return sorted(row[0])


def test_fresh_database_publishes_owner_visible_columns(empty_db: dbutil.TestDatabase) -> None:  # noqa: F811
    assert run_cli("migrate", "apply", db=empty_db).returncode == 0
    assert published(empty_db) == OWNER_VISIBLE


def test_whole_table_already_published_gets_the_column_list(empty_db: dbutil.TestDatabase) -> None:  # noqa: F811
    assert run_cli("migrate", "apply", db=empty_db).returncode == 0
    with psycopg.connect(empty_db.owner_url, autocommit=True) as conn:
        conn.execute("alter publication supabase_realtime drop table creditgate.generations")
        conn.execute("alter publication supabase_realtime add table creditgate.generations")
        conn.execute("alter publication supabase_realtime add table creditgate.ledger")
        # Force the policies file to run again, as a changed file would.
        conn.execute(
            "delete from creditgate_migrations.repeatable where name like %s",
            ["%policies/generation.sql"],
        )
    with pytest.raises(AssertionError, match="column list"):
        published(empty_db)
    again = run_cli("migrate", "apply", db=empty_db)
    assert again.returncode == 0, again.stderr
    assert published(empty_db) == OWNER_VISIBLE
    assert not MACHINERY & set(published(empty_db) or [])
    with psycopg.connect(empty_db.owner_url) as conn:
        others = conn.execute(
            "select tablename from pg_publication_tables where pubname = 'supabase_realtime'"
            " and tablename <> 'generations'"
        ).fetchall()
    assert others == [("ledger",)], "other tables in the publication are left alone"


def test_migrations_run_without_the_publication(empty_db: dbutil.TestDatabase) -> None:  # noqa: F811
    with psycopg.connect(empty_db.admin_url, autocommit=True) as conn:
        conn.execute("drop publication supabase_realtime")
    migrate.apply(empty_db.owner_url)
    with psycopg.connect(empty_db.owner_url) as conn:
        row = conn.execute("select count(*) from pg_publication where pubname = 'supabase_realtime'").fetchone()
    assert row == (0,)
