"""Calling creditgate's SQL functions exactly as PostgREST (Supabase's Data API) does.

Each call is one transaction: ``set_config('role', ...)``, ``request.jwt.claims`` and
``request.headers`` (transaction-local), then ``select creditgate.<fn>(name => value::type)``
with named arguments and explicit casts. Intentional errors come back as
:class:`ApiError` carrying the HTTP status of their ``PTxyz`` SQLSTATE.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

ROLES = ("anon", "authenticated", "service_role")


@dataclass(frozen=True)
class Arg:
    """A named argument with its explicit SQL type."""

    value: Any
    type: str


@dataclass
class ApiError(Exception):
    """An error with an HTTP status and the body of DESIGN §5."""

    status: int
    code: str
    message: str = ""
    details: Any = None
    hint: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}"


def api_error_from_db(exc: psycopg.Error) -> ApiError | None:
    """Map an intentional ``PTxyz`` error to :class:`ApiError`; None for anything else."""
    diag = exc.diag
    state = diag.sqlstate or ""
    if not (state.startswith("PT") and state[2:].isdigit()):
        return None
    details: Any = None
    if diag.message_detail:
        try:
            details = json.loads(diag.message_detail)
        except ValueError:
            details = diag.message_detail
    code = diag.message_primary or "error"
    error = ApiError(int(state[2:]), code, diag.message_hint or code, details, diag.message_hint)
    if isinstance(details, dict) and "retry_after_seconds" in details:
        error.headers["Retry-After"] = str(details["retry_after_seconds"])
    return error


def _adapt(arg: Arg) -> Any:
    if arg.type in ("json", "jsonb") and not isinstance(arg.value, Jsonb):
        return Jsonb(arg.value)
    return arg.value


def build_call(fn: str, args: Mapping[str, Arg]) -> tuple[sql.Composed, list[Any]]:
    named = sql.SQL(", ").join(
        sql.SQL("{} => {}::{}").format(sql.Identifier(name), sql.Placeholder(), sql.SQL(arg.type))
        for name, arg in args.items()
    )
    query = sql.SQL("select creditgate.{}({})").format(sql.Identifier(fn), named)
    return query, [_adapt(arg) for arg in args.values()]


class Database:
    """The psycopg pool plus the PostgREST-style call."""

    def __init__(
        self, url: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 5.0
    ) -> None:
        # timeout: how long a call waits for a connection. Short, so that while the
        # database is down requests fail fast (503) instead of hanging.
        self.pool = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            open=False,
            kwargs={"autocommit": False},
            check=AsyncConnectionPool.check_connection,
        )

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    async def call(
        self,
        fn: str,
        args: Mapping[str, Arg] | None = None,
        *,
        role: str,
        claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """``select creditgate.<fn>(name => value::type, ...)`` acting as ``role``."""
        query, values = build_call(fn, args or {})
        return await self.query_as(query, values, role=role, claims=claims, headers=headers)

    async def query_as(
        self,
        query: sql.Composed | LiteralString,
        params: Sequence[Any] | Mapping[str, Any],
        *,
        role: str,
        claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Run one single-value query in its own transaction acting as ``role`` with
        ``claims`` and ``headers``, exactly as PostgREST sets them (so RLS applies)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        claims = dict(claims) if claims is not None else {"role": role}
        try:
            async with self.pool.connection() as conn, conn.transaction():
                await conn.execute(
                    "select set_config('role', %s, true),"
                    " set_config('request.jwt.claims', %s, true),"
                    " set_config('request.headers', %s, true)",
                    [role, json.dumps(claims), json.dumps(dict(headers or {}))],
                )
                cur = await conn.execute(query, params)
                row = await cur.fetchone()
        except psycopg.Error as exc:
            mapped = api_error_from_db(exc)
            if mapped is not None:
                raise mapped from exc
            raise
        return row[0] if row else None

    async def ping(self) -> bool:
        try:
            async with self.pool.connection(timeout=2.0) as conn:
                await conn.execute("select 1")
            return True
        except Exception:
            return False
