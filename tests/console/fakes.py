"""Local fakes of Supabase Auth (GoTrue) and the Stripe API, speaking their documented REST.

FakeGoTrue: ``POST /auth/v1/token?grant_type=password`` ({email, password}) and
``grant_type=refresh_token`` ({refresh_token}) answer a session whose access token is an
HS256 JWT shaped like GoTrue's (signed with the project's JWT secret); refresh tokens are
single-use (rotated); ``POST /auth/v1/logout`` revokes every refresh token of the caller's
session. Every call must carry the anon key in ``apikey``.

FakeStripe: ``POST /v1/checkout/sessions`` (form-encoded, ``Authorization: Bearer sk_...``)
records the parameters and returns a Checkout Session whose ``url`` is a page of this fake.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from creditgate.auth import mint_token
from tests.fakes import LiveServer


@dataclass
class FakeGoTrue:
    jwt_secret: str
    anon_key: str = "anon-key-for-tests"
    access_ttl: int = 3600
    users: dict[str, tuple[str, str]] = field(default_factory=dict)  # email -> (password, id)
    refresh: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # token -> (uid, email, sid)
    calls: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: LiveServer | None = None

    def add_user(self, email: str, password: str, user_id: str) -> None:
        self.users[email.lower()] = (password, user_id)

    def _session(self, user_id: str, email: str, session_id: str) -> dict[str, Any]:
        access = mint_token(
            self.jwt_secret, user_id, email=email, ttl_seconds=self.access_ttl,
            extra={"session_id": session_id, "iss": f"{self.url}/auth/v1"},
        )  # fmt: skip
        token = secrets.token_urlsafe(16)
        with self._lock:
            self.refresh[token] = (user_id, email, session_id)
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self.access_ttl,
            "expires_at": int(time.time()) + self.access_ttl,
            "refresh_token": token,
            "user": {"id": user_id, "aud": "authenticated", "role": "authenticated", "email": email},
        }

    async def token(self, request: Request) -> Response:
        grant = request.query_params.get("grant_type", "")
        self.calls.append(("token", grant))
        if request.headers.get("apikey") != self.anon_key:
            return JSONResponse({"message": "Invalid API key"}, status_code=401)
        body = await request.json()
        if grant == "password":
            email = str(body.get("email", "")).lower()
            found = self.users.get(email)
            if found is None or found[0] != body.get("password"):
                return JSONResponse(
                    {"code": 400, "error_code": "invalid_credentials",
                     "msg": "Invalid login credentials"},
                    status_code=400,
                )  # fmt: skip
            return JSONResponse(self._session(found[1], email, str(uuid.uuid4())))
        if grant == "refresh_token":
            with self._lock:
                entry = self.refresh.pop(str(body.get("refresh_token", "")), None)
            if entry is None:
                return JSONResponse(
                    {"code": 400, "error_code": "refresh_token_not_found",
                     "msg": "Invalid Refresh Token: Refresh Token Not Found"},
                    status_code=400,
                )  # fmt: skip
            return JSONResponse(self._session(*entry))
        return JSONResponse({"error_code": "validation_failed"}, status_code=400)

    async def logout(self, request: Request) -> Response:
        self.calls.append(("logout", request.query_params.get("scope", "global")))
        header = request.headers.get("authorization", "")
        try:
            claims = jwt.decode(
                header.removeprefix("Bearer "), self.jwt_secret, algorithms=["HS256"],
                audience="authenticated",
            )  # fmt: skip
        except jwt.PyJWTError:
            return JSONResponse({"error_code": "bad_jwt"}, status_code=401)
        with self._lock:
            for token, entry in list(self.refresh.items()):
                if entry[2] == claims.get("session_id"):
                    del self.refresh[token]
        return Response(status_code=204)

    def __enter__(self) -> FakeGoTrue:
        app = Starlette(
            routes=[
                Route("/auth/v1/token", self.token, methods=["POST"]),
                Route("/auth/v1/logout", self.logout, methods=["POST"]),
            ]
        )
        self._server = LiveServer(app)
        self.url = self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.stop()


@dataclass
class FakeStripe:
    secret_key: str = "sk_test_console_0123456789"
    sessions: list[dict[str, str]] = field(default_factory=list)
    url: str = ""
    _server: LiveServer | None = None

    async def create_session(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.secret_key}":
            return JSONResponse(
                {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}},
                status_code=401,
            )
        params = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        params["_idempotency_key"] = request.headers.get("idempotency-key", "")
        session_id = f"cs_test_{uuid.uuid4().hex}"
        params["_id"] = session_id
        self.sessions.append(params)
        return JSONResponse(
            {
                "id": session_id,
                "object": "checkout.session",
                "mode": "payment",
                "status": "open",
                "payment_status": "unpaid",
                "client_reference_id": params.get("client_reference_id"),
                "url": f"{self.url}/pay/{session_id}",
            }
        )

    async def pay_page(self, request: Request) -> Response:
        session_id = request.path_params["id"]
        return HTMLResponse(f"<!doctype html><title>Fake checkout</title><h1>Pay {session_id}</h1>")

    def __enter__(self) -> FakeStripe:
        app = Starlette(
            routes=[
                Route("/v1/checkout/sessions", self.create_session, methods=["POST"]),
                Route("/pay/{id}", self.pay_page, methods=["GET"]),
            ]
        )
        self._server = LiveServer(app)
        self.url = self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.stop()
