"""Screenshots of the main pages at desktop and phone width, and a layout check on each:
at phone width nothing may overflow sideways (no horizontal scrolling of the page), and every
form control has a label.

The images go to the test's temporary directory; set CREDITGATE_CONSOLE_SCREENSHOTS=<dir>
(e.g. docs/console) to keep them, as the README's pictures were made.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.console.conftest import DESKTOP, PHONE, ConsoleStack
from tests.console.test_admin import seed_history

PAGES = {
    "balance": "/console/",
    "generate": "/console/generate?model=sd15",
    "gallery": "/console/gallery",
    "ledger": "/console/ledger",
    "admin-overview": "/console/admin",
    "admin-users": "/console/admin/users?q={email}",
    "admin-settings": "/console/admin/settings",
    "admin-models": "/console/admin/models",
}

UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
  .map(el => el.outerHTML)"""


CLIPPED = """() => [...document.querySelectorAll('.table-wrap')]
  .filter(el => el.checkVisibility() && el.scrollWidth > el.clientWidth + 1)
  .map(el => el.querySelector('table') && el.querySelector('table').id || el.className)"""


def check_layout(page: Page, name: str) -> None:
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{name}: the page is {overflow}px wider than the screen"
    assert page.evaluate(UNLABELLED) == [], f"{name}: controls without a label"
    clipped = page.evaluate(CLIPPED)
    assert clipped == [], f"{name}: tables wider than their box: {clipped}"
    # The stylesheet is applied (not an unstyled page).
    font = page.evaluate("() => getComputedStyle(document.body).fontFamily")
    assert "system-ui" in font, name


def generate_one(page: Page, url: str) -> None:
    page.goto(f"{url}/console/generate?model=sd15")
    page.get_by_label("Prompt", exact=True).fill("a lighthouse at dusk, oil painting")
    page.get_by_label("Width").fill("384")
    page.get_by_label("Height").fill("384")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#status")).to_have_text("succeeded", timeout=60_000)


def test_main_pages_at_desktop_and_phone_width(stack: ConsoleStack, tmp_path: Path) -> None:
    seed_history(stack)
    admin_id, admin_email = stack.user("admin@example.test", admin=True)
    user_id, email = stack.user("ada@example.test")
    stack.grant(user_id, 5000)
    user = stack.signed_in(user_id, email)
    generate_one(user, stack.url)
    shots: list[Path] = []
    for width_name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        login = stack.context(viewport).new_page()
        login.goto(f"{stack.url}/console/login")
        check_layout(login, f"login/{width_name}")
        shots.append(tmp_path / f"login-{width_name}.png")
        login.screenshot(path=shots[-1], full_page=True)

        user_page = stack.signed_in(user_id, email, viewport)
        admin_page = stack.signed_in(admin_id, admin_email, viewport)
        for name, path in PAGES.items():
            page = admin_page if name.startswith("admin") else user_page
            page.goto(stack.url + path.format(email=email))
            page.wait_for_load_state("networkidle")
            if name == "generate":
                expect(page.locator("#quote-error")).to_have_text("Type a prompt to see the price.")
                page.get_by_label("Prompt", exact=True).fill("a lighthouse at dusk, oil painting")
                expect(page.locator("#quote")).to_contain_text("credits")
            check_layout(page, f"{name}/{width_name}")
            shots.append(tmp_path / f"{name}-{width_name}.png")
            page.screenshot(path=shots[-1], full_page=True)
        user_page.goto(f"{stack.url}/console/gallery")
        user_page.locator(".gallery-item a").first.click()
        expect(user_page.locator("figure.media img")).to_have_count(1)
        check_layout(user_page, f"generation/{width_name}")
        shots.append(tmp_path / f"generation-{width_name}.png")
        user_page.screenshot(path=shots[-1], full_page=True)

    assert all(p.stat().st_size > 10_000 for p in shots)
    keep = os.environ.get("CREDITGATE_CONSOLE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copy(shot, Path(keep) / shot.name)
