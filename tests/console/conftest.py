"""The console under test: real service, worker and runner processes on a fresh database
(migrated, then loaded with supabase/seed.sql), a fake GoTrue and a fake Stripe API on
127.0.0.1, and Debian's Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from psycopg.rows import dict_row

from creditgate import localdb
from creditgate.console.links import issue_link
from creditgate.migrate import project_root
from tests import dbutil
from tests.console.fakes import FakeGoTrue, FakeStripe
from tests.e2e.procs import Proc, base_env, http_ok, start, wait_until
from tests.fakes import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
JWT_SECRET = "console-jwt-secret-with-at-least-32-characters"
RUNNER_SECRET = "console-runner-secret-0123456789abcdef"
SIGNING_SECRET = "console-media-signing-secret-0123456789abcdef"
WEBHOOK_SECRET = "whsec_console_test_secret_0123456789"
PASSWORD = "correct horse battery staple"
DESKTOP = {"width": 1280, "height": 900}
# Two shared cores under a full test run: give assertions on the page time to come true.
expect.set_options(timeout=20_000)
PHONE = {"width": 390, "height": 844}


def owner(db: dbutil.TestDatabase, query: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(db.owner_url, autocommit=True, row_factory=dict_row) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def as_user(db: dbutil.TestDatabase, user_id: str, query: str, params: Any = None) -> Any:
    """One statement as ``user_id`` (role authenticated, JWT claims), as PostgREST runs it."""
    with psycopg.connect(db.owner_url) as conn, conn.transaction():
        conn.execute("select tests.as_user(%s)", [user_id])
        row = conn.execute(query, params).fetchone()
    return row[0] if row else None


@dataclass
class ConsoleStack:
    db: dbutil.TestDatabase
    url: str
    state_dir: Path
    gotrue: FakeGoTrue
    stripe: FakeStripe
    procs: list[Proc]
    browser: Browser
    contexts: list[BrowserContext] = field(default_factory=list)

    @property
    def links_file(self) -> Path:
        return self.state_dir / "console-links.json"

    def user(self, email: str | None = None, *, admin: bool = False) -> tuple[str, str]:
        """A new user (signup bonus granted by the trigger), also known to the fake GoTrue."""
        email = email or f"user-{uuid.uuid4().hex[:10]}@example.test"
        user_id = str(owner(self.db, "select tests.create_user(%s) as id", [email])[0]["id"])
        if admin:
            owner(self.db, "select tests.make_admin(%s)", [user_id])
        self.gotrue.add_user(email, PASSWORD, user_id)
        return user_id, email

    def link(self, user_id: str, email: str) -> str:
        return f"{self.url}/console/link/{issue_link(self.links_file, user_id, email)}"

    def context(self, viewport: dict[str, int] | None = None, **kwargs: Any) -> BrowserContext:
        context = self.browser.new_context(viewport=viewport or DESKTOP, **kwargs)  # type: ignore[arg-type]
        context.set_default_timeout(30_000)
        self.contexts.append(context)
        return context

    def signed_in(self, user_id: str, email: str, viewport: dict[str, int] | None = None) -> Page:
        """A page of a fresh browser context, signed in through a one-time link."""
        page = self.context(viewport).new_page()
        page.goto(self.link(user_id, email))
        page.get_by_role("link", name="Continue to the console").click()
        page.wait_for_url(f"{self.url}/console/")
        return page

    def grant(self, user_id: str, amount: int) -> None:
        with psycopg.connect(self.db.owner_url) as conn, conn.transaction():
            conn.execute("select tests.as_service()")
            conn.execute(
                "select creditgate.service_grant_credits(%s, %s, 'grant', %s)",
                [user_id, amount, f"test-grant-{uuid.uuid4()}"],
            )

    def balance(self, user_id: str) -> int:
        return int(owner(self.db, "select balance from creditgate.balances where user_id = %s", [user_id])[0]["balance"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Per module, not per session: while Playwright's sync API is open, its event loop is
    # the thread's running loop, and other test modules' asyncio.run() would fail.
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def stack(
    module_db: dbutil.TestDatabase, browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleStack]:
    tmp = tmp_path_factory.mktemp("console")
    port, runner_port = free_port(), free_port()
    localdb.run_sql_file(module_db.owner_url, project_root() / "supabase" / "seed.sql")
    owner(
        module_db,
        "update creditgate_private.model_routes set endpoint = %s",
        [f"http://127.0.0.1:{runner_port}"],
    )
    with FakeGoTrue(JWT_SECRET) as gotrue, FakeStripe() as stripe:
        env = {
            **base_env(),
            "CREDITGATE_SERVICE_DATABASE_URL": module_db.api_url,
            "SUPABASE_JWT_SECRET": JWT_SECRET,
            "SUPABASE_URL": gotrue.url,
            "SUPABASE_ANON_KEY": gotrue.anon_key,
            "STRIPE_SECRET_KEY": stripe.secret_key,
            "STRIPE_API_BASE": stripe.url,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "CREDITGATE_RUNNER_SECRET": RUNNER_SECRET,
            "CREDITGATE_SIGNING_SECRET": SIGNING_SECRET,
            "CREDITGATE_STORAGE_ROOT": str(tmp / "media"),
            "CREDITGATE_STATE_DIR": str(tmp / "state"),
            "CREDITGATE_HOST": "127.0.0.1",
            "CREDITGATE_PORT": str(port),
            "CREDITGATE_RUNNER_PORT": str(runner_port),
            "CREDITGATE_HEARTBEAT_SECONDS": "2",
            "CREDITGATE_IDLE_POLL_SECONDS": "2",
            # As behind a TLS-terminating proxy: X-Forwarded-Proto says whether it was https.
            "CREDITGATE_TRUSTED_PROXY": "1",
        }
        procs: list[Proc] = []
        try:
            procs.append(start("runner", ["runner"], env, tmp))
            procs.append(start("service", ["serve"], env, tmp))
            procs.append(start("worker", ["worker", "--concurrency", "2"], env, tmp))
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: http_ok(f"{url}/readyz"), procs, what="the service")
            wait_until(lambda: '"event": "listening"' in procs[2].output(), procs, what="the worker")
            console = ConsoleStack(module_db, url, tmp / "state", gotrue, stripe, procs, browser)
            yield console
            for context in console.contexts:
                context.close()
        finally:
            for proc in reversed(procs):
                proc.stop()
