"""Issue a one-time link with a chosen lifetime (the service reads the same file)."""

from __future__ import annotations

from pathlib import Path

from creditgate.console.links import issue_link


def issue(path: Path, user_id: str, email: str, ttl: int) -> str:
    return issue_link(path, user_id, email, ttl=ttl)
