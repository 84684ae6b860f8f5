"""Fake OpenAI-compatible chat API (DeepSeek, vLLM, Ollama...): POST /chat/completions."""

from __future__ import annotations

from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.base import FakeProvider

FAKE_USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def chat_response(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": dict(FAKE_USAGE),
    }


class FakeOpenAI(FakeProvider):
    name: ClassVar[str] = "openai"

    def routes(self) -> list[Route]:
        return [
            Route("/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/models", self.models, methods=["GET"]),
        ]

    def error(self, status: int, message: str) -> Response:
        kind = "rate_limit_error" if status == 429 else "invalid_request_error"
        return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)

    async def chat(self, request: Request) -> Response:
        if (failure := await self.check(request, gated=True)) is not None:
            return failure
        body = request.state.recorded.json()
        if not body.get("messages"):
            return self.error(400, "messages is required")
        text = "   " if self.faults.empty else self.faults.reply_text
        return JSONResponse(chat_response(body.get("model", ""), text))

    async def models(self, request: Request) -> Response:
        if (failure := await self.check(request)) is not None:
            return failure
        return JSONResponse({"object": "list", "data": [{"id": "fake-chat", "object": "model"}]})
