"""Real results of every creditgate RPC, called the way the Data API calls them.

``collect(db)`` runs one scenario on a fresh database (users, a pack, models, requests,
a worker claiming and settling, clawbacks, expiry, the purge sweep, admin calls) and returns
``{function name: [(label, result), ...]}``: each result exactly as ``select creditgate.fn(...)``
returned it through ``authenticator`` with the caller's role, i.e. the JSON a supabase-js or
supabase-py client receives. Several labels per function cover each shape a result takes
(fresh and replayed, empty and full lists, succeeded and failed settles, null and set fields).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from tests import dbutil, pgrest

Samples = dict[str, list[tuple[str, Any]]]

UUID = {"generation_id": "uuid"}
NOW = datetime.now(UTC)


def _owner(db: dbutil.TestDatabase, query: str, params: Any = None) -> Any:
    with psycopg.connect(db.owner_url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        row = cur.fetchone() if cur.description else None
    return row[0] if row else None


def collect(db: dbutil.TestDatabase) -> Samples:
    out: Samples = {}

    def rec(fn: str, label: str, value: Any) -> Any:
        out.setdefault(fn, []).append((label, value))
        return value

    _owner(db, "select tests.seed_models()")
    _owner(
        db,
        "insert into creditgate.credit_packs (id, name, credits, price_cents, stripe_price_id,"
        " category, priority, expires_after) values"
        " ('pack-devkit', 'Devkit pack', 500, 500, 'price_devkit', 'paid', 60, interval '90 days')",
    )
    alice = str(_owner(db, "select tests.create_user()"))
    admin = str(_owner(db, "select tests.create_user()"))
    broke = str(_owner(db, "select tests.create_user()"))
    _owner(db, "select tests.make_admin(%s)", [admin])
    # A plan with no daily cap in the caps set below: get_balance's cap is then null.
    _owner(db, "update creditgate.balances set plan = 'unlimited' where user_id = %s", [broke])
    image = str(_owner(db, "select tests.media_for(%s)", [alice]))
    other_image = str(_owner(db, "select tests.media_for(%s)", [alice]))

    with pgrest.connect(db.api_url) as conn:

        def user(fn: str, label: str, args: dict[str, Any] | None = None, *, who: str = alice,
                 casts: dict[str, str] | None = None) -> Any:
            return rec(fn, label, pgrest.rpc(conn, fn, args, role="authenticated", user_id=who,
                                             headers={"cf-connecting-ip": "203.0.113.7"},
                                             casts=casts))

        def service(fn: str, label: str, args: dict[str, Any] | None = None,
                    casts: dict[str, str] | None = None) -> Any:
            return rec(fn, label, pgrest.rpc(conn, fn, args, role="service_role", casts=casts))

        # Admin calls first, so the caps and the disabled model below are in force.
        user("is_admin", "not an admin")
        user("is_admin", "an admin", who=admin)
        user("admin_set_setting", "plan caps", {"key": "plan_daily_caps",
                                               "value": {"free": 100000, "pro": 500000}}, who=admin)
        user("admin_set_model_enabled", "disable", {"model_id": "img-off", "enabled": False}, who=admin)
        user("admin_set_model_enabled", "enable", {"model_id": "video-test", "enabled": True}, who=admin)
        user("admin_add_credits", "fresh", {"user_id": alice, "amount": 5000, "reason": "devkit",
                                            "idempotency_key": "devkit-admin-1"}, who=admin)
        user("admin_add_credits", "replayed", {"user_id": alice, "amount": 5000, "reason": "devkit",
                                               "idempotency_key": "devkit-admin-1"}, who=admin)

        service("service_grant_credits", "expiring grant", {
            "user_id": alice, "amount": 300, "entry_type": "grant",
            "idempotency_key": "devkit-grant-1", "expires_at": NOW + timedelta(days=3),
            "priority": 90, "reason": "devkit", "metadata": {"campaign": "devkit"},
        })
        service("service_grant_credits", "replayed", {
            "user_id": alice, "amount": 300, "entry_type": "grant",
            "idempotency_key": "devkit-grant-1", "expires_at": NOW + timedelta(days=3),
            "priority": 90, "reason": "devkit", "metadata": {"campaign": "devkit"},
        })
        checkout = {"event_id": "evt_devkit_1", "user_id": alice, "price_id": "price_devkit",
                    "quantity": 2, "amount_total": 1000, "currency": "usd",
                    "session_id": "cs_devkit_1"}
        service("service_apply_checkout", "granted", checkout)
        service("service_apply_checkout", "replayed", checkout)
        service("service_apply_checkout", "held: the amount does not match the pack", {
            **checkout, "event_id": "evt_devkit_2", "session_id": "cs_devkit_2", "amount_total": 1})
        user("get_balance", "with expiring lots and a cap")
        user("get_balance", "uncapped plan, nothing expiring", who=broke)

        # Quotes of every kind (anon may quote too).
        rec("quote", "anon image", pgrest.rpc(conn, "quote", {"model_id": "img-test", "params": {
            "prompt": "a lighthouse", "seed": 42, "loras": [{"id": "lora-a", "weight": 0.8}]}},
            role="anon"))
        user("quote", "edit", {"model_id": "edit-test", "params": {
            "prompt": "make it night", "init_media_id": image, "loras": [{"id": "lora-b"}]}})
        user("quote", "video", {"model_id": "video-test", "params": {"prompt": "waves"}})
        user("quote", "chat", {"model_id": "chat-test", "params": {
            "messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "Hello there"}]}})

        requests = {
            "image": ("img-test", {"prompt": "a lighthouse", "loras": [{"id": "lora-a"}]}),
            "edit": ("edit-test", {"prompt": "make it night", "init_media_id": image}),
            "chat": ("chat-test", {"messages": [{"role": "user", "content": "Hi"}]}),
            "video": ("video-test", {"prompt": "waves", "duration_seconds": 2}),
            "to cancel": ("img-test", {"prompt": "never mind"}),
        }
        generated: dict[str, str] = {}
        for label, (model, params) in requests.items():
            result = user("request_generation", label, {
                "model_id": model, "params": params, "idempotency_key": "devkit-" + label.replace(" ", "-")})
            generated[label] = result["generation_id"]
        user("request_generation", "replayed", {
            "model_id": "img-test", "params": requests["image"][1], "idempotency_key": "devkit-image"})
        user("cancel_generation", "queued", {"generation_id": generated["to cancel"]}, casts=UUID)

        user("save_media", "save", {"media_id": image}, casts={"media_id": "uuid"})
        user("delete_media", "delete", {"media_id": other_image}, casts={"media_id": "uuid"})
        user("delete_media", "delete again", {"media_id": other_image}, casts={"media_id": "uuid"})

        # The worker: claim everything queued (image, edit, chat, video), then settle each way.
        jobs = service("service_claim_generations", "four jobs",
                       {"worker_id": "devkit-w1", "max_jobs": 4, "lease_seconds": 60})
        service("service_claim_generations", "nothing queued", {"worker_id": "devkit-w1"})
        by_kind = {job["kind"]: job for job in jobs}

        def lease(job: dict[str, Any]) -> dict[str, Any]:
            return {"generation_id": job["generation_id"], "worker_id": "devkit-w1",
                    "lease_token": job["lease_token"]}

        service("service_heartbeat", "extended", {**lease(by_kind["image"]), "lease_seconds": 90},
                casts=UUID)
        img = by_kind["image"]
        succeeded = {"status": "succeeded", "media": [{
            "storage_key": f"media/{img['generation_id']}/0.png", "content_type": "image/png",
            "bytes": 2048, "width": 512, "height": 512}],
            "provider": {"name": "local", "http_status": 200, "latency_ms": 812}}
        service("service_settle_generation", "succeeded with media",
                {**lease(img), "outcome": succeeded}, casts=UUID)
        service("service_settle_generation", "replayed",
                {**lease(img), "outcome": succeeded}, casts=UUID)
        service("service_settle_generation", "chat under its price", {**lease(by_kind["chat"]),
                "outcome": {"status": "succeeded", "output": {"text": "Hello!",
                            "usage": {"completion_tokens": 3}},
                            "provider": {"name": "local", "http_status": 200, "latency_ms": 40}}},
                casts=UUID)
        service("service_settle_generation", "failed, retryable: requeued", {**lease(by_kind["edit"]),
                "outcome": {"status": "failed", "retryable": True,
                            "error": {"code": "provider_unavailable", "message": "503"},
                            "provider": {"name": "local", "http_status": 503, "latency_ms": 5}}},
                casts=UUID)
        service("service_settle_generation", "failed for good", {**lease(by_kind["video"]),
                "outcome": {"status": "failed", "retryable": False,
                            "error": {"code": "bad_request", "message": "no"}}},
                casts=UUID)

        # The requeued edit job: claimed again with a short lease that the reaper ends.
        service("service_claim_generations", "one edit job, attempt 2",
                {"worker_id": "devkit-w2", "max_jobs": 1, "lease_seconds": 5})
        service("service_reap_expired_leases", "one lease lapsed",
                {"now": NOW + timedelta(hours=1)})
        service("service_reap_expired_leases", "nothing to reap", {})

        service("service_clawback", "taken", {"event_id": "evt_devkit_refund", "user_id": alice,
                                              "amount": 100, "reason": "refund"})
        service("service_clawback", "replayed", {"event_id": "evt_devkit_refund", "user_id": alice,
                                                 "amount": 100, "reason": "refund"})
        disputed = str(_owner(db, "select tests.create_user()"))
        service("service_clawback", "more than is left: a shortfall", {
            "event_id": "evt_devkit_dispute", "user_id": disputed, "amount": 5000,
            "reason": "dispute"})
        service("service_clawback", "nothing left to take", {
            "event_id": "evt_devkit_dispute_2", "user_id": disputed, "amount": 10,
            "reason": "dispute"})

        # Stripe refunds and disputes of alice's checkout (1000 cents bought 1000 credits).
        payment = {"user_id": alice, "payment_id": "pi_devkit_1"}
        service("service_stripe_refund", "partial refund", {
            **payment, "refund_id": "re_devkit_1", "credits": 1000, "payment_amount": 1000,
            "amount_refunded": 250, "reason": "requested_by_customer"})
        service("service_stripe_refund", "replayed", {
            **payment, "refund_id": "re_devkit_1", "credits": 1000, "payment_amount": 1000,
            "amount_refunded": 250, "reason": "requested_by_customer"})
        service("service_stripe_dispute", "dispute", {
            **payment, "dispute_id": "dp_devkit_1", "credits": 1000, "reason": "fraudulent"})
        service("service_stripe_dispute_won", "won", {**payment, "dispute_id": "dp_devkit_1"})
        service("service_stripe_dispute_won", "won before it was seen", {
            **payment, "payment_id": "pi_devkit_2", "dispute_id": "dp_devkit_2"})

        service("service_expire_credits", "lots lapsed", {"now": NOW + timedelta(days=400)})
        service("service_expire_credits", "nothing lapsed", {})
        expired = service("service_expired_media", "due", {"max_items": 10,
                                                          "now": NOW + timedelta(days=30)})
        service("service_expired_media", "due now: the deleted one", {"max_items": 10})
        service("service_mark_media_purged", "purged",
                {"media_ids": "{" + ",".join(m["media_id"] for m in expired) + "}"}, casts={"media_ids": "uuid[]"})

        # Operations: jobs, status, webhooks (an endpoint on loopback, allowed by setting).
        service("service_run_due_jobs", "every job due", {"runner": "devkit"})
        service("service_run_due_jobs", "nothing due", {"runner": "devkit"})
        service("service_ops_status", "after the scenario", {})
        user("admin_set_setting", "allow loopback webhooks",
             {"key": "webhook_allow_loopback", "value": "true"}, who=admin,
             casts={"value": "jsonb"})
        endpoint = user("admin_add_webhook_endpoint", "added", {
            "url": "http://127.0.0.1:9/hooks", "event_types": "{*}",
            "description": "devkit"}, who=admin, casts={"event_types": "text[]"})
        user("admin_list_webhook_endpoints", "one endpoint", who=admin)
        user("admin_add_credits", "an event for the endpoint", {
            "user_id": alice, "amount": 10, "reason": "devkit",
            "idempotency_key": "devkit-admin-2"}, who=admin)
        deliveries = service("service_claim_webhook_deliveries", "due deliveries",
                             {"worker_id": "devkit-hooks", "max_items": 1, "lease_seconds": 30})
        service("service_claim_webhook_deliveries", "none due", {"worker_id": "devkit-hooks"})
        if deliveries:
            d = deliveries[0]
            service("service_finish_webhook_delivery", "failed: retried later", {
                "delivery_id": d["delivery_id"], "worker_id": "devkit-hooks",
                "lease_token": d["lease_token"],
                "outcome": {"http_status": 500, "latency_ms": 12, "error": "server error"}})
            user("admin_webhook_deliveries", "for the endpoint",
                 {"endpoint_id": endpoint["endpoint_id"]}, who=admin)
            user("admin_redeliver_webhook", "again", {"delivery_id": d["delivery_id"]}, who=admin)
        user("admin_disable_webhook_endpoint", "disabled",
             {"endpoint_id": endpoint["endpoint_id"]}, who=admin)
        user("admin_daily_stats", "last week", {"since": NOW - timedelta(days=7)}, who=admin)
        user("admin_find_user", "by id", {"query": alice}, who=admin)
        user("admin_list_models", "every model", who=admin)
        user("admin_get_settings", "every setting", who=admin)
        user("admin_run_audit", "everything", who=admin)
        # service_run_due_jobs above ran the daily audit, which stored a run.
        user("admin_audit_runs", "newest first", {"max_items": 5}, who=admin)

        user("admin_stats", "after the scenario", {"since": NOW - timedelta(days=1)}, who=admin)
        user("admin_stats", "an empty window", {"since": NOW + timedelta(days=1)}, who=admin)
        service("audit", "everything", {})
        service("audit", "since", {"since": NOW - timedelta(days=1)})
    return out
