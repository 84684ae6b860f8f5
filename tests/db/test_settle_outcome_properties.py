"""Property test over service_settle_generation's outcome (DESIGN §4, issue 17 item 5).

Outcomes are generated over the whole outcome schema — every field present, absent, JSON
null, the right type with values in and out of range, the wrong type, unknown keys — for an
image and a chat generation that a worker holds the lease on. Whatever a worker sends, the
answer is a result or one of the contract's errors (DESIGN §5: PTxyz); any other SQLSTATE
(such as 22023 for ``"media": null``, which left the job running until it was reaped and the
provider was called again) fails the test. A succeeded or failed result must leave the books
as audit() expects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from tests import dbutil

CONTRACT = {"PT400", "PT401", "PT402", "PT403", "PT404", "PT409", "PT429", "PT503"}
SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
GID = "{gid}"  # replaced by the generation's id when the outcome is sent

text = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=8)
scalar = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | text | st.floats(
    allow_nan=False, allow_infinity=False
)
junk = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=6)


def number(lo: int, hi: int) -> st.SearchStrategy[Any]:
    """Integers around a range, the same as integral floats (2048.0), and fractions."""
    ints = st.integers(lo - 3, hi + 3) | st.sampled_from([lo, hi, -1, 0, 2**63, -(2**63) - 1])
    return ints | ints.map(float) | st.floats(lo - 3, hi + 3, allow_nan=False) | junk


storage_key = st.sampled_from([
    f"media/{GID}/out.png", f"media/{GID}/0.png", f"media/{GID}/.env", f"media/{GID}/../x",
    "media/00000000-0000-4000-8000-000000000000/out.png", f"media/{GID}/" + "a" * 120, "",
]) | junk
media_item = st.fixed_dictionaries(
    {},
    optional={
        "storage_key": storage_key,
        "content_type": st.sampled_from(["image/png", "video/mp4", "text", "IMAGE/PNG", ""]) | junk,
        "bytes": number(1, 1099511627776),
        "width": number(1, 65535),
        "height": number(1, 65535),
        "duration_seconds": number(0, 86400),
        "extra": junk,
    },
) | junk
usage = st.fixed_dictionaries({}, optional={
    "completion_tokens": number(0, 1000000000), "prompt_tokens": junk, "total_tokens": junk,
}) | junk
output = st.fixed_dictionaries({}, optional={
    "text": st.sampled_from(["Hello", "", "   "]) | junk, "usage": usage, "other": junk,
}) | junk
outcome = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["succeeded", "failed", "running", "SUCCEEDED"]) | junk,
        "retryable": st.booleans() | junk,
        "actual_cost": number(0, 100),
        "media": st.none() | st.lists(media_item, max_size=3) | st.lists(media_item, min_size=17, max_size=17) | junk,
        "output": st.none() | output,
        "provider": st.none() | st.fixed_dictionaries({}, optional={
            "name": st.sampled_from(["local", "", "x" * 60]) | junk,
            "http_status": number(100, 599),
            "latency_ms": number(0, 86400000),
            "region": junk,
        }) | junk,
        "error": st.none() | st.fixed_dictionaries({}, optional={
            "code": st.sampled_from(["provider_error", "", "x" * 120]) | junk,
            "message": text | junk,
            "trace": junk,
        }) | junk,
        "unexpected": junk,
    },
) | junk


def with_id(value: Any, gid: str) -> Any:
    if isinstance(value, str):
        return value.replace(GID, gid)
    if isinstance(value, list):
        return [with_id(v, gid) for v in value]
    if isinstance(value, dict):
        return {k: with_id(v, gid) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def conn(module_db: dbutil.TestDatabase) -> Iterator[psycopg.Connection]:
    with psycopg.connect(module_db.owner_url, autocommit=True) as c:
        c.execute("select tests.worker_models()")
        yield c


@pytest.fixture(scope="module")
def user(conn: psycopg.Connection) -> str:
    row = conn.execute("select tests.create_user()::text").fetchone()
    assert row is not None
    return str(row[0])


PARAMS = {
    "img-test": {"prompt": "a lighthouse"},
    "chat-test": {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 500},
}


def settle(conn: psycopg.Connection, user: str, model: str, sent: Any) -> tuple[str | None, Any]:
    """Settle a freshly claimed job with ``sent``; (SQLSTATE or None, result). Rolled back."""
    with conn.transaction(force_rollback=True):
        gid = conn.execute(
            "select tests.make_queued_generation(%s, %s, 100, %s)::text", [user, model, Jsonb(PARAMS[model])]
        ).fetchone()[0]  # type: ignore[index]
        conn.execute("select tests.as_service()")
        job = conn.execute("select creditgate.service_claim_generations('fuzz', 1) -> 0").fetchone()[0]  # type: ignore[index]
        assert job["generation_id"] == gid
        try:
            with conn.transaction():
                result = conn.execute(
                    "select creditgate.service_settle_generation(%s, 'fuzz', %s, %s)",
                    [gid, job["lease_token"], Jsonb(with_id(sent, gid))],
                ).fetchone()[0]  # type: ignore[index]
        except psycopg.Error as exc:
            return exc.diag.sqlstate, None
        audit = conn.execute("select creditgate.audit()").fetchone()[0]  # type: ignore[index]
        assert audit["ok"], audit
        return None, result


@SETTINGS
@given(model=st.sampled_from(["img-test", "chat-test"]), sent=outcome)
@example(model="img-test", sent={"status": "succeeded", "media": None})
@example(model="chat-test", sent={"status": "succeeded", "media": None, "output": {"text": "Hi"}})
@example(model="img-test", sent={"status": "succeeded", "media": [
    {"storage_key": f"media/{GID}/0.png", "content_type": "image/png", "bytes": 2048.0, "width": 512.0}
]})
@example(model="chat-test", sent={"status": "succeeded", "output": {"text": "Hi", "usage": {"completion_tokens": 3.0}}})
def test_every_outcome_gets_a_result_or_a_contract_error(
    conn: psycopg.Connection, user: str, model: str, sent: Any
) -> None:
    state, result = settle(conn, user, model, sent)
    if state is None:
        assert result["status"] in ("succeeded", "failed", "queued"), result
    else:
        assert state in CONTRACT, f"SQLSTATE {state} for {sent!r}"


def test_media_null_is_no_media(conn: psycopg.Connection, user: str) -> None:
    state, result = settle(conn, user, "img-test", {"status": "succeeded", "media": None})
    assert state is None
    # An image success without media is an empty output: failed and refunded in full.
    assert (result["status"], result["refunded"], result["media"]) == ("failed", 100, [])
    state, result = settle(
        conn, user, "chat-test", {"status": "succeeded", "media": None, "output": {"text": "Hi"}}
    )
    assert state is None and result["status"] == "succeeded"
