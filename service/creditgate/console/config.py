"""The console's settings, read once from the environment (next to creditgate.config).

Login: ``SUPABASE_URL`` + ``SUPABASE_ANON_KEY`` (GoTrue's password grant), and on the
embedded default the one-time links that ``creditgate up`` writes to
``<state dir>/console-links.json``. Payments: ``STRIPE_SECRET_KEY`` (and ``STRIPE_API_BASE``
to point the Stripe client elsewhere, e.g. a test server).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from creditgate.config import Settings

__all__ = ["ConsoleSettings"]


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, "").strip() or default


def _state_dir() -> Path:
    return Path(_env("CREDITGATE_STATE_DIR", ".creditgate"))


@dataclass(frozen=True)
class ConsoleSettings:
    supabase_url: str = field(default_factory=lambda: _env("SUPABASE_URL").rstrip("/"))
    anon_key: str = field(
        default_factory=lambda: _env("SUPABASE_ANON_KEY") or _env("SUPABASE_PUBLISHABLE_KEY")
    )
    # Signs the session and CSRF cookies. Unset: derived from the media signing secret, or
    # random per process (sessions then end when the service restarts).
    secret: str = field(default_factory=lambda: _env("CREDITGATE_CONSOLE_SECRET"))
    # "auto": Secure when the request came over https (or CREDITGATE_PUBLIC_URL is https).
    secure_cookies: str = field(
        default_factory=lambda: _env("CREDITGATE_CONSOLE_SECURE_COOKIES", "auto").lower()
    )
    session_max_age: int = field(
        default_factory=lambda: int(_env("CREDITGATE_CONSOLE_SESSION_MAX_AGE", "43200"))
    )
    links_file: Path = field(default_factory=lambda: _state_dir() / "console-links.json")
    stripe_secret_key: str = field(default_factory=lambda: _env("STRIPE_SECRET_KEY"))
    stripe_api_base: str = field(default_factory=lambda: _env("STRIPE_API_BASE"))
    # Lifetime of the access tokens minted for one-time-link (dev) sessions.
    dev_token_ttl: int = field(
        default_factory=lambda: int(_env("CREDITGATE_CONSOLE_DEV_TOKEN_TTL", "900"))
    )

    @property
    def gotrue_enabled(self) -> bool:
        return bool(self.supabase_url and self.anon_key)

    def signing_key(self, settings: Settings) -> bytes:
        if self.secret:
            return self.secret.encode()
        if settings.signing_secret:
            return hmac.new(settings.signing_secret.encode(), b"console", hashlib.sha256).digest()
        return _PROCESS_KEY


_PROCESS_KEY = secrets.token_bytes(32)
