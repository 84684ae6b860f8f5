"""Configuration, read once from the environment into one settings object."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_DATABASE = "creditgate"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


@dataclass(frozen=True)
class DatabaseSettings:
    # Superuser connection used only to create and bootstrap the local database.
    admin_url: str = field(default_factory=lambda: _env("CREDITGATE_ADMIN_URL", DEFAULT_ADMIN_URL))
    # The database creditgate runs on. Unset: the embedded local database.
    url: str | None = field(default_factory=lambda: os.environ.get("DATABASE_URL") or None)
    local_name: str = field(default_factory=lambda: _env("CREDITGATE_DB_NAME", DEFAULT_DATABASE))
