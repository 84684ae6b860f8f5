"""`creditgate up` prints one-time console links for the dev user and the dev admin: the
whole account journey through the link it printed, in Chromium, on the embedded default."""

from __future__ import annotations

import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from creditgate import localdb
from tests import dbutil
from tests.console.conftest import DESKTOP
from tests.e2e.procs import CLI, base_env
from tests.e2e.test_up import BANNER_TIMEOUT, Output
from tests.fakes import free_port


@pytest.fixture
def up_database() -> Iterator[str]:
    name = f"cg_upc_{dbutil.RUN_ID}_{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        localdb.drop_database(dbutil.ADMIN_URL, name)


def test_up_link_signs_in_then_generate_save_and_find_in_gallery(
    tmp_path: Path, up_database: str, browser: Browser
) -> None:
    port = free_port()
    env = {
        **base_env(),
        "CREDITGATE_ADMIN_URL": dbutil.ADMIN_URL,
        "CREDITGATE_DB_NAME": up_database,
        "CREDITGATE_STATE_DIR": str(tmp_path / "state"),
        "CREDITGATE_RUNNER_PORT": str(free_port()),
    }
    stderr = tmp_path / "up.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [*CLI, "up", "--port", str(port)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=err
        )
    assert proc.stdout is not None
    out = Output(proc.stdout)  # type: ignore[arg-type]
    context = browser.new_context(viewport=DESKTOP)
    try:
        try:
            user_link = out.wait_for(r"sign in:\s+(\S+)", BANNER_TIMEOUT, proc)
            admin_link = out.wait_for(r"admin:\s+(\S+)", 5, proc)
            console = out.wait_for(r"console:\s+(\S+)", 5, proc)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{stderr.read_text()}") from None
        url = f"http://127.0.0.1:{port}"
        assert console == f"{url}/console/"
        assert re.fullmatch(rf"{re.escape(url)}/console/link/[A-Za-z0-9_-]{{43}}", user_link)
        assert user_link != admin_link

        page = context.new_page()
        page.goto(user_link)
        expect(page.locator("main")).to_contain_text("signed in as dev@creditgate.local")
        page.get_by_role("link", name="Continue to the console").click()
        expect(page.locator("#balance")).to_be_visible()
        expect(page.get_by_role("link", name="Admin")).to_have_count(0)

        page.get_by_role("link", name="Generate").click()
        page.get_by_label("Model").select_option("sd15")
        page.get_by_label("Prompt", exact=True).fill("a lighthouse at dusk")
        expect(page.locator("#quote")).to_contain_text("credits")
        page.get_by_role("button", name="Generate").click()
        expect(page.locator("#status")).to_have_text("succeeded", timeout=90_000)
        expect(page.locator("figure.media img")).to_have_count(1)
        assert page.evaluate("() => document.querySelector('figure.media img').naturalWidth") > 0
        generation_id = page.url.rsplit("/", 1)[1]
        page.get_by_role("button", name="Save").click()
        item = page.locator(f'[data-generation="{generation_id}"]')
        expect(item.locator(".badge")).to_have_text("Saved")
        expect(item.locator("img")).to_have_count(1)

        # The printed link was used up.
        reuse = context.browser.new_context() if context.browser else None
        assert reuse is not None
        again = reuse.new_page()
        response = again.goto(user_link)
        assert response is not None and response.status == 403
        reuse.close()

        admin = browser.new_context(viewport=DESKTOP)
        admin_page = admin.new_page()
        admin_page.goto(admin_link)
        admin_page.get_by_role("link", name="Continue to the console").click()
        admin_page.get_by_role("link", name="Admin").click()
        expect(admin_page.locator("figure.chart-figure")).to_have_count(6)
        admin.close()
    finally:
        context.close()
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        out.join()
    assert code == 0, stderr.read_text()
