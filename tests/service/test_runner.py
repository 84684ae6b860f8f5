"""Local runner: a real `python -m creditgate.runner` subprocess on a free loopback port."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from creditgate.providers import MediaBlob, ProviderError, ProviderGateway, ProviderJob
from creditgate.runner import is_loopback, serve
from tests.fakes import free_port, tiny_png

SECRET = "runner-test-secret-5f1c"
HEADERS = {"X-Runner-Secret": SECRET}
RUNNER = [sys.executable, "-m", "creditgate.runner"]


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("runner") / "runner.log"
    port = free_port()
    env = {**os.environ, "CREDITGATE_RUNNER_SECRET": SECRET}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*RUNNER, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=1) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"runner exited with {proc.returncode}: {log.read_text()}")
            try:
                if client.get(f"{url}/v1/models", headers=HEADERS).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    pytest.fail(f"runner did not start: {log.read_text()}")


@pytest.fixture
def client(runner: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=runner, headers=HEADERS, timeout=30) as c:
        yield c


def png(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def txt2img(client: httpx.Client, **body: Any) -> dict[str, Any]:
    resp = client.post("/sdapi/v1/txt2img", json={"width": 64, "height": 64, **body})
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


# --- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/sdapi/v1/txt2img"),
        ("POST", "/sdapi/v1/img2img"),
        ("GET", "/sdapi/v1/sd-models"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("GET", "/no/such/route"),
    ],
)
@pytest.mark.parametrize("secret", [None, "wrong", SECRET + "x", SECRET[:-1], ""])
def test_requests_without_the_secret_are_rejected(
    runner: str, method: str, path: str, secret: str | None
) -> None:
    headers = {} if secret is None else {"X-Runner-Secret": secret}
    resp = httpx.request(method, runner + path, headers=headers, json={"prompt": "x"})
    assert resp.status_code == 401
    assert resp.json() == {"detail": "Unauthorized"}


def test_secret_is_not_accepted_in_other_headers(runner: str) -> None:
    resp = httpx.get(f"{runner}/v1/models", headers={"Authorization": f"Bearer {SECRET}"})
    assert resp.status_code == 401


# --- AUTOMATIC1111 API -----------------------------------------------------------------------


def test_txt2img(client: httpx.Client) -> None:
    result = txt2img(client, prompt="a lighthouse", width=96, height=64, steps=10, seed=42)
    (image,) = [png(b) for b in result["images"]]
    assert image.format == "PNG"
    assert image.size == (96, 64)
    assert "Seed: 42" in image.info["parameters"]
    info = json.loads(result["info"])
    assert info["seed"] == 42
    assert info["all_seeds"] == [42]
    assert (info["width"], info["height"], info["steps"]) == (96, 64, 10)
    assert result["parameters"]["prompt"] == "a lighthouse"


def test_txt2img_is_deterministic(client: httpx.Client) -> None:
    a = txt2img(client, prompt="same", seed=1)["images"]
    b = txt2img(client, prompt="same", seed=1)["images"]
    c = txt2img(client, prompt="same", seed=2)["images"]
    d = txt2img(client, prompt="other", seed=1)["images"]
    assert a == b
    assert a != c and a != d
    # seed -1: A1111 would draw a random seed, the runner derives one from the inputs.
    r1, r2 = txt2img(client, prompt="rnd", seed=-1), txt2img(client, prompt="rnd", seed=-1)
    assert r1["images"] == r2["images"]
    assert json.loads(r1["info"])["seed"] == json.loads(r2["info"])["seed"] >= 0


def test_txt2img_batch_and_lora(client: httpx.Client) -> None:
    result = txt2img(client, prompt="fox <lora:pixel_v2:0.7>", seed=5, batch_size=2)
    assert len(result["images"]) == 2
    assert result["images"][0] != result["images"][1]
    info = json.loads(result["info"])
    assert info["all_seeds"] == [5, 6]
    assert info["loras"] == [{"name": "pixel_v2", "weight": 0.7}]
    plain = txt2img(client, prompt="fox", seed=5)
    assert plain["images"][0] != result["images"][0]


def test_img2img(client: httpx.Client) -> None:
    init = tiny_png("init", (32, 32))
    body = {
        "prompt": "repaint",
        "width": 64,
        "height": 64,
        "seed": 3,
        "init_images": [base64.b64encode(init).decode()],
        "denoising_strength": 0.5,
    }
    resp = client.post("/sdapi/v1/img2img", json=body)
    assert resp.status_code == 200, resp.text
    out = png(resp.json()["images"][0])
    assert out.size == (64, 64)
    assert resp.json()["parameters"]["init_images"] is None
    again = client.post("/sdapi/v1/img2img", json=body).json()["images"]
    assert again == resp.json()["images"]
    # Strength 0 keeps the input image untouched (resized).
    keep = client.post("/sdapi/v1/img2img", json={**body, "denoising_strength": 0.0})
    expected = Image.open(io.BytesIO(init)).convert("RGB").resize((64, 64))
    assert png(keep.json()["images"][0]).convert("RGB").tobytes() == expected.tobytes()
    # A different input image gives a different output.
    other = {**body, "init_images": [base64.b64encode(tiny_png("other", (32, 32))).decode()]}
    assert client.post("/sdapi/v1/img2img", json=other).json()["images"] != again


def test_animatediff_gif(client: httpx.Client) -> None:
    script = {"args": [{"enable": True, "video_length": 6, "fps": 5, "format": ["GIF"]}]}
    result = txt2img(client, prompt="waves", seed=9, alwayson_scripts={"AnimateDiff": script})
    (b64,) = result["images"]
    gif = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert gif.format == "GIF"
    n_frames = getattr(gif, "n_frames", 1)
    assert n_frames == 6
    assert gif.info["duration"] == 200
    frames = []
    for i in range(n_frames):
        gif.seek(i)
        frames.append(gif.convert("RGB").tobytes())
    assert len(set(frames)) > 1  # it moves
    again = txt2img(client, prompt="waves", seed=9, alwayson_scripts={"AnimateDiff": script})
    assert again["images"] == result["images"]


def test_disabled_animatediff_is_a_still_image(client: httpx.Client) -> None:
    script = {"args": [{"enable": False}]}
    result = txt2img(client, prompt="still", alwayson_scripts={"animatediff": script})
    assert png(result["images"][0]).format == "PNG"


def test_model_listings(client: httpx.Client) -> None:
    models = client.get("/sdapi/v1/sd-models").json()
    assert {m["model_name"] for m in models} >= {"sdxl-base"}
    assert all({"title", "model_name", "hash", "filename"} <= m.keys() for m in models)
    chat_models = client.get("/v1/models").json()
    assert chat_models["object"] == "list"
    assert chat_models["data"][0]["object"] == "model"


# --- OpenAI chat -----------------------------------------------------------------------------


def chat(client: httpx.Client, **body: Any) -> httpx.Response:
    payload = {"model": "local-chat", "messages": [{"role": "user", "content": "Hello there"}]}
    return client.post("/v1/chat/completions", json={**payload, **body})


def test_chat_completion(client: httpx.Client) -> None:
    resp = chat(client)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "local-chat"
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert "Hello there" in choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_chat_is_deterministic_and_depends_on_messages(client: httpx.Client) -> None:
    first = chat(client).json()
    second = chat(client).json()
    assert first["choices"] == second["choices"]
    assert first["usage"] == second["usage"]
    assert first["id"] == second["id"]
    other = chat(client, messages=[{"role": "user", "content": "Something else"}]).json()
    assert other["choices"][0]["message"]["content"] != first["choices"][0]["message"]["content"]
    longer = chat(
        client,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hello there"}]},
        ],
    ).json()
    assert longer["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"]


def test_chat_max_tokens_truncates(client: httpx.Client) -> None:
    body = chat(client, max_tokens=3).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3


# --- validation ------------------------------------------------------------------------------

BAD_IMAGE_REQUESTS = [
    {"width": "512"},
    {"width": 10},
    {"height": 4096},
    {"steps": 0},
    {"seed": -5},
    {"cfg_scale": "high"},
    {"prompt": 123},
    {"batch_size": 4, "n_iter": 4},
    {"alwayson_scripts": {"AnimateDiff": {"args": [{"enable": True, "format": ["MP4"]}]}}},
    {"alwayson_scripts": {"AnimateDiff": {"args": [{"enable": True, "video_length": 999}]}}},
    {"alwayson_scripts": {"AnimateDiff": {"args": [True, 0, 16]}}},
]


@pytest.mark.parametrize("body", BAD_IMAGE_REQUESTS)
def test_invalid_txt2img_is_422(client: httpx.Client, body: dict[str, Any]) -> None:
    resp = client.post("/sdapi/v1/txt2img", json=body)
    assert resp.status_code == 422, resp.text
    assert isinstance(resp.json()["detail"], list)


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "x"},
        {"init_images": []},
        {"init_images": ["not base64!"]},
        {"init_images": [base64.b64encode(b"not an image").decode()]},
        {"init_images": [base64.b64encode(tiny_png()).decode()], "denoising_strength": 1.5},
    ],
)
def test_invalid_img2img_is_422(client: httpx.Client, body: dict[str, Any]) -> None:
    assert client.post("/sdapi/v1/img2img", json=body).status_code == 422


@pytest.mark.parametrize(
    "body",
    [
        {"messages": []},
        {"messages": [{"role": "wizard", "content": "hi"}]},
        {"model": ""},
        {"max_tokens": 0},
        {"temperature": 3},
        {"stream": True},
        {"n": 2},
    ],
)
def test_invalid_chat_is_422(client: httpx.Client, body: dict[str, Any]) -> None:
    resp = chat(client, **body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["type"] == "invalid_request_error"


def test_malformed_json_is_422(client: httpx.Client) -> None:
    resp = client.post("/sdapi/v1/txt2img", content=b"{not json")
    assert resp.status_code == 422


# --- binding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "example.com"])
def test_refuses_to_bind_a_non_loopback_host(host: str) -> None:
    env = {**os.environ, "CREDITGATE_RUNNER_SECRET": SECRET}
    proc = subprocess.run(
        [*RUNNER, "--host", host, "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "non-loopback" in proc.stderr
    with pytest.raises(ValueError, match="non-loopback"):
        serve(host, 0, SECRET)


def test_secret_from_the_command_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CREDITGATE_RUNNER_SECRET"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "runner.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*RUNNER, "--port", str(port), "--secret", "cli-secret-42"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                resp = httpx.get(f"{url}/v1/models", headers={"X-Runner-Secret": "cli-secret-42"})
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert resp.status_code == 200
        assert httpx.get(f"{url}/v1/models", headers=HEADERS).status_code == 401
    finally:
        proc.terminate()
        proc.wait(10)


def test_refuses_to_start_without_a_secret() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CREDITGATE_RUNNER_SECRET"}
    proc = subprocess.run(
        [*RUNNER, "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert "secret" in proc.stderr


def test_loopback_detection() -> None:
    assert all(is_loopback(h) for h in ["127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"])
    assert not any(is_loopback(h) for h in ["0.0.0.0", "::", "10.0.0.1", "localhost.evil.com"])


# --- the `local` adapter against the real runner ---------------------------------------------


def local_job(runner: str, kind: str, params: dict[str, Any], **kw: Any) -> ProviderJob:
    return ProviderJob(
        generation_id="gen-local",
        kind=kind,
        provider="local",
        provider_model="local-chat" if kind == "chat" else "sdxl-base",
        endpoint=runner,
        options={"timeout_seconds": 30, "max_attempts": 2},
        params=params,
        **kw,
    )


async def run_local(job: ProviderJob, secret: str = SECRET) -> Any:
    async with httpx.AsyncClient() as http:
        gateway = ProviderGateway(http, runner_secret=secret, base_backoff=0.001)
        return await gateway.run(job)


def test_local_adapter_against_the_runner(runner: str) -> None:
    image_params = {
        "prompt": "a castle",
        "width": 128,
        "height": 96,
        "steps": 8,
        "seed": 11,
        "loras": [{"id": "ink", "weight": 0.6, "source": "ink_style"}],
    }
    image = asyncio.run(run_local(local_job(runner, "image", image_params)))
    (blob,) = image.media
    assert blob.content_type == "image/png"
    assert Image.open(io.BytesIO(blob.data)).size == (128, 96)
    assert [a.http_status for a in image.attempts] == [200]
    again = asyncio.run(run_local(local_job(runner, "image", image_params)))
    assert again.media == image.media

    edit = asyncio.run(
        run_local(local_job(runner, "edit", image_params, init_image=tiny_png("in", (20, 20))))
    )
    assert edit.media[0].content_type == "image/png"
    assert edit.media[0].data != blob.data

    video_params = {"prompt": "sea", "width": 64, "height": 64, "duration_seconds": 1, "fps": 6}
    video = asyncio.run(run_local(local_job(runner, "video", video_params)))
    (gif,) = video.media
    assert gif.content_type == "image/gif"
    assert getattr(Image.open(io.BytesIO(gif.data)), "n_frames", 1) == 6

    chat_params = {"messages": [{"role": "user", "content": "Ping"}], "max_tokens": 50}
    reply = asyncio.run(run_local(local_job(runner, "chat", chat_params)))
    assert reply.text and "Ping" in reply.text
    assert reply.usage["total_tokens"] == (
        reply.usage["prompt_tokens"] + reply.usage["completion_tokens"]
    )
    assert isinstance(reply.media, list) and not reply.media
    assert not isinstance(reply, MediaBlob)


def test_local_adapter_with_a_wrong_secret(runner: str) -> None:
    job = local_job(runner, "image", {"prompt": "x", "width": 64, "height": 64})
    with pytest.raises(ProviderError) as info:
        asyncio.run(run_local(job, secret="wrong-secret"))
    assert info.value.code == "unauthorized"
    assert len(info.value.attempts) == 1
    assert "wrong-secret" not in str(info.value)


def test_local_adapter_maps_runner_validation_errors(runner: str) -> None:
    job = local_job(runner, "image", {"prompt": "x", "width": 10_000, "height": 64})
    with pytest.raises(ProviderError) as info:
        asyncio.run(run_local(job))
    assert info.value.code == "bad_request"
    assert info.value.http_status == 422
    assert len(info.value.attempts) == 1
