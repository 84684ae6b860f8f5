"""``creditgate types``: TypeScript types for schema ``creditgate``, made by Supabase's tools.

Two generated files under ``supabase/types/``, both checked in:

- ``creditgate.ts``: the ``Database`` type, written by ``@supabase/postgres-meta`` (pinned in
  ``devkit/package.json``) exactly as ``supabase gen types typescript`` runs it inside its
  container: ``node dist/server/server.js`` with ``PG_META_GENERATE_TYPES=typescript``, on a
  throwaway database freshly bootstrapped and migrated from ``db/``.
- ``results.schema.json``: the JSON schema of every hand-written result interface in
  ``results.ts`` (the RPCs return ``jsonb``, which the generator can only type as ``Json``),
  made by ``ts-json-schema-generator``. Tests validate real RPC results against it.

``--check`` regenerates into memory and fails when either file differs (``scripts/lint``).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict

from creditgate import localdb, migrate

TYPES_DIR = Path("supabase") / "types"
DATABASE_TS = TYPES_DIR / "creditgate.ts"
RESULTS_TS = TYPES_DIR / "results.ts"
RESULTS_SCHEMA = TYPES_DIR / "results.schema.json"
DEVKIT = Path("devkit")
NODE_MODULES = DEVKIT / "node_modules"
POSTGRES_META = NODE_MODULES / "@supabase" / "postgres-meta" / "dist" / "server" / "server.js"
SCHEMA_GENERATOR = NODE_MODULES / "ts-json-schema-generator" / "bin" / "ts-json-schema-generator.js"
SCHEMAS = ("creditgate",)

ProgressFn = Callable[[str], None]


class TypegenError(RuntimeError):
    pass


@dataclass(frozen=True)
class Output:
    path: Path  # relative to the project root
    text: str


def _base_env() -> dict[str, str]:
    """The caller's environment without its libpq or PG_META_* settings (PG...)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _node(root: Path, script: Path, args: list[str], env: dict[str, str]) -> str:
    if not (root / script).is_file():
        raise TypegenError(f"{script} is missing: run scripts/setup (it installs devkit/)")
    proc = subprocess.run(
        ["node", str(root / script), *args],
        capture_output=True, text=True, env=env, cwd=root, timeout=300,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise TypegenError(f"{script.name} failed ({proc.returncode}):\n{proc.stderr.strip()}")
    return proc.stdout


def database_types(root: Path, admin_dsn: str, progress: ProgressFn | None = None) -> str:
    """The ``Database`` type of a database migrated from scratch, as postgres-meta writes it."""
    name = f"cg_types_{uuid.uuid4().hex[:12]}"
    say = progress or (lambda _m: None)
    localdb.create_database(admin_dsn, name)
    try:
        say(f"migrating a throwaway database {name}")
        localdb.bootstrap(admin_dsn, name)
        deployer = localdb.dsn_for(admin_dsn, dbname=name, user=localdb.DEPLOYER_ROLE)
        migrate.apply(deployer, migrate.discover(root / "db"))
        say("running @supabase/postgres-meta (PG_META_GENERATE_TYPES=typescript)")
        env = {
            **_base_env(),
            "PG_META_DB_URL": _url(deployer),
            "PG_META_GENERATE_TYPES": "typescript",
            "PG_META_GENERATE_TYPES_INCLUDED_SCHEMAS": ",".join(SCHEMAS),
            # What `supabase gen types` passes unless --postgrest-v9-compat.
            "PG_META_GENERATE_TYPES_DETECT_ONE_TO_ONE_RELATIONSHIPS": "true",
        }
        return _node(root, POSTGRES_META, [], env)
    finally:
        localdb.drop_database(admin_dsn, name)


def _url(dsn: str) -> str:
    """postgres-meta (node-postgres) takes a URL, not a key=value conninfo."""
    p = conninfo_to_dict(dsn)
    host = str(p.get("host") or "127.0.0.1")
    port = p.get("port") or "5432"
    auth = quote(str(p.get("user") or "postgres"), safe="")
    if p.get("password"):
        auth += ":" + quote(str(p["password"]), safe="")
    if host.startswith("/"):  # a Unix socket directory
        return f"postgresql://{auth}@/{p['dbname']}?host={quote(host, safe='')}&port={port}"
    return f"postgresql://{auth}@{host}:{port}/{p['dbname']}?sslmode=disable"


def results_schema(root: Path) -> str:
    """The JSON schema of ``RpcResults``: one property per RPC, its result's schema."""
    out = _node(
        root,
        SCHEMA_GENERATOR,
        ["--path", str(RESULTS_TS), "--type", "RpcResults", "--no-top-ref",
         "--tsconfig", str(TYPES_DIR / "tsconfig.json"), "--strict-tuples"],
        _base_env(),
    )
    return out.rstrip("\n") + "\n"


def generate(root: Path, admin_dsn: str, progress: ProgressFn | None = None) -> list[Output]:
    return [
        Output(DATABASE_TS, database_types(root, admin_dsn, progress)),
        Output(RESULTS_SCHEMA, results_schema(root)),
    ]


def stale(root: Path, outputs: list[Output]) -> list[Path]:
    """The outputs whose checked-in file differs from what was just generated."""
    return [
        o.path for o in outputs
        if not (root / o.path).is_file() or (root / o.path).read_text() != o.text
    ]


def write(root: Path, outputs: list[Output]) -> None:
    for o in outputs:
        (root / o.path).parent.mkdir(parents=True, exist_ok=True)
        (root / o.path).write_text(o.text)
