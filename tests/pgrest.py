"""Call creditgate the way PostgREST (Supabase's Data API) does.

One transaction per call: connect as ``authenticator``, ``set_config('role', ...)``,
``set_config('request.jwt.claims', ...)`` and ``set_config('request.headers', ...)`` (all
transaction-local), then ``select creditgate.fn(name => value, ...)`` with named arguments.
Intentional errors surface as ``psycopg.Error`` with ``diag.sqlstate`` = 'PTxyz'.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb


def claims_for(role: str, user_id: str | None = None) -> dict[str, Any]:
    claims: dict[str, Any] = {"role": role}
    if user_id is not None:
        claims.update(sub=str(user_id), aud="authenticated", email=f"{user_id}@example.test")
    return claims


def rpc(
    conn: psycopg.Connection,
    fn: str,
    args: dict[str, Any] | None = None,
    *,
    role: str = "service_role",
    user_id: str | None = None,
    headers: dict[str, str] | None = None,
    casts: dict[str, str] | None = None,
) -> Any:
    """Run ``creditgate.<fn>(**args)`` in its own transaction as ``role``; return the value."""
    args = args or {}
    casts = casts or {}
    named = sql.SQL(", ").join(
        sql.SQL("{} => {}::{}").format(sql.Identifier(k), sql.Placeholder(), sql.SQL(casts[k]))
        if k in casts
        else sql.SQL("{} => {}").format(sql.Identifier(k), sql.Placeholder())
        for k in args
    )
    query = sql.SQL("select creditgate.{}({})").format(sql.Identifier(fn), named)
    values = [Jsonb(v) if isinstance(v, (dict, list)) else v for v in args.values()]
    with conn.transaction():
        conn.execute(
            "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true),"
            " set_config('request.headers', %s, true)",
            [role, json.dumps(claims_for(role, user_id)), json.dumps(headers or {})],
        )
        row = conn.execute(query, values).fetchone()
    return row[0] if row else None


def connect(url: str) -> psycopg.Connection:
    """An autocommit connection (each rpc() opens its own transaction)."""
    return psycopg.connect(url, autocommit=True)
