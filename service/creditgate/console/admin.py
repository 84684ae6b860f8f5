"""Admin pages. The route refuses non-admins (``is_admin()``, see framework.page) and every
SQL function they call checks again inside (``creditgate_private.require_admin``).

Overview charts come from ``admin_daily_stats`` (per UTC day) and ``admin_stats``
(totals); user look-up from ``admin_find_user``; grants from ``admin_add_credits``; models
and settings from ``admin_list_models`` / ``admin_set_model_enabled`` and
``admin_get_settings`` / ``admin_set_setting``; audits from ``admin_run_audit``. Stored audit
runs and webhook deliveries are shown when the operations functions
``creditgate.admin_audit_runs(max_items integer)`` and
``creditgate.admin_webhook_deliveries(max_items integer)`` exist, and a placeholder otherwise.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from uuid import UUID

from psycopg.types.json import Jsonb
from starlette.responses import Response

from creditgate.console.charts import STATUS_COLORS, Chart, bar_chart, line_chart
from creditgate.console.framework import Page, redirect
from creditgate.db import ApiError, Arg

NOTICES = {
    "granted": "Credits granted.",
    "model_saved": "Model updated.",
    "setting_saved": "Setting saved.",
}
PERIODS = {"7": 7, "30": 30, "90": 90}
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
_SETTING_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
OPTIONAL_FUNCTIONS = {
    "audit_runs": "creditgate.admin_audit_runs(integer)",
    "webhook_deliveries": "creditgate.admin_webhook_deliveries(integer)",
}


def _notice(current: Page) -> str | None:
    return NOTICES.get(current.request.query_params.get("notice", ""))


async def _function_exists(current: Page, name: str) -> bool:
    signature = OPTIONAL_FUNCTIONS[name]
    found = await current.services.db.query_as(
        "select to_regprocedure(%(s)s) is not null",
        {"s": signature},
        role="authenticated",
        claims=current.claims,
        headers=current.db_headers,
    )
    return found is True


def _series(
    rows: list[dict[str, Any]], days: list[str], key: str, name_key: str
) -> dict[str, list[float]]:
    names = sorted({str(r[name_key]) for r in rows})
    index = {day: i for i, day in enumerate(days)}
    series = {name: [0.0] * len(days) for name in names}
    for row in rows:
        i = index.get(str(row["day"]))
        if i is not None:
            series[str(row[name_key])][i] = float(row[key])
    return series


def _charts(daily: dict[str, Any]) -> list[Any]:
    days = [str(d) for d in daily.get("days", [])]
    credits = daily.get("credits", [])
    flows = {
        label: [float(row[key]) for row in credits]
        for label, key in (
            ("sold", "sold"),
            ("granted", "granted"),
            ("spent", "spent"),
            ("refunded", "refunded"),
            ("expired", "expired"),
        )
    }
    outstanding = {"outstanding": [float(r["balance"]) for r in daily.get("outstanding", [])]}
    providers = daily.get("providers", [])
    by_day = {str(p["day"]): p for p in providers}
    failure = {
        "failure rate": [
            float(by_day[d]["failure_rate"]) * 100 if d in by_day else 0.0 for d in days
        ]
    }
    latency = {
        "p50": [float(by_day[d]["p50_latency_ms"] or 0) if d in by_day else 0.0 for d in days],
        "p95": [float(by_day[d]["p95_latency_ms"] or 0) if d in by_day else 0.0 for d in days],
    }
    status = _series(daily.get("generations_by_status", []), days, "count", "status")
    by_model = _series(daily.get("generations_by_model", []), days, "count", "model_id")
    return [
        line_chart(
            Chart(
                "credits",
                "Credits per day: sold, granted, spent, refunded, expired",
                days,
                flows,
                "credits",
            )
        ),
        line_chart(
            Chart(
                "outstanding",
                "Outstanding balances at the end of each day (liability)",
                days,
                outstanding,
                "credits",
            )
        ),
        bar_chart(
            Chart("status", "Generations per day by status", days, status, colors=STATUS_COLORS)
        ),
        bar_chart(Chart("models", "Generations per day by model", days, by_model)),
        line_chart(Chart("failures", "Provider failure rate per day", days, failure, "%")),
        line_chart(Chart("latency", "Provider latency per day (p50 and p95)", days, latency, "ms")),
    ]


async def overview(current: Page) -> Response:
    period = current.request.query_params.get("days", "30")
    days = PERIODS.get(period, 30)
    since = datetime.now(UTC) - timedelta(days=days - 1)
    daily = await current.call("admin_daily_stats", {"since": Arg(since, "timestamptz")})
    totals = await current.call("admin_stats", {"since": Arg(since, "timestamptz")})
    return current.render(
        "admin/overview.html",
        charts=_charts(daily),
        totals=totals,
        days=days,
        periods=list(PERIODS),
    )


async def users(current: Page) -> Response:
    query = current.request.query_params.get("q", "").strip()[:320]
    found = None
    error = None
    if query:
        try:
            found = await current.call("admin_find_user", {"query": Arg(query, "text")})
        except ApiError as exc:
            if exc.code not in ("not_found", "invalid_request"):
                raise
            error = "No user has that email or id." if exc.code == "not_found" else None
            error = error or "Type an email address or a user id."
    return current.render(
        "admin/users.html",
        query=query,
        found=found,
        error=error,
        notice=_notice(current),
        grant_key=str(uuid.uuid4()),
    )


async def grant(current: Page) -> Response:
    try:
        user_id = UUID(str(current.request.path_params["id"]))
    except ValueError:
        return current.error(404, "not_found")
    raw_amount = current.field("amount", 20).strip()
    reason = current.field("reason", 500).strip()
    key = current.field("grant_key", 100)
    try:
        UUID(key)
    except ValueError:
        key = str(uuid.uuid4())
    if not raw_amount.isdigit():
        raise ApiError(
            400,
            "invalid_request",
            "",
            {"field": "amount", "reason": "a whole number of credits above zero"},
        )
    if not reason:
        raise ApiError(
            400, "invalid_request", "", {"field": "reason", "reason": "say why, for the ledger"}
        )
    await current.call(
        "admin_add_credits",
        {
            "user_id": Arg(user_id, "uuid"),
            "amount": Arg(int(raw_amount), "bigint"),
            "reason": Arg(reason, "text"),
            "idempotency_key": Arg(f"console-grant:{key}", "text"),
        },
    )
    return redirect(f"/console/admin/users?q={quote(str(user_id))}&notice=granted")


async def models(current: Page) -> Response:
    listed = await current.call("admin_list_models")
    return current.render("admin/models.html", models=listed, notice=_notice(current))


async def set_model(current: Page) -> Response:
    model_id = str(current.request.path_params["id"])
    if not _MODEL_ID.fullmatch(model_id):
        return current.error(404, "not_found")
    enabled = current.field("enabled", 10) == "true"
    await current.call(
        "admin_set_model_enabled",
        {"model_id": Arg(model_id, "text"), "enabled": Arg(enabled, "boolean")},
    )
    return redirect("/console/admin/models?notice=model_saved")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "json"


async def settings(current: Page) -> Response:
    listed = await current.call("admin_get_settings")
    rows = [
        {**s, "kind": _kind(s["default"] if s["value"] is None else s["value"])} for s in listed
    ]
    return current.render("admin/settings.html", settings=rows, notice=_notice(current))


def _setting_value(kind: str, raw: str) -> Any:
    raw = raw.strip()
    if kind == "boolean":
        return raw == "true"
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        raise ApiError(
            400, "invalid_request", "", {"field": "value", "reason": "not a number or JSON value"}
        ) from None


async def set_setting(current: Page) -> Response:
    key = current.field("key", 64)
    if not _SETTING_KEY.fullmatch(key):
        raise ApiError(400, "invalid_request", "", {"field": "key", "reason": "unknown setting"})
    value = _setting_value(current.field("kind", 10), current.field("value", 10000))
    await current.call(
        "admin_set_setting", {"key": Arg(key, "text"), "value": Arg(Jsonb(value), "jsonb")}
    )
    return redirect("/console/admin/settings?notice=setting_saved")


async def _optional_list(current: Page, name: str) -> list[Any] | None:
    if not await _function_exists(current, name):
        return None
    rows = await current.call(f"admin_{name}", {"max_items": Arg(50, "integer")})
    return list(rows or [])


async def audit(current: Page) -> Response:
    result = None
    if current.request.method == "POST":
        result = await current.call("admin_run_audit")
    return current.render(
        "admin/audit.html", result=result, runs=await _optional_list(current, "audit_runs")
    )


async def webhooks(current: Page) -> Response:
    return current.render(
        "admin/webhooks.html", deliveries=await _optional_list(current, "webhook_deliveries")
    )
