"""A small declarative layer over Starlette routes.

Each :class:`Operation` names its method, path, auth level, body/query models and documented
responses. :func:`to_route` turns it into a Starlette ``Route`` whose endpoint authenticates,
validates and hands a :class:`Ctx` to the handler; ``creditgate.api.openapi`` builds the
OpenAPI document from the very same list, so the document cannot drift from the routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from uuid import UUID

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from creditgate.api.context import Services, authenticate, client_ip, db_headers, services_of
from creditgate.api.errors import invalid, invalid_from_validation
from creditgate.auth import Principal
from creditgate.db import ApiError, Arg
from creditgate.observability import bind

__all__ = ["Ctx", "Header", "Operation", "json", "read_body", "to_route"]

Auth = Literal["none", "optional", "user", "admin"]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Header:
    name: str
    description: str
    required: bool = True
    max_length: int = 255


@dataclass
class Ctx:
    """One request as a handler sees it."""

    request: Request
    services: Services
    principal: Principal | None
    body_model: BaseModel | None
    query_model: BaseModel | None
    ip: str | None

    def body(self, model: type[M]) -> M:
        assert isinstance(self.body_model, model)
        return self.body_model

    def query(self, model: type[M]) -> M:
        assert isinstance(self.query_model, model)
        return self.query_model

    @property
    def user(self) -> Principal:
        assert self.principal is not None
        return self.principal

    def header(self, name: str) -> str:
        """A header declared in the operation (validated present when required)."""
        return self.request.headers.get(name, "").strip()

    def path_uuid(self, name: str = "id") -> UUID:
        raw = self.request.path_params[name]
        try:
            return UUID(raw)
        except ValueError:
            raise invalid(name, "must be a UUID") from None

    @property
    def headers(self) -> dict[str, str]:
        return db_headers(self.request, self.ip)

    async def call(self, fn: str, args: Mapping[str, Arg] | None = None) -> Any:
        """Call ``creditgate.<fn>`` as the caller (or ``anon`` without a token), like PostgREST."""
        if self.principal is None:
            return await self.services.db.call(
                fn, args, role="anon", claims={"role": "anon"}, headers=self.headers
            )
        return await self.services.db.call(
            fn, args, role="authenticated", claims=self.principal.claims, headers=self.headers
        )


Handler = Callable[[Ctx], Awaitable[Response]]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: Auth = "user"
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    headers: tuple[Header, ...] = ()
    responses: Mapping[int, type[BaseModel] | None] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    #: Documented request body for handlers that read the raw body themselves.
    raw_body: type[BaseModel] | None = None
    #: Documented response content types other than JSON (e.g. text/plain for /metrics).
    content_type: str = "application/json"
    name: str = ""
    #: The handler's SQL function itself refuses a deleted account (PT401 from
    #: require_user or is_admin), so the route need not check first. Routes that read
    #: tables (which RLS shows to a deleted account's still-valid JWT) leave this False.
    sql_checks_account: bool = False

    @property
    def operation_id(self) -> str:
        return self.name or self.handler.__name__.strip("_")


def json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(data, status_code=status, headers=dict(headers or {}))


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, "payload_too_large", "The request body is too large.", {"max_bytes": limit}
    )


async def _parse_body(request: Request, model: type[BaseModel], limit: int) -> BaseModel:
    raw = await read_body(request, limit)
    if not raw.strip():
        raise invalid("body", "a JSON object is required")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid_from_validation(exc) from None


def _parse_query(request: Request, model: type[BaseModel]) -> BaseModel:
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise invalid_from_validation(exc) from None


async def _account_check(ctx: Ctx) -> None:
    # A deleted account's JWT stays valid until it expires. is_admin() answers PT401 for
    # it (as every client function does), so this costs one call and no extra SQL.
    await ctx.call("is_admin")


async def _admin_check(ctx: Ctx) -> None:
    # The route refuses non-admins up front; the SQL function checks again on its own.
    if await ctx.call("is_admin") is not True:
        raise ApiError(403, "forbidden", "This action needs an admin.", {"reason": "not_admin"})


def to_route(op: Operation) -> Route:
    async def endpoint(request: Request) -> Response:
        services = services_of(request)
        principal: Principal | None = None
        if op.auth != "none":
            principal = await authenticate(request, required=op.auth != "optional")
            if principal is not None:
                bind(user_id=principal.user_id)
        for header in op.headers:
            value = request.headers.get(header.name, "").strip()
            if header.required and not value:
                raise invalid(header.name, "required header")
            if len(value) > header.max_length:
                raise invalid(header.name, f"at most {header.max_length} characters")
        query = _parse_query(request, op.query) if op.query else None
        limit = services.settings.max_body_bytes
        body = await _parse_body(request, op.body, limit) if op.body else None
        ip = client_ip(request.scope, services.settings)
        ctx = Ctx(request, services, principal, body, query, ip)
        if op.auth == "admin":
            await _admin_check(ctx)
        elif principal is not None and not op.sql_checks_account:
            await _account_check(ctx)
        return await op.handler(ctx)

    endpoint.__name__ = op.operation_id
    return Route(op.path, endpoint, methods=[op.method], name=op.operation_id)
