"""Fake Hugging Face Inference API: POST /models/{model} -> raw image bytes.

`loading_times=N` answers the first N requests with 503 {"error": "... is currently
loading", "estimated_time": 0.01}, as HF does while a cold model loads.
"""

from __future__ import annotations

from typing import ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.base import FAKE_MP4, FakeProvider, tiny_png, wants_video


class FakeHuggingFace(FakeProvider):
    name: ClassVar[str] = "huggingface"

    def routes(self) -> list[Route]:
        return [Route("/models/{model:path}", self.infer, methods=["POST"])]

    async def infer(self, request: Request) -> Response:
        if (failure := await self.check(request, gated=True)) is not None:
            return failure
        model = request.path_params["model"]
        if self.faults.loading_times > 0:
            self.faults.loading_times -= 1
            return JSONResponse(
                {"error": f"Model {model} is currently loading", "estimated_time": 0.01},
                status_code=503,
            )
        body = request.state.recorded.json()
        if "inputs" not in body:
            return self.error(400, "inputs is required")
        if self.faults.empty:
            return Response(b"", media_type="image/png")
        if self.faults.huge_body:
            return self.huge(self.faults.huge_body, tiny_png("huge")[:33])
        if wants_video(model, body) and self.faults.output_bytes is None:
            data, media_type = FAKE_MP4, "video/mp4"
        else:
            data, media_type = self.image(str(body["inputs"])[:100])
        self.outputs.append(data)
        return Response(data, media_type=media_type)
