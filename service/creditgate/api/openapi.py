"""The OpenAPI 3.1 document, generated from the operations and their pydantic models.

The app's routes are built from the same :class:`~creditgate.api.framework.Operation` list,
so every route is documented and nothing undocumented is served (a test holds both ways).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from creditgate.api import schemas
from creditgate.api.framework import Operation

__all__ = ["ExtraRoute", "build_openapi", "openapi_path"]

_REF = "#/components/schemas/{model}"
_ERROR_TEXT = {
    400: "Invalid request: details.field names the offending field.",
    401: "Missing or invalid access token.",
    402: "Insufficient credits: details {required, available}.",
    403: "Not allowed (admin only).",
    404: "Unknown, or not the caller's.",
    409: "Idempotency key reused with another request, or invalid state.",
    413: "Request body too large.",
    429: "Rate limited or daily cap reached; see Retry-After and details.",
    500: "Unexpected error; nothing about it is disclosed.",
    503: "Maintenance, model disabled, or database unavailable.",
}
_UUID_PATHS = ("/v1/generations/", "/v1/media/")


def openapi_path(path: str) -> str:
    """Starlette's ``{key:path}`` -> OpenAPI's ``{key}``."""
    return re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", path)


class ExtraRoute(BaseModel):
    """A route not built from an Operation (e.g. the local storage's signed media files)."""

    method: Literal["GET", "POST", "PUT", "DELETE"]
    path: str
    summary: str
    tag: str
    operation: dict[str, Any]


def _models(ops: Iterable[Operation]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    seen: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {
        (schemas.ErrorResponse, "serialization"): None
    }
    for op in ops:
        for model in (op.body, op.raw_body):
            if model is not None:
                seen[(model, "validation")] = None
        for response in op.responses.values():
            if response is not None:
                seen[(response, "serialization")] = None
    return list(seen)


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in re.findall(r"\{(\w+)(?::\w+)?\}", op.path):
        schema: dict[str, Any] = {"type": "string"}
        if name == "id" and op.path.startswith(_UUID_PATHS):
            schema["format"] = "uuid"
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    if op.query is not None:
        doc = op.query.model_json_schema()
        required = set(doc.get("required", []))
        for name, prop in doc.get("properties", {}).items():
            param = {"name": name, "in": "query", "required": name in required, "schema": prop}
            if "description" in prop:
                param["description"] = prop["description"]
            params.append(param)
    for header in op.headers:
        params.append(
            {
                "name": header.name,
                "in": "header",
                "required": header.required,
                "description": header.description,
                "schema": {"type": "string", "minLength": 1, "maxLength": header.max_length},
            }
        )
    return params


Refs = Mapping[tuple[Any, JsonSchemaMode], Any]


def _operation(op: Operation, refs: Refs) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
    }
    description = (op.handler.__doc__ or "").strip()
    if description:
        doc["description"] = re.sub(r"\n\s+", "\n", description)
    params = _parameters(op)
    if params:
        doc["parameters"] = params
    body = op.body or op.raw_body
    if body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(body, "validation")]}},
        }
    if op.auth in ("user", "admin"):
        doc["security"] = [{"bearer": []}]
    elif op.auth == "optional":
        doc["security"] = [{}, {"bearer": []}]
    else:
        doc["security"] = []
    responses: dict[str, Any] = {}
    for status, model in sorted(op.responses.items()):
        entry: dict[str, Any] = {"description": "OK" if status == 200 else "Created"}
        if model is not None:
            entry["content"] = {op.content_type: {"schema": refs[(model, "serialization")]}}
        else:
            entry["content"] = {op.content_type: {}}
        responses[str(status)] = entry
    error_ref = refs[(schemas.ErrorResponse, "serialization")]
    statuses = {*op.errors, 500, *((413,) if body is not None else ())}
    for status in sorted(statuses):
        entry = {
            "description": _ERROR_TEXT.get(status, "Error"),
            "content": {"application/json": {"schema": error_ref}},
        }
        if status in (429, 503):
            entry["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
        responses[str(status)] = entry
    doc["responses"] = responses
    return doc


def build_openapi(
    ops: Sequence[Operation],
    extra: Sequence[ExtraRoute] = (),
    *,
    title: str = "creditgate",
    version: str = "0.1.0",
) -> dict[str, Any]:
    refs, defs = models_json_schema(_models(ops), ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(openapi_path(op.path), {})[op.method.lower()] = _operation(op, refs)
    for route in extra:
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = {
            "summary": route.summary,
            "tags": [route.tag],
            "security": [],
            **route.operation,
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Credit metering and gating for AI generation apps. Every money "
            "rule runs in PostgreSQL; errors are {error: {code, message, details, request_id}}.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A Supabase access token (aud = authenticated).",
                }
            },
        },
    }
