"""The console (DESIGN §9): account and admin pages under ``/console``.

Server-rendered with Jinja2 (autoescaped), SVG charts drawn on the server, one small script
for the live quote and a generation's status. Sessions, CSRF and sign-in live in
:mod:`creditgate.console.session`, :mod:`~creditgate.console.gotrue` and
:mod:`~creditgate.console.links`; pages in :mod:`~creditgate.console.account` and
:mod:`~creditgate.console.admin`.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from creditgate.console import account, admin
from creditgate.console.config import ConsoleSettings
from creditgate.console.framework import Access, Handler, page

__all__ = ["console_routes"]

STATIC = Path(__file__).parent / "static"


def console_routes(console: ConsoleSettings | None = None) -> list[BaseRoute]:
    """The routes to add to the service's app (one Mount at ``/console``)."""
    c = console or ConsoleSettings()

    def get(path: str, handler: Handler, access: Access = "user") -> Route:
        return Route(path, page(handler, c, access), methods=["GET"])

    def post(path: str, handler: Handler, access: Access = "user") -> Route:
        return Route(path, page(handler, c, access), methods=["POST"])

    routes: list[BaseRoute] = [
        get("/", account.home),
        get("/login", account.login_form, "none"),
        post("/login", account.login, "none"),
        get("/link/{token}", account.link_login, "none"),
        post("/logout", account.logout, "none"),
        post("/buy", account.buy),
        get("/generate", account.generate_form),
        post("/generate", account.generate),
        post("/quote", account.quote),
        get("/generations/{id}", account.generation),
        get("/generations/{id}/status", account.generation_status),
        get("/gallery", account.gallery),
        post("/media/{id}/save", account.save_media),
        post("/media/{id}/delete", account.delete_media),
        get("/ledger", account.ledger),
        get("/ledger.csv", account.ledger_csv),
        get("/admin", admin.overview, "admin"),
        get("/admin/users", admin.users, "admin"),
        post("/admin/users/{id}/grant", admin.grant, "admin"),
        get("/admin/models", admin.models, "admin"),
        post("/admin/models/{id}", admin.set_model, "admin"),
        get("/admin/settings", admin.settings, "admin"),
        post("/admin/settings", admin.set_setting, "admin"),
        get("/admin/audit", admin.audit, "admin"),
        post("/admin/audit", admin.audit, "admin"),
        get("/admin/webhooks", admin.webhooks, "admin"),
        Mount("/static", StaticFiles(directory=STATIC), name="console_static"),
    ]
    return [
        Route("/console", lambda request: RedirectResponse("/console/", 308), methods=["GET"]),
        Mount("/console", routes=routes),
    ]
