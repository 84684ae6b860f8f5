"""The hand-written result interfaces (supabase/types/results.ts) match what each RPC returns.

``creditgate types`` derives results.schema.json from the interfaces (draft-07,
additionalProperties false, integers, uuid and date-time formats). Here every function of
schema creditgate must have a schema, and a real result of each (several shapes each, see
tests/devkit/results.py) must validate against it, formats checked. A field added, renamed,
dropped or retyped in SQL without its interface, or the reverse, fails this module.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from jsonschema import Draft7Validator, FormatChecker

from creditgate import typegen
from tests import dbutil
from tests.devkit import results

SCHEMA = json.loads((dbutil.ROOT / typegen.RESULTS_SCHEMA).read_text())
FORMATS = FormatChecker()


def validator(fn: str) -> Draft7Validator:
    schema = dict(SCHEMA["properties"][fn], definitions=SCHEMA["definitions"])
    return Draft7Validator(schema, format_checker=FORMATS)


def problems(fn: str, value: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in validator(fn).iter_errors(value)
    ]


@pytest.fixture(scope="module")
def samples() -> Iterator[results.Samples]:
    db = dbutil.new_database("cg_types")
    try:
        yield results.collect(db)
    finally:
        dbutil.drop(db)


def api_functions() -> set[str]:
    db = dbutil.template()
    with psycopg.connect(dbutil.TestDatabase(db).owner_url) as conn:
        rows = conn.execute(
            "select p.proname from pg_proc as p join pg_namespace as n on n.oid = p.pronamespace"
            " where n.nspname = 'creditgate' and p.prokind = 'f'"
            " and not exists (select 1 from pg_depend as d where d.objid = p.oid and d.deptype = 'e')"
        ).fetchall()
    return {name for (name,) in rows}


def test_the_schema_is_strict() -> None:
    # Checked so the validation below can fail: formats are enforced (rfc3339-validator is
    # installed) and no object in the schema admits unknown keys unless it is a map.
    assert FORMATS.conforms("2026-12-07T04:50:00.123+00:00", "date-time")
    assert not FORMATS.conforms("yesterday", "date-time")
    assert not FORMATS.conforms("not-a-uuid", "uuid")

    def walk(node: Any, where: str) -> Iterator[str]:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                if node.get("additionalProperties") is not False:
                    yield where
            for key, child in node.items():
                yield from walk(child, f"{where}/{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                yield from walk(child, f"{where}/{i}")

    assert list(walk(SCHEMA, "#")) == []


def test_every_rpc_has_a_result_interface() -> None:
    assert set(SCHEMA["properties"]) == api_functions(), (
        "add the function's result to RpcResults in supabase/types/results.ts "
        "(or drop the one that no longer exists), then run `creditgate types`"
    )


def test_every_rpc_result_matches_its_interface(samples: results.Samples) -> None:
    missing = sorted(set(SCHEMA["properties"]) - set(samples))
    assert missing == [], f"no real result collected for {missing} (tests/devkit/results.py)"
    failures = [
        f"{fn} [{label}] {problem}\n    result: {json.dumps(value, default=str)[:400]}"
        for fn, cases in sorted(samples.items())
        for label, value in cases
        for problem in problems(fn, value)
    ]
    assert failures == [], "\n".join(failures)


def test_the_samples_cover_each_shape(samples: results.Samples) -> None:
    """The scenario really reaches the variants the interfaces describe."""
    flat = {(fn, label): value for fn, cases in samples.items() for label, value in cases}
    assert flat[("request_generation", "replayed")]["replayed"] is True
    assert flat[("service_claim_generations", "nothing queued")] == []
    kinds = {job["kind"] for job in flat[("service_claim_generations", "four jobs")]}
    assert kinds == {"image", "edit", "chat", "video"}
    edit = next(j for j in flat[("service_claim_generations", "four jobs")] if j["kind"] == "edit")
    assert edit["init_media"] is not None
    image = next(j for j in flat[("service_claim_generations", "four jobs")] if j["kind"] == "image")
    assert image["loras"] and image["loras"][0]["source"]
    assert flat[("service_settle_generation", "failed, retryable: requeued")]["requeued"] is True
    assert flat[("service_settle_generation", "succeeded with media")]["media"]
    assert flat[("service_clawback", "nothing left to take")]["entry_id"] is None
    assert flat[("get_balance", "with expiring lots and a cap")]["expiring"]
    assert flat[("get_balance", "with expiring lots and a cap")]["daily"]["cap"] == 100000
    assert flat[("get_balance", "uncapped plan, nothing expiring")]["daily"]["cap"] is None
    assert flat[("service_expired_media", "due")]
    assert flat[("service_reap_expired_leases", "one lease lapsed")]["requeued"] + flat[
        ("service_reap_expired_leases", "one lease lapsed")]["failed"] == 1
    assert flat[("admin_stats", "after the scenario")]["providers"]
    # The held checkout is the one finding (it waits for an operator); so checks with
    # samples are covered too.
    failing = [c for c in flat[("audit", "everything")]["checks"] if c["failures"]]
    assert [c["name"] for c in failing] == ["checkout_holds_unresolved"]
    assert failing[0]["samples"]
    assert flat[("service_apply_checkout", "held: the amount does not match the pack")]["held"]
    assert flat[("service_stripe_dispute_won", "won before it was seen")]["entry_id"] is None


@pytest.mark.parametrize(
    ("fn", "label", "mutate"),
    [
        ("get_balance", "with expiring lots and a cap", lambda r: r.update(lease_token="t")),
        ("get_balance", "with expiring lots and a cap", lambda r: r.pop("available")),
        ("request_generation", "image", lambda r: r.update(cost="33")),
        ("request_generation", "image", lambda r: r.update(generation_id="g-1")),
        ("quote", "video", lambda r: r["params"].update(steps=20)),
        ("quote", "chat", lambda r: r["breakdown"].update(total=1.5)),
        ("service_settle_generation", "succeeded with media", lambda r: r.update(status="done")),
        ("service_claim_generations", "four jobs", lambda r: r[0].update(lease_expires_at="soon")),
        ("audit", "everything", lambda r: r["checks"][0].pop("samples")),
    ],
)
def test_a_drifted_result_is_caught(
    samples: results.Samples, fn: str, label: str, mutate: Any
) -> None:
    """The check is precise: one extra, missing or mistyped field fails it."""
    original = dict(samples[fn])[label]
    assert problems(fn, original) == []
    drifted = copy.deepcopy(original)
    mutate(drifted)
    assert problems(fn, drifted) != []
