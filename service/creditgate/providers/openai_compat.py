"""Adapter for OpenAI-compatible chat completions (DeepSeek, vLLM, Ollama, OpenRouter...).

POST {endpoint}/chat/completions with `Authorization: Bearer <key>`; the endpoint is the
API base URL including any version prefix (https://api.deepseek.com, http://host:8000/v1).
The reply is choices[0].message.content; token counts come from `usage`.
"""

from __future__ import annotations

from typing import Any

from creditgate.providers.base import (
    AdapterOutput,
    chat_messages,
    pick,
    provider_extras,
    require_kind,
    text_content,
    usage_counts,
)
from creditgate.providers.call import Call


async def openai_chat(call: Call, url: str) -> AdapterOutput:
    """POST an OpenAI chat completion and read choices[0].message.content and usage."""
    job = call.job
    body: dict[str, Any] = {
        "model": job.provider_model,
        "messages": chat_messages(job.params),
        "stream": False,
        **pick(job.params, {"max_tokens": "max_tokens", "temperature": "temperature"}),
    }
    body.update(provider_extras(job.options))
    data = await call.send_json("POST", url, json_body=body)
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list):
        raise call.error("provider_failed", "chat response has no choices")
    text = ""
    if choices and isinstance(choices[0], dict) and isinstance(choices[0].get("message"), dict):
        text = text_content(choices[0]["message"].get("content"))
    return AdapterOutput(text=text, usage=usage_counts(data.get("usage")))


class OpenAICompatAdapter:
    name = "openai"
    kinds = frozenset({"chat"})

    def auth_headers(self, api_key: str | None, runner_secret: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def run(self, call: Call) -> AdapterOutput:
        require_kind(self, call.job.kind)
        return await openai_chat(call, call.url("/chat/completions"))
