"""Generate ``supabase/migrations/`` from ``db/`` for ``supabase db push``.

The Supabase CLI applies each migration file once, by version, so the generated folder is
append-only too: every versioned file becomes one migration, and whenever the repeatable
definitions change (or a versioned file is added) one more migration is emitted holding the
current text of every repeatable file, in the same order ``creditgate migrate apply`` uses.
Applying the folder in order therefore yields the same schema as ``migrate apply``.

Each generated file starts with a header naming its source and checksum, which is how a
later run knows what is already there. ``--check`` reports, without writing, whether a
regeneration would change anything (CI runs it).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from creditgate.migrate import MigrationError, MigrationFile, discover

HEADER = "-- creditgate generated migration; do not edit. source: {source} sha256: {checksum}\n"
HEADER_RE = re.compile(
    r"^-- creditgate generated migration; do not edit\. source: (\S+) sha256: (\w+)"
)
REPEATABLES = "repeatables"
FIRST_VERSION = 20260101000001


@dataclass(frozen=True)
class Generated:
    filename: str
    text: str


def repeatables_checksum(files: list[MigrationFile]) -> str:
    digest = hashlib.sha256()
    for f in files:
        if f.kind == "repeatable":
            digest.update(f.name.encode() + b"\0" + f.text.encode() + b"\0")
    return digest.hexdigest()


def _existing(folder: Path) -> list[tuple[int, str, str, str]]:
    """``(version, filename, source, checksum)`` of generated files, in version order."""
    rows = []
    for path in sorted(folder.glob("*.sql")):
        version = int(path.name.split("_", 1)[0])
        first = path.read_text().split("\n", 1)[0]
        match = HEADER_RE.match(first)
        if not match:
            raise MigrationError(f"supabase/migrations/{path.name}: not a generated file")
        rows.append((version, path.name, match.group(1), match.group(2)))
    return rows


def pending(db_dir: Path, out_dir: Path) -> list[Generated]:
    """The files a regeneration would add to ``out_dir``."""
    files = discover(db_dir)
    existing = _existing(out_dir) if out_dir.is_dir() else []
    emitted = {source: checksum for _, _, source, checksum in existing if source != REPEATABLES}
    last_repeatables = next(
        (checksum for _, _, source, checksum in reversed(existing) if source == REPEATABLES), None
    )
    version = max((v for v, *_ in existing), default=FIRST_VERSION - 1) + 1
    out: list[Generated] = []
    for f in files:
        if f.kind != "versioned":
            continue
        if f.name in emitted:
            if emitted[f.name] != f.checksum:
                raise MigrationError(
                    f"{f.name} was edited after supabase/migrations was generated from it; "
                    "versioned files are append-only"
                )
            continue
        stem = Path(f.name).stem
        header = HEADER.format(source=f.name, checksum=f.checksum)
        out.append(Generated(f"{version}_{stem}.sql", header + "\n" + f.text))
        version += 1
    checksum = repeatables_checksum(files)
    if out or checksum != last_repeatables:
        parts = [HEADER.format(source=REPEATABLES, checksum=checksum)]
        for f in files:
            if f.kind == "repeatable":
                parts.append(f"\n-- ===== db/{f.name} =====\n{f.text}")
        out.append(Generated(f"{version}_{REPEATABLES}.sql", "".join(parts)))
    return out


def generate(db_dir: Path, out_dir: Path) -> list[Generated]:
    new = pending(db_dir, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for g in new:
        (out_dir / g.filename).write_text(g.text)
    return new
