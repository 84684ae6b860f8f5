"""README, "Using a Supabase project": every `sh` block runs, in order, as one script against
a database prepared like a hosted project, with the values the `console` blocks export.

Push with the real CLI, the grants that expose the schema, the types check, the service's
own login role, the catalog, `creditgate serve` and `creditgate worker`, then the balance,
a quote and a signed Stripe checkout delivered twice, all through the running service."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
from pathlib import Path

from tests import dbutil
from tests.devkit import supabase_like

ROOT = dbutil.ROOT
BLOCK_RE = re.compile(r"^```(\w+)\n(.*?)^```$", re.M | re.S)


def section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Using a Supabase project")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def blocks(kind: str) -> list[str]:
    return [body for lang, body in BLOCK_RE.findall(section()) if lang == kind]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_walkthrough_covers_link_to_a_working_app() -> None:
    console, runnable = "\n".join(blocks("console")), "\n".join(blocks("sh"))
    assert "supabase link --project-ref" in console
    exported = set(re.findall(r"^\$ export (\w+)=", console, re.M))
    used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", runnable)) - {"PWD", "PATH", "CREDITGATE_PORT"}
    assert used <= exported, f"set in a console block: {sorted(used - exported)}"
    for step in ("supabase db push", "creditgate types", "creditgate serve", "creditgate worker",
                 "/v1/webhooks/stripe", "supabase/seed.sql"):
        assert step in runnable
    for topic in ("Exposed\nschemas", "client_ip_header", "cf-connecting-ip", "Stripe"):
        assert topic in section()


def test_the_walkthrough_runs(tmp_path: Path) -> None:
    name = supabase_like.create()
    try:
        user_id = supabase_like.signup(name)
        password = secrets.token_urlsafe(16)
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PG", "CREDITGATE_",
                                                                        "SUPABASE_", "STRIPE_"))},
            "HOME": str(tmp_path),
            "SUPABASE_DB_URL": supabase_like.db_url(name),
            "SUPABASE_JWT_SECRET": secrets.token_urlsafe(48),
            "CREDITGATE_SERVICE_PASSWORD": password,
            "CREDITGATE_SERVICE_DATABASE_URL": supabase_like.db_url(name, "creditgate_service"),
            "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_urlsafe(24),
            "USER_ID": user_id,
            "CREDITGATE_PORT": str(port),
            "CREDITGATE_ADMIN_URL": dbutil.ADMIN_URL,
            "CREDITGATE_STATE_DIR": str(tmp_path / "state"),
            "CREDITGATE_STORAGE_ROOT": str(tmp_path / "media"),
            "CREDITGATE_SIGNING_SECRET": secrets.token_urlsafe(32),
            "CREDITGATE_RUNNER_SECRET": secrets.token_urlsafe(32),
        }
        script = "\n".join([
            "set -euo pipefail",
            "trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT",
            *blocks("sh"),
        ])
        proc = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=540, stdin=subprocess.DEVNULL)
        out = proc.stdout
        assert proc.returncode == 0, out + proc.stderr[-4000:]

        assert "t|t|t|f" in out.splitlines(), out
        docs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        balances = [d for d in docs if "available" in d and "plan" in d]
        quotes = [d for d in docs if "breakdown" in d]
        # The user signed up before creditgate was pushed: no signup bonus, then the Starter pack.
        assert [b["balance"] for b in balances] == [0, 5000], out
        assert [q["cost"] for q in quotes] == [505], out  # sdxl at its defaults (seed.sql)
        webhooks = [d for d in docs if d not in balances and d not in quotes]
        # The retried delivery is answered with the original result, not applied twice.
        assert [w["result"]["replayed"] for w in webhooks] == [False, True], out
        assert {w["result"]["entry_id"] for w in webhooks} == {webhooks[0]["result"]["entry_id"]}
    finally:
        supabase_like.drop(name)
