"""The supabase-js example type-checks (tsc --noEmit, strict) against @supabase/supabase-js and
the generated types, and a wrong RPC name, argument or result field fails that check."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from tests import dbutil
from tests.devkit import errors

ROOT = dbutil.ROOT
EXAMPLE = ROOT / "examples" / "supabase-js"
TSC = EXAMPLE / "node_modules" / "typescript" / "bin" / "tsc"
ERROR_RE = re.compile(r"^(?P<file>[^(]+)\((?P<line>\d+),\d+\): error (?P<code>TS\d+): (?P<text>.*)$")


def tsc(project: Path, *, emit: bool = False) -> tuple[int, list[dict[str, str]], str]:
    proc = subprocess.run(
        ["node", str(TSC), *([] if emit else ["--noEmit"]), "--pretty", "false", "-p", str(project)],
        capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    errors = [m.groupdict() for line in out.splitlines() if (m := ERROR_RE.match(line))]
    return proc.returncode, errors, out


def test_example_type_checks_strictly() -> None:
    config = json.loads((EXAMPLE / "tsconfig.json").read_text())["compilerOptions"]
    assert config["strict"] is True and config["noEmit"] is True
    code, errors, out = tsc(EXAMPLE / "tsconfig.json")
    assert code == 0 and errors == [], out


PLANTED = """\
import { connect, unwrap } from "{creditgate}"
const client = connect("http://127.0.0.1:54321", "anon-key")
export async function planted(): Promise<void> {
  await client.rpc("request_generation", { model_id: "m", params: {}, idempotency_key: "k" })
  await client.rpc("request_generations", { model_id: "m", params: {}, idempotency_key: "k" })
  await client.rpc("request_generation", { modelId: "m", params: {}, idempotency_key: "k" })
  await client.rpc("request_generation", { model_id: "m", params: {} })
  await client.rpc("cancel_generation", { generation_id: 42 })
  const balance = unwrap(await client.rpc("get_balance"))
  const available: number = balance.available
  const wrong: string = balance.balance
  console.log(available, wrong, balance.credits)
}
"""


def test_a_wrong_call_fails_the_type_check(tmp_path: Path) -> None:
    planted = tmp_path / "planted.ts"
    planted.write_text(PLANTED.replace("{creditgate}", str(EXAMPLE / "src" / "creditgate.js")))
    (tmp_path / "tsconfig.json").write_text(json.dumps({
        "extends": str(EXAMPLE / "tsconfig.json"),
        "compilerOptions": {"typeRoots": [str(EXAMPLE / "node_modules" / "@types")]},
        "files": [str(planted)],
    }))
    code, errors, out = tsc(tmp_path / "tsconfig.json")
    assert code != 0, out
    by_line = {int(e["line"]): e for e in errors if e["file"].endswith("planted.ts")}
    # line 4 (the right call) and line 10 compile; every planted mistake is reported.
    assert 4 not in by_line and 10 not in by_line, out
    assert "request_generations" in by_line[5]["text"], out  # unknown RPC name
    assert "modelId" in by_line[6]["text"], out  # unknown argument
    assert "idempotency_key" in by_line[7]["text"], out  # missing argument
    assert by_line[8]["code"] == "TS2322", out  # number where the uuid string goes
    assert by_line[11]["code"] == "TS2322", out  # result field of the wrong type
    assert "credits" in by_line[12]["text"], out  # result field that does not exist
    assert sorted(by_line) == [5, 6, 7, 8, 11, 12], out


def test_results_must_name_every_generated_function(tmp_path: Path) -> None:
    types = tmp_path / "types"
    shutil.copytree(ROOT / "supabase" / "types", types)
    results = types / "results.ts"
    text = results.read_text()
    assert "  get_balance: BalanceResult\n" in text
    results.write_text(text.replace("  get_balance: BalanceResult\n", ""))
    code, errors, out = tsc(types / "tsconfig.json")
    assert code != 0
    assert any("functionsWithoutAResultInterface" in e["text"] for e in errors), out
    assert "get_balance" in out


def test_real_errors_map_to_messages(db: dbutil.TestDatabase, tmp_path: Path) -> None:
    """The example's describe(), compiled by tsc and run by node on real error bodies."""
    bodies = errors.collect(db)
    out = tmp_path / "out"
    (tmp_path / "node_modules").symlink_to(EXAMPLE / "node_modules")
    (tmp_path / "tsconfig.json").write_text(json.dumps({
        "extends": str(EXAMPLE / "tsconfig.json"),
        "compilerOptions": {"noEmit": False, "outDir": str(out), "rootDir": str(ROOT),
                            "typeRoots": [str(EXAMPLE / "node_modules" / "@types")]},
        "files": [str(EXAMPLE / "src" / "creditgate.ts")],
    }))
    (tmp_path / "package.json").write_text('{"type": "module"}')
    code, errs, log = tsc(tmp_path / "tsconfig.json", emit=True)
    assert code == 0 and errs == [], log
    script = (
        f"import {{ describe }} from "
        f"{json.dumps(str(out / EXAMPLE.relative_to(ROOT) / 'src' / 'creditgate.js'))}\n"
        "const bodies = JSON.parse(process.argv[2])\n"
        "const said = {}\n"
        "for (const [label, body] of Object.entries(bodies)) {\n"
        "  const e = describe(body)\n"
        "  said[label] = { code: e.code, reason: e.reason, message: e.userMessage,\n"
        "                  retry: e.retryAfterSeconds, details: e.details }\n"
        "}\n"
        "console.log(JSON.stringify(said))\n"
    )
    (tmp_path / "run.mjs").write_text(script)
    proc = subprocess.run(["node", str(tmp_path / "run.mjs"), json.dumps(bodies)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    said = json.loads(proc.stdout)

    assert said["insufficient_credits"]["code"] == "PT402"
    assert said["insufficient_credits"]["message"] == "Not enough credits: this costs 33, you have 10."
    limited = said["rate_limited"]
    assert (limited["code"], limited["reason"]) == ("PT429", "rate_limited")
    assert isinstance(limited["retry"], int) and 1 <= limited["retry"] <= 3600
    assert limited["message"] == f"Too many requests: try again in {limited['retry']} seconds."
    capped = said["daily_cap_reached"]
    assert capped["retry"] is None
    assert capped["message"] == (
        f"Daily limit reached (3 of 5 credits); it resets at {capped['details']['resets_at']}.")
    assert said["idempotency_key_reused"]["message"] == (
        "This request key was already used for a different request: make a new one.")
    assert said["model_unavailable"]["message"] == (
        "This model is not available right now; pick another one.")
    assert said["maintenance"]["message"] == (
        "Generation is paused for maintenance; please try again later.")
