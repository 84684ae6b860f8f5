"""Fake Gradio app speaking the documented HTTP ("Use via API" / curl) interface.

POST /gradio_api/call/{fn} {"data": [...]}  -> {"event_id"}
GET  /gradio_api/call/{fn}/{event_id}       -> SSE: heartbeat events, then
                                               `event: complete` + `data: [...]` or
                                               `event: error` + `data: "message"`
POST /gradio_api/upload (multipart "files")  -> ["<server path>"]
GET  /gradio_api/file={path}                 -> the file
`output` picks the output shape: "image" (FileData), "gallery", "video" or "text".
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.base import FAKE_MP4, FakeProvider


class FakeGradio(FakeProvider):
    name: ClassVar[str] = "gradio"

    def __init__(self, *, output: str = "image", **kwargs: Any) -> None:
        self.output = output
        self.events: dict[str, list[Any]] = {}
        self.uploads: dict[str, bytes] = {}
        super().__init__(**kwargs)

    def routes(self) -> list[Route]:
        return [
            Route("/gradio_api/upload", self.upload, methods=["POST"]),
            Route("/gradio_api/file={path:path}", self.file, methods=["GET"]),
            Route("/gradio_api/call/{fn}", self.call, methods=["POST"]),
            Route("/gradio_api/call/{fn}/{event_id}", self.result, methods=["GET"]),
        ]

    def error(self, status: int, message: str) -> Response:
        return JSONResponse({"detail": message}, status_code=status)

    def _file_data(self, data: bytes, mime: str, suffix: str) -> dict[str, Any]:
        path = f"/tmp/gradio/{uuid.uuid4().hex}/output.{suffix}"
        self.files[path] = (data, mime)
        self.outputs.append(data)
        return {
            "path": path,
            "url": f"{self.url}/gradio_api/file={path}",
            "size": len(data),
            "orig_name": f"output.{suffix}",
            "mime_type": mime,
            "is_stream": False,
            "meta": {"_type": "gradio.FileData"},
        }

    async def upload(self, request: Request) -> Response:
        if (failure := await self.check(request)) is not None:
            return failure
        path = f"/tmp/gradio/upload/{uuid.uuid4().hex}/input.png"
        self.uploads[path] = request.state.recorded.body  # raw multipart body, for assertions
        return JSONResponse([path])

    async def file(self, request: Request) -> Response:
        if (failure := await self.check(request)) is not None:
            return failure
        if self.faults.hang_downloads:
            await self._hang(self.faults.hang_downloads)
        path = "/" + request.path_params["path"].lstrip("/")
        if path not in self.files:
            return self.error(404, "file not found")
        data, mime = self.files[path]
        return Response(data, media_type=mime)

    async def call(self, request: Request) -> Response:
        if (failure := await self.check(request, gated=True)) is not None:
            return failure
        body = request.state.recorded.json()
        if not isinstance(body.get("data"), list):
            return self.error(422, "data must be a list")
        event_id = uuid.uuid4().hex
        self.events[event_id] = body["data"]
        return JSONResponse({"event_id": event_id})

    def _output(self, data: list[Any]) -> list[Any]:
        label = str(data[0]) if data else ""
        if self.faults.empty:
            return [None]
        if self.output == "text":
            return [self.faults.reply_text]
        if self.output == "video":
            return [{"video": self._file_data(FAKE_MP4, "video/mp4", "mp4"), "subtitles": None}]
        image = self._file_data(*self.image(label), "png")
        image["url"] = self.handed_url(image["url"])
        if self.output == "gallery":
            return [[{"image": image, "caption": None}], 42]
        return [image, 42]

    async def result(self, request: Request) -> Response:
        if (failure := await self.check(request)) is not None:
            return failure
        data = self.events.get(request.path_params["event_id"])
        if data is None:
            return self.error(404, "event not found")

        if self.faults.huge_body:
            return self.huge(
                self.faults.huge_body, b"event: generating\ndata: ", "text/event-stream"
            )

        async def events() -> AsyncIterator[str]:
            for _ in range(self.faults.pending_polls):
                yield "event: heartbeat\ndata: null\n\n"
            if self.faults.fail_job:
                yield 'event: error\ndata: "Something went wrong in the app"\n\n'
            else:
                yield f"event: complete\ndata: {json.dumps(self._output(data))}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
