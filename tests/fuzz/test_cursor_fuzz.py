"""Pagination cursors over real HTTP: whatever a client puts in ``?before=``, an undecodable
cursor is a 400 ``invalid_request`` naming the field, never a 500.

Hypothesis draws raw text and, more to the point, well-formed base64url of JSON values of
every shape (the encoding a real cursor has), with and without plausible timestamps and ids
inside. The real cursor of a page still works.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import dbutil
from tests.service.apiutil import auth, create_user, running, seed_models, settings_for

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
TIMESTAMPS = (
    st.sampled_from(
        [
            "2024-01-01T00:00:00+00:00",
            "2024-01-01T00:00:00",  # no time zone
            "2011-W01-2T00:05:23+00:00",  # ISO week date: Python reads it
            "0001-01-01T00:00:00-23:59",
            "9999-12-31T23:59:59.999999+14:00",
            "2024-02-30T00:00:00+00:00",
            "1999-12-31 23:59:59+05:30:15",
            "",
        ]
    )
    | st.text(max_size=40)
    | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
)
IDS = JSON | st.uuids().map(str) | st.uuids().map(lambda u: u.hex) | st.just("0" * 40)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


CURSORS = (
    st.text(max_size=200)
    | st.binary(max_size=120).map(b64)
    | JSON.map(lambda v: b64(json.dumps(v).encode()))
    | st.tuples(TIMESTAMPS, IDS).map(lambda p: b64(json.dumps(list(p)).encode()))
    | st.tuples(TIMESTAMPS, IDS, JSON).map(lambda p: b64(json.dumps(list(p)).encode()))
)


class Api:
    def __init__(self, url: str, user: str) -> None:
        self.client = httpx.Client(base_url=url, headers=auth(user), timeout=30)

    def page(self, path: str, before: str) -> httpx.Response:
        return self.client.get(path, params={"before": before, "limit": 1})


@pytest.fixture(scope="module")
def api(module_db: dbutil.TestDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    seed_models(module_db)
    user = create_user(module_db)
    root: Path = tmp_path_factory.mktemp("cursor")
    with running(settings_for(module_db, root)) as url:
        api = Api(url, user)
        for _ in range(3):
            created = api.client.post(
                "/v1/generations",
                json={"model_id": "img-test", "params": {"prompt": "cursor"}},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            assert created.status_code == 201, created.text
        yield api
        api.client.close()


def assert_400(response: httpx.Response, field: str, cursor: Any) -> None:
    assert response.status_code == 400, (cursor, response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["details"]["field"] == field


def test_real_cursors_page_through(api: Api) -> None:
    seen: list[str] = []
    before: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1, **({"before": before} if before else {})}
        page = api.client.get("/v1/generations", params=params)
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        before = page.json()["next_cursor"]
        if before is None:
            break
    assert len(seen) == len(set(seen)) == 3


@pytest.mark.parametrize(
    "value",
    [
        ["2024-01-01T00:00:00+00:00", [1]],  # an id that is not a string
        ["2024-01-01T00:00:00+00:00", 7],
        ["2024-01-01T00:00:00+00:00", {"a": 1}],
        ["2011-W01-2T00:05:23+00:00", str(uuid.uuid4())],
        ["9999-12-31T23:59:59.999999-14:00", str(uuid.uuid4())],  # past year 9999 in UTC
        ["2024-01-01T00:00:00", str(uuid.uuid4())],  # no time zone
        ["2024-01-01T00:00:00+00:00", "not-a-uuid"],
        {"2024-01-01T00:00:00+00:00": 1, "x": 2},
        "ab",
        [],
    ],
)
def test_crafted_cursors_are_400(api: Api, value: Any) -> None:
    cursor = b64(json.dumps(value).encode())
    assert_400(api.page("/v1/generations", cursor), "before", value)


@pytest.mark.parametrize("cursor", ["", "=", "!!!!", "WyJh", "é", "\x00"])
def test_malformed_encodings_are_400(api: Api, cursor: str) -> None:
    assert_400(api.page("/v1/generations", cursor), "before", cursor)


_EMITTED_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?[+-]\d{2}:\d{2}")


def emitted_shape(cursor: str) -> bool:
    """Whether a cursor has the shape the API emits: base64url of [timestamptz, uuid]."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        value = json.loads(raw)
        created_at, generation_id = value
        return (
            isinstance(value, list)
            and isinstance(created_at, str)
            and bool(_EMITTED_TIME.fullmatch(created_at))
            and datetime.fromisoformat(created_at).astimezone(UTC).year <= 9999
            and isinstance(generation_id, str)
            and uuid.UUID(generation_id) is not None
        )
    except (ValueError, TypeError, OverflowError):
        return False


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(cursor=CURSORS)
def test_garbage_cursors_are_400(api: Api, cursor: str) -> None:
    response = api.page("/v1/generations", cursor)
    if emitted_shape(cursor):  # drawn by chance: a well-formed cursor pages normally
        assert response.status_code == 200, (cursor, response.text)
    else:
        assert_400(response, "before", cursor)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(cursor=st.text(max_size=60).filter(lambda t: not t.strip().isdigit()) | CURSORS)
def test_garbage_ledger_cursors_are_400(api: Api, cursor: str) -> None:
    assert_400(api.page("/v1/ledger", cursor), "before", cursor)
