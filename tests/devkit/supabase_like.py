"""Databases prepared the way a hosted Supabase project is (tests/devkit/supabase_like.sql)."""

from __future__ import annotations

import subprocess
import uuid

import psycopg

from creditgate import localdb
from tests import dbutil

MIGRATOR = "cg_supabase_postgres"  # stands in for a hosted project's postgres role
SQL = dbutil.ROOT / "tests" / "devkit" / "supabase_like.sql"


def create() -> str:
    """A new Supabase-like database (no migrations); dropped at exit if the test does not."""
    name = f"cg_sb_{dbutil.RUN_ID}_{uuid.uuid4().hex[:8]}"
    localdb.create_database(dbutil.ADMIN_URL, name)
    dbutil._created.append(name)
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"migrator={MIGRATOR}",
         "-d", localdb.dsn_for(dbutil.ADMIN_URL, dbname=name), "-f", str(SQL)],
        check=True, capture_output=True, text=True, timeout=120,
    )
    return name


def url(name: str, user: str = MIGRATOR) -> str:
    return localdb.dsn_for(dbutil.ADMIN_URL, dbname=name, user=user)


def admin_url(name: str) -> str:
    return localdb.dsn_for(dbutil.ADMIN_URL, dbname=name)


def db_url(name: str, user: str = MIGRATOR) -> str:
    """The URL form the Supabase CLI's --db-url takes."""
    params = psycopg.conninfo.conninfo_to_dict(dbutil.ADMIN_URL)
    return (f"postgresql://{user}@{params.get('host') or '127.0.0.1'}:{params.get('port') or 5432}"
            f"/{name}?sslmode=disable")


def drop(name: str) -> None:
    localdb.drop_database(dbutil.ADMIN_URL, name)
    if name in dbutil._created:
        dbutil._created.remove(name)


def signup(name: str) -> str:
    """What GoTrue does on /signup, as its own role: a row in auth.users. Returns the id."""
    user_id = str(uuid.uuid4())
    with psycopg.connect(admin_url(name), autocommit=True) as conn, conn.transaction():
        conn.execute("set local role supabase_auth_admin")
        conn.execute(
            "insert into auth.users (instance_id, id, aud, role, email, encrypted_password,"
            " email_confirmed_at, raw_app_meta_data, raw_user_meta_data, created_at,"
            " updated_at, is_anonymous)"
            " values ('00000000-0000-0000-0000-000000000000', %s, 'authenticated',"
            " 'authenticated', %s, %s, now(),"
            " '{\"provider\": \"email\", \"providers\": [\"email\"]}', '{}', now(), now(), false)",
            # GoTrue hashes the password itself (bcrypt) before the insert.
            [user_id, f"{user_id}@example.test", "$2a$10$" + "x" * 53],
        )
    return user_id
