"""Reads of client-visible tables, run exactly like PostgREST runs a ``GET``.

Each read is one transaction with ``role``, ``request.jwt.claims`` and ``request.headers``
set (so RLS applies: a user sees only their rows), and returns one ``jsonb`` value built in
SQL. Every column is named explicitly, so nothing server-only (leases, hashes, client IPs,
provider routes) can leak when a table grows a column.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, LiteralString
from uuid import UUID

from creditgate.api.errors import invalid
from creditgate.db import Database

__all__ = [
    "decode_cursor",
    "encode_cursor",
    "generation",
    "generation_status",
    "generations_page",
    "ledger_page",
    "models",
]


async def select_json(
    db: Database,
    query: LiteralString,
    params: Mapping[str, Any],
    *,
    role: str,
    claims: Mapping[str, Any],
    headers: Mapping[str, str],
) -> Any:
    return await db.query_as(query, params, role=role, claims=claims, headers=headers)


_MODELS: LiteralString = """
select jsonb_build_object(
  'models', coalesce((
    select jsonb_agg(jsonb_build_object(
      'id', m.id, 'kind', m.kind, 'name', m.name, 'description', m.description,
      'pricing', jsonb_build_object(
        'base', m.price_base, 'per_megapixel', m.price_per_megapixel,
        'per_step', m.price_per_step, 'per_second', m.price_per_second,
        'per_1k_tokens', m.price_per_1k_tokens),
      'limits', jsonb_build_object(
        'max_width', m.max_width, 'max_height', m.max_height, 'max_pixels', m.max_pixels,
        'max_steps', m.max_steps, 'max_duration_seconds', m.max_duration_seconds,
        'max_output_tokens', m.max_output_tokens, 'max_prompt_length', m.max_prompt_length,
        'max_loras', m.max_loras),
      'defaults', m.defaults
    ) order by m.sort_order, m.id)
    from creditgate.models as m
    where m.enabled
  ), '[]'::jsonb),
  'loras', coalesce((
    select jsonb_agg(jsonb_build_object(
      'id', l.id, 'name', l.name, 'description', l.description,
      'model_ids', to_jsonb(l.model_ids), 'price', l.price
    ) order by l.id)
    from creditgate.loras as l
    where l.enabled
  ), '[]'::jsonb)
)
"""

# Keep the column lists of _GENERATIONS_PAGE and _GENERATION in step.
_GENERATIONS_PAGE: LiteralString = """
select coalesce(jsonb_agg(jsonb_build_object(
  'id', g.id, 'model_id', g.model_id, 'kind', g.kind, 'status', g.status, 'params', g.params,
  'cost', g.cost, 'actual_cost', g.actual_cost, 'output', g.output, 'error', g.error,
  'idempotency_key', g.idempotency_key, 'created_at', g.created_at,
  'started_at', g.started_at, 'finished_at', g.finished_at
) order by g.created_at desc, g.id desc), '[]'::jsonb)
from (
  select g.*
  from creditgate.generations as g
  where g.user_id = (select auth.uid())
    and (%(before_at)s::timestamptz is null
         or (g.created_at, g.id) < (%(before_at)s::timestamptz, %(before_id)s::uuid))
  order by g.created_at desc, g.id desc
  limit %(limit)s
) as g
"""

_GENERATION: LiteralString = """
select jsonb_build_object(
  'id', g.id, 'model_id', g.model_id, 'kind', g.kind, 'status', g.status, 'params', g.params,
  'cost', g.cost, 'actual_cost', g.actual_cost, 'output', g.output, 'error', g.error,
  'idempotency_key', g.idempotency_key, 'created_at', g.created_at,
  'started_at', g.started_at, 'finished_at', g.finished_at,
  'media', coalesce((
    select jsonb_agg(jsonb_build_object(
      'id', m.id, 'position', m.position, 'key', m.storage_key,
      'content_type', m.content_type, 'bytes', m.bytes, 'width', m.width, 'height', m.height,
      'duration_seconds', m.duration_seconds, 'saved', m.saved, 'expires_at', m.expires_at,
      'deleted', m.deleted_at is not null, 'purged', m.purged_at is not null
    ) order by m.position)
    from creditgate.media as m
    where m.generation_id = g.id
  ), '[]'::jsonb))
from creditgate.generations as g
where g.id = %(id)s and g.user_id = (select auth.uid())
"""

_STATUS: LiteralString = """
select g.status from creditgate.generations as g
where g.id = %(id)s and g.user_id = (select auth.uid())
"""

_LEDGER_PAGE: LiteralString = """
select coalesce(jsonb_agg(jsonb_build_object(
  'id', l.id, 'entry_type', l.entry_type, 'amount', l.amount, 'delta', l.delta,
  'balance_after', l.balance_after, 'generation_id', l.generation_id, 'reason', l.reason,
  'created_at', l.created_at
) order by l.id desc), '[]'::jsonb)
from (
  select l.*
  from creditgate.ledger as l
  where l.user_id = (select auth.uid())
    and (%(before)s::bigint is null or l.id < %(before)s::bigint)
  order by l.id desc
  limit %(limit)s
) as l
"""


def encode_cursor(created_at: str, generation_id: str) -> str:
    raw = json.dumps([created_at, generation_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


#: The timestamps a cursor carries: what jsonb renders for a timestamptz (seconds, optional
#: fraction, a whole-minute offset). Anything else never came from this API.
_CURSOR_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?[+-]\d{2}:\d{2}")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The (created_at, id) of a generations cursor; 400 for anything this API did not emit.

    Strict on purpose: a value that merely parses (a week date, a far-off offset, an id of
    another type) never reaches SQL, so no crafted cursor can turn into a 500.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
        value = json.loads(raw)
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError
        created_at, generation_id = value
        if not isinstance(created_at, str) or not isinstance(generation_id, str):
            raise ValueError
        if not _CURSOR_TIME.fullmatch(created_at):
            raise ValueError
        parsed = datetime.fromisoformat(created_at).astimezone(UTC)
        return parsed, UUID(generation_id)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise invalid("before", "not a cursor returned by this API") from None


async def models(db: Database, headers: Mapping[str, str]) -> Any:
    return await select_json(db, _MODELS, {}, role="anon", claims={"role": "anon"}, headers=headers)


async def generations_page(
    db: Database,
    claims: Mapping[str, Any],
    headers: Mapping[str, str],
    *,
    limit: int,
    before: str | None,
) -> dict[str, Any]:
    before_at, before_id = decode_cursor(before) if before is not None else (None, None)
    items = await select_json(
        db,
        _GENERATIONS_PAGE,
        {"before_at": before_at, "before_id": before_id, "limit": limit + 1},
        role="authenticated",
        claims=claims,
        headers=headers,
    )
    more = len(items) > limit
    items = items[:limit]
    cursor = encode_cursor(items[-1]["created_at"], items[-1]["id"]) if more else None
    return {"items": items, "next_cursor": cursor}


async def generation(
    db: Database, claims: Mapping[str, Any], headers: Mapping[str, str], generation_id: UUID
) -> dict[str, Any] | None:
    result = await select_json(
        db,
        _GENERATION,
        {"id": generation_id},
        role="authenticated",
        claims=claims,
        headers=headers,
    )
    return result if isinstance(result, dict) else None


async def generation_status(
    db: Database, claims: Mapping[str, Any], headers: Mapping[str, str], generation_id: UUID
) -> str | None:
    result = await select_json(
        db, _STATUS, {"id": generation_id}, role="authenticated", claims=claims, headers=headers
    )
    return result if isinstance(result, str) else None


async def ledger_page(
    db: Database,
    claims: Mapping[str, Any],
    headers: Mapping[str, str],
    *,
    limit: int,
    before: int | None,
) -> dict[str, Any]:
    items = await select_json(
        db,
        _LEDGER_PAGE,
        {"before": before, "limit": limit + 1},
        role="authenticated",
        claims=claims,
        headers=headers,
    )
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next_cursor": items[-1]["id"] if more else None}
