"""Purge media files whose time is up: ``creditgate cleanup``.

The database decides what is due (``service_expired_media``: unsaved media past their TTL,
and media their owner deleted; saved media never expire). This module only deletes those
files from storage and reports them back with ``service_mark_media_purged``, batch by
batch. A file already missing from storage counts as deleted, so a run interrupted between
the two steps is simply finished by the next one. A file that cannot be deleted (storage
error) is left unmarked and retried by the next run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from creditgate.config import Settings
from creditgate.db import Arg, Database
from creditgate.observability import get_logger
from creditgate.storage import NotFound, S3Storage, Storage, StorageError
from creditgate.wiring import make_storage

__all__ = ["PurgeStats", "purge_expired_media", "run_cleanup"]

DEFAULT_BATCH = 500

log = get_logger("creditgate.cleanup")


@dataclass
class PurgeStats:
    purged: int = 0  # files deleted (or already gone) and marked purged
    failed: int = 0  # files storage refused to delete; retried next run
    batches: int = 0
    failed_keys: list[str] = field(default_factory=list)


async def purge_expired_media(
    db: Database,
    storage: Storage,
    *,
    batch_size: int = DEFAULT_BATCH,
    limit: int | None = None,
    progress: Callable[[PurgeStats], None] | None = None,
) -> PurgeStats:
    """Delete due media files and mark them purged until none are left (or ``limit``)."""
    stats = PurgeStats()
    failed_ids: set[str] = set()
    while limit is None or stats.purged < limit:
        size = batch_size if limit is None else min(batch_size, limit - stats.purged)
        # Files that failed stay listed; ask for enough to get past them.
        items: list[dict[str, Any]] = (
            await db.call(
                "service_expired_media",
                {"max_items": Arg(min(size + len(failed_ids), 10_000), "integer")},
                role="service_role",
            )
            or []
        )
        todo = [item for item in items if str(item["media_id"]) not in failed_ids][:size]
        if not todo:
            break
        done: list[str] = []
        for item in todo:
            media_id, key = str(item["media_id"]), str(item["storage_key"])
            try:
                await storage.delete(key)  # an absent file is not an error
            except NotFound:
                pass
            except StorageError as exc:
                log.warning(
                    "could not delete media file",
                    media_id=media_id,
                    storage_key=key,
                    error=str(exc),
                )
                failed_ids.add(media_id)
                stats.failed += 1
                stats.failed_keys.append(key)
                continue
            done.append(media_id)
        if done:
            result = await db.call(
                "service_mark_media_purged",
                {"media_ids": Arg(done, "uuid[]")},
                role="service_role",
            )
            stats.purged += len(done)
            log.info("media purged", files=len(done), marked=(result or {}).get("purged"))
        stats.batches += 1
        if progress is not None:
            progress(stats)
    return stats


async def run_cleanup(
    settings: Settings,
    *,
    batch_size: int = DEFAULT_BATCH,
    limit: int | None = None,
    progress: Callable[[PurgeStats], None] | None = None,
) -> PurgeStats:
    """`creditgate cleanup`: :func:`purge_expired_media` with the configured db and storage."""
    db = Database(settings.service_database_url, min_size=1, max_size=2)
    storage = make_storage(settings)
    await db.open()
    try:
        return await purge_expired_media(
            db, storage, batch_size=batch_size, limit=limit, progress=progress
        )
    finally:
        await db.close()
        if isinstance(storage, S3Storage):
            storage.close()
