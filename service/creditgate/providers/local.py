"""Adapter for the local runner or any AUTOMATIC1111/Forge web UI (+ OpenAI-style chat).

- image: POST /sdapi/v1/txt2img; LoRAs as `<lora:NAME:WEIGHT>` prompt tags (A1111 syntax);
  the route's provider_model selects the checkpoint via `override_settings`.
- edit: POST /sdapi/v1/img2img with `init_images` and `denoising_strength`.
- video: txt2img with the AnimateDiff extension in `alwayson_scripts`; images[0] is the GIF.
- chat: POST /v1/chat/completions (OpenAI shape, as served by the runner, Ollama, vLLM).
The runner's shared secret goes in `X-Runner-Secret`.
"""

from __future__ import annotations

import base64
import math
from typing import Any

from creditgate.providers.base import (
    ANIMATION_TYPES,
    AdapterOutput,
    ProviderError,
    loras,
    pick,
    provider_extras,
    require_kind,
)
from creditgate.providers.call import Call
from creditgate.providers.openai_compat import openai_chat

DEFAULT_DENOISING_STRENGTH = 0.75
DEFAULT_FPS = 8
DEFAULT_DURATION_SECONDS = 2.0
MAX_FRAMES = 240

_IMAGE_PARAMS = {
    "negative_prompt": "negative_prompt",
    "width": "width",
    "height": "height",
    "steps": "steps",
    "seed": "seed",
    "cfg_scale": "cfg_scale",
}


def lora_prompt(prompt: str, requested: list[tuple[str, float]]) -> str:
    """Append A1111 `<lora:NAME:WEIGHT>` tags for server-resolved LoRA names."""
    tags = []
    for name, weight in requested:
        if not name or any(c in name for c in "<>:\r\n"):
            raise ProviderError("not_configured", "LoRA source is not a valid A1111 LoRA name")
        tags.append(f"<lora:{name}:{weight:g}>")
    return " ".join([prompt, *tags]).strip()


class LocalAdapter:
    name = "local"
    kinds = frozenset({"image", "edit", "video", "chat"})

    def auth_headers(self, api_key: str | None, runner_secret: str | None) -> dict[str, str]:
        headers = {"X-Runner-Secret": runner_secret} if runner_secret else {}
        if api_key:  # e.g. a vLLM/Ollama server behind a bearer-token proxy
            headers["Authorization"] = f"Bearer {api_key}"
        return headers

    async def run(self, call: Call) -> AdapterOutput:
        job = call.job
        require_kind(self, job.kind)
        if job.kind == "chat":
            return await self._chat(call)
        return await self._image(call)

    async def _image(self, call: Call) -> AdapterOutput:
        job = call.job
        params = job.params
        prompt = params.get("prompt") or ""
        if not isinstance(prompt, str):
            raise ProviderError("bad_request", "prompt must be a string")
        body: dict[str, Any] = {
            "prompt": lora_prompt(prompt, loras(params)),
            "batch_size": 1,
            "n_iter": 1,
            "send_images": True,
            "save_images": False,
            **pick(params, _IMAGE_PARAMS),
        }
        if job.provider_model:
            body["override_settings"] = {"sd_model_checkpoint": job.provider_model}
            body["override_settings_restore_afterwards"] = True
        path = "/sdapi/v1/txt2img"
        if job.kind == "edit":
            if not job.init_image:
                raise ProviderError("bad_request", "edit needs an input image")
            path = "/sdapi/v1/img2img"
            body["init_images"] = [base64.b64encode(job.init_image).decode("ascii")]
            body["denoising_strength"] = params.get(
                "denoising_strength", params.get("strength", DEFAULT_DENOISING_STRENGTH)
            )
        elif job.kind == "video":
            body["alwayson_scripts"] = {"AnimateDiff": {"args": [self._animatediff(call)]}}
        body.update(provider_extras(job.options))

        data = await call.send_json("POST", call.url(path), json_body=body)
        images = data.get("images") if isinstance(data, dict) else None
        if not isinstance(images, list):
            raise call.error("provider_failed", f"POST {path}: response has no images list")
        blobs = [call.decode_base64(item) for item in images if item]
        if job.kind == "video":
            # AnimateDiff puts the animation first; other entries may be single frames.
            blobs = [b for b in blobs if b.content_type in ANIMATION_TYPES][:1]
        return AdapterOutput(media=blobs[:1])

    @staticmethod
    def _animatediff(call: Call) -> dict[str, Any]:
        params = call.job.params
        fps = int(params.get("fps") or DEFAULT_FPS)
        duration = float(params.get("duration_seconds") or DEFAULT_DURATION_SECONDS)
        if fps <= 0 or duration <= 0:
            raise ProviderError("bad_request", "fps and duration_seconds must be positive")
        frames = min(max(math.ceil(fps * duration), 2), MAX_FRAMES)
        args: dict[str, Any] = {
            "enable": True,
            "video_length": frames,
            "fps": fps,
            "format": ["GIF"],
        }
        model = call.job.options.get("animatediff_model")
        if isinstance(model, str) and model:
            args["model"] = model
        return args

    async def _chat(self, call: Call) -> AdapterOutput:
        return await openai_chat(call, call.url("/v1/chat/completions"))
