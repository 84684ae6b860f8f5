"""Account deletion over real connections and real HTTP (issue 17 item 6).

The user's auth.users row is deleted as ``supabase_auth_admin``, on its own connection, as
GoTrue does. Then: the deleted user's still-valid JWT gets a clean 401 or 404 (never a 500)
on every route of the API; ``creditgate cleanup`` deletes the user's stored files; a job
the real worker is running at the provider when the user is deleted settles afterwards,
keeps nothing personal, and its uploaded file is purged too.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from creditgate.api.routes import OPERATIONS
from creditgate.cleanup import purge_expired_media
from creditgate.db import Database
from creditgate.storage import LocalStorage
from tests import dbutil
from tests.fakes import FakeA1111
from tests.service.apiutil import (
    auth,
    create_user,
    owner,
    running,
    scalar,
    seed_models,
    settings_for,
)
from tests.service.test_worker import SECRET, generation, harness, media_rows, new_user, seed

SIGNING = "deletion-test-signing-secret-0123456789abcdef"


def delete_as_gotrue(db: dbutil.TestDatabase, user_id: str) -> None:
    """``delete from auth.users`` as supabase_auth_admin, in its own transaction."""
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("set local role supabase_auth_admin")
            cur = conn.execute("delete from auth.users where id = %s", [user_id])
            assert cur.rowcount == 1


def audit_ok(db: dbutil.TestDatabase) -> None:
    report = scalar(db, "select creditgate.audit()")
    assert report["ok"], report


@pytest.fixture
def server(db: dbutil.TestDatabase, tmp_path: Path) -> Iterator[httpx.Client]:
    seed_models(db)
    with (
        running(settings_for(db, tmp_path)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


def _request(
    client: httpx.Client, method: str, path: str, headers: dict[str, str], body: Any
) -> httpx.Response:
    return client.request(method, path, headers=headers, json=body)


def test_deleted_users_jwt_gets_401_or_404_on_every_route(
    db: dbutil.TestDatabase, server: httpx.Client
) -> None:
    user_id = create_user(db, admin=True)
    with owner(db) as conn:
        media_id = str(conn.execute("select tests.media_for(%s)", [user_id]).fetchone()[0])  # type: ignore[index]
        queued = str(conn.execute("select tests.make_queued_generation(%s)", [user_id]).fetchone()[0])  # type: ignore[index]
    headers = auth(user_id)
    generation = {"model_id": "img-test", "params": {"prompt": "a lighthouse"}}
    # One valid request per route, so that each gets past validation to its SQL.
    plans: dict[tuple[str, str], tuple[str, Any, dict[str, str]]] = {
        ("GET", "/v1/models"): ("/v1/models", None, {}),
        ("POST", "/v1/quote"): ("/v1/quote", generation, {}),
        ("POST", "/v1/generations"): (
            "/v1/generations",
            generation,
            {"Idempotency-Key": str(uuid.uuid4())},
        ),
        ("GET", "/v1/generations"): ("/v1/generations", None, {}),
        ("GET", "/v1/generations/{id}"): (f"/v1/generations/{queued}", None, {}),
        ("POST", "/v1/generations/{id}/cancel"): (f"/v1/generations/{queued}/cancel", None, {}),
        ("POST", "/v1/media/{id}/save"): (f"/v1/media/{media_id}/save", None, {}),
        ("DELETE", "/v1/media/{id}"): (f"/v1/media/{media_id}", None, {}),
        ("GET", "/v1/balance"): ("/v1/balance", None, {}),
        ("GET", "/v1/ledger"): ("/v1/ledger", None, {}),
        ("POST", "/v1/webhooks/stripe"): ("/v1/webhooks/stripe", {"id": "evt_x"}, {}),
        ("POST", "/v1/admin/credits"): (
            "/v1/admin/credits",
            {"user_id": user_id, "amount": 5, "reason": "goodwill"},
            {"Idempotency-Key": str(uuid.uuid4())},
        ),
        ("PUT", "/v1/admin/settings/{key}"): (
            "/v1/admin/settings/maintenance_mode",
            {"value": False},
            {},
        ),
        ("PUT", "/v1/admin/models/{id}"): ("/v1/admin/models/img-test", {"enabled": True}, {}),
        ("GET", "/v1/admin/stats"): ("/v1/admin/stats", None, {}),
        ("GET", "/healthz"): ("/healthz", None, {}),
        ("GET", "/readyz"): ("/readyz", None, {}),
        ("GET", "/metrics"): ("/metrics", None, {}),
        ("GET", "/openapi.json"): ("/openapi.json", None, {}),
    }
    assert {(op.method, op.path) for op in OPERATIONS} == set(plans), "a route has no plan here"

    # While the account exists, the token works (reads only: nothing changes yet).
    for key in [("GET", "/v1/generations"), ("GET", "/v1/generations/{id}"), ("GET", "/v1/ledger"),
                ("GET", "/v1/balance"), ("POST", "/v1/quote"), ("GET", "/v1/admin/stats")]:
        path, body, extra = plans[key]
        response = _request(server, key[0], path, {**headers, **extra}, body)
        assert response.status_code == 200, (key, response.text)

    delete_as_gotrue(db, user_id)

    for op in OPERATIONS:
        path, body, extra = plans[(op.method, op.path)]
        response = _request(server, op.method, path, {**headers, **extra}, body)
        assert response.status_code < 500, (op.method, op.path, response.text)
        if op.auth == "none":
            continue
        assert response.status_code in (401, 404), (op.method, op.path, response.text)
        error = response.json()["error"]
        assert error["request_id"] == response.headers["x-request-id"]
        if response.status_code == 401:
            assert error["code"] == "not_authenticated", (op.path, error)

    # Nothing the deleted user's token sent changed anything.
    assert scalar(db, "select balance from creditgate.balances where user_id = %s", [user_id]) == 0
    assert scalar(
        db,
        "select count(*) from creditgate.generations where user_id = %s and status = 'queued'",
        [user_id],
    ) == 0
    audit_ok(db)


def test_cleanup_purges_a_deleted_users_files(db: dbutil.TestDatabase, tmp_path: Path) -> None:
    root = tmp_path / "media"
    storage = LocalStorage(root, "http://127.0.0.1:1", SIGNING.encode())
    with owner(db) as conn:
        conn.execute("select tests.seed_models()")
    user_id = create_user(db)
    other_id = create_user(db)

    def add(owner_id: str, *, saved: bool = False) -> str:
        with owner(db) as conn:
            media_id = str(conn.execute("select tests.media_for(%s)", [owner_id]).fetchone()[0])  # type: ignore[index]
            if saved:
                conn.execute(
                    "update creditgate.media set saved = true, expires_at = null where id = %s",
                    [media_id],
                )
        key = str(scalar(db, "select storage_key from creditgate.media where id = %s", [media_id]))
        asyncio.run(storage.put(key, b"png", "image/png"))
        return key

    mine = [add(user_id), add(user_id, saved=True), add(user_id, saved=True)]
    theirs = [add(other_id), add(other_id, saved=True)]
    assert all((root / key).is_file() for key in mine + theirs)

    delete_as_gotrue(db, user_id)
    assert scalar(db, "select count(*) from creditgate.media where user_id = %s", [user_id]) == 0

    env = {
        **os.environ,
        "CREDITGATE_SERVICE_DATABASE_URL": db.api_url,
        "CREDITGATE_SIGNING_SECRET": SIGNING,
        "CREDITGATE_STORAGE_ROOT": str(root),
        "CREDITGATE_STATE_DIR": str(tmp_path / "state"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "creditgate.cli", "cleanup", "--batch-size", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "purged 3 media file(s)" in proc.stdout
    assert not any((root / key).exists() for key in mine), "the deleted user's files remain"
    assert all((root / key).is_file() for key in theirs), "another user's files were deleted"
    # Nothing is left to purge, and a second run purges nothing.
    assert scalar(db, "select count(*) from creditgate_private.media_purges") == 0
    again = subprocess.run(
        [sys.executable, "-m", "creditgate.cli", "cleanup"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert "purged 0 media file(s)" in again.stdout
    audit_ok(db)


def test_a_running_job_settles_after_the_deletion_and_its_file_is_purged(
    db: dbutil.TestDatabase, tmp_path: Path
) -> None:
    with FakeA1111(keys={SECRET}, hang_seconds=2.0) as fake:
        seed(db, fake.url)
        user_id = new_user(db)

        async def scenario() -> tuple[str, list[str], LocalStorage]:
            async with harness(db, tmp_path, worker_concurrency=1) as h:
                requested = await h.request(user_id, "img-test", {"prompt": "PRIVATE-E2E"})
                gid = str(requested["generation_id"])
                await h.wait_status(gid, {"running"})  # now waiting at the provider
                await asyncio.to_thread(delete_as_gotrue, db, user_id)
                await h.wait_status(gid, {"succeeded", "failed"}, seconds=20)
                return gid, h.stored_files(), h.storage

        gid, files, storage = asyncio.run(scenario())

    row = generation(db, gid)
    assert row["status"] == "succeeded" and row["cost"] == 33
    assert row["params"] == {} and row["output"] is None
    assert media_rows(db, gid) == []
    assert len(files) == 1 and files[0].startswith(f"media/{gid}/"), files
    assert scalar(
        db, "select count(*) from creditgate_private.media_purges where storage_key = %s", [files[0]]
    ) == 1
    assert scalar(db, "select balance from creditgate.balances where user_id = %s", [user_id]) == 0

    async def purge() -> int:
        database = Database(db.api_url, min_size=1, max_size=2)
        await database.open()
        try:
            return (await purge_expired_media(database, storage)).purged
        finally:
            await database.close()

    assert asyncio.run(purge()) == 1
    assert not (storage.root / files[0]).exists()
    audit_ok(db)
