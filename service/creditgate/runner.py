"""Local runner: a weight-free stand-in for an AUTOMATIC1111 + OpenAI-compatible server.

    python -m creditgate.runner --host 127.0.0.1 --port 7860   # secret from
    CREDITGATE_RUNNER_SECRET (or --secret, which other local users can see in `ps`)

It is the embedded default provider: the service's `local` adapter speaks to it exactly as
to a real AUTOMATIC1111/Forge web UI (txt2img, img2img, AnimateDiff via alwayson_scripts)
or an Ollama/vLLM server (/v1/chat/completions), so swapping in a real server is a config
change. Outputs are deterministic functions of the inputs (same prompt, seed and size give
identical bytes), drawn with Pillow; no model weights are downloaded.

Security: it binds to loopback only unless --allow-remote, and every request must carry
the shared secret in X-Runner-Secret (compared in constant time), because anything that
can reach it can generate without being charged.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import io
import ipaddress
import json
import os
import random
import re
import sys
import time
from collections.abc import Sequence
from functools import cache
from typing import Any, Literal, TypeVar

import uvicorn
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

SECRET_HEADER = "X-Runner-Secret"
SECRET_ENV = "CREDITGATE_RUNNER_SECRET"
DEFAULT_PORT = 7860  # AUTOMATIC1111's default
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_SIDE = 2048
MAX_INIT_PIXELS = 4096 * 4096
MAX_FRAMES = 120
MAX_ANIMATION_PIXELS = MAX_FRAMES * 512 * 512  # frames x width x height
IMAGE_MODELS = ("sdxl-base", "sd15")
CHAT_MODELS = ("local-chat",)
LORA_TAG = re.compile(r"<lora:([^:<>]+):(-?\d+(?:\.\d+)?)>")
TOKEN = re.compile(r"\w+|[^\w\s]")
_VOCAB = (
    "amber", "basalt", "cinder", "delta", "ember", "fjord", "granite", "harbor", "iris",
    "juniper", "kelp", "lumen", "meadow", "nimbus", "onyx", "prism", "quartz", "river",
    "sable", "tundra", "umber", "velvet", "willow", "xenon", "yarrow", "zephyr",
)  # fmt: skip

M = TypeVar("M", bound=BaseModel)


# --- request models --------------------------------------------------------------------------


class _Model(BaseModel):
    # A1111 and OpenAI accept many fields the runner does not model: ignore them, but type
    # the ones it reads strictly (no "512" for 512, no true for 1).
    model_config = ConfigDict(extra="ignore", strict=True)


class Txt2ImgRequest(_Model):
    prompt: str = Field("", max_length=20_000)
    negative_prompt: str = Field("", max_length=20_000)
    width: int = Field(512, ge=64, le=MAX_SIDE)
    height: int = Field(512, ge=64, le=MAX_SIDE)
    steps: int = Field(20, ge=1, le=150)
    seed: int = Field(-1, ge=-1, le=2**32 - 1)
    cfg_scale: float = Field(7.0, ge=1.0, le=30.0)
    sampler_name: str = Field("Euler a", max_length=100)
    batch_size: int = Field(1, ge=1, le=8)
    n_iter: int = Field(1, ge=1, le=8)
    override_settings: dict[str, Any] = Field(default_factory=dict)
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _batch(self) -> Txt2ImgRequest:
        if self.batch_size * self.n_iter > 8:
            raise ValueError("batch_size * n_iter must be at most 8")
        return self

    @property
    def model_name(self) -> str:
        name = self.override_settings.get("sd_model_checkpoint")
        return name if isinstance(name, str) and name else IMAGE_MODELS[0]


class Img2ImgRequest(Txt2ImgRequest):
    init_images: list[str] = Field(min_length=1, max_length=8)
    denoising_strength: float = Field(0.75, ge=0.0, le=1.0)


class AnimateDiffArgs(_Model):
    enable: bool = False
    video_length: int = Field(16, ge=2, le=MAX_FRAMES)
    fps: int = Field(8, ge=1, le=60)
    format: list[str] = Field(default_factory=lambda: ["GIF"])
    model: str = Field("mm_sd15_v3.safetensors", max_length=200)
    loop_number: int = Field(0, ge=0)


class ContentPart(_Model):
    type: str
    text: str | None = None


class ChatMessage(_Model):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content)
        return self.content or ""


class ChatRequest(_Model):
    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    max_tokens: int | None = Field(None, ge=1, le=32_768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32_768)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    n: int = Field(1, ge=1, le=1)
    stream: Literal[False] = False


# --- deterministic rendering -----------------------------------------------------------------


def _digest(*parts: Any) -> bytes:
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).digest()


@cache
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default()


def _color(rng: random.Random) -> tuple[int, int, int]:
    return rng.randrange(256), rng.randrange(256), rng.randrange(256)


def effective_seed(req: Txt2ImgRequest, extra: str = "") -> int:
    """A1111 draws a random seed for -1; the runner derives one from the inputs instead."""
    if req.seed != -1:
        return req.seed
    digest = _digest(req.prompt, req.negative_prompt, req.width, req.height, req.model_name, extra)
    return int.from_bytes(digest[:4], "big")


def render(
    req: Txt2ImgRequest, seed: int, *, frame: int = 0, frames: int = 1, salt: str = ""
) -> Image.Image:
    """One picture as a pure function of the request, the seed and the frame index."""
    w, h = req.width, req.height
    rng = random.Random(
        _digest(req.prompt, req.negative_prompt, w, h, req.steps, req.cfg_scale, seed, salt)
    )
    image = ImageOps.colorize(Image.linear_gradient("L").resize((w, h)), _color(rng), _color(rng))
    draw = ImageDraw.Draw(image)
    phase = frame / frames
    for i in range(min(req.steps, 12)):
        x = (rng.randrange(w) + int(phase * w * (1 + i % 3))) % w
        y = rng.randrange(h)
        r = rng.randrange(4, max(5, min(w, h) // 5))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=_color(rng))
    for name, weight in LORA_TAG.findall(req.prompt):  # a LoRA visibly tints the picture
        tint = Image.new("RGB", (w, h), _color(random.Random(name)))
        image = Image.blend(image, tint, min(abs(float(weight)), 1.0) * 0.3)
        draw = ImageDraw.Draw(image)
    label = LORA_TAG.sub("", req.prompt).strip()[:48]
    draw.text((6, 6), label, fill=(255, 255, 255), font=_font())
    return image


def _infotext(req: Txt2ImgRequest, seed: int) -> str:
    lines = [req.prompt]
    if req.negative_prompt:
        lines.append(f"Negative prompt: {req.negative_prompt}")
    lines.append(
        f"Steps: {req.steps}, Sampler: {req.sampler_name}, CFG scale: {req.cfg_scale:g}, "
        f"Seed: {seed}, Size: {req.width}x{req.height}, Model: {req.model_name}"
    )
    return "\n".join(lines)


def _png(image: Image.Image, infotext: str) -> bytes:
    meta = PngInfo()
    meta.add_text("parameters", infotext)  # A1111 stores generation parameters here too
    buf = io.BytesIO()
    image.save(buf, "PNG", pnginfo=meta)
    return buf.getvalue()


def _gif(frames: list[Image.Image], fps: int) -> bytes:
    buf = io.BytesIO()
    frames[0].save(
        buf,
        "GIF",
        save_all=True,
        append_images=frames[1:],
        duration=max(1000 // fps, 20),
        loop=0,
    )
    return buf.getvalue()


def decode_init_image(value: str) -> Image.Image:
    payload = value.partition(",")[2] if value.startswith("data:") else value
    try:
        raw = base64.b64decode(payload, validate=True)
        image = Image.open(io.BytesIO(raw))
        if image.width * image.height > MAX_INIT_PIXELS:
            raise ValueError("init image is too large")
        return image.convert("RGB")
    except (binascii.Error, UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise ValueError("init_images[0] is not a base64-encoded image") from None


def _animatediff(req: Txt2ImgRequest) -> AnimateDiffArgs | None:
    scripts = {name.lower(): value for name, value in req.alwayson_scripts.items()}
    script = scripts.get("animatediff")
    if script is None:
        return None
    args = script.get("args") if isinstance(script, dict) else None
    if not isinstance(args, list) or not args or not isinstance(args[0], dict):
        raise ValueError("AnimateDiff args must be a list holding one object")
    parsed = AnimateDiffArgs.model_validate(args[0])
    if not parsed.enable:
        return None
    if "GIF" not in {f.upper() for f in parsed.format}:
        raise ValueError("the local runner renders AnimateDiff output as GIF only")
    if parsed.video_length * req.width * req.height > MAX_ANIMATION_PIXELS:
        raise ValueError("animation too large: lower video_length or the size")
    return parsed


def generate(req: Txt2ImgRequest) -> dict[str, Any]:
    """txt2img / img2img / AnimateDiff, returning the A1111 response body."""
    init: Image.Image | None = None
    salt = ""
    if isinstance(req, Img2ImgRequest):
        init = decode_init_image(req.init_images[0]).resize((req.width, req.height))
        salt = hashlib.sha256(init.tobytes()).hexdigest()
    animation = _animatediff(req)
    seed = effective_seed(req, salt)

    def picture(seed: int, frame: int = 0, frames: int = 1) -> Image.Image:
        image = render(req, seed, frame=frame, frames=frames, salt=salt)
        if init is not None and isinstance(req, Img2ImgRequest):
            image = Image.blend(init, image, req.denoising_strength)
        return image

    seeds = [seed + i for i in range(req.batch_size * req.n_iter)]
    if animation is not None:
        frames = [picture(seed, i, animation.video_length) for i in range(animation.video_length)]
        images = [_gif(frames, animation.fps)]
        seeds = [seed]
    else:
        images = [_png(picture(s), _infotext(req, s)) for s in seeds]

    info = {
        "prompt": req.prompt,
        "all_prompts": [req.prompt] * len(seeds),
        "negative_prompt": req.negative_prompt,
        "seed": seed,
        "all_seeds": seeds,
        "width": req.width,
        "height": req.height,
        "steps": req.steps,
        "cfg_scale": req.cfg_scale,
        "sampler_name": req.sampler_name,
        "sd_model_name": req.model_name,
        "denoising_strength": getattr(req, "denoising_strength", None),
        "loras": [{"name": n, "weight": float(w)} for n, w in LORA_TAG.findall(req.prompt)],
        "animatediff": animation.model_dump() if animation else None,
        "infotexts": [_infotext(req, s) for s in seeds],
    }
    parameters = req.model_dump()
    if "init_images" in parameters:
        parameters["init_images"] = None  # A1111 echoes parameters; don't echo megabytes
    return {
        "images": [base64.b64encode(b).decode("ascii") for b in images],
        "parameters": parameters,
        "info": json.dumps(info),
    }


def count_tokens(text: str) -> int:
    return len(TOKEN.findall(text))


def chat_completion(req: ChatRequest) -> dict[str, Any]:
    """A deterministic OpenAI chat completion derived from the model and the messages."""
    digest = _digest(req.model, [(m.role, m.text) for m in req.messages])
    last_user = next((m.text for m in reversed(req.messages) if m.role == "user"), "")
    said = " ".join(last_user.split())[:200] or "(nothing)"
    words = " ".join(_VOCAB[b % len(_VOCAB)] for b in digest[:8])
    text = f"Local runner ({req.model}) heard: {said} | {words}."
    limit = req.max_completion_tokens or req.max_tokens
    finish_reason = "stop"
    tokens = list(TOKEN.finditer(text))
    if limit is not None and len(tokens) > limit:
        text = text[: tokens[limit - 1].end()]
        finish_reason = "length"
    prompt_tokens = sum(count_tokens(m.text) + 4 for m in req.messages) + 3
    completion_tokens = count_tokens(text)
    return {
        "id": f"chatcmpl-{digest.hex()[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": req.model,
        "system_fingerprint": "creditgate-runner",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


# --- HTTP layer ------------------------------------------------------------------------------


class RunnerSecretMiddleware:
    """401 for any HTTP request without the right X-Runner-Secret (constant-time compare)."""

    def __init__(self, app: ASGIApp, secret: str) -> None:
        if not secret:
            raise ValueError("the runner needs a non-empty secret")
        self.app = app
        self.secret = secret.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            supplied = b""
            for name, value in scope["headers"]:
                if name == b"x-runner-secret":
                    supplied = value
                    break
            if not hmac.compare_digest(supplied, self.secret):
                response = JSONResponse({"detail": "Unauthorized"}, status_code=401)
                await response(scope, receive, send)
                return
        elif scope["type"] != "lifespan":
            return  # no websockets: refuse by not accepting
        await self.app(scope, receive, send)


def _validation_detail(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def _invalid(message: str, detail: list[dict[str, Any]] | None = None) -> JSONResponse:
    detail = detail or [{"loc": ["body"], "msg": message, "type": "value_error"}]
    return JSONResponse(
        {"detail": detail, "error": {"message": message, "type": "invalid_request_error"}},
        status_code=422,
    )


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, "request body too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(413, "request body too large")
    return bytes(body)


def _parse(body: bytes, model: type[M]) -> M:
    return model.model_validate_json(body or b"{}")


async def txt2img(request: Request) -> Response:
    return await _images(request, Txt2ImgRequest)


async def img2img(request: Request) -> Response:
    return await _images(request, Img2ImgRequest)


async def _images(request: Request, model: type[Txt2ImgRequest]) -> Response:
    try:
        req = _parse(await _body(request), model)
        result = await run_in_threadpool(generate, req)
    except ValidationError as exc:
        return _invalid("invalid request", _validation_detail(exc))
    except ValueError as exc:
        return _invalid(str(exc))
    return JSONResponse(result)


async def chat_completions(request: Request) -> Response:
    try:
        req = _parse(await _body(request), ChatRequest)
    except ValidationError as exc:
        return _invalid("invalid request", _validation_detail(exc))
    return JSONResponse(chat_completion(req))


async def sd_models(request: Request) -> Response:
    models = []
    for name in IMAGE_MODELS:
        sha = hashlib.sha256(name.encode()).hexdigest()
        models.append(
            {
                "title": f"{name}.safetensors [{sha[:10]}]",
                "model_name": name,
                "hash": sha[:8],
                "sha256": sha,
                "filename": f"models/Stable-diffusion/{name}.safetensors",
                "config": None,
            }
        )
    return JSONResponse(models)


async def openai_models(request: Request) -> Response:
    data = [
        {"id": m, "object": "model", "created": 0, "owned_by": "creditgate"} for m in CHAT_MODELS
    ]
    return JSONResponse({"object": "list", "data": data})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def create_app(secret: str) -> Starlette:
    """The runner as an ASGI app; every request needs `X-Runner-Secret: <secret>`."""
    return Starlette(
        routes=[
            Route("/sdapi/v1/txt2img", txt2img, methods=["POST"]),
            Route("/sdapi/v1/img2img", img2img, methods=["POST"]),
            Route("/sdapi/v1/sd-models", sd_models, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", openai_models, methods=["GET"]),
        ],
        middleware=[Middleware(RunnerSecretMiddleware, secret=secret)],
        exception_handlers={HTTPException: _http_error},
    )


# --- process ---------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(host: str, port: int, secret: str, *, allow_remote: bool = False) -> None:
    """Run the runner with uvicorn (blocking). Refuses non-loopback hosts unless allowed."""
    if not secret:
        raise ValueError(f"a runner secret is required (--secret or {SECRET_ENV})")
    if not allow_remote and not is_loopback(host):
        raise ValueError(
            f"refusing to bind to non-loopback address {host!r} without --allow-remote"
        )
    uvicorn.run(
        create_app(secret),
        host=host,
        port=port,
        log_level="info",
        server_header=False,
        proxy_headers=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m creditgate.runner",
        description="creditgate local runner (AUTOMATIC1111 + OpenAI chat API, no weights)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--secret",
        default=os.environ.get(SECRET_ENV, ""),
        help=f"shared secret for X-Runner-Secret (default: ${SECRET_ENV}; prefer the variable)",
    )
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow binding a non-loopback address"
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    try:
        serve(args.host, args.port, args.secret, allow_remote=args.allow_remote)
    except ValueError as exc:
        print(f"creditgate.runner: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
