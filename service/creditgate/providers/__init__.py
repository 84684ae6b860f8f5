"""Provider gateway: one async client with per-provider adapters.

    gateway = ProviderGateway(http, api_keys={"hf": ["hf_a", "hf_b"]}, runner_secret=...)
    result = await gateway.run(job)        # ProviderResult, or raises ProviderError

Adapters: local (runner / AUTOMATIC1111 + AnimateDiff, OpenAI chat), openai (OpenAI-compatible
chat), huggingface (Inference API), fal (queue API), wavespeed (v3 API), gradio (HTTP API).
"""

from creditgate.providers.base import (
    ERROR_CODES,
    KINDS,
    RETRYABLE_CODES,
    Adapter,
    AdapterOutput,
    Attempt,
    MediaBlob,
    ProviderError,
    ProviderJob,
    ProviderResult,
)
from creditgate.providers.call import Call
from creditgate.providers.gateway import DEFAULT_TIMEOUTS, ProviderGateway, default_adapters

__all__ = [
    "DEFAULT_TIMEOUTS",
    "ERROR_CODES",
    "KINDS",
    "RETRYABLE_CODES",
    "Adapter",
    "AdapterOutput",
    "Attempt",
    "Call",
    "MediaBlob",
    "ProviderError",
    "ProviderGateway",
    "ProviderJob",
    "ProviderResult",
    "default_adapters",
]
