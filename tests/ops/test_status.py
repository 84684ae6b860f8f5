"""`creditgate status`: one screen for an operator, non-zero when something needs attention;
the same figures as Prometheus gauges on the service's /metrics."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from creditgate import ops_status
from tests import dbutil
from tests.e2e.procs import CLI, base_env
from tests.ops.helpers import CliResult, expire_lease, new_user, owner, run_cli, value
from tests.service.apiutil import running, settings_for


def status(db: dbutil.TestDatabase, *args: str) -> CliResult:
    return run_cli(db, "status", *args)


def run_all_jobs(db: dbutil.TestDatabase) -> None:
    with owner(db) as conn:
        conn.execute("set role service_role")
        conn.execute("select creditgate.service_run_due_jobs('test')")


def make_trouble(db: dbutil.TestDatabase) -> None:
    """A generation whose worker vanished (lease past expiry) and a parked delivery."""
    with owner(db) as conn:
        conn.execute(
            "select creditgate_private.webhook_add('https://example.com/hook', array['*'])"
        )
    user = new_user(db, credits=500)  # credits.added: one delivery
    with owner(db) as conn:
        gid = conn.execute(
            "select tests.make_queued_generation(%s, 'img-test', 100)", [user]
        ).fetchone()
        assert gid is not None
        conn.execute(
            "select creditgate.service_claim_generations(worker_id => 'gone', max_jobs => 1)"
        )
        expire_lease(conn, gid[0])
        conn.execute(
            "update creditgate_private.webhook_deliveries set status = 'parked',"
            " last_error = 'HTTP 500' where id = (select min(id) from"
            " creditgate_private.webhook_deliveries)"
        )
        conn.execute(
            "update creditgate_private.webhook_deliveries set status = 'delivered'"
            " where status = 'pending'"
        )


def test_all_clear_exits_zero(db: dbutil.TestDatabase) -> None:
    never = status(db)
    assert never.returncode == 1 and "no audit has run" in never.stdout
    run_all_jobs(db)
    shown = status(db)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "all clear" in shown.stdout
    for job in ("expire-credits", "reap-leases", "prune-rate-limits", "mark-media", "audit"):
        assert job in shown.stdout


def test_stuck_lease_and_parked_delivery_exit_non_zero(db: dbutil.TestDatabase) -> None:
    run_all_jobs(db)
    make_trouble(db)
    shown = status(db)
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert "1 lease(s) past expiry" in shown.stdout
    assert "1 parked webhook deliveries" in shown.stdout
    raw = status(db, "--json")
    assert raw.returncode == 1
    data = json.loads(raw.stdout)
    assert data["leases"] == {"running": 1, "expired": 1}
    assert data["outbox"]["parked"] == 1 and data["queue"]["depth"] >= 0
    assert data["audit"]["ok"] is True
    # The reaper fixes the lease; the parked delivery still needs a person.
    run_all_jobs(db)
    with owner(db) as conn:
        conn.execute("select creditgate_private.run_job('reap-leases', 'test')")
    after = json.loads(status(db, "--json").stdout)
    assert after["leases"]["expired"] == 0
    assert after["attention"] == ["1 parked webhook deliveries"]


def test_unreadable_status_exits_two(db: dbutil.TestDatabase) -> None:
    env = {**base_env(), "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    result = subprocess.run([*CLI, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == ops_status.EXIT_ERROR


def test_metrics_gauges(
    db: dbutil.TestDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_all_jobs(db)
    make_trouble(db)
    monkeypatch.setattr(ops_status, "_last_refresh", 0.0)
    with running(settings_for(db, tmp_path)) as url:
        text = httpx.get(f"{url}/metrics").text
    assert "creditgate_leases_expired 1.0" in text
    assert "creditgate_leases_running 1.0" in text
    assert "creditgate_webhook_parked 1.0" in text
    assert "creditgate_audit_last_ok 1.0" in text
    assert 'creditgate_job_last_ok{job="reap-leases"} 1.0' in text
    assert "creditgate_attention_items 2.0" in text
    assert value(db, "select count(*) from creditgate_private.audit_runs") == 1
