"""`creditgate types`: postgres-meta's types of a freshly migrated database, and `--check`
(run by scripts/lint) failing when supabase/types/ no longer matches db/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from creditgate import typegen
from tests import dbutil

ROOT = dbutil.ROOT
CLI = [sys.executable, "-m", "creditgate.cli"]


def run_types(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CREDITGATE_PROJECT_ROOT=str(root), CREDITGATE_ADMIN_URL=dbutil.ADMIN_URL)
    env.pop("DATABASE_URL", None)
    return subprocess.run([*CLI, "types", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_checked_in_types_are_what_the_generator_writes() -> None:
    result = run_types(ROOT, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "supabase/types is up to date" in result.stdout
    text = (ROOT / typegen.DATABASE_TS).read_text()
    # postgres-meta's own output: the Database type with schema creditgate only.
    assert text.startswith("export type Json =")
    assert "export type Database = {\n  creditgate: {" in text
    assert "creditgate_private" not in text


def test_a_changed_function_makes_the_types_stale(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "db", tmp_path / "db")
    shutil.copytree(ROOT / "supabase", tmp_path / "supabase")
    (tmp_path / "devkit").symlink_to(ROOT / "devkit")
    (tmp_path / "db" / "functions" / "zz_probe.sql").write_text(
        "create or replace function creditgate.devkit_probe(probe_arg integer)\n"
        "returns jsonb language sql as $$ select '{}'::jsonb $$;\n"
    )
    stale = run_types(tmp_path, "--check")
    assert stale.returncode != 0
    assert f"stale: {typegen.DATABASE_TS}" in stale.stdout
    assert "run `creditgate types`" in stale.stderr

    written = run_types(tmp_path)
    assert written.returncode == 0, written.stderr
    assert f"wrote {typegen.DATABASE_TS}" in written.stdout
    assert "devkit_probe: { Args: { probe_arg: number }; Returns: Json }" in (
        tmp_path / typegen.DATABASE_TS
    ).read_text()
    again = run_types(tmp_path, "--check")
    assert again.returncode == 0, again.stdout + again.stderr
