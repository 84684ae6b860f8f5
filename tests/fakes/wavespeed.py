"""Fake WaveSpeedAI v3 API (`Authorization: Bearer <key>`).

POST /api/v3/{model}                 -> {"code": 200, "data": {"id", "status": "created",
                                          "urls": {"get"}, "outputs": []}}
GET  /api/v3/predictions/{id}/result -> data.status processing ... completed (outputs: URLs)
                                        or failed (data.error)
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.base import FAKE_MP4, FakeProvider, wants_video


class FakeWavespeed(FakeProvider):
    name: ClassVar[str] = "wavespeed"

    def __init__(self, **kwargs: Any) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        super().__init__(**kwargs)

    def routes(self) -> list[Route]:
        return [
            self.file_route(),
            Route("/api/v3/predictions/{id}/result", self.result, methods=["GET"]),
            Route("/api/v3/{model:path}", self.submit, methods=["POST"]),
        ]

    def error(self, status: int, message: str) -> Response:
        return JSONResponse({"code": status, "message": message, "data": None}, status_code=status)

    def _data(self, prediction_id: str, status: str, **extra: Any) -> dict[str, Any]:
        job = self.jobs[prediction_id]
        return {
            "id": prediction_id,
            "model": job["model"],
            "status": status,
            "outputs": [],
            "urls": {"get": f"{self.url}/api/v3/predictions/{prediction_id}/result"},
            "has_nsfw_contents": [],
            "created_at": "2025-01-01T00:00:00.000Z",
            "error": "",
            **extra,
        }

    async def submit(self, request: Request) -> Response:
        if (failure := await self.check(request, gated=True)) is not None:
            return failure
        if self.faults.huge_body:
            return self.huge(self.faults.huge_body, b'{"code": 200, "data": "', "application/json")
        prediction_id = uuid.uuid4().hex
        self.jobs[prediction_id] = {
            "model": request.path_params["model"],
            "body": request.state.recorded.json(),
            "polls": 0,
        }
        return JSONResponse(
            {"code": 200, "message": "success", "data": self._data(prediction_id, "created")}
        )

    async def result(self, request: Request) -> Response:
        if (failure := await self.check(request)) is not None:
            return failure
        prediction_id = request.path_params["id"]
        if prediction_id not in self.jobs:
            return self.error(404, "prediction not found")
        job = self.jobs[prediction_id]
        job["polls"] += 1
        if job["polls"] <= self.faults.pending_polls:
            data = self._data(prediction_id, "processing")
        elif self.faults.fail_job:
            data = self._data(prediction_id, "failed", error="generation failed")
        elif self.faults.empty:
            data = self._data(prediction_id, "completed")
        else:
            if wants_video(job["model"], job["body"]):
                url = self.add_file(FAKE_MP4, "video/mp4", "mp4")
            else:
                image, declared = self.image(str(job["body"].get("prompt")))
                url = self.handed_url(self.add_file(image, declared, "png"))
            data = self._data(prediction_id, "completed", outputs=[url])
        return JSONResponse({"code": 200, "message": "success", "data": data})
