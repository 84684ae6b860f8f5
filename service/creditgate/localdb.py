"""The embedded default database: a local PostgreSQL prepared like a Supabase project.

``ensure_database`` creates the database when absent and applies ``db/bootstrap`` (roles,
``auth`` schema, ``extensions``) as a superuser; migrations then run as
``creditgate_deployer``, a NOSUPERUSER CREATEROLE BYPASSRLS role like a hosted project's
``postgres`` role, so local runs prove what Supabase will accept.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from creditgate.migrate import project_root

DEPLOYER_ROLE = "creditgate_deployer"


def bootstrap_files() -> list[Path]:
    return sorted((project_root() / "db" / "bootstrap").glob("*.sql"))


def dsn_for(dsn: str, *, dbname: str | None = None, user: str | None = None) -> str:
    """The same server as ``dsn`` with another database and/or user."""
    params = conninfo_to_dict(dsn)
    if dbname is not None:
        params["dbname"] = dbname
    if user is not None:
        params["user"] = user
        params.pop("password", None)
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


def database_exists(admin_dsn: str, dbname: str) -> bool:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        row = conn.execute("select 1 from pg_database where datname = %s", [dbname]).fetchone()
    return row is not None


def create_database(admin_dsn: str, dbname: str, *, template: str | None = None) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        query = sql.SQL("create database {}").format(sql.Identifier(dbname))
        if template:
            query = sql.SQL("create database {} template {}").format(
                sql.Identifier(dbname), sql.Identifier(template)
            )
        conn.execute(query)


def drop_database(admin_dsn: str, dbname: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname))
        )


def bootstrap(admin_dsn: str, dbname: str) -> None:
    """Apply the Supabase-parity bootstrap to ``dbname`` (idempotent)."""
    with psycopg.connect(dsn_for(admin_dsn, dbname=dbname), autocommit=True) as conn:
        conn.execute("set client_min_messages = error")
        for path in bootstrap_files():
            conn.execute(path.read_bytes(), prepare=False)


def ensure_database(admin_dsn: str, dbname: str) -> bool:
    """Create and bootstrap ``dbname`` if needed. Returns True when it was created."""
    created = False
    if not database_exists(admin_dsn, dbname):
        try:
            create_database(admin_dsn, dbname)
            created = True
        except psycopg.errors.DuplicateDatabase:
            pass
    bootstrap(admin_dsn, dbname)
    return created


def run_sql_file(dsn: str, path: Path) -> None:
    """Run a plain SQL file in one transaction."""
    with psycopg.connect(dsn) as conn:
        conn.execute("set local client_min_messages = warning")
        conn.execute(path.read_bytes(), prepare=False)
