"""A spend reads one lot however many spent-out lots its user has (credit_lots.live).

The burn-order index of all lots lists a user's spent-out lots first; the partial index of
live lots does not, once the versions from before they were spent out are vacuumed away.
This needs committed history and VACUUM, hence pytest rather than pgTAP
(db/tests/ledger/live_lots.sql covers the rest inside one transaction).
"""

from __future__ import annotations

import psycopg

from tests import dbutil


def _tuples_read(conn: psycopg.Connection, index: str) -> int:
    row = conn.execute(
        "select pg_stat_get_xact_tuples_returned(%s::regclass)", [f"creditgate.{index}"]
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_spend_reads_one_lot_entry_after_a_long_history(db: dbutil.TestDatabase) -> None:
    with psycopg.connect(db.owner_url, autocommit=True) as conn:
        user = conn.execute("select tests.create_user()").fetchone()[0]  # type: ignore[index]
        conn.execute("select creditgate_private.spend_credits(%s, 1000, 'bonus-out')", [user])
        for n in range(60):  # sixty purchases, each spent out before the next
            conn.execute(
                "select creditgate_private.grant_credits(%s, 10, 'purchase', %s, 'paid')",
                [user, f"buy-{n}"],
            )
            conn.execute("select creditgate_private.spend_credits(%s, 10, %s)", [user, f"out-{n}"])
        conn.execute(
            "select creditgate_private.grant_credits(%s, 100, 'purchase', 'buy-last', 'paid')",
            [user],
        )
        conn.execute("vacuum creditgate.credit_lots")

    # A table this small would be read sequentially; with sequential scans off the planner
    # shows which index it takes, as it does on a real table (a new session: no plans
    # cached from the history above).
    with psycopg.connect(db.owner_url, autocommit=True, options="-c enable_seqscan=off") as conn:
        with conn.transaction():
            all_before = _tuples_read(conn, "credit_lots_burn_order_idx")
            live_before = _tuples_read(conn, "credit_lots_live_burn_order_idx")
            result = conn.execute(
                "select creditgate_private.spend_credits(%s, 7, 'now') ->> 'balance'", [user]
            ).fetchone()
            assert result is not None and int(result[0]) == 93
            assert _tuples_read(conn, "credit_lots_live_burn_order_idx") - live_before == 1
            assert _tuples_read(conn, "credit_lots_burn_order_idx") - all_before == 0

        # The same history read through the index of every lot: all sixty-one spent-out
        # lots come before the live one. This is what each spend read before `live`.
        with conn.transaction():
            before = _tuples_read(conn, "credit_lots_burn_order_idx")
            conn.execute(
                "select count(*) from (select l.id from creditgate.credit_lots as l"
                " where l.user_id = %s and l.remaining > 0"
                " order by l.priority, l.expires_at nulls last, l.category desc,"
                " l.created_at, l.id limit 1) as first_lot",
                [user],
            )
            assert _tuples_read(conn, "credit_lots_burn_order_idx") - before == 62
