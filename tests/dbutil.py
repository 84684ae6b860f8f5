"""Test databases: one migrated template per test run, cheap clones for each test.

The template is built from nothing each run: bootstrap (as a superuser), every migration
applied as ``creditgate_deployer`` (NOSUPERUSER CREATEROLE BYPASSRLS, like Supabase's
``postgres``), then the test-only extensions (pgTAP, plpgsql_check) and ``db/testing``.
"""

from __future__ import annotations

import atexit
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from creditgate import localdb, migrate

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("CREDITGATE_ADMIN_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
RUN_ID = uuid.uuid4().hex[:8]

_lock = threading.Lock()
_template: str | None = None
_created: list[str] = []


@dataclass(frozen=True)
class TestDatabase:
    name: str

    def url(self, user: str = localdb.DEPLOYER_ROLE) -> str:
        return localdb.dsn_for(ADMIN_URL, dbname=self.name, user=user)

    @property
    def owner_url(self) -> str:
        """The deployer role: owns every creditgate object (like Supabase's postgres)."""
        return self.url()

    @property
    def admin_url(self) -> str:
        return localdb.dsn_for(ADMIN_URL, dbname=self.name)

    @property
    def api_url(self) -> str:
        """How PostgREST connects: as authenticator, then set_config('role', ...)."""
        return self.url("authenticator")


def prepare_template(name: str) -> None:
    localdb.drop_database(ADMIN_URL, name)
    localdb.create_database(ADMIN_URL, name)
    localdb.bootstrap(ADMIN_URL, name)
    migrate.apply(localdb.dsn_for(ADMIN_URL, dbname=name, user=localdb.DEPLOYER_ROLE))
    with psycopg.connect(localdb.dsn_for(ADMIN_URL, dbname=name), autocommit=True) as conn:
        conn.execute("set client_min_messages = warning")
        conn.execute("create extension if not exists pgtap")
        conn.execute("create extension if not exists plpgsql_check")
    with psycopg.connect(
        localdb.dsn_for(ADMIN_URL, dbname=name, user=localdb.DEPLOYER_ROLE), autocommit=True
    ) as conn:
        conn.execute("set client_min_messages = warning")
        for path in sorted((ROOT / "db" / "testing").glob("*.sql")):
            conn.execute(path.read_bytes(), prepare=False)


def template() -> str:
    global _template
    with _lock:
        if _template is None:
            name = f"cg_tmpl_{RUN_ID}"
            _created.append(name)
            prepare_template(name)
            _template = name
        return _template


def new_database(prefix: str = "cg_t") -> TestDatabase:
    tmpl = template()
    name = f"{prefix}_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    with _lock:
        localdb.create_database(ADMIN_URL, name, template=tmpl)
        _created.append(name)
    return TestDatabase(name)


def drop(db: TestDatabase) -> None:
    localdb.drop_database(ADMIN_URL, db.name)
    with _lock:
        if db.name in _created:
            _created.remove(db.name)


@atexit.register
def _cleanup() -> None:
    for name in list(_created):
        try:
            localdb.drop_database(ADMIN_URL, name)
        except psycopg.Error:
            pass
