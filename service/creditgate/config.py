"""Configuration, read once from the environment into one settings object.

Unset values fall back to the embedded default: local PostgreSQL, the local runner on
127.0.0.1:7860, local file storage under ``.creditgate/``. Dev secrets for that default are
generated once and kept in ``.creditgate/dev.env`` (see :func:`load_dev_env`).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_DATABASE = "creditgate"
STATE_DIR = Path(os.environ.get("CREDITGATE_STATE_DIR", ".creditgate"))


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, "").strip() or default


def _int(name: str, default: int) -> int:
    raw = _env(name)
    return int(raw) if raw else default


def _float(name: str, default: float) -> float:
    raw = _env(name)
    return float(raw) if raw else default


def _bool(name: str, default: bool) -> bool:
    raw = _env(name).lower()
    return default if not raw else raw in ("1", "true", "yes", "on")


def _api_keys() -> dict[str, list[str]]:
    """``CREDITGATE_API_KEYS_<REF>=k1,k2`` -> ``{"ref": ["k1", "k2"]}`` (refs are lower-cased)."""
    prefix = "CREDITGATE_API_KEYS_"
    keys: dict[str, list[str]] = {}
    for name, value in os.environ.items():
        if name.startswith(prefix) and value.strip():
            keys[name[len(prefix) :].lower()] = [k.strip() for k in value.split(",") if k.strip()]
    return keys


@dataclass(frozen=True)
class DatabaseSettings:
    # Superuser connection used only to create and bootstrap the local database.
    admin_url: str = field(default_factory=lambda: _env("CREDITGATE_ADMIN_URL", DEFAULT_ADMIN_URL))
    # The database creditgate runs on. Unset: the embedded local database.
    url: str | None = field(default_factory=lambda: os.environ.get("DATABASE_URL") or None)
    local_name: str = field(default_factory=lambda: _env("CREDITGATE_DB_NAME", DEFAULT_DATABASE))


@dataclass(frozen=True)
class Settings:
    # The service connects like PostgREST: one login role that may switch to anon,
    # authenticated and service_role per transaction. Unset: authenticator@local db.
    service_database_url: str = field(
        default_factory=lambda: _env("CREDITGATE_SERVICE_DATABASE_URL") or _env("DATABASE_URL")
    )
    pool_min: int = field(default_factory=lambda: _int("CREDITGATE_POOL_MIN", 1))
    pool_max: int = field(default_factory=lambda: _int("CREDITGATE_POOL_MAX", 10))
    # Seconds a request waits for a database connection before failing with 503.
    pool_timeout: float = field(default_factory=lambda: _float("CREDITGATE_POOL_TIMEOUT", 5.0))

    host: str = field(default_factory=lambda: _env("CREDITGATE_HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: _int("CREDITGATE_PORT", 8000))
    public_url: str = field(default_factory=lambda: _env("CREDITGATE_PUBLIC_URL"))

    # Supabase auth: legacy HS256 secret and/or JWKS (ES256/RS256).
    jwt_secret: str = field(default_factory=lambda: _env("SUPABASE_JWT_SECRET"))
    jwks_url: str = field(default_factory=lambda: _env("SUPABASE_JWKS_URL"))
    jwt_issuer: str = field(default_factory=lambda: _env("SUPABASE_JWT_ISSUER"))

    # Storage: "local" (embedded default) or "s3".
    storage: str = field(default_factory=lambda: _env("CREDITGATE_STORAGE", "local"))
    storage_root: Path = field(
        default_factory=lambda: Path(_env("CREDITGATE_STORAGE_ROOT", str(STATE_DIR / "media")))
    )
    signing_secret: str = field(default_factory=lambda: _env("CREDITGATE_SIGNING_SECRET"))
    signed_url_ttl: int = field(default_factory=lambda: _int("CREDITGATE_SIGNED_URL_TTL", 3600))
    s3_bucket: str = field(default_factory=lambda: _env("CREDITGATE_S3_BUCKET"))
    s3_endpoint_url: str = field(default_factory=lambda: _env("CREDITGATE_S3_ENDPOINT_URL"))
    s3_region: str = field(default_factory=lambda: _env("CREDITGATE_S3_REGION", "us-east-1"))
    s3_access_key_id: str = field(default_factory=lambda: _env("CREDITGATE_S3_ACCESS_KEY_ID"))
    s3_secret_access_key: str = field(
        default_factory=lambda: _env("CREDITGATE_S3_SECRET_ACCESS_KEY")
    )
    s3_path_style: bool = field(default_factory=lambda: _bool("CREDITGATE_S3_PATH_STYLE", True))
    s3_prefix: str = field(default_factory=lambda: _env("CREDITGATE_S3_PREFIX"))

    # Local runner (the embedded default provider).
    runner_host: str = field(default_factory=lambda: _env("CREDITGATE_RUNNER_HOST", "127.0.0.1"))
    runner_port: int = field(default_factory=lambda: _int("CREDITGATE_RUNNER_PORT", 7860))
    runner_secret: str = field(default_factory=lambda: _env("CREDITGATE_RUNNER_SECRET"))
    api_keys: dict[str, list[str]] = field(default_factory=_api_keys)

    # Stripe webhooks.
    stripe_webhook_secret: str = field(default_factory=lambda: _env("STRIPE_WEBHOOK_SECRET"))
    stripe_tolerance: int = field(default_factory=lambda: _int("STRIPE_WEBHOOK_TOLERANCE", 300))

    # Workers.
    worker_concurrency: int = field(
        default_factory=lambda: _int("CREDITGATE_WORKER_CONCURRENCY", 2)
    )
    lease_seconds: int = field(default_factory=lambda: _int("CREDITGATE_LEASE_SECONDS", 120))
    heartbeat_seconds: float = field(
        default_factory=lambda: _float("CREDITGATE_HEARTBEAT_SECONDS", 20.0)
    )
    idle_poll_seconds: float = field(
        default_factory=lambda: _float("CREDITGATE_IDLE_POLL_SECONDS", 30.0)
    )
    wait_max_seconds: float = field(
        default_factory=lambda: _float("CREDITGATE_WAIT_MAX_SECONDS", 60.0)
    )
    # ?wait= long-polls open at once, per user and in all; past either cap a request answers
    # at once with the generation's current state.
    wait_per_user: int = field(default_factory=lambda: _int("CREDITGATE_WAIT_PER_USER", 4))
    wait_max_open: int = field(default_factory=lambda: _int("CREDITGATE_WAIT_MAX_OPEN", 500))

    log_level: str = field(default_factory=lambda: _env("CREDITGATE_LOG_LEVEL", "info"))

    # HTTP API. The client IP (rate limits per IP) is the socket peer unless the service sits
    # behind trusted reverse proxies: then it is the X-Forwarded-For entry added by the
    # outermost of `trusted_proxy_hops` proxies (counted from the right).
    trusted_proxy: bool = field(default_factory=lambda: _bool("CREDITGATE_TRUSTED_PROXY", False))
    trusted_proxy_hops: int = field(
        default_factory=lambda: _int("CREDITGATE_TRUSTED_PROXY_HOPS", 1)
    )
    max_body_bytes: int = field(
        default_factory=lambda: _int("CREDITGATE_MAX_BODY_BYTES", 1024 * 1024)
    )

    # /metrics: with `metrics_port` set it is served only on metrics_host:metrics_port (a
    # listener of its own, off the public port); with `metrics_token` set a scrape must send
    # `Authorization: Bearer <token>`, on whichever listener serves it.
    metrics_host: str = field(default_factory=lambda: _env("CREDITGATE_METRICS_HOST", "127.0.0.1"))
    metrics_port: int = field(default_factory=lambda: _int("CREDITGATE_METRICS_PORT", 0))
    metrics_token: str = field(default_factory=lambda: _env("CREDITGATE_METRICS_TOKEN"))

    # HTTP-layer limits (token buckets in the process's memory; the SQL rate limits still
    # apply to every new generation). Replays of a request this process has answered, per
    # user; anonymous routes (/v1/models, /v1/quote, /media-files), per client address.
    replay_rate: float = field(default_factory=lambda: _float("CREDITGATE_REPLAY_RATE", 1.0))
    replay_burst: int = field(default_factory=lambda: _int("CREDITGATE_REPLAY_BURST", 10))
    anon_rate: float = field(default_factory=lambda: _float("CREDITGATE_ANON_RATE", 20.0))
    anon_burst: int = field(default_factory=lambda: _int("CREDITGATE_ANON_BURST", 100))
    # uvicorn's limit_concurrency for `creditgate serve`: past this many open connections and
    # tasks it answers 503 at once (0: no limit).
    limit_concurrency: int = field(
        default_factory=lambda: _int("CREDITGATE_LIMIT_CONCURRENCY", 1000)
    )

    # JWT clock-skew allowance, seconds, applied to exp, nbf and iat.
    jwt_leeway: int = field(default_factory=lambda: _int("CREDITGATE_JWT_LEEWAY", 30))
    # JWKS: seconds a fetched key set is fresh (then refreshed in the background while its
    # keys stay in use), and the longest a fetch may take in all.
    jwks_ttl: float = field(default_factory=lambda: _float("CREDITGATE_JWKS_TTL", 600.0))
    jwks_timeout: float = field(default_factory=lambda: _float("CREDITGATE_JWKS_TIMEOUT", 3.0))


def load_dev_env(path: Path | None = None) -> dict[str, str]:
    """Create (once) and load the dev secrets of the embedded default into os.environ.

    Values already set in the environment win. Returns the values in the file.
    """
    path = path or STATE_DIR / "dev.env"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        values = {
            "SUPABASE_JWT_SECRET": secrets.token_urlsafe(48),
            "CREDITGATE_RUNNER_SECRET": secrets.token_urlsafe(32),
            "CREDITGATE_SIGNING_SECRET": secrets.token_urlsafe(32),
            "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_urlsafe(24),
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        tmp.chmod(0o600)
        tmp.replace(path)
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    for key, value in values.items():
        os.environ.setdefault(key, value)
    return values
