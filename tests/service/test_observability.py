"""Request ids, JSON logs, Prometheus metrics, readiness, and 500s that leak nothing."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from creditgate.api import routes
from creditgate.observability import GENERATIONS_SETTLED, PROVIDER_ERRORS, PROVIDER_LATENCY
from tests import dbutil
from tests.service.apiutil import auth, create_user, running, seed_models, settings_for


@pytest.fixture
def url(db: dbutil.TestDatabase, tmp_path: Path) -> Iterator[str]:
    seed_models(db)
    with running(settings_for(db, tmp_path, log_level="info")) as base:
        yield base


def wait_for_log(
    capsys: pytest.CaptureFixture[str], event: str, request_id: str
) -> tuple[list[dict[str, Any]], str]:
    """Lines of ``request_id`` once ``event`` is logged (the access line follows the response)."""
    text = ""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        text += capsys.readouterr().err
        lines = [line for line in log_lines(text) if line.get("request_id") == request_id]
        if any(line["event"] == event for line in lines):
            return lines, text
        time.sleep(0.02)
    raise AssertionError(f"no {event} line for {request_id}")


def log_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_request_id_on_every_response(url: str) -> None:
    for response in (
        httpx.get(f"{url}/healthz"),
        httpx.get(f"{url}/v1/balance"),  # 401
        httpx.get(f"{url}/nope"),  # 404
        httpx.delete(f"{url}/v1/balance"),  # 405
    ):
        rid = response.headers["x-request-id"]
        assert len(rid) >= 16
        if response.status_code >= 400:
            assert response.json()["error"]["request_id"] == rid
    assert httpx.delete(f"{url}/v1/balance").json()["error"]["code"] == "method_not_allowed"
    kept = httpx.get(f"{url}/healthz", headers={"X-Request-Id": "edge-1234:abc"})
    assert kept.headers["x-request-id"] == "edge-1234:abc"
    for insane in ("has space", "x" * 200, "<script>", "é"):
        replaced = httpx.get(f"{url}/healthz", headers={"X-Request-Id": insane.encode()})
        assert replaced.headers["x-request-id"] != insane
    ids = {httpx.get(f"{url}/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3


def test_logs_are_json_with_request_fields(
    db: dbutil.TestDatabase, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    user = create_user(db)
    capsys.readouterr()
    response = httpx.post(
        f"{url}/v1/generations",
        json={"model_id": "img-test", "params": {"prompt": "log me"}},
        headers={**auth(user), "Idempotency-Key": "log-key-1", "X-Request-Id": "req-log-1"},
    )
    assert response.status_code == 201
    lines, text = wait_for_log(capsys, "request", "req-log-1")
    access = [line for line in lines if line["event"] == "request"]
    assert len(access) == 1
    line = access[0]
    assert line["user_id"] == user
    assert line["generation_id"] == response.json()["generation_id"]
    assert line["idempotency_key"] == "log-key-1"
    assert line["model"] == "img-test"
    assert line["cost"] == 33
    assert line["status"] == "queued"
    assert line["http_status"] == 201
    assert line["route"] == "/v1/generations"
    assert line["duration_ms"] >= 0
    assert "level" in line and "timestamp" in line
    # Tokens never reach the logs.
    assert auth(user)["Authorization"].split()[1] not in text


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_by_route_template(db: dbutil.TestDatabase, url: str) -> None:
    user = create_user(db)
    before = httpx.get(f"{url}/metrics").text
    generation = uuid.uuid4()
    for _ in range(3):
        httpx.get(f"{url}/v1/generations/{generation}", headers=auth(user))
    httpx.post(
        f"{url}/v1/generations",
        json={"model_id": "chat-test", "params": {"messages": [{"role": "user", "content": "hi"}]}},
        headers={**auth(user), "Idempotency-Key": "m-1"},
    )
    response = httpx.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    counter = "creditgate_http_requests_total"
    labels = {"method": "GET", "route": "/v1/generations/{id}", "status": "404"}
    assert _metric(text, counter, **labels) - _metric(before, counter, **labels) == 3
    assert str(generation) not in text  # templates, never raw paths
    assert _metric(text, "creditgate_http_request_duration_seconds_count", **labels) >= 3
    created = {"model": "chat-test", "status": "queued"}
    assert (
        _metric(text, "creditgate_generations_created_total", **created)
        - _metric(before, "creditgate_generations_created_total", **created)
        == 1
    )
    # The worker's metrics are registered on the same registry.
    for name in (
        "creditgate_provider_latency_seconds",
        "creditgate_provider_errors_total",
        "creditgate_generations_settled_total",
    ):
        assert f"# HELP {name} " in text
    PROVIDER_LATENCY.labels("local", "image", "succeeded").observe(0.2)
    PROVIDER_ERRORS.labels("local", "timeout").inc()
    GENERATIONS_SETTLED.labels("img-test", "succeeded").inc()
    assert "creditgate_provider_errors_total{" in httpx.get(f"{url}/metrics").text


def test_readyz_reports_the_database(url: str, tmp_path: Path) -> None:
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{url}/readyz").status_code == 200
    unreachable = settings_for(
        None,
        tmp_path,
        service_database_url=("postgresql://authenticator@127.0.0.1:1/nowhere?connect_timeout=1"),
    )
    with running(unreachable) as down:
        assert httpx.get(f"{down}/healthz").status_code == 200
        response = httpx.get(f"{down}/readyz", timeout=30)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert "127.0.0.1:1" not in response.text


SECRET_TEXT = "password=hunter2 at /srv/creditgate/internal.py line 42"


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError(SECRET_TEXT),
        psycopg.errors.UndefinedTable(SECRET_TEXT),
        KeyError(SECRET_TEXT),
    ],
)
def test_500_leaks_nothing(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], exc: Exception
) -> None:
    async def boom(*args: object, **kwargs: object) -> object:
        raise exc

    monkeypatch.setattr(routes.queries, "models", boom)
    capsys.readouterr()
    response = httpx.get(f"{url}/v1/models")
    assert response.status_code == 500
    body = response.json()
    assert body["error"]["code"] == "internal_error"
    assert body["error"]["details"] is None
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    for leak in ("hunter2", "internal.py", type(exc).__name__, "Traceback", "psycopg"):
        assert leak not in response.text
    # The cause is in the server's log, with the request id.
    lines, _ = wait_for_log(capsys, "unhandled_exception", response.headers["x-request-id"])
    [logged] = [line for line in lines if line["event"] == "unhandled_exception"]
    assert "exception" in logged  # the traceback is in the log, not in the response
    metrics = httpx.get(f"{url}/metrics").text
    assert _metric(metrics, "creditgate_http_requests_total", route="/v1/models", status="500") >= 1
