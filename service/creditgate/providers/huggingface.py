"""Adapter for the Hugging Face Inference API (serverless or a dedicated endpoint).

POST {endpoint}/models/{provider_model} with `Authorization: Bearer <token>` and
{"inputs": prompt, "parameters": {...}}; the response body is the raw image (or video).
For edit, `inputs` is the base64 input image and the prompt goes in `parameters`
(image-to-image task). A 503 "model is currently loading" carries `estimated_time`; it
is retryable and the gateway waits at least that long (capped by max_backoff).
The serverless API cannot attach LoRAs at request time, so a LoRA job is refused.
"""

from __future__ import annotations

import base64
from typing import Any

from creditgate.providers.base import (
    AdapterOutput,
    ProviderError,
    loras,
    pick,
    provider_extras,
    require_kind,
)
from creditgate.providers.call import Call

_PARAMETERS = {
    "negative_prompt": "negative_prompt",
    "width": "width",
    "height": "height",
    "steps": "num_inference_steps",
    "cfg_scale": "guidance_scale",
    "seed": "seed",
}


class HuggingFaceAdapter:
    name = "huggingface"
    kinds = frozenset({"image", "edit", "video"})

    def auth_headers(self, api_key: str | None, runner_secret: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def run(self, call: Call) -> AdapterOutput:
        job = call.job
        require_kind(self, job.kind)
        if loras(job.params):
            raise ProviderError("not_configured", "Hugging Face inference cannot apply LoRAs")
        if not job.provider_model:
            raise ProviderError("not_configured", "route has no Hugging Face model id")
        prompt = job.params.get("prompt") or ""
        parameters: dict[str, Any] = pick(job.params, _PARAMETERS)
        if job.kind == "video":
            parameters.update(pick(job.params, {"duration_seconds": "duration", "fps": "fps"}))
        parameters.update(provider_extras(job.options))
        inputs: Any = prompt
        if job.kind == "edit":
            if not job.init_image:
                raise ProviderError("bad_request", "edit needs an input image")
            inputs = base64.b64encode(job.init_image).decode("ascii")
            parameters["prompt"] = prompt
        headers = {"Accept": "image/png"} if job.kind != "video" else {}
        if job.options.get("wait_for_model"):
            headers["x-wait-for-model"] = "true"

        resp = await call.send(
            "POST",
            call.url(f"/models/{job.provider_model}"),
            json_body={"inputs": inputs, "parameters": parameters},
            headers=headers,
        )
        declared = resp.headers.get("content-type", "")
        if declared.startswith("application/json"):
            data = call.parse_json(resp, "POST /models")
            if isinstance(data, dict) and data.get("error"):
                raise call.error("provider_failed", f"provider error: {data['error']}")
            return AdapterOutput()  # JSON without an image: nothing usable was produced
        if not resp.content:
            return AdapterOutput()
        return AdapterOutput(media=[call.blob(resp.content, declared)])
