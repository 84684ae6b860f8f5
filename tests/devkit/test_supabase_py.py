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

import pytest
from postgrest.exceptions import APIError

from creditgate import typegen
from tests import dbutil
from tests.devkit import errors

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
        "    return f\"{ok} {balance['credits']}\" + result['generation_id'] + result['cost']\n"
    )
    result = mypy(planted, cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    # line 4 (right fields, right types) passes; line 5's mistakes are each reported.
    assert "planted.py:4:" not in result.stdout
    assert 'planted.py:5: error: TypedDict "BalanceResult" has no key "credits"' in result.stdout
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


def test_real_errors_map_to_messages(db: dbutil.TestDatabase) -> None:
    bodies = errors.collect(db)
    said = {label: example.describe(APIError(body)) for label, body in bodies.items()}

    poor = said["insufficient_credits"]
    assert (poor.code, poor.reason) == ("PT402", "insufficient_credits")
    assert poor.details == {"required": 33, "available": 10}
    assert poor.user_message == "Not enough credits: this costs 33, you have 10."

    limited = said["rate_limited"]
    assert (limited.code, limited.reason) == ("PT429", "rate_limited")
    assert set(limited.details) == {"scope", "retry_after_seconds"}
    assert limited.retry_after_seconds is not None and 1 <= limited.retry_after_seconds <= 3600
    assert limited.user_message == (
        f"Too many requests: try again in {limited.retry_after_seconds} seconds.")

    capped = said["daily_cap_reached"]
    assert (capped.code, capped.reason) == ("PT429", "daily_cap_reached")
    assert set(capped.details) == {"cap", "used", "resets_at"}
    assert capped.user_message == (
        f"Daily limit reached (3 of 5 credits); it resets at {capped.details['resets_at']}.")
    assert capped.retry_after_seconds is None

    reused = said["idempotency_key_reused"]
    assert (reused.code, reused.reason) == ("PT409", "idempotency_key_reused")
    assert reused.user_message == (
        "This request key was already used for a different request: make a new one.")

    off = said["model_unavailable"]
    assert (off.code, off.reason) == ("PT503", "model_unavailable")
    assert off.user_message == "This model is not available right now; pick another one."
    paused = said["maintenance"]
    assert (paused.code, paused.reason) == ("PT503", "maintenance")
    assert paused.user_message == "Generation is paused for maintenance; please try again later."
