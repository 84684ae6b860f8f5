"""Real creditgate errors, as the Data API sends them to supabase-js and supabase-py.

``collect(db)`` provokes each intentional error a client app must explain (PT402, PT429
rate_limited and daily_cap_reached, PT409, PT503 model_unavailable and maintenance) through
PostgREST-style calls and returns PostgREST's error body for each: ``{code, message,
details, hint}`` with the SQLSTATE, MESSAGE, DETAIL (a JSON string) and HINT.
"""

from __future__ import annotations

from typing import Any

import psycopg

from tests import dbutil, pgrest


def _body(exc: psycopg.Error) -> dict[str, Any]:
    diag = exc.diag
    return {"code": diag.sqlstate, "message": diag.message_primary,
            "details": diag.message_detail, "hint": diag.message_hint}


def collect(db: dbutil.TestDatabase) -> dict[str, dict[str, Any]]:
    with psycopg.connect(db.owner_url, autocommit=True) as owner:
        owner.execute("select tests.seed_models()")
        user = str(owner.execute("select tests.create_user()").fetchone()[0])  # type: ignore[index]
        admin = str(owner.execute("select tests.create_user()").fetchone()[0])  # type: ignore[index]
        owner.execute("select tests.make_admin(%s)", [admin])
        owner.execute(
            "insert into creditgate_private.rate_limit_rules (id, scope, kind, window_seconds,"
            " max_requests) values ('devkit_user', 'user', 'chat', 3600, 1)"
        )
    out: dict[str, dict[str, Any]] = {}
    with pgrest.connect(db.api_url) as conn:

        def request(label: str, model_id: str, params: dict[str, Any], key: str) -> None:
            try:
                pgrest.rpc(conn, "request_generation",
                           {"model_id": model_id, "params": params, "idempotency_key": key},
                           role="authenticated", user_id=user)
            except psycopg.Error as exc:
                out[label] = _body(exc)
                return
            raise AssertionError(f"{label}: request_generation succeeded")

        def setting(key: str, value: str) -> None:
            pgrest.rpc(conn, "admin_set_setting", {"key": key, "value": value},
                       casts={"value": "jsonb"}, role="authenticated", user_id=admin)

        # A chargeback leaves the user 10 credits; an image costs 33.
        pgrest.rpc(conn, "service_clawback", {"event_id": "evt_devkit", "user_id": user,
                                              "amount": 990, "reason": "dispute"})
        request("insufficient_credits", "img-test", {"prompt": "x"}, "k-poor")
        hi = {"messages": [{"role": "user", "content": "hi"}]}
        pgrest.rpc(conn, "request_generation",
                   {"model_id": "chat-test", "params": hi, "idempotency_key": "k-chat-1"},
                   role="authenticated", user_id=user)
        request("rate_limited", "chat-test", hi, "k-chat-2")
        request("idempotency_key_reused", "chat-test",
                {"messages": [{"role": "user", "content": "other"}]}, "k-chat-1")
        request("model_unavailable", "img-off", {"prompt": "x"}, "k-off")
        setting("plan_daily_caps", '{"free": 5}')
        request("daily_cap_reached", "img-test", {"prompt": "x"}, "k-cap")
        setting("maintenance_mode", "true")
        request("maintenance", "img-test", {"prompt": "x"}, "k-m")
    return out
