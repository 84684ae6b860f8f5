"""Collect db/tests/**/*.sql as pgTAP items: one pytest item per file."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests import dbutil

PLAN_RE = re.compile(r"^1\.\.(\d+)$")
TEST_RE = re.compile(r"^(not ok|ok) (\d+)")

_pgtap_db: dbutil.TestDatabase | None = None


def pgtap_database() -> dbutil.TestDatabase:
    """One clone of the template shared by all pgTAP files (each file rolls back)."""
    global _pgtap_db
    if _pgtap_db is None:
        _pgtap_db = dbutil.new_database("cg_tap")
    return _pgtap_db


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.suffix == ".sql" and "tests" in file_path.parts and "db" in file_path.parts:
        return PgTapFile.from_parent(parent, path=file_path)
    return None


class PgTapFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        yield PgTapItem.from_parent(self, name=self.path.name)


class PgTapFailure(Exception):
    pass


def run_pgtap(path: Path, db: dbutil.TestDatabase) -> tuple[int, str]:
    proc = subprocess.run(
        [
            "psql",
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db.owner_url,
            "-f",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode, proc.stdout + proc.stderr


def check_tap(returncode: int, output: str) -> None:
    planned: int | None = None
    seen: list[int] = []
    failed: list[str] = []
    for line in output.splitlines():
        line = line.strip()
        if m := PLAN_RE.match(line):
            planned = int(m.group(1))
        elif m := TEST_RE.match(line):
            seen.append(int(m.group(2)))
            if m.group(1) == "not ok":
                failed.append(line)
    problems = []
    if returncode != 0:
        problems.append(f"psql exited with {returncode}")
    if planned is None:
        problems.append("no plan")
    elif planned != len(seen):
        problems.append(f"planned {planned} tests but ran {len(seen)}")
    if not seen:
        problems.append("no tests ran")
    if failed:
        problems.append(f"{len(failed)} failed: " + "; ".join(failed))
    if "Looks like you" in output:
        problems.append("pgTAP reported a failure")
    if problems:
        raise PgTapFailure(", ".join(problems) + "\n\n" + output)


class PgTapItem(pytest.Item):
    def runtest(self) -> None:
        returncode, output = run_pgtap(self.path, pgtap_database())
        check_tap(returncode, output)

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, PgTapFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"pgTAP: {self.path.name}"
