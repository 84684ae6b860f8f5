"""/openapi.json is generated from the real routes: every route is in it and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from creditgate.api.openapi import openapi_path
from creditgate.app import create_app
from tests import dbutil
from tests.service.apiutil import running, settings_for

API = {
    ("get", "/v1/models"),
    ("post", "/v1/quote"),
    ("post", "/v1/generations"),
    ("get", "/v1/generations"),
    ("get", "/v1/generations/{id}"),
    ("post", "/v1/generations/{id}/cancel"),
    ("post", "/v1/media/{id}/save"),
    ("delete", "/v1/media/{id}"),
    ("get", "/v1/balance"),
    ("get", "/v1/ledger"),
    ("post", "/v1/webhooks/stripe"),
    ("post", "/v1/admin/credits"),
    ("put", "/v1/admin/settings/{key}"),
    ("put", "/v1/admin/models/{id}"),
    ("get", "/v1/admin/stats"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/media-files/{key}"),  # local storage's signed downloads
}


@pytest.fixture(scope="module")
def document(
    module_db: dbutil.TestDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    with running(settings_for(module_db, tmp_path_factory.mktemp("openapi"))) as url:
        response = httpx.get(f"{url}/openapi.json")
        assert response.status_code == 200
        yield response.json()


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in doc["paths"].items() for method in item}


def served(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(settings_for(None, tmp_path))
    pairs = set()
    for route in app.routes:
        if getattr(route, "path", "").startswith("/console"):
            continue  # the web console's HTML pages (tests/console), not the JSON API
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":
                pairs.add((method.lower(), openapi_path(route.path)))
    return pairs


def test_every_route_and_nothing_else(document: dict[str, Any], tmp_path: Path) -> None:
    assert documented(document) == served(tmp_path) == API


def test_document_is_valid_openapi(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_operations_carry_schemas_auth_and_errors(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]

    def resolve(ref: dict[str, Any]) -> dict[str, Any]:
        return dict(schemas[ref["$ref"].rsplit("/", 1)[1]])

    create = document["paths"]["/v1/generations"]["post"]
    assert create["security"] == [{"bearer": []}]
    body = resolve(create["requestBody"]["content"]["application/json"]["schema"])
    assert set(body["properties"]) == {"model_id", "params"}
    params = {(p["in"], p["name"]): p for p in create["parameters"]}
    assert params[("header", "Idempotency-Key")]["required"] is True
    assert params[("query", "wait")]["required"] is False
    assert {"200", "201", "400", "401", "402", "409", "429", "503", "500"} <= set(
        create["responses"]
    )
    assert "Retry-After" in create["responses"]["429"]["headers"]
    error = resolve(create["responses"]["402"]["content"]["application/json"]["schema"])
    assert set(error["properties"]) == {"error"}

    assert document["paths"]["/v1/models"]["get"]["security"] == []
    assert {} in document["paths"]["/v1/quote"]["post"]["security"]
    assert "403" in document["paths"]["/v1/admin/stats"]["get"]["responses"]
    for path, item in document["paths"].items():
        for method, op in item.items():
            assert op.get("summary"), (method, path)
            for response in op["responses"].values():
                for media in response.get("content", {}).values():
                    if "$ref" in media.get("schema", {}):
                        resolve(media["schema"])
