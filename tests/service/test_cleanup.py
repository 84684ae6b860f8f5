"""Media cleanup: expired temporary and owner-deleted files go, saved and live ones stay."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from creditgate.cleanup import PurgeStats, purge_expired_media
from creditgate.db import Database
from creditgate.storage import LocalStorage, StorageError
from tests import dbutil
from tests.pgrest import connect, rpc

SIGNING = "cleanup-test-signing-secret-0123456789abcdef"


def owner(db: dbutil.TestDatabase, query: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(db.owner_url, autocommit=True, row_factory=dict_row) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


class Library:
    """Media rows of one user, each with its file in local storage."""

    def __init__(self, db: dbutil.TestDatabase, root: Path) -> None:
        self.db = db
        owner(db, "select tests.seed_models()")
        self.storage = LocalStorage(root, "http://127.0.0.1:1", SIGNING.encode())
        self.user = str(owner(db, "select tests.create_user() as id")[0]["id"])
        self.keys: dict[str, str] = {}

    def add(self, name: str, *, file: bool = True) -> str:
        media_id = str(owner(self.db, "select tests.media_for(%s) as id", [self.user])[0]["id"])
        key = owner(self.db, "select storage_key from creditgate.media where id = %s", [media_id])
        self.keys[name] = key[0]["storage_key"]
        if file:
            asyncio.run(self.storage.put(self.keys[name], name.encode(), "image/png"))
        return media_id

    def expire(self, media_id: str) -> None:
        owner(
            self.db,
            "update creditgate.media set expires_at = now() - interval '1 hour' where id = %s",
            [media_id],
        )

    def as_user(self, fn: str, media_id: str) -> None:
        with connect(self.db.api_url) as conn:
            rpc(conn, fn, {"media_id": media_id}, role="authenticated", user_id=self.user)

    def exists(self, name: str) -> bool:
        return (self.storage.root / self.keys[name]).is_file()

    def purged(self, media_id: str) -> bool:
        row = owner(self.db, "select purged_at from creditgate.media where id = %s", [media_id])
        return row[0]["purged_at"] is not None


def purge(db: dbutil.TestDatabase, storage: LocalStorage, **kwargs: Any) -> PurgeStats:
    async def go() -> PurgeStats:
        database = Database(db.api_url, min_size=1, max_size=2)
        await database.open()
        try:
            return await purge_expired_media(database, storage, **kwargs)
        finally:
            await database.close()

    return asyncio.run(go())


def test_expired_and_deleted_media_are_purged_saved_media_untouched(
    db: dbutil.TestDatabase, tmp_path: Path
) -> None:
    lib = Library(db, tmp_path / "media")
    expired = [lib.add(f"expired{i}") for i in range(5)]
    live = lib.add("live")
    saved = lib.add("saved")
    deleted = lib.add("deleted")
    gone = lib.add("gone", file=False)  # the file is already missing from storage
    lib.as_user("save_media", saved)
    lib.as_user("delete_media", deleted)
    for media_id in [*expired, gone]:
        lib.expire(media_id)
    # An expiry stamped on a saved row must not matter either.
    owner(
        db,
        "update creditgate.media set expires_at = now() - interval '1 day' where id = %s",
        [saved],
    )

    seen: list[int] = []
    stats = purge(db, lib.storage, batch_size=2, progress=lambda s: seen.append(s.purged))

    assert (stats.purged, stats.failed) == (7, 0)
    assert seen == [2, 4, 6, 7]  # progress after each batch
    for media_id in [*expired, deleted, gone]:
        assert lib.purged(media_id)
    for name in [*(f"expired{i}" for i in range(5)), "deleted"]:
        assert not lib.exists(name)
    assert lib.exists("live") and not lib.purged(live)
    assert lib.exists("saved") and not lib.purged(saved)

    again = purge(db, lib.storage)
    assert (again.purged, again.batches) == (0, 0)
    report = owner(db, "select creditgate.audit() as r")[0]["r"]
    assert report["ok"], report


class UndeletableStorage(LocalStorage):
    def __init__(self, *args: Any, refuse: set[str]) -> None:
        super().__init__(*args)
        self.refuse = refuse

    async def delete(self, key: str) -> None:
        if key in self.refuse:
            raise StorageError(f"permission denied: {key}")
        await super().delete(key)


def test_a_file_that_cannot_be_deleted_stays_listed(
    db: dbutil.TestDatabase, tmp_path: Path
) -> None:
    lib = Library(db, tmp_path / "media")
    stuck = lib.add("stuck")
    fine = lib.add("fine")
    lib.expire(stuck)
    lib.expire(fine)
    storage = UndeletableStorage(
        lib.storage.root, "http://127.0.0.1:1", SIGNING.encode(), refuse={lib.keys["stuck"]}
    )

    stats = purge(db, storage, batch_size=1)

    assert (stats.purged, stats.failed, stats.failed_keys) == (1, 1, [lib.keys["stuck"]])
    assert lib.purged(fine) and not lib.exists("fine")
    assert not lib.purged(stuck) and lib.exists("stuck")
    # Next run (storage healthy again) finishes the job.
    assert purge(db, lib.storage).purged == 1
    assert lib.purged(stuck) and not lib.exists("stuck")


@pytest.mark.parametrize("limit", [None, 1])
def test_cleanup_command(db: dbutil.TestDatabase, tmp_path: Path, limit: int | None) -> None:
    lib = Library(db, tmp_path / "media")
    ids = [lib.add(f"old{i}") for i in range(3)]
    for media_id in ids:
        lib.expire(media_id)
    env = {
        **os.environ,
        "CREDITGATE_SERVICE_DATABASE_URL": db.api_url,
        "CREDITGATE_SIGNING_SECRET": SIGNING,
        "CREDITGATE_STORAGE_ROOT": str(lib.storage.root),
        "CREDITGATE_STATE_DIR": str(tmp_path / "state"),
    }
    args = ["--batch-size", "2", *(["--limit", str(limit)] if limit else [])]
    proc = subprocess.run(
        [sys.executable, "-m", "creditgate.cli", "cleanup", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    expected = limit or 3
    assert f"purged {expected} media file(s)" in proc.stdout
    assert "batch 1:" in proc.stderr
    assert sum(lib.purged(m) for m in ids) == expected
