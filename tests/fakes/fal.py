"""Fake fal.ai queue API (`Authorization: Key <key>`).

POST /{model_id}                         -> {request_id, status_url, response_url, cancel_url}
GET  /{owner}/{app}/requests/{id}/status -> {"status": IN_QUEUE | IN_PROGRESS | COMPLETED}
GET  /{owner}/{app}/requests/{id}        -> {"images": [{"url", "content_type"}]} or
                                            {"video": {"url", "content_type"}} (video models)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.base import FAKE_MP4, FakeProvider, wants_video


@dataclass
class _Job:
    model: str
    body: dict[str, Any]
    polls: int = 0


class FakeFal(FakeProvider):
    name: ClassVar[str] = "fal"
    auth_scheme: ClassVar[str | None] = "Key"

    def __init__(self, **kwargs: Any) -> None:
        self.jobs: dict[str, _Job] = {}
        super().__init__(**kwargs)

    def routes(self) -> list[Route]:
        return [
            self.file_route(),
            Route("/{path:path}", self.submit, methods=["POST"]),
            Route("/{path:path}", self.query, methods=["GET"]),
        ]

    def error(self, status: int, message: str) -> Response:
        return JSONResponse({"detail": message}, status_code=status)

    async def submit(self, request: Request) -> Response:
        if (failure := await self.check(request, gated=True)) is not None:
            return failure
        model = request.path_params["path"]
        request_id = str(uuid.uuid4())
        self.jobs[request_id] = _Job(model, request.state.recorded.json())
        app_id = "/".join(model.split("/")[:2])
        base = f"{self.url}/{app_id}/requests/{request_id}"
        if self.faults.huge_body:
            return self.huge(self.faults.huge_body, b'{"request_id": "', "application/json")
        return JSONResponse(
            {
                "request_id": request_id,
                "status_url": self.faults.status_url or f"{base}/status",
                "response_url": base,
                "cancel_url": f"{base}/cancel",
                "queue_position": 0,
            }
        )

    async def query(self, request: Request) -> Response:
        if (failure := await self.check(request)) is not None:
            return failure
        parts = request.path_params["path"].split("/")
        want_status = parts[-1] == "status"
        if want_status:
            parts = parts[:-1]
        if len(parts) < 2 or parts[-2] != "requests" or parts[-1] not in self.jobs:
            return self.error(404, "request not found")
        job = self.jobs[parts[-1]]
        if want_status:
            job.polls += 1
            if job.polls <= self.faults.pending_polls:
                state = "IN_QUEUE" if job.polls == 1 else "IN_PROGRESS"
                return JSONResponse({"status": state, "queue_position": 0})
            status: dict[str, Any] = {"status": "COMPLETED", "response_url": str(request.url)}
            if self.faults.fail_job:
                status["error"] = "model crashed"
            return JSONResponse(status)
        if self.faults.empty:
            return JSONResponse({"images": [], "seed": 1})
        if wants_video(job.model, job.body):
            url = self.add_file(FAKE_MP4, "video/mp4", "mp4")
            return JSONResponse({"video": {"url": url, "content_type": "video/mp4"}})
        data, declared = self.image(str(job.body.get("prompt")))
        url = self.handed_url(self.add_file(data, declared, "png"))
        return JSONResponse(
            {"images": [{"url": url, "content_type": declared, "width": 8, "height": 8}]}
        )
