"""How database errors reach API clients (creditgate.db.api_error_from_db), with errors
raised by a real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest

from creditgate.db import api_error_from_db
from tests import dbutil

LEDGER_INSERT = """
insert into creditgate.ledger (user_id, entry_type, amount, delta, balance_after,
  idempotency_key, request_hash)
values (%s, 'grant', 5, 0, 0, %s, 'x')
"""


def _error(db: dbutil.TestDatabase, *statements: tuple[str, list[object]]) -> psycopg.Error:
    with psycopg.connect(db.url()) as conn:
        user = conn.execute(
            "select tests.create_user(p_id => gen_random_uuid())"
        ).fetchone()
        assert user is not None
        with pytest.raises(psycopg.Error) as raised:
            for query, params in statements:
                conn.execute(query, [user[0], *params])
        conn.rollback()
    return raised.value


def test_intentional_errors_keep_their_status_and_code(db: dbutil.TestDatabase) -> None:
    exc = _error(db, ("select creditgate_private.spend_credits(%s, 10000000, 'big')", []))
    error = api_error_from_db(exc)
    assert error is not None
    assert (error.status, error.code) == (402, "insufficient_credits")
    assert error.details == {"required": 10000000, "available": 1000}


def test_other_database_errors_are_not_mapped(db: dbutil.TestDatabase) -> None:
    # A unique violation, even of the ledger's key (the database turns every key clash a
    # caller can cause into PT409 itself), or a bug, stays an internal error (500).
    duplicate_key = _error(db, (LEDGER_INSERT, ["raced-key"]), (LEDGER_INSERT, ["raced-key"]))
    assert duplicate_key.diag.sqlstate == "23505"
    assert api_error_from_db(duplicate_key) is None
    duplicate_user = _error(db, ("insert into creditgate.balances (user_id) values (%s)", []))
    assert duplicate_user.diag.sqlstate == "23505"
    assert api_error_from_db(duplicate_user) is None
    broken = _error(db, ("select 1 / 0 where %s is not null", []))
    assert api_error_from_db(broken) is None
