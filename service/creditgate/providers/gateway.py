"""ProviderGateway: one async client in front of every provider adapter.

Per job it picks the adapter, bounds each try by the route's timeout, retries retryable
failures with exponential backoff and full jitter, rotates API keys on 429/401/403, treats
an empty output as a failure and records one `Attempt` per try. Secrets (API keys, the
runner secret) are only ever placed in request headers; error messages are redacted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from creditgate.providers.base import (
    KINDS,
    Adapter,
    AdapterOutput,
    Attempt,
    ProviderError,
    ProviderJob,
    ProviderResult,
)
from creditgate.providers.call import DEFAULT_MAX_DOWNLOAD_BYTES, Call, redact
from creditgate.providers.fal import FalAdapter
from creditgate.providers.gradio import GradioAdapter
from creditgate.providers.huggingface import HuggingFaceAdapter
from creditgate.providers.local import LocalAdapter
from creditgate.providers.openai_compat import OpenAICompatAdapter
from creditgate.providers.wavespeed import WavespeedAdapter

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUTS: Mapping[str, float] = {
    "image": 120.0,
    "edit": 120.0,
    "video": 600.0,
    "chat": 60.0,
}
DEFAULT_MAX_ATTEMPTS = 3
MAX_ATTEMPTS_CAP = 10
MAX_TIMEOUT_SECONDS = 3600.0


def default_adapters() -> dict[str, Adapter]:
    adapters: list[Adapter] = [
        LocalAdapter(),
        OpenAICompatAdapter(),
        HuggingFaceAdapter(),
        FalAdapter(),
        WavespeedAdapter(),
        GradioAdapter(),
    ]
    return {a.name: a for a in adapters}


def _number(options: Mapping[str, Any], key: str) -> float | None:
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ProviderError("not_configured", f"route option {key} must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ProviderError("not_configured", f"route option {key} must be a number") from None
    if not math.isfinite(number) or number <= 0:
        raise ProviderError("not_configured", f"route option {key} must be positive")
    return number


class ProviderGateway:
    """Runs `ProviderJob`s against their providers. Share one instance per process."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        api_keys: Mapping[str, Sequence[str]] | None = None,
        *,
        base_backoff: float = 0.5,
        max_backoff: float = 8.0,
        poll_interval: float = 1.0,
        runner_secret: str | None = None,
        adapters: Mapping[str, Adapter] | None = None,
    ) -> None:
        self._http = http
        self._keys: dict[str, tuple[str, ...]] = {}
        for ref, keys in (api_keys or {}).items():
            listed = (keys,) if isinstance(keys, str) else tuple(keys)
            self._keys[ref] = tuple(k for k in listed if k)
        self._base_backoff = max(base_backoff, 0.0)
        self._max_backoff = max(max_backoff, 0.0)
        self._poll_interval = poll_interval
        self._runner_secret = runner_secret or None
        self._adapters = dict(adapters) if adapters is not None else default_adapters()
        # Per key list, the index of the key to use next; moves on 429/401/403 only, so a
        # key that works keeps being used and a throttled one is skipped by later jobs too.
        self._cursor: dict[str, int] = {}
        self._secrets = tuple(
            sorted({k for ks in self._keys.values() for k in ks} | {self._runner_secret or ""})
        )

    # --- public ------------------------------------------------------------------------------

    async def run(self, job: ProviderJob) -> ProviderResult:
        """Run one job; raise ProviderError (carrying every attempt) on final failure."""
        adapter = self._adapters.get(job.provider)
        if adapter is None:
            raise ProviderError("not_configured", f"unknown provider {job.provider!r}")
        if job.kind not in KINDS:
            raise ProviderError("not_configured", f"unknown kind {job.kind!r}")
        if job.kind not in adapter.kinds:
            raise ProviderError(
                "not_configured", f"provider {adapter.name!r} does not support kind {job.kind!r}"
            )
        timeout = min(
            _number(job.options, "timeout_seconds") or DEFAULT_TIMEOUTS[job.kind],
            MAX_TIMEOUT_SECONDS,
        )
        max_attempts = int(_number(job.options, "max_attempts") or DEFAULT_MAX_ATTEMPTS)
        max_attempts = min(max(max_attempts, 1), MAX_ATTEMPTS_CAP)
        poll_interval = _number(job.options, "poll_interval") or self._poll_interval
        max_download = int(_number(job.options, "max_download_bytes") or DEFAULT_MAX_DOWNLOAD_BYTES)
        ref, keys = self._key_list(job)

        attempts: list[Attempt] = []
        index = self._cursor.get(ref, 0) % len(keys) if ref and keys else 0
        tried: set[int] = set()
        for number in range(1, max_attempts + 1):
            key = keys[index] if keys else None
            tried.add(index)
            call = Call(
                http=self._http,
                job=job,
                auth_headers=adapter.auth_headers(
                    key, self._runner_secret if adapter.name == "local" else None
                ),
                secrets=self._secrets,
                deadline=time.monotonic() + timeout,
                poll_interval=poll_interval,
                max_download_bytes=max_download,
            )
            started = time.monotonic()
            error: ProviderError | None = None
            output: AdapterOutput | None = None
            try:
                async with asyncio.timeout(timeout):
                    output = await adapter.run(call)
                self._check_not_empty(job, output)
            except ProviderError as exc:
                error = exc
            except TimeoutError:
                error = ProviderError("timeout", f"no result within {timeout:g}s")
            except (ValueError, TypeError) as exc:  # malformed params reaching an adapter
                logger.warning("invalid job for provider", exc_info=True)
                error = ProviderError("bad_request", f"invalid job parameters ({exc})")
            latency_ms = int((time.monotonic() - started) * 1000)
            attempts.append(
                Attempt(job.provider, call.last_status, latency_ms, error.code if error else None)
            )
            self._log(job, number, attempts[-1])
            if error is None and output is not None:
                return ProviderResult(
                    media=list(output.media),
                    text=output.text,
                    usage=dict(output.usage),
                    attempts=attempts,
                )
            assert error is not None

            retryable = error.retryable
            if error.code in ("rate_limited", "unauthorized") and ref and len(keys) > 1:
                index = self._rotate(ref, len(keys), index)
                if error.code == "unauthorized":
                    retryable = index not in tried  # another key may be valid
            if not retryable or number == max_attempts:
                raise ProviderError(
                    error.code,
                    redact(error.message, self._secrets),
                    retryable=error.retryable,
                    http_status=error.http_status,
                    attempts=attempts,
                ) from None
            await asyncio.sleep(self._backoff(number, error.retry_after))
        raise AssertionError("unreachable")  # pragma: no cover

    # --- internals ---------------------------------------------------------------------------

    def _key_list(self, job: ProviderJob) -> tuple[str | None, tuple[str, ...]]:
        ref = job.options.get("api_key_ref")
        if ref is None or ref == "":
            return None, ()
        if not isinstance(ref, str):
            raise ProviderError("not_configured", "api_key_ref must be a string")
        keys = self._keys.get(ref, ())
        if not keys:
            raise ProviderError("not_configured", f"no API keys configured for {ref!r}")
        return ref, keys

    def _rotate(self, ref: str, count: int, failed: int) -> int:
        """Move the shared cursor past the failed key (unless another job already did)."""
        current = self._cursor.get(ref, 0) % count
        if current == failed:
            current = (failed + 1) % count
            self._cursor[ref] = current
        return current

    def _backoff(self, number: int, hint: float | None) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**(n-1))], at least the hint (capped)."""
        cap = min(self._max_backoff, self._base_backoff * 2 ** (number - 1))
        delay = random.uniform(0.0, cap)
        if hint is not None:
            delay = max(delay, min(hint, self._max_backoff))
        return delay

    @staticmethod
    def _check_not_empty(job: ProviderJob, output: AdapterOutput) -> None:
        if job.kind == "chat":
            if not (output.text or "").strip():
                raise ProviderError("empty_output", "provider returned no text", retryable=False)
        elif not output.media or any(not blob.data for blob in output.media):
            raise ProviderError("empty_output", "provider returned no media", retryable=False)

    @staticmethod
    def _log(job: ProviderJob, number: int, attempt: Attempt) -> None:
        logger.log(
            logging.INFO if attempt.error_code is None else logging.WARNING,
            "provider attempt",
            extra={
                "generation_id": job.generation_id,
                "provider": job.provider,
                "provider_model": job.provider_model,
                "attempt": number,
                "http_status": attempt.http_status,
                "latency_ms": attempt.latency_ms,
                "error_code": attempt.error_code,
            },
        )
