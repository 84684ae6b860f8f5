"""Schema migrations for creditgate.

Two kinds of files live under ``db/``:

* **versioned** (``db/schema/NNNN_name.sql``): applied once, in order; their checksum is
  recorded and an applied file that was edited afterwards is an error naming it.
* **repeatable** (``db/functions/**.sql`` then ``db/policies/**.sql``): each file *is* the
  current definition of its objects (``create or replace``, ``drop policy if exists``...). A
  repeatable file is re-applied when its content changes, and all of them are re-applied
  after any versioned file runs, so definitions always sit on top of the newest tables.

A run is one transaction under a transaction-scoped advisory lock: concurrent runs
serialize, the second finds nothing left to do, and a failure leaves the database exactly
as it was. Statements are split with PostgreSQL's own parser (pglast) so an error names the
file, the statement's line and its text.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pglast
import psycopg
from psycopg import sql

TRACKING_SCHEMA = "creditgate_migrations"
# Any constant works; it only has to be the same for every creditgate run.
ADVISORY_LOCK_KEY = 0x63726564_69746761  # "creditga"
REPEATABLE_DIRS = ("functions", "policies")

Kind = Literal["versioned", "repeatable"]


def project_root() -> Path:
    """The repository root: the folder holding ``db/`` ($CREDITGATE_PROJECT_ROOT overrides)."""
    override = os.environ.get("CREDITGATE_PROJECT_ROOT")
    if override:
        return Path(override).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "db" / "schema").is_dir():
            return parent
    raise RuntimeError("cannot locate the db/ folder next to the creditgate package")


@dataclass(frozen=True)
class MigrationFile:
    kind: Kind
    name: str  # path relative to db/, e.g. "schema/0001_core.sql"
    path: Path
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass
class Action:
    file: MigrationFile
    reason: str  # "new", "changed", "after versioned changes"


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    tampered: list[tuple[MigrationFile, str]] = field(default_factory=list)  # (file, recorded)
    missing: list[str] = field(default_factory=list)  # recorded versioned files not on disk

    @property
    def empty(self) -> bool:
        return not self.actions


class MigrationError(Exception):
    """A migration that cannot run; the message names the file and the statement."""


def discover(db_dir: Path | None = None) -> list[MigrationFile]:
    """Every migration file in load order: versioned first, then repeatables."""
    db_dir = db_dir or project_root() / "db"
    files: list[MigrationFile] = []
    for path in sorted((db_dir / "schema").glob("*.sql")):
        files.append(_load("versioned", db_dir, path))
    for folder in REPEATABLE_DIRS:
        for path in sorted((db_dir / folder).rglob("*.sql")):
            files.append(_load("repeatable", db_dir, path))
    return files


def _load(kind: Kind, db_dir: Path, path: Path) -> MigrationFile:
    return MigrationFile(kind, path.relative_to(db_dir).as_posix(), path, path.read_text())


def split_statements(text: str) -> list[tuple[int, str]]:
    """Split SQL into ``(line_number, statement)`` pairs with PostgreSQL's parser."""
    out: list[tuple[int, str]] = []
    for piece in pglast.split(text, with_parser=True, only_slices=True):
        assert isinstance(piece, slice)
        statement = text[piece]
        start = (piece.start or 0) + len(statement) - len(statement.lstrip())
        out.append((text.count("\n", 0, start) + 1, statement.strip()))
    return out


def _ensure_tracking(conn: psycopg.Connection) -> None:
    conn.execute(
        sql.SQL(
            """
            create schema if not exists {schema};
            create table if not exists {schema}.versioned (
              name text primary key,
              checksum text not null,
              applied_at timestamptz not null default now(),
              applied_by text not null default current_user,
              duration_ms integer not null
            );
            create table if not exists {schema}.repeatable (
              name text primary key,
              checksum text not null,
              applied_at timestamptz not null default now(),
              applied_by text not null default current_user
            );
            alter table {schema}.versioned enable row level security;
            alter table {schema}.repeatable enable row level security;
            """
        ).format(schema=sql.Identifier(TRACKING_SCHEMA))
    )


def _recorded(conn: psycopg.Connection, table: str) -> dict[str, str]:
    exists = conn.execute(
        "select to_regclass(%s) is not null", [f"{TRACKING_SCHEMA}.{table}"]
    ).fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute(
        sql.SQL("select name, checksum from {}.{}").format(
            sql.Identifier(TRACKING_SCHEMA), sql.Identifier(table)
        )
    ).fetchall()
    return {name: checksum for name, checksum in rows}


def make_plan(conn: psycopg.Connection, files: Iterable[MigrationFile]) -> Plan:
    files = list(files)
    versioned_done = _recorded(conn, "versioned")
    repeatable_done = _recorded(conn, "repeatable")
    plan = Plan()
    on_disk = {f.name for f in files if f.kind == "versioned"}
    plan.missing = sorted(set(versioned_done) - on_disk)
    any_versioned = False
    for f in files:
        if f.kind != "versioned":
            continue
        recorded = versioned_done.get(f.name)
        if recorded is None:
            plan.actions.append(Action(f, "new"))
            any_versioned = True
        elif recorded != f.checksum:
            plan.tampered.append((f, recorded))
    for f in files:
        if f.kind != "repeatable":
            continue
        recorded = repeatable_done.get(f.name)
        if recorded is None:
            plan.actions.append(Action(f, "new"))
        elif recorded != f.checksum:
            plan.actions.append(Action(f, "changed"))
        elif any_versioned:
            plan.actions.append(Action(f, "after versioned changes"))
    return plan


def _run_file(conn: psycopg.Connection, f: MigrationFile) -> None:
    try:
        statements = split_statements(f.text)
    except pglast.parser.ParseError as exc:
        raise MigrationError(f"{f.name}: syntax error: {exc}") from exc
    for line, statement in statements:
        try:
            conn.execute(statement.encode(), prepare=False)
        except psycopg.Error as exc:
            first_line = statement.splitlines()[0] if statement else ""
            diag = exc.diag
            detail = f"\n  detail: {diag.message_detail}" if diag.message_detail else ""
            raise MigrationError(
                f"{f.name}:{line}: {(diag.message_primary or str(exc))[:300]}{detail}\n"
                f"  statement: {first_line[:200]}"
            ) from exc


ProgressFn = Callable[[str], None]


def apply(
    dsn: str,
    files: list[MigrationFile] | None = None,
    progress: ProgressFn | None = None,
) -> Plan:
    """Apply pending migrations in one transaction. Returns what was done."""
    files = discover() if files is None else files
    say = progress or (lambda _msg: None)
    with psycopg.connect(dsn, autocommit=False) as conn:
        conn.execute("set local client_min_messages = warning")
        conn.execute("select pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
        _ensure_tracking(conn)
        plan = make_plan(conn, files)
        _refuse_tampering(plan)
        total = len(plan.actions)
        for i, action in enumerate(plan.actions, 1):
            f = action.file
            say(f"[{i}/{total}] {f.name} ({action.reason})")
            started = time.monotonic()
            _run_file(conn, f)
            elapsed = int((time.monotonic() - started) * 1000)
            if f.kind == "versioned":
                conn.execute(
                    sql.SQL(
                        "insert into {}.versioned (name, checksum, duration_ms) values (%s, %s, %s)"
                    ).format(sql.Identifier(TRACKING_SCHEMA)),
                    [f.name, f.checksum, elapsed],
                )
            else:
                conn.execute(
                    sql.SQL(
                        "insert into {}.repeatable (name, checksum) values (%s, %s) "
                        "on conflict (name) do update set checksum = excluded.checksum, "
                        "applied_at = now(), applied_by = current_user"
                    ).format(sql.Identifier(TRACKING_SCHEMA)),
                    [f.name, f.checksum],
                )
        conn.commit()
    return plan


def _refuse_tampering(plan: Plan) -> None:
    if plan.tampered:
        names = ", ".join(f.name for f, _ in plan.tampered)
        raise MigrationError(
            f"applied versioned migration(s) edited after they ran: {names}. "
            "Versioned files are append-only: restore the file and add a new migration."
        )


def inspect(dsn: str, files: list[MigrationFile] | None = None) -> Plan:
    """The plan a run would execute, without changing anything."""
    files = discover() if files is None else files
    with psycopg.connect(dsn, autocommit=True) as conn:
        return make_plan(conn, files)


def status(dsn: str, files: list[MigrationFile] | None = None) -> list[tuple[str, str, str]]:
    """``(kind, name, state)`` for every file and every recorded-but-missing file."""
    files = discover() if files is None else files
    with psycopg.connect(dsn, autocommit=True) as conn:
        versioned_done = _recorded(conn, "versioned")
        repeatable_done = _recorded(conn, "repeatable")
    rows: list[tuple[str, str, str]] = []
    for f in files:
        done = versioned_done if f.kind == "versioned" else repeatable_done
        recorded = done.get(f.name)
        if recorded is None:
            state = "pending"
        elif recorded == f.checksum:
            state = "applied"
        else:
            state = "TAMPERED" if f.kind == "versioned" else "changed"
        rows.append((f.kind, f.name, state))
    for name in sorted(set(versioned_done) - {f.name for f in files}):
        rows.append(("versioned", name, "missing on disk"))
    return rows
