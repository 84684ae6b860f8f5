"""Fake AUTOMATIC1111 web UI (+ AnimateDiff, + OpenAI chat) for the `local` adapter.

Auth is the runner convention: `X-Runner-Secret: <secret>` (pass keys={secret}).
"""

from __future__ import annotations

import base64
from typing import ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.base import FakeProvider, tiny_gif
from tests.fakes.openai import chat_response


class FakeA1111(FakeProvider):
    name: ClassVar[str] = "local"
    auth_header: ClassVar[str] = "x-runner-secret"
    auth_scheme: ClassVar[str | None] = None

    def routes(self) -> list[Route]:
        return [
            Route("/sdapi/v1/txt2img", self.txt2img, methods=["POST"]),
            Route("/sdapi/v1/img2img", self.img2img, methods=["POST"]),
            Route("/sdapi/v1/sd-models", self.sd_models, methods=["GET"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
        ]

    def error(self, status: int, message: str) -> Response:
        return JSONResponse({"detail": message}, status_code=status)

    async def txt2img(self, request: Request) -> Response:
        return await self._generate(request)

    async def img2img(self, request: Request) -> Response:
        return await self._generate(request, edit=True)

    async def _generate(self, request: Request, edit: bool = False) -> Response:
        if (failure := await self.check(request, gated=True)) is not None:
            return failure
        body = request.state.recorded.json()
        if edit and not body.get("init_images"):
            return self.error(422, "init_images required")
        if self.faults.empty:
            return JSONResponse({"images": [], "parameters": body, "info": "{}"})
        if self.faults.huge_body:
            return self.huge(self.faults.huge_body, b'{"images": ["iVBORw0KGgo', "application/json")
        scripts = {k.lower(): v for k, v in (body.get("alwayson_scripts") or {}).items()}
        animate = scripts.get("animatediff", {}).get("args", [{}])[0]
        if animate.get("enable"):
            data = tiny_gif(int(animate.get("video_length", 4)), body.get("prompt", ""))
        else:
            data = self.image(body.get("prompt", "") + ("edit" if edit else ""))[0]
        self.outputs.append(data)
        return JSONResponse(
            {
                "images": [base64.b64encode(data).decode()],
                "parameters": {**body, "init_images": None},
                "info": "{}",
            }
        )

    async def sd_models(self, request: Request) -> Response:
        if (failure := await self.check(request)) is not None:
            return failure
        return JSONResponse([{"title": "sdxl-base", "model_name": "sdxl-base"}])

    async def chat(self, request: Request) -> Response:
        if (failure := await self.check(request, gated=True)) is not None:
            return failure
        body = request.state.recorded.json()
        text = "  " if self.faults.empty else self.faults.reply_text
        return JSONResponse(chat_response(body.get("model", ""), text))
