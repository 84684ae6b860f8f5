"""What the operations tests share: owner connections, users, events."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from tests import dbutil


def owner(db: dbutil.TestDatabase) -> psycopg.Connection:
    return psycopg.connect(db.owner_url, autocommit=True)


def value(db: dbutil.TestDatabase, sql: str, *params: Any) -> Any:
    with owner(db) as conn:
        row = conn.execute(sql, list(params)).fetchone()
    return row[0] if row else None


def set_setting(db: dbutil.TestDatabase, key: str, val: Any) -> None:
    with owner(db) as conn:
        conn.execute(
            "insert into creditgate_private.settings (key, value) values (%s, %s)"
            " on conflict (key) do update set value = excluded.value",
            [key, Jsonb(val)],
        )


def new_user(db: dbutil.TestDatabase, credits: int = 0, plan: str = "free") -> uuid.UUID:
    """A user without signup bonus, then ``credits`` granted (key test-grant:...)."""
    set_setting(db, "signup_bonus", 0)
    with owner(db) as conn, conn.transaction():
        row = conn.execute("select tests.create_user()").fetchone()
        assert row is not None
        user = uuid.UUID(str(row[0]))
        conn.execute("update creditgate.balances set plan = %s where user_id = %s", [plan, user])
        if credits:
            grant(conn, user, credits)
    return user


def grant(
    conn: psycopg.Connection, user: uuid.UUID, amount: int, expires_at: Any = None
) -> dict[str, Any]:
    row = conn.execute(
        "select creditgate.service_grant_credits(user_id => %s, amount => %s,"
        " entry_type => 'grant', idempotency_key => %s, expires_at => %s)",
        [user, amount, f"test-grant-{uuid.uuid4()}", expires_at],
    ).fetchone()
    assert row is not None
    result: dict[str, Any] = row[0]
    return result


def events(
    db: dbutil.TestDatabase, event_type: str, user: uuid.UUID | None = None
) -> list[dict[str, Any]]:
    with owner(db) as conn:
        rows = conn.execute(
            "select payload from creditgate_private.events where event_type = %s"
            " and (%s::uuid is null or user_id = %s::uuid) order by created_at, id",
            [event_type, user, user],
        ).fetchall()
    return [r[0] for r in rows]
