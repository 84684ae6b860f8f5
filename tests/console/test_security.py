"""Security of the console in Chromium: CSRF on every form, one-time links, expired and
revoked sessions, markup in prompts and model names, cookie flags, GoTrue password login."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, Request, expect
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response
from starlette.routing import Route

from tests.console.conftest import PASSWORD, ConsoleStack, owner
from tests.console.links_util import issue
from tests.fakes import LiveServer

CSRF_MESSAGE = "This form has expired or did not come from this site. Reload the page and try again."


def session_cookie(page: Page) -> dict[str, object] | None:
    found = [c for c in page.context.cookies() if c["name"] == "cg_session"]
    return dict(found[0]) if found else None


def csrf_of(page: Page) -> str:
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    assert token
    return token


def test_every_form_post_without_its_csrf_token_is_refused(stack: ConsoleStack) -> None:
    admin_id, admin_email = stack.user(admin=True)
    page = stack.signed_in(admin_id, admin_email)
    generations = owner(stack.db, "select count(*) as n from creditgate.generations")[0]["n"]
    balance = stack.balance(admin_id)
    forms = {
        "/console/generate": {"model_id": "sd15", "prompt": "x", "request_key": str(uuid.uuid4())},
        "/console/quote": {"model_id": "sd15", "prompt": "x"},
        "/console/buy": {"pack_id": "starter"},
        f"/console/media/{uuid.uuid4()}/save": {},
        f"/console/media/{uuid.uuid4()}/delete": {},
        "/console/logout": {},
        "/console/login": {"email": admin_email, "password": PASSWORD},
        f"/console/admin/users/{admin_id}/grant": {"amount": "100", "reason": "x", "grant_key": str(uuid.uuid4())},
        "/console/admin/models/sd15": {"enabled": "false"},
        "/console/admin/settings": {"key": "maintenance_mode", "kind": "boolean", "value": "true"},
        "/console/admin/audit": {},
    }
    good = csrf_of(page)
    for path, form in forms.items():
        for token in (None, "", "0" * 64, good[:-1] + ("0" if good[-1] != "0" else "1")):
            data = dict(form) if token is None else {**form, "csrf_token": token}
            response = page.request.post(f"{stack.url}{path}", form=data, max_redirects=0)
            assert response.status == 403, (path, token, response.status)
            assert CSRF_MESSAGE in response.text(), path
    # Nothing happened: no generation, no grant, no setting, no model switched off, still in.
    assert owner(stack.db, "select count(*) as n from creditgate.generations")[0]["n"] == generations
    assert stack.balance(admin_id) == balance
    assert owner(stack.db, "select count(*) as n from creditgate_private.settings")[0]["n"] == 0
    assert owner(stack.db, "select enabled from creditgate.models where id = 'sd15'") == [{"enabled": True}]
    assert stack.stripe.sessions == []
    page.goto(f"{stack.url}/console/")
    expect(page.locator("#balance")).to_be_visible()
    # The same POST with the page's token works (the check is not refusing everything).
    response = page.request.post(f"{stack.url}/console/quote", form={"csrf_token": good, "model_id": "sd15", "prompt": "x"})
    assert response.status == 200 and response.json()["ok"] is True
    # A token from another browser's cookie does not fit this one.
    other = stack.context().new_page()
    other.goto(f"{stack.url}/console/login")
    response = page.request.post(f"{stack.url}/console/quote", form={"csrf_token": csrf_of(other), "model_id": "sd15", "prompt": "x"})
    assert response.status == 403


def test_a_login_link_works_once_and_not_after_it_expires(stack: ConsoleStack) -> None:
    user_id, email = stack.user()
    link = stack.link(user_id, email)
    first = stack.context().new_page()
    response = first.goto(link)
    assert response is not None and response.status == 200
    expect(first.get_by_role("heading", name="Signed in")).to_be_visible()
    assert session_cookie(first) is not None

    second = stack.context().new_page()
    response = second.goto(link)
    assert response is not None and response.status == 403
    expect(second.get_by_role("heading", name="This link cannot be used")).to_be_visible()
    assert session_cookie(second) is None
    second.goto(f"{stack.url}/console/")
    expect(second).to_have_url(re.compile(r"/console/login"))

    expired = f"{stack.url}/console/link/{issue(stack.links_file, user_id, email, ttl=1)}"
    time.sleep(1.5)
    third = stack.context().new_page()
    response = third.goto(expired)
    assert response is not None and response.status == 403
    assert session_cookie(third) is None

    made_up = stack.context().new_page()
    response = made_up.goto(f"{stack.url}/console/link/{'A' * 43}")
    assert response is not None and response.status == 403


def test_an_expired_or_revoked_session_is_refused(stack: ConsoleStack) -> None:
    _, email = stack.user()
    stack.gotrue.access_ttl = 2
    try:
        page = stack.context().new_page()
        page.goto(f"{stack.url}/console/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#balance")).to_be_visible()
        first = session_cookie(page)
        assert first is not None
        time.sleep(2.5)
        # The access token has expired: the console refreshes it with the refresh token.
        refreshes = stack.gotrue.calls.count(("token", "refresh_token"))
        page.reload()
        expect(page.locator("#balance")).to_be_visible()
        assert stack.gotrue.calls.count(("token", "refresh_token")) == refreshes + 1
        second = session_cookie(page)
        assert second is not None and second["value"] != first["value"]

        # The first cookie's refresh token was rotated away and its access token expired:
        # an expired session, refused, and the dead cookie is cleared.
        stale = stack.context().new_page()
        stale.context.add_cookies([first])  # type: ignore[list-item]
        stale.goto(f"{stack.url}/console/")
        expect(stale).to_have_url(re.compile(r"/console/login\?next="))
        assert session_cookie(stale) is None

        # Logging out revokes the session at GoTrue; a copy of the cookie dies with it, at
        # once and after its access token expires.
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("status")).to_have_text("You are signed out.")
        assert ("logout", "local") in stack.gotrue.calls
        assert session_cookie(page) is None
        copied = stack.context().new_page()
        copied.context.add_cookies([second])  # type: ignore[list-item]
        copied.goto(f"{stack.url}/console/")
        expect(copied).to_have_url(re.compile(r"/console/login"))
        time.sleep(2.5)
        again = stack.context().new_page()
        again.context.add_cookies([second])  # type: ignore[list-item]
        again.goto(f"{stack.url}/console/")
        expect(again).to_have_url(re.compile(r"/console/login"))
    finally:
        stack.gotrue.access_ttl = 3600


def test_a_link_session_ends_at_logout_even_for_a_copied_cookie(stack: ConsoleStack) -> None:
    user_id, email = stack.user()
    page = stack.signed_in(user_id, email)
    cookie = session_cookie(page)
    assert cookie is not None
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/login\?notice=signed_out"))
    copied = stack.context().new_page()
    copied.context.add_cookies([cookie])  # type: ignore[list-item]
    copied.goto(f"{stack.url}/console/")
    expect(copied).to_have_url(re.compile(r"/console/login"))


def test_a_tampered_session_cookie_is_refused(stack: ConsoleStack) -> None:
    user_id, email = stack.user()
    page = stack.signed_in(user_id, email)
    cookie = session_cookie(page)
    assert cookie is not None
    value = str(cookie["value"])
    tampered = stack.context().new_page()
    tampered.context.add_cookies([{**cookie, "value": value[:-2] + ("AA" if not value.endswith("AA") else "BB")}])  # type: ignore[list-item]
    tampered.goto(f"{stack.url}/console/")
    expect(tampered).to_have_url(re.compile(r"/console/login"))


@pytest.fixture
def leak_server() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []

    async def record(request: StarletteRequest) -> Response:
        hits.append(str(request.url))
        return Response(b"", media_type="image/png")

    app = Starlette(routes=[Route("/{path:path}", record)])
    with LiveServer(app) as url:
        yield url, hits


def test_markup_in_a_prompt_and_a_model_name_renders_as_text(
    stack: ConsoleStack, leak_server: tuple[str, list[str]]
) -> None:
    leak, hits = leak_server
    name = f'<script>fetch("{leak}/s1")</script>"><img src={leak}/i1 onerror=alert(1)>'
    owner(
        stack.db,
        "insert into creditgate.models (id, kind, name, description, price_base, price_per_megapixel,"
        " price_per_step, max_width, max_height, max_steps, defaults, sort_order)"
        " values ('xss-model', 'image', %s, %s, 10, 10, 1, 512, 512, 30,"
        " '{\"width\": 64, \"height\": 64, \"steps\": 2}', 1)",
        [name, name],
    )
    owner(
        stack.db,
        "insert into creditgate_private.model_routes (model_id, provider, provider_model, endpoint)"
        " select 'xss-model', provider, provider_model, endpoint"
        " from creditgate_private.model_routes where model_id = 'sd15'",
    )
    prompt = f'"><img src={leak}/i2 onerror=alert(2)><script>alert(3)</script>'
    email = f'x"><img src={leak}/i3 onerror=alert(4)>@example.test'
    user_id, email = stack.user(email, admin=True)
    page = stack.signed_in(user_id, email)
    dialogs: list[str] = []
    requests: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: requests.append(r.url))

    page.goto(f"{stack.url}/console/generate?model=xss-model")
    expect(page.locator("#model_id option:checked")).to_have_text(f"{name} (image)")
    expect(page.locator("#model-description")).to_have_text(name)
    page.get_by_label("Prompt", exact=True).fill(prompt)
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#status")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("#prompt-text")).to_have_text(prompt)
    page.goto(f"{stack.url}/console/gallery")
    expect(page.locator(".gallery-item .prompt").first).to_have_text(prompt)
    page.goto(f"{stack.url}/console/admin/models")
    expect(page.locator('[data-model="xss-model"] strong')).to_have_text(name)
    page.goto(f"{stack.url}/console/admin/users?q={httpx.URL('', params={'q': email}).query.decode()[2:]}")
    expect(page.locator("#user-title")).to_have_text(email)
    expect(page.locator(".who")).to_have_text(email)
    page.wait_for_timeout(500)

    assert dialogs == []
    assert hits == []
    assert [u for u in requests if not u.startswith(stack.url)] == []
    # Nothing was injected into the DOM: the only scripts and images are the console's own.
    assert page.locator("script").count() == 1
    for img in page.locator("img").all():
        assert (img.get_attribute("src") or "").startswith(stack.url)


def test_cookies_are_httponly_samesite_strict_and_secure_over_https(stack: ConsoleStack) -> None:
    user_id, email = stack.user()
    page = stack.signed_in(user_id, email)
    cookies = {c["name"]: c for c in page.context.cookies()}
    for name in ("cg_session", "cg_csrf"):
        assert cookies[name]["httpOnly"] is True, name
        assert cookies[name]["sameSite"] == "Strict", name
        assert cookies[name]["secure"] is False, name  # plain http on 127.0.0.1
        assert cookies[name]["path"] == "/console", name
    assert page.evaluate("() => document.cookie") == ""

    # Behind the TLS-terminating proxy the browser spoke https: the cookies are Secure.
    link = stack.link(user_id, email)
    response = httpx.get(link, headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 200
    set_cookies = response.headers.get_list("set-cookie")
    session = next(c for c in set_cookies if c.startswith("cg_session="))
    csrf = next(c for c in set_cookies if c.startswith("cg_csrf="))
    for header in (session, csrf):
        parts = [p.strip().lower() for p in header.split(";")]
        assert "secure" in parts and "httponly" in parts and "samesite=strict" in parts, header


def test_password_login_through_gotrue_and_a_wrong_password(stack: ConsoleStack) -> None:
    _, email = stack.user()
    page = stack.context().new_page()
    page.goto(f"{stack.url}/console/ledger")
    expect(page).to_have_url(re.compile(r"/console/login\?next=%2Fconsole%2Fledger"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("wrong password")
    with page.expect_response(lambda r: r.url.endswith("/console/login") and r.request.method == "POST") as info:
        page.get_by_role("button", name="Sign in").click()
    assert info.value.status == 401
    expect(page.get_by_role("alert")).to_have_text(
        "That email and password do not match an account. Please try again."
    )
    assert session_cookie(page) is None
    assert "cg_session" not in (info.value.headers.get("set-cookie") or "")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{stack.url}/console/ledger")
    expect(page.locator("#ledger tbody tr")).to_have_count(1)  # the signup bonus
    assert session_cookie(page) is not None
    assert ("token", "password") in stack.gotrue.calls

    # An open redirect through ?next= is not possible.
    other = stack.context().new_page()
    other.goto(f"{stack.url}/console/login?next=https%3A%2F%2Fexample.com%2F")
    other.get_by_label("Email").fill(email)
    other.get_by_label("Password").fill(PASSWORD)
    other.get_by_role("button", name="Sign in").click()
    expect(other).to_have_url(f"{stack.url}/console/")
    _ = Request  # playwright's request type, used in the lambda above
