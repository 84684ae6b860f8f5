"""The supabase-py example: mypy --strict checks it (and catches a wrong result field), its
TypedDicts match the result schemas, and real creditgate errors map to the right messages."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from postgrest.exceptions import APIError

from creditgate import typegen
from tests import dbutil, pgrest

ROOT = dbutil.ROOT
EXAMPLE = ROOT / "examples" / "supabase-py" / "creditgate_example.py"
SCHEMA = json.loads((ROOT / typegen.RESULTS_SCHEMA).read_text())


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("creditgate_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["creditgate_example"] = module
    spec.loader.exec_module(module)
    return module


example = load_example()


def mypy(*files: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-version",
         "3.11", "--config-file", str(ROOT / "pyproject.toml"), *map(str, files)],
        capture_output=True, text=True, cwd=cwd, timeout=300,
        env={"MYPYPATH": str(EXAMPLE.parent), "PATH": "/usr/bin:/bin"},
    )


def test_example_passes_mypy_strict() -> None:
    result = mypy(EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found in 1 source file" in result.stdout


def test_mypy_catches_a_wrong_result_field(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(
        "from creditgate_example import BalanceResult, RequestGenerationResult\n"
        "\n"
        "def show(balance: BalanceResult, result: RequestGenerationResult) -> str:\n"
        "    ok: int = balance['available'] + result['cost']\n"
        "    return f\"{ok} {balance['owed']}\" + result['generation_id'] + result['cost']\n"
    )
    result = mypy(planted, cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    # line 4 (right fields, right types) passes; line 5's mistakes are each reported.
    assert "planted.py:4:" not in result.stdout
    assert 'planted.py:5: error: TypedDict "BalanceResult" has no key "owed"' in result.stdout
    assert 'planted.py:5: error: Unsupported operand types for + ("str" and "int")' in (
        result.stdout)


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


def mismatches(td: Any, node: dict[str, Any], where: str) -> list[str]:
    """Where a TypedDict's keys (required and optional) differ from the schema's object."""
    node = resolve(node)
    props, required = node["properties"], set(node.get("required", []))
    out = []
    if td.__required_keys__ != required:
        out.append(f"{where}: required {sorted(td.__required_keys__)} != schema {sorted(required)}")
    if td.__optional_keys__ != set(props) - required:
        out.append(f"{where}: optional {sorted(td.__optional_keys__)} != schema")
    hints = typing.get_type_hints(td)
    for key, hint in hints.items():
        if key not in props:
            continue
        union = typing.get_origin(hint) in (typing.Union, type(int | None))
        for candidate in typing.get_args(hint) if union else [hint]:
            if typing.is_typeddict(candidate):
                out += mismatches(candidate, props[key], f"{where}.{key}")
            elif typing.get_origin(candidate) is list and typing.is_typeddict(
                typing.get_args(candidate)[0]
            ):
                out += mismatches(typing.get_args(candidate)[0], resolve(props[key])["items"],
                                  f"{where}.{key}[]")
    return out


@pytest.mark.parametrize(
    ("fn", "name"),
    [
        ("get_balance", "BalanceResult"),
        ("quote", "QuoteResult"),
        ("request_generation", "RequestGenerationResult"),
        ("cancel_generation", "CancelGenerationResult"),
    ],
)
def test_typeddicts_match_the_result_schema(fn: str, name: str) -> None:
    assert mismatches(getattr(example, name), SCHEMA["properties"][fn], fn) == []


def test_a_typeddict_that_drifts_is_caught() -> None:
    class Drifted(typing.TypedDict):
        balance: int
        available: int
        plan: str
        expiring: list[Any]

    assert mismatches(Drifted, SCHEMA["properties"]["get_balance"], "get_balance") != []


# --- errors ----------------------------------------------------------------------------------


def api_error(exc: psycopg.Error) -> APIError:
    """The error body PostgREST sends for a raised PTxyz, as supabase-py receives it."""
    diag = exc.diag
    return APIError({"code": diag.sqlstate, "message": diag.message_primary,
                     "details": diag.message_detail, "hint": diag.message_hint})


def error_of(conn: psycopg.Connection, fn: str, args: dict[str, Any], **kw: Any) -> APIError:
    with pytest.raises(psycopg.Error) as caught:
        pgrest.rpc(conn, fn, args, **kw)
    return api_error(caught.value)


def test_real_errors_map_to_messages(db: dbutil.TestDatabase) -> None:
    with psycopg.connect(db.owner_url, autocommit=True) as owner:
        owner.execute("select tests.seed_models()")
        user = str(owner.execute("select tests.create_user()").fetchone()[0])  # type: ignore[index]
        admin = str(owner.execute("select tests.create_user()").fetchone()[0])  # type: ignore[index]
        owner.execute("select tests.make_admin(%s)", [admin])
        owner.execute(
            "insert into creditgate_private.rate_limit_rules (id, scope, kind, window_seconds,"
            " max_requests) values ('devkit_user', 'user', 'chat', 3600, 1)"
        )
    as_user = {"role": "authenticated", "user_id": user}
    with pgrest.connect(db.api_url) as conn:
        # A chargeback leaves the user 10 credits; an image costs 33.
        pgrest.rpc(conn, "service_clawback", {"event_id": "evt_devkit", "user_id": user,
                                              "amount": 990, "reason": "dispute"})
        poor = example.describe(error_of(conn, "request_generation", {
            "model_id": "img-test", "params": {"prompt": "x"}, "idempotency_key": "k-big"},
            **as_user))
        chat = {"model_id": "chat-test", "params": {"messages": [{"role": "user", "content": "hi"}]}}
        pgrest.rpc(conn, "request_generation", {**chat, "idempotency_key": "k-chat-1"}, **as_user)
        limited = example.describe(error_of(conn, "request_generation", {
            **chat, "idempotency_key": "k-chat-2"}, **as_user))
        reused = example.describe(error_of(conn, "request_generation", {
            "model_id": "chat-test", "params": {"messages": [{"role": "user", "content": "other"}]},
            "idempotency_key": "k-chat-1"}, **as_user))
        off = example.describe(error_of(conn, "request_generation", {
            "model_id": "img-off", "params": {"prompt": "x"}, "idempotency_key": "k-off"}, **as_user))
        pgrest.rpc(conn, "admin_set_setting", {"key": "maintenance_mode", "value": "true"},
                   casts={"value": "jsonb"},
                   role="authenticated", user_id=admin)
        paused = example.describe(error_of(conn, "request_generation", {
            "model_id": "img-test", "params": {"prompt": "x"}, "idempotency_key": "k-m"}, **as_user))

    assert (poor.code, poor.reason) == ("PT402", "insufficient_credits")
    assert set(poor.details) == {"required", "available"}
    assert poor.user_message == (f"Not enough credits: this costs {poor.details['required']}, "
                                 f"you have {poor.details['available']}.")
    assert poor.details == {"required": 33, "available": 10}

    assert (limited.code, limited.reason) == ("PT429", "rate_limited")
    assert set(limited.details) == {"scope", "retry_after_seconds"}
    assert limited.retry_after_seconds is not None and 1 <= limited.retry_after_seconds <= 3600
    assert limited.user_message == (
        f"Too many requests: try again in {limited.retry_after_seconds} seconds.")

    assert (reused.code, reused.reason) == ("PT409", "idempotency_key_reused")
    assert reused.user_message.startswith("This request key was already used")
    assert reused.retry_after_seconds is None

    assert (off.code, off.reason) == ("PT503", "model_unavailable")
    assert off.user_message == "This model is not available right now; pick another one."
    assert (paused.code, paused.reason) == ("PT503", "maintenance")
    assert paused.user_message.startswith("Generation is paused for maintenance")
