"""One error shape for every response: ``{"error": {"code", "message", "details", "request_id"}}``.

Database errors arrive as :class:`~creditgate.db.ApiError` (``PTxyz`` -> status ``xyz``, see
:func:`creditgate.db.api_error_from_db`); authentication failures as
:class:`~creditgate.auth.AuthError` (401); Starlette's own ``HTTPException`` (unknown route,
wrong method, body too large) keeps its status with a constant code. Anything else is a 500
``internal_error`` whose body says nothing about the cause (see the request middleware).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
import psycopg_pool
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from creditgate.auth import AuthError
from creditgate.db import ApiError
from creditgate.observability import bind, get_logger

__all__ = [
    "REQUEST_ID_KEY",
    "error_body",
    "error_response",
    "exception_handlers",
    "invalid",
    "invalid_from_validation",
    "request_id_of",
]

#: Where the request middleware keeps the request id in the ASGI scope.
REQUEST_ID_KEY = "creditgate.request_id"

_HTTP_CODES = {
    400: "invalid_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}
_HTTP_MESSAGES = {
    "invalid_request": "The request is malformed; see details.",
    "not_authenticated": "Send a valid access token: 'Authorization: Bearer <token>'.",
    "forbidden": "This action needs an admin.",
    "not_found": "No such resource.",
    "method_not_allowed": "This method is not allowed on this resource.",
    "payload_too_large": "The request body is too large.",
    "unavailable": "The service cannot reach its database; retry shortly.",
    "internal_error": "Something went wrong on our side; quote the request_id if it persists.",
}


def request_id_of(scope: Mapping[str, Any]) -> str | None:
    value = scope.get(REQUEST_ID_KEY)
    return value if isinstance(value, str) else None


def error_body(code: str, message: str, details: Any, request_id: str | None) -> dict[str, Any]:
    return {
        "error": {"code": code, "message": message, "details": details, "request_id": request_id}
    }


def error_response(
    scope: Mapping[str, Any],
    status: int,
    code: str,
    message: str | None = None,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = error_body(
        code, message or _HTTP_MESSAGES.get(code, code), details, request_id_of(scope)
    )
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def invalid(field: str, reason: str, **extra: Any) -> ApiError:
    """A 400 ``invalid_request`` naming the field, shaped like the SQL's DETAIL."""
    return ApiError(
        400,
        "invalid_request",
        _HTTP_MESSAGES["invalid_request"],
        {"field": field, "reason": reason, **extra},
    )


def _field(loc: Iterable[int | str], prefix: str) -> str:
    parts = [str(p) for p in loc]
    if prefix:
        parts.insert(0, prefix)
    return ".".join(parts) or "body"


def invalid_from_validation(exc: ValidationError, prefix: str = "") -> ApiError:
    """Map a pydantic error to 400 ``invalid_request``; ``details.field`` names the first field."""
    errors = [
        {"field": _field(e["loc"], prefix), "reason": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    first = errors[0] if errors else {"field": prefix or "body", "reason": "invalid"}
    return invalid(str(first["field"]), str(first["reason"]), errors=errors)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(
        request.scope, exc.status, exc.code, exc.message or exc.code, exc.details, exc.headers
    )


async def _auth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthError)
    bind(auth_error=exc.reason)
    # The reason is safe to disclose (expired, wrong_audience...); the detail may quote the
    # token's contents, so it stays in the logs.
    return error_response(
        request.scope,
        401,
        "not_authenticated",
        details={"reason": exc.reason},
        headers={
            "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{exc.reason}"'
        },
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    return error_response(request.scope, exc.status_code, code, headers=exc.headers)


async def _data_error(request: Request, exc: Exception) -> Response:
    # SQLSTATE class 22 (e.g. a NUL character jsonb cannot store): the input, not the server,
    # is at fault. PostgREST answers 400 too. The database's wording stays in the log.
    assert isinstance(exc, psycopg.Error)
    get_logger("creditgate.api").warning(
        "data_exception", sqlstate=exc.diag.sqlstate, error=exc.diag.message_primary
    )
    return error_response(
        request.scope, 400, "invalid_request", details={"reason": "a value cannot be stored"}
    )


async def _db_unavailable(request: Request, exc: Exception) -> Response:
    return error_response(request.scope, 503, "unavailable", headers={"Retry-After": "1"})


def exception_handlers() -> dict[Any, Any]:
    return {
        ApiError: _api_error,
        AuthError: _auth_error,
        HTTPException: _http_error,
        psycopg.errors.DataError: _data_error,
        psycopg_pool.PoolTimeout: _db_unavailable,
        psycopg.OperationalError: _db_unavailable,
    }
