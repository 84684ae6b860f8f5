"""The console's cookies: the user's session and the CSRF secret.

``cg_session`` holds the Supabase session (access and refresh token), or for a one-time
link login the id of a local session, signed with itsdangerous (timestamped, so a cookie
older than ``session_max_age`` is refused whatever it holds). ``cg_csrf`` holds a random
value; every form carries ``HMAC(key, value)`` and every POST is refused unless the field
matches its cookie (a signed double-submit token). Both cookies are HttpOnly,
SameSite=Strict, path ``/console``, and Secure when the request came over https.

:func:`resolve` turns the cookie into a caller: it verifies the access token with the
service's JWT verifier; an expired one is refreshed through GoTrue (or re-minted for a
live local session) and the new cookie is set on the response.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from creditgate.api.context import Services
from creditgate.auth import AuthError, Principal, mint_token
from creditgate.config import Settings
from creditgate.console import links
from creditgate.console.config import ConsoleSettings
from creditgate.console.gotrue import GoTrue, GoTrueError

__all__ = [
    "CSRF_COOKIE",
    "SESSION_COOKIE",
    "Caller",
    "CookieJar",
    "csrf_token",
    "resolve",
]

SESSION_COOKIE = "cg_session"
CSRF_COOKIE = "cg_csrf"
COOKIE_PATH = "/console"


# Supabase access tokens stay valid until they expire even after GoTrue revoked their
# session at logout. So that a copied cookie dies at logout too, this process remembers the
# session ids it logged out until their tokens expire. (Per process: behind several service
# processes a copied cookie lives at most until its access token expires, as in Supabase.)
_LOGGED_OUT: dict[str, float] = {}


def forget_session(claims: dict[str, Any]) -> None:
    """Refuse this access token's session from now on (logout)."""
    session_id, expires = claims.get("session_id"), claims.get("exp")
    if isinstance(session_id, str) and isinstance(expires, int | float):
        now = time.time()
        for key in [k for k, exp in _LOGGED_OUT.items() if exp < now]:
            del _LOGGED_OUT[key]
        _LOGGED_OUT[session_id] = float(expires)


def _logged_out(claims: dict[str, Any]) -> bool:
    session_id = claims.get("session_id")
    return isinstance(session_id, str) and session_id in _LOGGED_OUT


@dataclass
class Caller:
    principal: Principal
    email: str
    source: str  # "gotrue" or "link"


@dataclass
class CookieJar:
    """What one request learned about its cookies, applied to its response at the end."""

    key: bytes
    secure: bool
    max_age: int
    session: dict[str, Any] | None = None
    session_changed: bool = False
    csrf: str | None = None
    csrf_new: bool = False
    extra: list[tuple[str, str]] = field(default_factory=list)

    def serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.key, salt="creditgate.console.session")

    def set_session(self, data: dict[str, Any] | None) -> None:
        self.session = data
        self.session_changed = True

    def apply(self, response: Response) -> None:
        if self.session_changed:
            if self.session is None:
                response.delete_cookie(
                    SESSION_COOKIE,
                    path=COOKIE_PATH,
                    secure=self.secure,
                    httponly=True,
                    samesite="strict",
                )
            else:
                response.set_cookie(
                    SESSION_COOKIE,
                    self.serializer().dumps(self.session),
                    max_age=self.max_age,
                    path=COOKIE_PATH,
                    secure=self.secure,
                    httponly=True,
                    samesite="strict",
                )
        if self.csrf_new and self.csrf is not None:
            response.set_cookie(
                CSRF_COOKIE,
                self.csrf,
                path=COOKIE_PATH,
                secure=self.secure,
                httponly=True,
                samesite="strict",
            )


def is_secure(request: Request, console: ConsoleSettings, settings: Settings) -> bool:
    """Secure cookies when the browser talks https to us: directly, through the trusted
    TLS-terminating proxy (X-Forwarded-Proto, only with CREDITGATE_TRUSTED_PROXY), or
    whenever the public URL is https."""
    if console.secure_cookies in ("1", "true", "yes", "on"):
        return True
    if console.secure_cookies in ("0", "false", "no", "off"):
        return False
    if request.url.scheme == "https" or settings.public_url.startswith("https://"):
        return True
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return settings.trusted_proxy and forwarded == "https"


def load_jar(request: Request, key: bytes, secure: bool, max_age: int) -> CookieJar:
    jar = CookieJar(key=key, secure=secure, max_age=max_age)
    raw = request.cookies.get(SESSION_COOKIE)
    if raw:
        try:
            data = jar.serializer().loads(raw, max_age=max_age)
        except BadSignature:  # SignatureExpired is a BadSignature too
            data = None
        if isinstance(data, dict):
            jar.session = data
        else:
            jar.set_session(None)
    csrf = request.cookies.get(CSRF_COOKIE, "")
    if len(csrf) == 43 and csrf.replace("-", "").replace("_", "").isalnum():
        jar.csrf = csrf
    else:
        jar.csrf = secrets.token_urlsafe(32)
        jar.csrf_new = True
    return jar


def csrf_token(jar: CookieJar) -> str:
    assert jar.csrf is not None
    return hmac.new(jar.key, b"csrf:" + jar.csrf.encode(), hashlib.sha256).hexdigest()


def csrf_ok(jar: CookieJar, submitted: str | None) -> bool:
    if jar.csrf_new or not submitted:
        return False
    return hmac.compare_digest(csrf_token(jar), submitted)


async def resolve(services: Services, console: ConsoleSettings, jar: CookieJar) -> Caller | None:
    """The signed-in caller, refreshing the access token if needed; None = signed out."""
    data = jar.session
    if not data:
        return None
    source = data.get("src")
    access = data.get("at")
    if not isinstance(access, str):
        jar.set_session(None)
        return None
    if source == "link":
        session_id = data.get("sid")
        identity = (
            await run_in_threadpool(links.session_identity, console.links_file, session_id)
            if isinstance(session_id, str)
            else None
        )
        if identity is None or not services.settings.jwt_secret:
            jar.set_session(None)
            return None
        try:
            principal = await services.verifier.verify(access)
        except AuthError:
            access = mint_token(
                services.settings.jwt_secret,
                identity.user_id,
                email=identity.email,
                ttl_seconds=console.dev_token_ttl,
            )
            principal = await services.verifier.verify(access)
            jar.set_session({**data, "at": access})
        if principal.user_id != identity.user_id:
            jar.set_session(None)
            return None
        return Caller(principal, identity.email, "link")
    if source == "gotrue" and console.gotrue_enabled:
        try:
            principal = await services.verifier.verify(access)
        except AuthError as exc:
            refresh = data.get("rt")
            if exc.reason != "expired" or not isinstance(refresh, str):
                jar.set_session(None)
                return None
            try:
                fresh = await GoTrue(services.http, console.supabase_url, console.anon_key).refresh(
                    refresh
                )
                principal = await services.verifier.verify(fresh.access_token)
            except (GoTrueError, AuthError):
                jar.set_session(None)
                return None
            jar.set_session({"src": "gotrue", "at": fresh.access_token, "rt": fresh.refresh_token})
        if _logged_out(principal.claims):
            jar.set_session(None)
            return None
        email = principal.claims.get("email")
        return Caller(principal, email if isinstance(email, str) else "", "gotrue")
    jar.set_session(None)
    return None
