"""Adapter for WaveSpeedAI's v3 API.

POST {endpoint}/api/v3/{provider_model} with `Authorization: Bearer <key>` returns
{"code": 200, "data": {"id", "status", "urls": {"get"}}}. The result is polled at
GET {endpoint}/api/v3/predictions/{id}/result until data.status is "completed" (outputs
is a list of URLs, downloaded here) or "failed" (provider_failed with data.error).
The endpoint is normally https://api.wavespeed.ai.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from creditgate.providers.base import (
    AdapterOutput,
    ProviderError,
    loras,
    pick,
    provider_extras,
    require_kind,
)
from creditgate.providers.call import Call
from creditgate.providers.fal import data_uri

_PARAMS = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "steps": "num_inference_steps",
    "cfg_scale": "guidance_scale",
    "seed": "seed",
}
_WAITING = frozenset({"created", "processing", "queued", "pending", "starting"})


class WavespeedAdapter:
    name = "wavespeed"
    kinds = frozenset({"image", "edit", "video"})

    def auth_headers(self, api_key: str | None, runner_secret: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def run(self, call: Call) -> AdapterOutput:
        job = call.job
        require_kind(self, job.kind)
        if not job.provider_model:
            raise ProviderError("not_configured", "route has no Wavespeed model id")
        body: dict[str, Any] = pick(job.params, _PARAMS)
        width, height = job.params.get("width"), job.params.get("height")
        if width and height:
            body["size"] = f"{width}*{height}"
        requested = loras(job.params)
        if requested:
            body["loras"] = [{"path": path, "scale": weight} for path, weight in requested]
        if job.kind == "edit":
            if not job.init_image:
                raise ProviderError("bad_request", "edit needs an input image")
            body["image"] = data_uri(job.init_image)
        if job.kind == "video":
            body.update(pick(job.params, {"duration_seconds": "duration"}))
        body.update(provider_extras(job.options))

        created = self._data(
            call,
            await call.send_json("POST", call.url(f"/api/v3/{job.provider_model}"), json_body=body),
        )
        prediction_id = created.get("id")
        if not isinstance(prediction_id, str) or not prediction_id:
            raise call.error("provider_failed", "Wavespeed returned no prediction id")
        result_url = call.url(f"/api/v3/predictions/{quote(prediction_id, safe='')}/result")

        data = created
        while data.get("status") != "completed":
            status = data.get("status")
            if status == "failed":
                raise call.error("provider_failed", f"Wavespeed job failed: {data.get('error')}")
            if status not in _WAITING:
                raise call.error("provider_failed", f"Wavespeed job has status {status!r}")
            await call.pause()
            data = self._data(call, await call.poll_json(result_url))

        outputs = data.get("outputs")
        if not isinstance(outputs, list):
            raise call.error("provider_failed", "Wavespeed result has no outputs list")
        return AdapterOutput(media=[await call.download(url) for url in outputs if url])

    @staticmethod
    def _data(call: Call, envelope: Any) -> dict[str, Any]:
        """Unwrap {"code", "message", "data"}; a non-200 `code` is an HTTP-like error."""
        if not isinstance(envelope, dict):
            raise call.error("provider_failed", "Wavespeed response is not an object")
        code = envelope.get("code", 200)
        if isinstance(code, int) and not isinstance(code, bool) and code != 200:
            message = str(envelope.get("message") or "")
            error_code = (
                "rate_limited"
                if code == 429
                else "unauthorized"
                if code in (401, 403)
                else "server_error"
                if code >= 500
                else "bad_request"
            )
            raise call.error(error_code, f"Wavespeed code {code}: {message}", http_status=code)
        if not isinstance(envelope.get("data"), dict):
            raise call.error("provider_failed", "Wavespeed response has no data object")
        data: dict[str, Any] = envelope["data"]
        return data
