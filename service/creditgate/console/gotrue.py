"""Supabase Auth (GoTrue) over its REST API: the password grant, refresh, logout.

``POST {SUPABASE_URL}/auth/v1/token?grant_type=password`` with ``{email, password}`` and
``grant_type=refresh_token`` with ``{refresh_token}`` answer a session
``{access_token, refresh_token, expires_in, expires_at, token_type, user}``;
``POST /auth/v1/logout`` with the access token revokes the session's refresh tokens. Every
call carries the project's anon key in ``apikey``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["GoTrue", "GoTrueError", "GoTrueSession"]


class GoTrueError(Exception):
    """GoTrue refused (``code``: its error code, e.g. invalid_credentials) or is unreachable."""

    def __init__(self, code: str, status: int | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class GoTrueSession:
    access_token: str
    refresh_token: str
    email: str


def _error_code(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        body = {}
    if isinstance(body, dict):
        for key in ("error_code", "code", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return f"http_{response.status_code}"


class GoTrue:
    def __init__(self, http: httpx.AsyncClient, url: str, anon_key: str) -> None:
        self._http = http
        self._url = url.rstrip("/") + "/auth/v1"
        self._key = anon_key

    def _headers(self, access_token: str | None = None) -> dict[str, str]:
        headers = {"apikey": self._key, "Content-Type": "application/json"}
        headers["Authorization"] = f"Bearer {access_token or self._key}"
        return headers

    async def _token(self, grant_type: str, body: dict[str, str]) -> GoTrueSession:
        try:
            response = await self._http.post(
                f"{self._url}/token",
                params={"grant_type": grant_type},
                json=body,
                headers=self._headers(),
            )
        except httpx.HTTPError:
            raise GoTrueError("auth_unreachable") from None
        if response.status_code != 200:
            raise GoTrueError(_error_code(response), response.status_code)
        data = response.json()
        access, refresh = data.get("access_token"), data.get("refresh_token")
        if not isinstance(access, str) or not isinstance(refresh, str):
            raise GoTrueError("bad_response", response.status_code)
        user = data.get("user") if isinstance(data.get("user"), dict) else {}
        return GoTrueSession(access, refresh, str(user.get("email") or ""))

    async def password(self, email: str, password: str) -> GoTrueSession:
        return await self._token("password", {"email": email, "password": password})

    async def refresh(self, refresh_token: str) -> GoTrueSession:
        return await self._token("refresh_token", {"refresh_token": refresh_token})

    async def logout(self, access_token: str) -> None:
        """Revoke the session (every refresh token of it). Errors are the caller's to ignore."""
        try:
            response = await self._http.post(
                f"{self._url}/logout",
                params={"scope": "local"},
                headers=self._headers(access_token),
            )
        except httpx.HTTPError:
            raise GoTrueError("auth_unreachable") from None
        if response.status_code >= 400:
            raise GoTrueError(_error_code(response), response.status_code)
