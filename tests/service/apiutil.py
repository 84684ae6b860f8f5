"""Support for the HTTP API tests: run the real app on a real socket against a test database.

``running(settings)`` starts ``create_app(settings)`` under uvicorn (lifespan on, proxy
headers off as in ``creditgate serve``) on 127.0.0.1 and a free port, in a daemon thread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import uvicorn

from creditgate.app import create_app
from creditgate.auth import mint_token
from creditgate.config import Settings
from tests.dbutil import TestDatabase

JWT_SECRET = "api-test-jwt-secret-with-at-least-32-characters"
SIGNING_SECRET = "api-test-media-signing-secret-32-bytes-long!"
STRIPE_SECRET = "whsec_api_test_secret_0123456789"


def settings_for(db: TestDatabase | None, root: Path, **overrides: Any) -> Settings:
    base = Settings()
    values: dict[str, Any] = {
        "service_database_url": db.api_url if db is not None else "",
        "pool_min": 1,
        "pool_max": 12,
        "jwt_secret": JWT_SECRET,
        "jwks_url": "",
        "jwt_issuer": "",
        "storage": "local",
        "storage_root": root / "media",
        "signing_secret": SIGNING_SECRET,
        "stripe_webhook_secret": STRIPE_SECRET,
        "stripe_tolerance": 300,
        "trusted_proxy": False,
        "wait_max_seconds": 5.0,
        "public_url": "",
        "log_level": "warning",
    }
    values.update(overrides)
    return dataclasses.replace(base, **values)


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 (free port) in a daemon thread."""

    def __init__(
        self, app: Any, sock: socket.socket | None = None, *, lifespan: str = "on"
    ) -> None:
        self.sock = sock or bound_socket()
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            lifespan=lifespan,
            log_config=None,
            ws="none",
            http="h11",
            access_log=False,
            proxy_headers=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, args=([self.sock],), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


@contextmanager
def running(settings: Settings) -> Iterator[str]:
    """Serve the real app; yields its base URL (public_url points at the free port)."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    settings = dataclasses.replace(settings, port=port, public_url=f"http://127.0.0.1:{port}")
    with ServerThread(create_app(settings), sock) as server:
        yield server.url


def token(user_id: str, **extra: Any) -> str:
    return mint_token(JWT_SECRET, user_id, extra=extra or None)


def auth(user_id: str, **extra: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user_id, **extra)}"}


def owner(db: TestDatabase) -> psycopg.Connection[Any]:
    return psycopg.connect(db.owner_url, autocommit=True)


def create_user(db: TestDatabase, *, admin: bool = False) -> str:
    with owner(db) as conn:
        row = conn.execute("select tests.create_user()").fetchone()
        assert row is not None
        user_id = str(row[0])
        if admin:
            conn.execute("select tests.make_admin(%s)", [user_id])
    return user_id


def seed_models(db: TestDatabase) -> None:
    with owner(db) as conn:
        conn.execute("select tests.seed_models()")


def scalar(db: TestDatabase, query: str, params: Any = None) -> Any:
    with owner(db) as conn:
        row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def balance(db: TestDatabase, user_id: str) -> int:
    return int(scalar(db, "select balance from creditgate.balances where user_id = %s", [user_id]))


def stripe_header(payload: bytes, secret: str = STRIPE_SECRET, timestamp: int | None = None) -> str:
    """``Stripe-Signature`` as Stripe computes it: v1 = HMAC-SHA256(secret, "t.payload")."""
    ts = int(time.time()) if timestamp is None else timestamp
    signed = f"{ts}.".encode() + payload
    mac = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def stripe_event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> bytes:
    event = {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "api_version": "2025-01-27.acacia",
        "created": int(time.time()),
        "livemode": False,
        "type": event_type,
        "data": {"object": obj},
    }
    return json.dumps(event).encode()
