"""`creditgate audit` run for real, as a subprocess, against a test database: exit 0 and a
readable table on clean books, non-zero naming the failing check once they are corrupted
(through the superuser connection, the way a bad manual fix or a bug would)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from tests import dbutil

CLI = [sys.executable, "-m", "creditgate.cli", "audit"]


def audit(
    db: dbutil.TestDatabase, *args: str, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DATABASE_URL=url or db.owner_url, COLUMNS="250", NO_COLOR="1")
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=120)


def sql(url: str, statement: str, *params: Any) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement, list(params))


@pytest.fixture
def books(db: dbutil.TestDatabase) -> dbutil.TestDatabase:
    """Some honest activity: two users, a purchase, spends, a refund."""
    with psycopg.connect(db.owner_url, autocommit=True) as conn:
        for n in (1, 2):
            user = f"a0000000-0000-4000-8000-00000000000{n}"
            conn.execute("select tests.create_user(p_id => %s)", [user])
        conn.execute(
            "select creditgate_private.grant_credits('a0000000-0000-4000-8000-000000000001', 500,"
            " 'purchase', 'cli-buy', 'paid')"
        )
        conn.execute(
            "select creditgate_private.spend_credits('a0000000-0000-4000-8000-000000000001', 300,"
            " 'cli-spend')"
        )
        conn.execute(
            "select creditgate_private.refund_credits('a0000000-0000-4000-8000-000000000001',"
            " 'cli-spend', 100, 'cli-refund')"
        )
    return db


def test_clean_books_exit_0_with_a_table_of_checks(books: dbutil.TestDatabase) -> None:
    proc = audit(books)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "balance_matches_ledger_and_lots" in proc.stdout
    assert "idempotency_keys_unique" in proc.stdout
    assert "all" in proc.stdout and "checks passed" in proc.stdout


def test_json_prints_the_raw_audit(books: dbutil.TestDatabase) -> None:
    proc = audit(books, "--json")
    assert proc.returncode == 0, proc.stderr
    raw = json.loads(proc.stdout)
    assert raw["ok"] is True
    assert {c["name"] for c in raw["checks"]} >= {
        "balance_matches_ledger_and_lots", "balance_after_chain", "refunds_within_charge",
    }
    assert all(c["failures"] == 0 for c in raw["checks"])


def test_since_accepts_durations_and_timestamps(books: dbutil.TestDatabase) -> None:
    assert audit(books, "--since", "1h").returncode == 0
    assert audit(books, "--since", "2020-01-01T00:00:00+00:00").returncode == 0
    bad = audit(books, "--since", "yesterday-ish")
    assert bad.returncode == 2
    assert "--since" in bad.stderr


def test_a_row_inserted_behind_the_triggers_back_fails(books: dbutil.TestDatabase) -> None:
    sql(books.admin_url, "alter table creditgate.ledger disable trigger user")
    sql(
        books.admin_url,
        "insert into creditgate.ledger (user_id, entry_type, amount, delta, balance_after,"
        " idempotency_key, request_hash)"
        " values ('a0000000-0000-4000-8000-000000000002', 'spend', 40, 40, 1040, 'forged', 'x')",
    )
    sql(books.admin_url, "alter table creditgate.ledger enable trigger user")

    proc = audit(books)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED" in proc.stdout
    assert "balance_matches_ledger_and_lots" in proc.stdout.split("FAILED", 1)[1]
    assert "a0000000-0000-4000-8000-000000000002" in proc.stdout  # the sample names the user

    raw = json.loads(audit(books, "--json").stdout)
    assert raw["ok"] is False
    failing = {c["name"] for c in raw["checks"] if c["failures"]}
    assert {"balance_matches_ledger_and_lots", "entry_lot_movements_match_delta"} <= failing


def test_a_balance_edited_directly_fails(books: dbutil.TestDatabase) -> None:
    sql(
        books.admin_url,
        "update creditgate.balances set balance = balance + 1000000"
        " where user_id = 'a0000000-0000-4000-8000-000000000001'",
    )
    proc = audit(books, "--json")
    assert proc.returncode == 1
    raw = json.loads(proc.stdout)
    failing = [c["name"] for c in raw["checks"] if c["failures"]]
    assert failing == ["balance_matches_ledger_and_lots"]


def test_an_unreachable_database_exits_2(books: dbutil.TestDatabase) -> None:
    proc = audit(books, url="postgresql://creditgate_deployer@127.0.0.1:5432/cg_no_such_database")
    assert proc.returncode == 2
    assert "could not run" in proc.stderr
