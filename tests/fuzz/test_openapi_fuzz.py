"""Schemathesis against the real service: every operation in /openapi.json, fuzzed.

The app runs under uvicorn on 127.0.0.1 (a free port) against a fresh test database with
the test models seeded (``tests.seed_models()``), one user holding plenty of credits, a
generation with media and a few queued generations of theirs, and one admin. Every operation
is called with generated data (schema-valid and schema-violating: schemathesis's examples,
coverage and fuzzing phases, positive and negative modes) twice: with a valid HS256 bearer
token (the admin's for admin operations, so their handlers run, the user's otherwise), and
without any token. Every response must pass:

- ``not_a_server_error``: no 5xx, whatever the input, but for the contract's 503s
  ``maintenance`` and ``model_unavailable`` (DESIGN.md §5), which the fuzzer provokes on
  purpose (a disabled model, maintenance switched on through the admin route);
- ``status_code_conformance``: the status is documented for the operation;
- ``content_type_conformance``: the Content-Type is the documented one;
- ``response_schema_conformance``: the body validates against the documented schema.

Random strings rarely name a real model, generation or setting, so hooks mix real ones
(and plausible generation params) into what schemathesis draws: the handlers past the 404s
get fuzzed too.

Bounded: at most 50 generated cases per operation with a token and 25 without (the coverage
phase adds its deterministic ones), about 20 s in all. ``CREDITGATE_FUZZ_EXAMPLES=300`` for a
longer hunt.

The document is the app's own (``build_openapi`` over the real operations): the first test
checks that the running service serves exactly it. It is loaded at import with
``schemathesis.openapi.from_dict``, not through ``schemathesis.pytest.from_fixture`` (which
would fetch it from the live URL), because that lazy loader reads ``request.node._nodeid``,
which pytest 9 no longer has.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from creditgate.api import OPERATIONS
from creditgate.api.openapi import build_openapi
from creditgate.app import _MEDIA_FILES
from creditgate.auth import mint_token
from tests import dbutil
from tests.service.apiutil import JWT_SECRET, owner, running, settings_for

# DESIGN.md §5: a 503 is the contract's answer while the app is in maintenance or the model
# is switched off (the fuzzer disables models through the admin route, and 'img-off' is one).
CONTRACT_503 = {"maintenance", "model_unavailable"}


def no_server_error(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """``not_a_server_error``, except the contract's two 503s (and nothing else)."""
    if response.status_code == 503:
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
        if code in CONTRACT_503:
            return None
    return not_a_server_error(ctx, response, case)


CHECKS = [
    no_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = int(os.environ.get("CREDITGATE_FUZZ_EXAMPLES", "50"))
CREDITS = 10**12
MODEL_IDS = ["img-test", "edit-test", "video-test", "chat-test", "img-off", "no-such-model"]
SETTING_KEYS = [
    "maintenance_mode", "signup_bonus", "signup_bonus_expires_days", "plan_daily_caps",
    "media_ttl_hours", "max_prompt_length", "max_attempts", "lease_seconds",
    "max_lease_seconds", "no_such_setting",
]
# Every params key some model kind knows (db/functions/generation/pricing.sql), plus one none do.
PARAM_KEYS = [
    "prompt", "negative_prompt", "width", "height", "steps", "seed", "cfg_scale", "loras",
    "init_media_id", "strength", "duration_seconds", "fps", "messages", "max_tokens",
    "temperature", "unknown",
]


@dataclass
class Known:
    """Real ids in the database, for the hooks (filled in by the ``service`` fixture)."""

    user_id: str = ""
    generation_ids: list[str] = field(default_factory=list)
    media_ids: list[str] = field(default_factory=list)


KNOWN = Known()


@dataclass(frozen=True)
class Service:
    url: str
    db: dbutil.TestDatabase
    user_token: str
    admin_token: str


@pytest.fixture(scope="module")
def service(
    module_db: dbutil.TestDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    with owner(module_db) as conn:
        conn.execute("select tests.seed_models()")
        user, admin = (
            str(conn.execute("select tests.create_user()").fetchone()[0]) for _ in range(2)
        )
        conn.execute("select tests.make_admin(%s)", [admin])
        conn.execute(
            "select creditgate_private.grant_credits(%s::uuid, %s::bigint, 'grant',"
            " 'fuzz-seed', 'paid')",
            [user, CREDITS],
        )
        media = str(conn.execute("select tests.media_for(%s::uuid)", [user]).fetchone()[0])
        queued = [
            str(conn.execute("select tests.request_as(%s::uuid)", [user]).fetchone()[0])
            for _ in range(3)
        ]
        done = conn.execute(
            "select generation_id::text from creditgate.media where id = %s", [media]
        ).fetchone()[0]
    KNOWN.user_id, KNOWN.generation_ids, KNOWN.media_ids = user, [done, *queued], [media]
    root: Path = tmp_path_factory.mktemp("fuzz")
    with running(settings_for(module_db, root)) as url:
        yield Service(url, module_db, mint_token(JWT_SECRET, user), mint_token(JWT_SECRET, admin))


@pytest.fixture
def fresh_settings(service: Service) -> None:
    """Each test starts from the seeded models and default settings with daily caps lifted
    (the admin routes are fuzzed too: an earlier test may have disabled a model, switched
    maintenance mode on or capped a plan)."""
    with psycopg.connect(service.db.owner_url, autocommit=True) as conn:
        conn.execute("update creditgate.models set enabled = id <> 'img-off'")
        conn.execute("delete from creditgate_private.settings")
        conn.execute(
            "insert into creditgate_private.settings (key, value) values ('plan_daily_caps', %s)",
            [Jsonb({"free": None, "pro": None})],
        )


DOCUMENT = build_openapi(OPERATIONS, [_MEDIA_FILES])
schema = schemathesis.openapi.from_dict(DOCUMENT)


# --- hooks: mix real ids and plausible params into the generated data ------------------------

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.sampled_from([0, 8, 64, 512, 2048]),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
)
ANY_MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant", "robot"]),
         "content": st.text(max_size=40)}
    )
    | st.dictionaries(st.text(max_size=8), JSON_SCALARS, max_size=3),
    max_size=4,
)
PARAM_VALUE = st.one_of(
    JSON_SCALARS,
    st.lists(st.sampled_from(["lora-a", "lora-b", "lora-x"]) | JSON_SCALARS, max_size=3),
    ANY_MESSAGES,
    st.builds(lambda: KNOWN.media_ids[0]),
)
ANY_PARAMS = st.dictionaries(st.sampled_from(PARAM_KEYS), PARAM_VALUE, max_size=6)

PROMPT = st.text(min_size=1, max_size=60).filter(str.strip)
SIDE = st.integers(8, 128).map(lambda n: n * 8)  # 64..1024, multiples of 8
IMAGE = {
    "negative_prompt": st.text(max_size=20), "width": SIDE, "height": SIDE, "steps": st.integers(1, 100),
    "seed": st.integers(0, 2**32 - 1), "cfg_scale": st.floats(1, 30),
    "loras": st.lists(st.just("lora-a"), max_size=1),
}
VALID_PARAMS = {
    "img-test": st.fixed_dictionaries({"prompt": PROMPT}, optional=IMAGE),
    "edit-test": st.fixed_dictionaries(
        {"prompt": PROMPT, "init_media_id": st.builds(lambda: KNOWN.media_ids[0])},
        optional={**IMAGE, "strength": st.floats(0, 1), "loras": st.just(["lora-b"])},
    ),
    "video-test": st.fixed_dictionaries(
        {"prompt": PROMPT},
        optional={"width": st.sampled_from([512, 640, 1280]), "height": st.sampled_from([64, 512]),
                  "duration_seconds": st.integers(1, 10), "fps": st.integers(1, 30)},
    ),
    "chat-test": st.fixed_dictionaries(
        {"messages": st.lists(
            st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                   "content": PROMPT}),
            min_size=1, max_size=3)},
        optional={"max_tokens": st.integers(1, 4096), "temperature": st.floats(0, 2)},
    ),
}
# A real model with valid params, sometimes with a few keys replaced by anything.
REAL_REQUEST = st.sampled_from(sorted(VALID_PARAMS)).flatmap(
    lambda model: st.fixed_dictionaries({
        "model_id": st.just(model),
        "params": st.tuples(
            VALID_PARAMS[model],
            st.dictionaries(st.sampled_from(PARAM_KEYS), PARAM_VALUE, max_size=2) | st.just({}),
        ).map(lambda pair: {**pair[0], **pair[1]}),
    })
)
ANY_REQUEST = st.fixed_dictionaries(
    {"model_id": st.sampled_from(MODEL_IDS), "params": ANY_PARAMS}
)
SETTING_VALUES = st.sampled_from([
    True, False, None, 0, 1, 3, 24, 120, 1000, 3600, 10**9, -1, 1.5, "1",
    {"free": 100_000, "pro": None}, {"free": None}, {"Free": 1}, [],
])


def _is(context: Any, method: str, path: str) -> bool:
    op = context.operation
    return op is not None and op.method.upper() == method and op.path == path


@schema.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
    if not isinstance(body, dict):
        return st.just(body)
    if _is(context, "POST", "/v1/quote") or _is(context, "POST", "/v1/generations"):
        return st.one_of(st.just(body), REAL_REQUEST, REAL_REQUEST, ANY_REQUEST)
    if _is(context, "PUT", "/v1/admin/settings/{key}") and "value" in body:
        return st.one_of(st.just(body), SETTING_VALUES.map(lambda value: {"value": value}))
    if _is(context, "POST", "/v1/admin/credits") and "user_id" in body:
        return st.sampled_from([body, {**body, "user_id": KNOWN.user_id}])
    return st.just(body)


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: Any) -> st.SearchStrategy[Any]:
    if not isinstance(path_parameters, dict):
        return st.just(path_parameters)
    op = context.operation
    path = op.path if op is not None else ""
    real: list[str] = []
    if path.startswith("/v1/generations/"):
        real = KNOWN.generation_ids
    elif path.startswith("/v1/media/"):
        real = KNOWN.media_ids
    elif path == "/v1/admin/models/{id}":
        real = MODEL_IDS
    if real and "id" in path_parameters:
        return st.sampled_from([path_parameters] + [{**path_parameters, "id": i} for i in real])
    if path == "/v1/admin/settings/{key}" and "key" in path_parameters:
        return st.sampled_from(
            [path_parameters] + [{**path_parameters, "key": k} for k in SETTING_KEYS]
        )
    return st.just(path_parameters)


# --- the tests ----------------------------------------------------------------------------


def test_the_fuzzed_document_is_the_served_one(service: Service) -> None:
    response = httpx.get(f"{service.url}/openapi.json")
    assert response.status_code == 200
    assert response.json() == DOCUMENT


def _token_for(service: Service, tags: list[str] | None) -> str:
    return service.admin_token if "admin" in (tags or []) else service.user_token


@pytest.mark.usefixtures("fresh_settings")
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_authenticated(case: schemathesis.Case, service: Service) -> None:
    token = _token_for(service, case.operation.tags)
    case.call_and_validate(
        base_url=service.url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS
    )


@pytest.mark.usefixtures("fresh_settings")
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES // 2,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_anonymous(case: schemathesis.Case, service: Service) -> None:
    case.call_and_validate(base_url=service.url, checks=CHECKS)
