"""Property tests over creditgate.quote (called as anon, the way PostgREST does):
no out-of-range request is ever accepted; price is monotonic in pixels, steps, duration
and tokens; a price is never <= 0."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import dbutil, pgrest

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def conn(module_db: dbutil.TestDatabase) -> Iterator[psycopg.Connection]:
    with psycopg.connect(module_db.owner_url, autocommit=True) as owner:
        owner.execute("select tests.seed_models()")
    with pgrest.connect(module_db.api_url) as c:
        yield c


@pytest.fixture(scope="module")
def models(module_db: dbutil.TestDatabase, conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
    with psycopg.connect(module_db.owner_url) as owner:
        rows = owner.execute(
            "select id, max_width, max_height, max_pixels, max_steps, max_duration_seconds,"
            " max_output_tokens from creditgate.models"
        ).fetchall()
    keys = (
        "max_width",
        "max_height",
        "max_pixels",
        "max_steps",
        "max_duration_seconds",
        "max_output_tokens",
    )
    return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}


def quote(conn: psycopg.Connection, model_id: str, params: dict[str, Any]) -> dict[str, Any] | str:
    """The quote, or the SQLSTATE it was refused with."""
    try:
        result = pgrest.rpc(conn, "quote", {"model_id": model_id, "params": params}, role="anon")
    except psycopg.Error as exc:
        assert exc.diag.sqlstate and exc.diag.sqlstate.startswith("PT"), exc
        return exc.diag.sqlstate
    assert isinstance(result, dict)
    return result


any_int = st.integers(min_value=-10_000, max_value=10_000)


@SETTINGS
@given(width=any_int, height=any_int, steps=st.integers(-50, 300))
def test_image_out_of_range_is_never_accepted(conn, models, width, height, steps) -> None:
    limits = models["img-test"]
    result = quote(
        conn, "img-test", {"prompt": "a cat", "width": width, "height": height, "steps": steps}
    )
    in_range = (
        64 <= width <= limits["max_width"]
        and 64 <= height <= limits["max_height"]
        and width % 8 == 0
        and height % 8 == 0
        and width * height <= limits["max_pixels"]
        and 1 <= steps <= limits["max_steps"]
    )
    if in_range:
        assert isinstance(result, dict) and result["cost"] > 0
    else:
        assert result == "PT400"


@SETTINGS
@given(width=any_int, height=any_int, duration=st.integers(-5, 60))
def test_video_out_of_range_is_never_accepted(conn, models, width, height, duration) -> None:
    limits = models["video-test"]
    result = quote(
        conn,
        "video-test",
        {"prompt": "waves", "width": width, "height": height, "duration_seconds": duration},
    )
    in_range = (
        64 <= width <= limits["max_width"]
        and 64 <= height <= limits["max_height"]
        and width % 8 == 0
        and height % 8 == 0
        and width * height <= limits["max_pixels"]
        and 1 <= duration <= limits["max_duration_seconds"]
    )
    assert (isinstance(result, dict) and result["cost"] > 0) if in_range else result == "PT400"


@SETTINGS
@given(max_tokens=st.integers(-100, 20_000), chars=st.integers(0, 6000))
def test_chat_out_of_range_is_never_accepted(conn, models, max_tokens, chars) -> None:
    limits = models["chat-test"]
    content = "x" * chars
    result = quote(
        conn,
        "chat-test",
        {"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens},
    )
    if isinstance(result, dict):
        assert 1 <= max_tokens <= limits["max_output_tokens"]
        assert chars >= 1 and result["cost"] > 0
    else:
        assert result == "PT400"
    if 1 <= max_tokens <= limits["max_output_tokens"] and 1 <= chars <= 1000:
        assert isinstance(result, dict)


sides = st.integers(min_value=8, max_value=256).map(lambda n: n * 8)


@SETTINGS
@given(w1=sides, h1=sides, w2=sides, h2=sides, s1=st.integers(1, 100), s2=st.integers(1, 100))
def test_image_price_is_monotonic(conn, w1, h1, w2, h2, s1, s2) -> None:
    small = {"prompt": "p", "width": min(w1, w2), "height": min(h1, h2), "steps": min(s1, s2)}
    large = {"prompt": "p", "width": max(w1, w2), "height": max(h1, h2), "steps": max(s1, s2)}
    a, b = quote(conn, "img-test", small), quote(conn, "img-test", large)
    assert isinstance(a, dict) and isinstance(b, dict)
    assert 0 < a["cost"] <= b["cost"]


@SETTINGS
@given(d1=st.integers(1, 10), d2=st.integers(1, 10), side=st.integers(8, 90).map(lambda n: n * 8))
def test_video_price_is_monotonic_in_duration_and_pixels(conn, d1, d2, side) -> None:
    a = quote(
        conn,
        "video-test",
        {"prompt": "p", "width": 512, "height": 512, "duration_seconds": min(d1, d2)},
    )
    b = quote(
        conn,
        "video-test",
        {"prompt": "p", "width": 512, "height": 512, "duration_seconds": max(d1, d2)},
    )
    assert isinstance(a, dict) and isinstance(b, dict)
    assert 0 < a["cost"] <= b["cost"]
    lo, hi = sorted((side, 512))
    c = quote(
        conn, "video-test", {"prompt": "p", "width": lo, "height": 512, "duration_seconds": 4}
    )
    d = quote(
        conn, "video-test", {"prompt": "p", "width": hi, "height": 512, "duration_seconds": 4}
    )
    assert isinstance(c, dict) and isinstance(d, dict)
    assert 0 < c["cost"] <= d["cost"]


@SETTINGS
@given(
    t1=st.integers(1, 4096), t2=st.integers(1, 4096), c1=st.integers(1, 900), c2=st.integers(1, 900)
)
def test_chat_price_is_monotonic_in_tokens(conn, t1, t2, c1, c2) -> None:
    def q(tokens: int, chars: int) -> dict[str, Any]:
        r = quote(
            conn,
            "chat-test",
            {"messages": [{"role": "user", "content": "y" * chars}], "max_tokens": tokens},
        )
        assert isinstance(r, dict)
        return r

    a, b = q(min(t1, t2), min(c1, c2)), q(max(t1, t2), max(c1, c2))
    assert 0 < a["cost"] <= b["cost"]


# Characters PostgreSQL's jsonb accepts (it refuses NUL and lone surrogates at input,
# before any creditgate code runs).
JSON_CHARS = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))


@SETTINGS
@given(
    params=st.dictionaries(
        st.text(JSON_CHARS, min_size=1, max_size=12),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(JSON_CHARS, max_size=20),
        ),
        max_size=6,
    )
)
def test_arbitrary_params_never_crash_and_never_price_zero(conn, params) -> None:
    result = quote(conn, "img-test", {"prompt": "p", **params})
    if isinstance(result, dict):
        assert result["cost"] > 0
    else:
        assert result in ("PT400",)
