"""Adapter for fal.ai's queue API.

POST {endpoint}/{provider_model} with `Authorization: Key <key>` returns
{request_id, status_url, response_url}. The status URL is polled until COMPLETED
(IN_QUEUE / IN_PROGRESS mean wait); then the response URL returns the model output,
{"images": [{"url", "content_type"}]} or {"video": {"url", "content_type"}}, and each URL
is downloaded. The endpoint is normally https://queue.fal.run.
"""

from __future__ import annotations

import base64
from typing import Any

from creditgate.providers.base import (
    AdapterOutput,
    MediaBlob,
    ProviderError,
    loras,
    pick,
    provider_extras,
    require_kind,
    sniff_content_type,
)
from creditgate.providers.call import Call

_PARAMS = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "steps": "num_inference_steps",
    "cfg_scale": "guidance_scale",
    "seed": "seed",
}
_WAITING = frozenset({"IN_QUEUE", "IN_PROGRESS"})


def data_uri(data: bytes) -> str:
    """fal (and Wavespeed) accept inline inputs as base64 data URIs."""
    content_type = sniff_content_type(data) or "application/octet-stream"
    return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"


class FalAdapter:
    name = "fal"
    kinds = frozenset({"image", "edit", "video"})

    def auth_headers(self, api_key: str | None, runner_secret: str | None) -> dict[str, str]:
        return {"Authorization": f"Key {api_key}"} if api_key else {}

    async def run(self, call: Call) -> AdapterOutput:
        job = call.job
        require_kind(self, job.kind)
        if not job.provider_model:
            raise ProviderError("not_configured", "route has no fal model id")
        body: dict[str, Any] = pick(job.params, _PARAMS)
        width, height = job.params.get("width"), job.params.get("height")
        if width and height:
            body["image_size"] = {"width": width, "height": height}
        requested = loras(job.params)
        if requested:
            body["loras"] = [{"path": path, "scale": weight} for path, weight in requested]
        if job.kind == "edit":
            if not job.init_image:
                raise ProviderError("bad_request", "edit needs an input image")
            body["image_url"] = data_uri(job.init_image)
        if job.kind == "video":
            body.update(pick(job.params, {"duration_seconds": "duration", "fps": "fps"}))
        else:
            body["num_images"] = 1
        body.update(provider_extras(job.options))

        submitted = await call.send_json("POST", call.url(f"/{job.provider_model}"), json_body=body)
        if not isinstance(submitted, dict) or not submitted.get("request_id"):
            raise call.error("provider_failed", "fal submit returned no request_id")
        request_id = str(submitted["request_id"])
        # fal addresses requests by app id (owner/app), without the model's sub-path.
        app_id = "/".join(job.provider_model.split("/")[:2])
        base = call.url(f"/{app_id}/requests/{request_id}")
        status_url = submitted.get("status_url") or f"{base}/status"
        response_url = submitted.get("response_url") or base

        while True:
            status = await call.poll_json(status_url)
            state = status.get("status") if isinstance(status, dict) else None
            if isinstance(status, dict) and status.get("error"):
                raise call.error("provider_failed", f"fal job failed: {status['error']}")
            if state == "COMPLETED":
                break
            if state not in _WAITING:
                raise call.error("provider_failed", f"fal job ended with status {state!r}")
            await call.pause()

        result = await call.poll_json(response_url)
        return AdapterOutput(media=await self._media(call, result))

    @staticmethod
    async def _media(call: Call, result: Any) -> list[MediaBlob]:
        if not isinstance(result, dict):
            raise call.error("provider_failed", "fal result is not an object")
        files: list[Any] = []
        images = result.get("images")
        if isinstance(images, list):
            files.extend(images)
        for key in ("image", "video"):
            if isinstance(result.get(key), dict):
                files.append(result[key])
        media = []
        for item in files:
            if isinstance(item, dict) and item.get("url"):
                media.append(await call.download(item["url"], item.get("content_type")))
        return media
