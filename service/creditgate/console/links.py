"""One-time login links and the sessions they open, for the embedded default.

``creditgate up`` issues a link for the dev user and one for the dev admin
(:func:`issue_link`); the service redeems a link once (:func:`consume_link`) and opens a
console session (:func:`open_session`) whose access tokens it mints with the local JWT
secret. Logging out closes the session (:func:`close_session`), so a copied cookie is
refused afterwards.

Both live in one small JSON file in the state directory, shared by the `up` process and
the service, guarded by an exclusive ``flock``. Only the SHA-256 of a link's token is
stored. There is no database table on purpose: the links exist only on the embedded
default, which is one machine, and hosted deployments log in through Supabase Auth.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "LINK_TTL_SECONDS",
    "DevIdentity",
    "close_session",
    "consume_link",
    "issue_link",
    "open_session",
    "session_identity",
]

LINK_TTL_SECONDS = 15 * 60


@dataclass(frozen=True)
class DevIdentity:
    user_id: str
    email: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@contextlib.contextmanager
def _store(path: Path) -> Iterator[dict[str, Any]]:
    """The file's content under an exclusive lock; written back (atomically) on exit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            try:
                data = json.loads(path.read_text())
            except (FileNotFoundError, ValueError):
                data = {}
            data.setdefault("links", {})
            data.setdefault("sessions", {})
            now = time.time()
            for table in ("links", "sessions"):
                data[table] = {k: v for k, v in data[table].items() if v["expires_at"] > now}
            yield data
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(data))
            tmp.chmod(0o600)
            tmp.replace(path)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def issue_link(path: Path, user_id: str, email: str, ttl: int = LINK_TTL_SECONDS) -> str:
    """A fresh single-use token for ``user_id``, valid for ``ttl`` seconds."""
    token = secrets.token_urlsafe(32)
    with _store(path) as data:
        data["links"][_digest(token)] = {
            "user_id": user_id,
            "email": email,
            "expires_at": time.time() + ttl,
        }
    return token


def consume_link(path: Path, token: str) -> DevIdentity | None:
    """Redeem a token: its identity the first time (if not expired), None ever after."""
    if not token or len(token) > 200:
        return None
    with _store(path) as data:
        entry = data["links"].pop(_digest(token), None)
    if entry is None:
        return None
    return DevIdentity(str(entry["user_id"]), str(entry["email"]))


def open_session(path: Path, identity: DevIdentity, max_age: int) -> str:
    session_id = secrets.token_urlsafe(24)
    with _store(path) as data:
        data["sessions"][session_id] = {
            "user_id": identity.user_id,
            "email": identity.email,
            "expires_at": time.time() + max_age,
        }
    return session_id


def session_identity(path: Path, session_id: str) -> DevIdentity | None:
    """Who an open, unexpired session belongs to; None once closed or expired."""
    with _store(path) as data:
        entry = data["sessions"].get(session_id)
    if entry is None:
        return None
    return DevIdentity(str(entry["user_id"]), str(entry["email"]))


def close_session(path: Path, session_id: str) -> None:
    with _store(path) as data:
        data["sessions"].pop(session_id, None)
