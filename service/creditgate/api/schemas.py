"""Pydantic models: request bodies and query strings (validated), responses (documented).

Request models forbid unknown fields and are validated strictly from JSON, so ``"5"`` is not
an amount and a typo in a field name is a 400 naming it. Response models document what the
SQL functions return; the service passes those JSON objects through unchanged (the database
owns their shape), so they allow extra fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue

MODEL_ID = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class QueryModel(BaseModel):
    # Query strings are text: lax parsing turns "20" into 20; unknown parameters are ignored.
    model_config = ConfigDict(extra="ignore")


class ResponseModel(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- requests -----------------------------------------------------------------------------


class QuoteRequest(RequestModel):
    model_id: str = Field(
        min_length=1, max_length=64, description="A model id from GET /v1/models."
    )
    params: dict[str, JsonValue] = Field(
        default_factory=dict, description="Generation parameters; validated by the database."
    )


class GenerationRequest(QuoteRequest):
    """Same body as a quote; the Idempotency-Key header makes retries safe."""


class CreditsRequest(RequestModel):
    user_id: UUID
    amount: int = Field(gt=0, le=10**12, description="Credits to add.")
    reason: str = Field(min_length=1, max_length=500)


class SettingUpdate(RequestModel):
    value: JsonValue = Field(description="The new value (any JSON).")


class ModelUpdate(RequestModel):
    enabled: bool


class WaitQuery(QueryModel):
    wait: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="Seconds to wait for a terminal status (capped by the server).",
    )


class GenerationsQuery(QueryModel):
    limit: int = Field(default=20, ge=1, le=100)
    before: str | None = Field(
        default=None, max_length=200, description="The next_cursor of the previous page."
    )


class LedgerQuery(QueryModel):
    limit: int = Field(default=50, ge=1, le=200)
    before: int | None = Field(
        default=None, ge=1, le=2**63 - 1, description="Entries with a smaller id."
    )


class StatsQuery(QueryModel):
    since: datetime | None = Field(default=None, description="Default: 7 days ago.")


# --- responses ----------------------------------------------------------------------------


class ErrorInfo(BaseModel):
    code: str = Field(description="Constant machine-readable code, e.g. insufficient_credits.")
    message: str
    details: Any = None
    request_id: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


class Status(BaseModel):
    status: str


class ModelInfo(ResponseModel):
    id: str
    kind: Literal["image", "edit", "video", "chat"]
    name: str
    description: str
    pricing: dict[str, float]
    limits: dict[str, int | None]
    defaults: dict[str, JsonValue]


class LoraInfo(ResponseModel):
    id: str
    name: str
    description: str
    model_ids: list[str]
    price: int


class ModelList(ResponseModel):
    models: list[ModelInfo]
    loras: list[LoraInfo]


class Quote(ResponseModel):
    model_id: str | None = None
    cost: int | None = None
    breakdown: Any = None


class Media(ResponseModel):
    id: UUID
    position: int
    key: str = Field(description="Storage key; fetch the bytes through url.")
    content_type: str
    bytes: int
    width: int | None = None
    height: int | None = None
    duration_seconds: float | None = None
    saved: bool
    expires_at: datetime | None = None
    deleted: bool
    url: str | None = Field(description="Signed, expiring URL; null once deleted or purged.")
    url_expires_in: int | None = None


class Generation(ResponseModel):
    id: UUID
    model_id: str
    kind: str
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    params: dict[str, JsonValue]
    cost: int
    actual_cost: int | None = None
    output: JsonValue = None
    error: JsonValue = None
    idempotency_key: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class GenerationDetail(Generation):
    media: list[Media]


class GenerationPage(ResponseModel):
    items: list[Generation]
    next_cursor: str | None


class GenerationCreated(ResponseModel):
    generation_id: UUID
    status: str
    cost: int
    balance: int
    replayed: bool
    generation: GenerationDetail | None = Field(
        default=None, description="Present when ?wait was given: the generation after waiting."
    )


class Balance(ResponseModel):
    balance: int
    available: int
    plan: str
    expiring: list[dict[str, JsonValue]]
    daily: dict[str, JsonValue]


class LedgerEntry(ResponseModel):
    id: int
    entry_type: str
    amount: int
    delta: int
    balance_after: int
    generation_id: UUID | None = None
    reason: str | None = None
    created_at: datetime


class LedgerPage(ResponseModel):
    items: list[LedgerEntry]
    next_cursor: int | None


class JsonObject(ResponseModel):
    """A JSON object returned by the database function (see DESIGN.md §4)."""


class StripeAck(ResponseModel):
    received: bool
    event_id: str | None = None
    type: str | None = None
    ignored: str | None = None
    result: JsonValue = None


class StripeEvent(ResponseModel):
    """A Stripe event as Stripe sends it (verified with the Stripe-Signature header)."""

    id: str
    type: str
    data: dict[str, JsonValue]
