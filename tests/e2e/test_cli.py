"""Operator commands as real processes: `creditgate grant`."""

from __future__ import annotations

import json
import subprocess

import psycopg

from tests import dbutil
from tests.e2e.procs import CLI, base_env


def grant(db: dbutil.TestDatabase, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**base_env(), "CREDITGATE_SERVICE_DATABASE_URL": db.api_url}
    return subprocess.run(
        [*CLI, "grant", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_grant_is_idempotent_by_key(db: dbutil.TestDatabase) -> None:
    with psycopg.connect(db.owner_url, autocommit=True) as conn:
        row = conn.execute("select tests.create_user()").fetchone()
        assert row is not None
        user = str(row[0])

    args = ["--user-id", user, "--amount", "250", "--reason", "support gesture", "--key", "t-1"]
    first = grant(db, *args)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert (result["idempotency_key"], result["amount"], result["balance"]) == (
        "grant:t-1",
        250,
        1250,
    )
    assert result["replayed"] is False
    again = grant(db, *args)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["replayed"] is True

    unkeyed = grant(db, "--user-id", user, "--amount", "5", "--reason", "another")
    assert json.loads(unkeyed.stdout)["balance"] == 1255

    bad = grant(db, "--user-id", user, "--amount", "5", "--reason", "x", "--category", "gold")
    assert bad.returncode == 1 and "invalid_request" in bad.stderr
    assert grant(db, "--user-id", "nope", "--amount", "5", "--reason", "x").returncode == 1

    with psycopg.connect(db.owner_url, autocommit=True) as conn:
        entries = conn.execute(
            "select entry_type, amount, reason from creditgate.ledger where user_id = %s"
            " order by id",
            [user],
        ).fetchall()
        report = conn.execute("select creditgate.audit()").fetchone()
    assert [e[:2] for e in entries] == [("signup_bonus", 1000), ("grant", 250), ("grant", 5)]
    assert [e[2] for e in entries[1:]] == ["support gesture", "another"]
    assert report is not None and report[0]["ok"], report
