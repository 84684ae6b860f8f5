"""Builds the service's collaborators from :class:`~creditgate.config.Settings`."""

from __future__ import annotations

import httpx

from creditgate.config import Settings
from creditgate.providers import ProviderGateway
from creditgate.storage import LocalStorage, S3Storage, Storage


def public_base_url(settings: Settings) -> str:
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")


def make_storage(settings: Settings) -> Storage:
    if settings.storage == "local":
        if not settings.signing_secret:
            raise ValueError("CREDITGATE_SIGNING_SECRET is required for local storage")
        return LocalStorage(
            settings.storage_root, public_base_url(settings), settings.signing_secret.encode()
        )
    if settings.storage == "s3":
        return S3Storage(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            path_style=settings.s3_path_style,
            prefix=settings.s3_prefix,
        )
    raise ValueError(f"unknown CREDITGATE_STORAGE {settings.storage!r} (local or s3)")


def make_gateway(settings: Settings, http: httpx.AsyncClient) -> ProviderGateway:
    return ProviderGateway(http, settings.api_keys, runner_secret=settings.runner_secret or None)
