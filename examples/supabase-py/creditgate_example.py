"""creditgate from a supabase-py app, step by step.

Sign in, show the balance, quote, request a generation with an idempotency key, follow its
status through Realtime (postgres_changes on creditgate.generations, filtered to the user),
show its media through signed URLs. Result shapes are the TypedDicts below, kept in step
with supabase/types/results.ts by tests/devkit (mypy --strict checks this file in CI).

    SUPABASE_URL=https://<ref>.supabase.co SUPABASE_ANON_KEY=... \\
    CREDITGATE_URL=https://creditgate.example.com EMAIL=... PASSWORD=... \\
    python creditgate_example.py
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict, cast

import httpx
from postgrest.exceptions import APIError
from realtime.types import (
    PostgresChangesPayload,
    RealtimePostgresChangesListenEvent,
    RealtimeSubscribeStates,
)
from supabase import AsyncClient, AsyncClientOptions, acreate_client

TERMINAL = frozenset({"succeeded", "failed", "canceled"})


# --- results (supabase/types/results.ts) -----------------------------------------------------


class ExpiringLot(TypedDict):
    lot_id: str
    amount: int
    category: Literal["paid", "promotional"]
    expires_at: str


class DailyUsage(TypedDict):
    used: int
    cap: int | None


class BalanceResult(TypedDict):
    balance: int
    available: int
    owed: int
    plan: str
    expiring: list[ExpiringLot]
    daily: DailyUsage


class LoraPrice(TypedDict):
    id: str
    price: int


class PriceBreakdown(TypedDict):
    base: float
    megapixels: float
    megapixel_cost: float
    steps: int
    step_cost: float
    seconds: int
    second_cost: float
    prompt_tokens: int
    output_tokens: int
    token_cost: float
    loras: list[LoraPrice]
    lora_cost: int
    subtotal: float
    total: int


class QuoteResult(TypedDict):
    model_id: str
    kind: Literal["image", "edit", "video", "chat"]
    cost: int
    breakdown: PriceBreakdown
    params: dict[str, Any]


class RequestGenerationResult(TypedDict):
    generation_id: str
    status: Literal["queued"]
    cost: int
    balance: int
    replayed: bool


class CancelGenerationResult(TypedDict):
    generation_id: str
    status: Literal["canceled"]
    refunded: int
    balance: int


class SignedMedia(TypedDict):
    """A media item of the service's GET /v1/generations/{id}."""

    id: str
    content_type: str
    url: str | None
    url_expires_in: NotRequired[int | None]


# --- errors (DESIGN.md §5) -------------------------------------------------------------------


@dataclass(frozen=True)
class CreditgateError(Exception):
    """An intentional creditgate error (SQLSTATE PTxyz = HTTP xyz) and what to tell the user."""

    code: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    user_message: str = ""

    @property
    def retry_after_seconds(self) -> int | None:
        seconds = self.details.get("retry_after_seconds")
        return seconds if isinstance(seconds, int) else None

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.user_message}"


def _details(raw: object) -> dict[str, Any]:
    if isinstance(raw, dict):
        return cast(dict[str, Any], raw)
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return {}
        return cast(dict[str, Any], parsed) if isinstance(parsed, dict) else {}
    return {}


def describe(error: APIError) -> CreditgateError:
    """What to say for a creditgate error from the Data API (PT402, PT429, PT409, PT503...)."""
    code, reason, d = error.code or "", error.message or "", _details(error.details)
    if code == "PT402":
        text = (f"Not enough credits: this costs {d.get('required', '?')}, "
                f"you have {d.get('available', '?')}.")
    elif code == "PT429" and reason == "daily_cap_reached":
        text = (f"Daily limit reached ({d.get('used', '?')} of {d.get('cap', '?')} credits); "
                f"it resets at {d.get('resets_at', 'midnight UTC')}.")
    elif code == "PT429":
        text = f"Too many requests: try again in {d.get('retry_after_seconds', 'a few')} seconds."
    elif code == "PT409" and reason == "idempotency_key_reused":
        text = "This request key was already used for a different request: make a new one."
    elif code == "PT409":
        text = "That generation can no longer be changed (it has already started or finished)."
    elif code == "PT503" and reason == "maintenance":
        text = "Generation is paused for maintenance; please try again later."
    elif code == "PT503":
        text = "This model is not available right now; pick another one."
    elif code == "PT401":
        text = "Please sign in again."
    elif code == "PT400":
        text = f"Invalid request ({d.get('field', 'params')}: {d.get('reason', 'check it')})."
    elif code == "PT404":
        text = "Not found."
    else:
        text = "Something went wrong; please try again."
    return CreditgateError(code, reason, d, text)


# --- the steps -------------------------------------------------------------------------------


async def connect(url: str, anon_key: str) -> AsyncClient:
    """A client on schema creditgate (exposed in the project's Data API settings)."""
    return await acreate_client(url, anon_key, options=AsyncClientOptions(schema="creditgate"))


async def call(client: AsyncClient, fn: str, params: dict[str, Any] | None = None) -> Any:
    try:
        response = await client.rpc(fn, params or {}).execute()
    except APIError as exc:
        raise describe(exc) from exc
    return response.data


async def sign_in(client: AsyncClient, email: str, password: str) -> str:
    auth = await client.auth.sign_in_with_password({"email": email, "password": password})
    if auth.user is None:
        raise RuntimeError("sign-in failed")
    return auth.user.id


async def show_balance(client: AsyncClient) -> BalanceResult:
    balance = cast(BalanceResult, await call(client, "get_balance"))
    print(f"balance {balance['balance']} (spendable {balance['available']},"
          f" plan {balance['plan']})")
    for lot in balance["expiring"]:
        print(f"  {lot['amount']} {lot['category']} credits expire at {lot['expires_at']}")
    if balance["owed"]:
        print(f"  {balance['owed']} credits owed after a chargeback: paid first from new credits")
    cap = "no cap" if balance["daily"]["cap"] is None else f"cap {balance['daily']['cap']}"
    print(f"  today: {balance['daily']['used']} used, {cap}")
    return balance


async def quote(client: AsyncClient, model_id: str, params: dict[str, Any]) -> QuoteResult:
    price = cast(QuoteResult, await call(client, "quote", {"model_id": model_id, "params": params}))
    print(f"{price['model_id']} ({price['kind']}) costs {price['cost']} credits")
    return price


async def request(
    client: AsyncClient, model_id: str, params: dict[str, Any], idempotency_key: str
) -> RequestGenerationResult:
    """Retrying with the same key never charges twice: it returns the original (replayed)."""
    result = cast(RequestGenerationResult, await call(client, "request_generation", {
        "model_id": model_id, "params": params, "idempotency_key": idempotency_key,
    }))
    replayed = " (replayed)" if result["replayed"] else ""
    print(f"generation {result['generation_id']} {result['status']}: charged {result['cost']},"
          f" balance {result['balance']}{replayed}")
    return result


async def follow(client: AsyncClient, user_id: str, generation_id: str) -> str:
    """The generation's final status, from Realtime (postgres_changes)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()

    def on_change(payload: PostgresChangesPayload) -> None:
        row = payload["data"].get("record") or {}
        if row.get("id") != generation_id:
            return
        status = str(row.get("status"))
        print(f"status: {status}")
        if status in TERMINAL and not done.done():
            done.set_result(status)

    def on_state(state: RealtimeSubscribeStates, error: Exception | None) -> None:
        failed = (RealtimeSubscribeStates.CHANNEL_ERROR, RealtimeSubscribeStates.TIMED_OUT)
        if state in failed and not done.done():
            done.set_exception(error or RuntimeError(f"realtime: {state.value}"))

    channel = client.channel(f"generations:{user_id}")
    channel.on_postgres_changes(
        RealtimePostgresChangesListenEvent.Update, on_change,
        table="generations", schema="creditgate", filter=f"user_id=eq.{user_id}",
    )
    await channel.subscribe(on_state)
    try:
        return await done
    finally:
        await client.remove_channel(channel)


async def show_media(
    client: AsyncClient, service_url: str, generation_id: str
) -> list[SignedMedia]:
    """Signed, expiring media URLs come from the creditgate service (storage stays private)."""
    session = await client.auth.get_session()
    if session is None:
        raise RuntimeError("not signed in")
    async with httpx.AsyncClient(base_url=service_url, timeout=10) as http:
        response = await http.get(
            f"/v1/generations/{generation_id}",
            headers={"authorization": f"Bearer {session.access_token}"},
        )
        response.raise_for_status()
    media = cast(list[SignedMedia], response.json()["media"])
    for item in media:
        print(f"{item['content_type']}: {item['url'] or '(deleted)'}")
    return media


async def main() -> None:
    client = await connect(os.environ["SUPABASE_URL"], os.environ["SUPABASE_ANON_KEY"])
    user_id = await sign_in(client, os.environ["EMAIL"], os.environ["PASSWORD"])
    await show_balance(client)
    params: dict[str, Any] = {"prompt": "a lighthouse at dusk", "width": 1024, "height": 1024}
    price = await quote(client, "sdxl", params)
    key = str(uuid.uuid4())  # one key per user action, kept across retries of that action
    result = await request(client, price["model_id"], params, key)
    status = await follow(client, user_id, result["generation_id"])
    if status == "succeeded":
        await show_media(client, os.environ["CREDITGATE_URL"], result["generation_id"])
    else:
        print(f"generation {status}; its credits were refunded")
    await show_balance(client)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except CreditgateError as exc:
        print(exc.user_message)
        if exc.retry_after_seconds is not None:
            print(f"(retry after {exc.retry_after_seconds} s)")
        raise SystemExit(1) from exc
