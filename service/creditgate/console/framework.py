"""How a console page runs: cookies, CSRF, the caller, admin checks, errors, headers.

:func:`page` wraps a handler into a Starlette endpoint. Every POST must carry the CSRF
token of its cookie (checked before anything else); pages that need a user send the
signed-out to the login page; admin pages ask ``creditgate.is_admin()`` first and answer 403
otherwise (and the admin SQL functions check again). An intentional database error
(``PTxyz``) renders the error page with the same HTTP status as the API and words from
:mod:`creditgate.console.errors`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from creditgate.api.context import Services, client_ip, db_headers, services_of
from creditgate.console import session
from creditgate.console.config import ConsoleSettings
from creditgate.console.errors import TITLES, describe
from creditgate.db import ApiError, Arg
from creditgate.observability import bind, get_logger

__all__ = ["Page", "page", "templates"]

log = get_logger("creditgate.console")
TEMPLATES = Path(__file__).parent / "templates"
templates = Jinja2Templates(directory=str(TEMPLATES))

# Scripts only from this origin (no inline script, no eval): a prompt that smuggles
# markup past escaping still cannot run. Images and media may come from the storage's
# signed URLs, which can be another host (S3).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: http: https:; "
    "media-src 'self' http: https:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)

Access = Literal["none", "user", "admin"]


@dataclass
class Page:
    request: Request
    services: Services
    console: ConsoleSettings
    jar: session.CookieJar
    caller: session.Caller | None
    form: FormData | None
    is_admin: bool = False
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def user_id(self) -> str:
        assert self.caller is not None
        return self.caller.principal.user_id

    @property
    def claims(self) -> dict[str, Any]:
        assert self.caller is not None
        return self.caller.principal.claims

    @property
    def db_headers(self) -> dict[str, str]:
        return db_headers(self.request, client_ip(self.request.scope, self.services.settings))

    async def call(self, fn: str, args: Mapping[str, Arg] | None = None) -> Any:
        """``creditgate.<fn>`` as the signed-in user (or anon), exactly as the API calls it."""
        if self.caller is None:
            return await self.services.db.call(
                fn, args, role="anon", claims={"role": "anon"}, headers=self.db_headers
            )
        return await self.services.db.call(
            fn, args, role="authenticated", claims=self.claims, headers=self.db_headers
        )

    def field(self, name: str, limit: int = 20000) -> str:
        assert self.form is not None
        value = self.form.get(name)
        return value[:limit] if isinstance(value, str) else ""

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        context.update(
            caller=self.caller,
            is_admin=self.is_admin,
            csrf_token=session.csrf_token(self.jar),
            gotrue_enabled=self.console.gotrue_enabled,
            path=self.request.url.path,
        )
        return templates.TemplateResponse(self.request, template, context, status_code=status)

    def error(self, status: int, code: str, details: Any = None, **context: Any) -> Response:
        return self.render(
            "error.html",
            status=status,
            title=TITLES.get(status, "Something went wrong"),
            message=describe(code, details),
            code=code,
            **context,
        )


def redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


def _login_redirect(request: Request) -> Response:
    target = request.url.path
    if request.method == "GET" and request.url.query:
        target += "?" + request.url.query
    return redirect("/console/login?next=" + quote(target, safe=""))


Handler = Callable[[Page], Awaitable[Response]]


def page(
    handler: Handler, console: ConsoleSettings, access: Access = "user"
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        services = services_of(request)
        secure = session.is_secure(request, console, services.settings)
        jar = session.load_jar(
            request, console.signing_key(services.settings), secure, console.session_max_age
        )
        form = await request.form(max_files=0, max_fields=64) if request.method == "POST" else None
        caller = await session.resolve(services, console, jar)
        current = Page(request, services, console, jar, caller, form)
        if caller is not None:
            bind(user_id=caller.principal.user_id)
        try:
            response = await _run(current, handler, access)
        except ApiError as exc:
            log.info("console_error", code=exc.code, status=exc.status)
            response = current.error(exc.status, exc.code, exc.details)
        jar.apply(response)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        for name, value in current.extra_headers.items():
            response.headers[name] = value
        return response

    endpoint.__name__ = f"console_{handler.__name__}"
    return endpoint


async def _run(current: Page, handler: Handler, access: Access) -> Response:
    request = current.request
    if request.method == "POST" and not session.csrf_ok(
        current.jar, current.field("csrf_token") or request.headers.get("x-csrf-token")
    ):
        log.warning("console_csrf_rejected", path=request.url.path)
        return current.error(403, "csrf")
    if access != "none" and current.caller is None:
        if request.headers.get("accept", "").startswith("application/json"):
            return current.error(401, "not_authenticated")
        return _login_redirect(request)
    if current.caller is not None:
        current.is_admin = await current.call("is_admin") is True
    if access == "admin" and not current.is_admin:
        return current.error(403, "forbidden")
    return await handler(current)


def html(text: str, status: int = 200) -> Response:
    return HTMLResponse(text, status_code=status)
