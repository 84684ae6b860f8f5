"""Shared types of the provider gateway: jobs, results, attempts and normalized errors.

Everything a worker needs to call a provider and report the outcome to
`service_settle_generation` lives here; adapters only translate a `ProviderJob` into one
provider's wire API. Error codes are a closed set so the database and the metrics can rely
on them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from creditgate.media import sniff

if TYPE_CHECKING:
    from creditgate.providers.call import Call

KINDS = frozenset({"image", "edit", "video", "chat"})

ERROR_CODES = frozenset(
    {
        "timeout",
        "rate_limited",
        "server_error",
        "bad_request",
        "unauthorized",
        "empty_output",
        "network",
        "provider_failed",
        "not_configured",
        # A hostile or broken provider: an output or status URL the address policy refuses,
        # a response over the route's byte cap, an output that is not the media it claims
        # or exceeds the model's limits (pixels, frames, decode time).
        "blocked_url",
        "too_large",
        "invalid_output",
    }
)
# What a client may read about a provider failure (generations.error.message): one fixed
# sentence per code. The provider's own text (endpoint paths, model names, node names, echoed
# keys) goes to provider_calls and the logs only, redacted (DESIGN §4).
PUBLIC_MESSAGES = {
    "timeout": "the provider did not answer in time",
    "rate_limited": "the provider is busy; try again later",
    "server_error": "the provider failed",
    "bad_request": "the provider refused the request",
    "unauthorized": "the model is temporarily unavailable",
    "empty_output": "the provider returned no output",
    "network": "the provider could not be reached",
    "provider_failed": "the provider failed",
    "not_configured": "the model is temporarily unavailable",
    "blocked_url": "the provider returned an output that cannot be fetched",
    "too_large": "the output exceeds the model's limits",
    "invalid_output": "the provider returned an invalid output",
}


def public_message(code: str) -> str:
    return PUBLIC_MESSAGES.get(code, "the generation failed")


# Codes worth another try at the same provider: the request may well succeed next time.
RETRYABLE_CODES = frozenset({"timeout", "rate_limited", "server_error", "network"})

# Route options read by the gateway itself; never forwarded to a provider as parameters.
RESERVED_OPTIONS = frozenset(
    {
        "timeout_seconds",
        "max_attempts",
        "api_key_ref",
        "fn",
        "inputs",
        "poll_interval",
        "max_download_bytes",
        "extra",
        "wait_for_model",
        "animatediff_model",
        "allow_local_urls",
    }
)


@dataclass(frozen=True)
class MediaBlob:
    """One generated file: raw bytes and their MIME type (image/png, image/gif, video/mp4...)."""

    data: bytes
    content_type: str


@dataclass(frozen=True)
class ProviderJob:
    """Everything needed to run one generation at one provider (route resolved by the DB)."""

    generation_id: str
    kind: str
    provider: str
    provider_model: str
    endpoint: str
    options: Mapping[str, Any]
    params: Mapping[str, Any]
    init_image: bytes | None = None


@dataclass(frozen=True)
class Attempt:
    """One try of a job at the provider.

    A try covers every HTTP exchange needed to get the output (submit, polls, downloads);
    `http_status` is the status of the last provider response seen in the try (None when no
    response arrived) and `latency_ms` its wall time.
    """

    provider: str
    http_status: int | None
    latency_ms: int
    error_code: str | None


@dataclass(frozen=True)
class ProviderResult:
    media: list[MediaBlob]
    text: str | None
    usage: dict[str, int]
    attempts: list[Attempt]


class ProviderError(Exception):
    """A normalized provider failure. `message` never contains an API key or secret."""

    code: str
    retryable: bool
    http_status: int | None
    attempts: list[Attempt]
    message: str
    retry_after: float | None

    def __init__(
        self,
        code: str,
        message: str = "",
        *,
        retryable: bool | None = None,
        http_status: int | None = None,
        attempts: Sequence[Attempt] = (),
        retry_after: float | None = None,
    ) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown provider error code {code!r}")
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message or code
        self.retryable = code in RETRYABLE_CODES if retryable is None else retryable
        self.http_status = http_status
        self.attempts = list(attempts)
        # Provider's hint (Retry-After, HF estimated_time) for the next try, in seconds.
        self.retry_after = retry_after


@dataclass
class AdapterOutput:
    """What an adapter hands back for one successful try; the gateway adds the attempts."""

    media: list[MediaBlob] = field(default_factory=list)
    text: str | None = None
    usage: dict[str, int] = field(default_factory=dict)


class Adapter(Protocol):
    """One provider's wire API. Stateless: the same instance serves concurrent jobs."""

    name: str
    kinds: frozenset[str]

    def auth_headers(self, api_key: str | None, runner_secret: str | None) -> dict[str, str]:
        """Headers that authenticate a request to the job's endpoint (same origin only)."""
        ...

    async def run(self, call: Call) -> AdapterOutput:
        """Run the job once; raise ProviderError on failure."""
        ...


# --- helpers shared by adapters --------------------------------------------------------------


def sniff_content_type(data: bytes) -> str | None:
    """MIME type from the file's magic bytes, for the formats generation providers return."""
    return sniff(data)


def media_type(data: bytes) -> str:
    """Content type of generated bytes, from the bytes alone.

    A provider's declared type (Content-Type header, JSON `content_type`, data: URI) is never
    used: a lying provider could otherwise have HTML or SVG stored and served as an image.
    Anything unrecognised is application/octet-stream, which the worker refuses to store.
    """
    return sniff_content_type(data) or "application/octet-stream"


def declared_image(declared: str | None) -> bool:
    """Whether a provider's declared type claims an image."""
    return bool(declared) and str(declared).split(";", 1)[0].strip().lower().startswith("image/")


ANIMATION_TYPES = frozenset({"image/gif", "video/mp4", "video/webm", "video/quicktime"})


def provider_extras(options: Mapping[str, Any]) -> dict[str, Any]:
    """Provider parameters fixed by the route: non-reserved options plus options["extra"].

    They are server policy (sampler, safety checker...), so they override user params.
    """
    extras = {k: v for k, v in options.items() if k not in RESERVED_OPTIONS}
    extra = options.get("extra")
    if isinstance(extra, Mapping):
        extras.update(extra)
    return extras


def pick(params: Mapping[str, Any], mapping: Mapping[str, str]) -> dict[str, Any]:
    """Rename user params to provider names, dropping the absent and the None ones."""
    return {dst: params[src] for src, dst in mapping.items() if params.get(src) is not None}


def loras(params: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(source, weight) of each requested LoRA; `source` was resolved server-side by the DB."""
    out: list[tuple[str, float]] = []
    raw = params.get("loras") or []
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise ProviderError("bad_request", "loras must be a list")
    for item in raw:
        if not isinstance(item, Mapping) or not isinstance(item.get("source"), str):
            raise ProviderError("not_configured", "LoRA without a server-side source")
        weight = item.get("weight", 1.0)
        if not isinstance(weight, int | float) or isinstance(weight, bool):
            raise ProviderError("bad_request", "LoRA weight must be a number")
        out.append((item["source"], float(weight)))
    return out


def chat_messages(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = params.get("messages")
    if not messages and isinstance(params.get("prompt"), str):
        messages = [{"role": "user", "content": params["prompt"]}]
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        raise ProviderError("bad_request", "chat needs a non-empty messages list")
    out: list[dict[str, Any]] = []
    for m in messages:
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            raise ProviderError("bad_request", "each message needs a role and content")
        out.append({"role": m["role"], "content": m.get("content")})
    return out


def last_user_text(params: Mapping[str, Any]) -> str:
    """The prompt of a chat job as a single string (for providers without a chat API)."""
    for m in reversed(chat_messages(params)):
        if m["role"] == "user" and isinstance(m["content"], str):
            return m["content"]
    return ""


def text_content(content: Any) -> str:
    """OpenAI message content as text: a string, or a list of {"type": "text"} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def usage_counts(raw: Any) -> dict[str, int]:
    """prompt/completion/total token counts from an OpenAI-style `usage` object."""
    usage: dict[str, int] = {}
    if isinstance(raw, Mapping):
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            value = raw.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                usage[key] = value
    if "total_tokens" not in usage and {"prompt_tokens", "completion_tokens"} <= usage.keys():
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return usage


def require_kind(adapter: Adapter, kind: str) -> None:
    if kind not in adapter.kinds:
        raise ProviderError(
            "not_configured", f"provider {adapter.name!r} does not support kind {kind!r}"
        )
