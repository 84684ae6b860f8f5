"""Provider gateway: every adapter against its fake provider over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from creditgate.providers import (
    ERROR_CODES,
    Attempt,
    MediaBlob,
    ProviderError,
    ProviderGateway,
    ProviderJob,
    ProviderResult,
)
from tests.fakes import (
    FAKE_MP4,
    FAKE_USAGE,
    FakeA1111,
    FakeFal,
    FakeGradio,
    FakeHuggingFace,
    FakeOpenAI,
    FakeProvider,
    FakeWavespeed,
    serve_asgi,
    tiny_png,
)

T = TypeVar("T")
F = TypeVar("F", bound=FakeProvider)
SECRET = "runner-secret-0123456789"
KEY_A = "key-aaaaaaaaaaaaaaaa"
KEY_B = "key-bbbbbbbbbbbbbbbb"
INIT_IMAGE = tiny_png("init image", (16, 16))


@dataclass(frozen=True)
class Case:
    provider: str
    fake: type[FakeProvider]
    kind: str
    model: str
    options: Mapping[str, Any] = field(default_factory=dict)
    path: str = ""  # suffix of the endpoint URL (e.g. an API version prefix)


CASES = {
    "local": Case("local", FakeA1111, "image", "sdxl-base"),
    "openai": Case("openai", FakeOpenAI, "chat", "deepseek-chat", path="/v1"),
    "huggingface": Case("huggingface", FakeHuggingFace, "image", "stabilityai/sdxl-base-1.0"),
    "fal": Case("fal", FakeFal, "image", "fal-ai/flux/dev"),
    "wavespeed": Case("wavespeed", FakeWavespeed, "image", "wavespeed-ai/flux-dev"),
    "gradio": Case("gradio", FakeGradio, "image", "", {"fn": "generate"}),
}
KEYED = [name for name in CASES if name != "local"]  # local authenticates with the secret


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def params_for(kind: str) -> dict[str, Any]:
    if kind == "chat":
        return {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 64}
    return {"prompt": "a red fox", "width": 512, "height": 512, "steps": 20, "seed": 7}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


@pytest.fixture(params=KEYED)
def keyed_case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


def fake_for(case: Case, *, keys: Sequence[str] | None = None, **faults: Any) -> FakeProvider:
    accepted = keys if keys is not None else ([SECRET] if case.provider == "local" else [KEY_A])
    return case.fake(keys=accepted, **faults)


@pytest.fixture
def started() -> Iterator[list[FakeProvider]]:
    fakes: list[FakeProvider] = []
    yield fakes
    for fake in fakes:
        fake.stop()


def start(started: list[FakeProvider], fake: F) -> F:
    fake.start()
    started.append(fake)
    return fake


async def execute(
    case: Case,
    fake: FakeProvider | str,
    *,
    keys: Sequence[str] = (KEY_A,),
    options: Mapping[str, Any] | None = None,
    kind: str | None = None,
    model: str | None = None,
    params: Mapping[str, Any] | None = None,
    init_image: bytes | None = None,
    runner_secret: str = SECRET,
    jobs: int = 1,
) -> list[ProviderResult]:
    """Run `jobs` jobs one after the other on one gateway (so key rotation is shared)."""
    url = fake if isinstance(fake, str) else fake.url
    kind = kind or case.kind
    opts: dict[str, Any] = {"timeout_seconds": 5, "max_attempts": 3, **case.options}
    if case.provider != "local":
        opts["api_key_ref"] = "main"
    opts.update(options or {})
    job = ProviderJob(
        generation_id="gen-1",
        kind=kind,
        provider=case.provider,
        provider_model=case.model if model is None else model,
        endpoint=url + case.path,
        options=opts,
        params=params if params is not None else params_for(kind),
        init_image=init_image,
    )
    async with httpx.AsyncClient() as http:
        gateway = ProviderGateway(
            http,
            {"main": list(keys)},
            base_backoff=0.001,
            max_backoff=0.005,
            poll_interval=0.005,
            runner_secret=runner_secret,
        )
        return [await gateway.run(job) for _ in range(jobs)]


def run_one(case: Case, fake: FakeProvider | str, **kwargs: Any) -> ProviderResult:
    return run(execute(case, fake, **kwargs))[0]


def failure(case: Case, fake: FakeProvider | str, **kwargs: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        run(execute(case, fake, **kwargs))
    err = info.value
    assert err.code in ERROR_CODES
    assert_no_secret(err)
    return err


def assert_no_secret(err: ProviderError) -> None:
    for text in (str(err), repr(err), err.message, repr(err.attempts)):
        for secret in (KEY_A, KEY_B, SECRET, "wrong-key-123456"):
            assert secret not in text


def auth_value(case: Case, key: str) -> str:
    return {"local": SECRET, "fal": f"Key {key}"}.get(case.provider, f"Bearer {key}")


def assert_ok_attempt(attempt: Attempt, provider: str) -> None:
    assert attempt.provider == provider
    assert attempt.http_status == 200
    assert attempt.error_code is None
    assert 0 <= attempt.latency_ms < 5000


def assert_output(case: Case, fake: FakeProvider, result: ProviderResult) -> None:
    if case.kind == "chat":
        assert result.text == fake.faults.reply_text
        assert result.usage == FAKE_USAGE
        assert result.media == []
    else:
        assert result.media == [MediaBlob(fake.outputs[-1], "image/png")]
        assert result.text is None


# --- behaviour shared by every adapter -------------------------------------------------------


def test_success(case: Case, started: list[FakeProvider]) -> None:
    fake = start(started, fake_for(case))
    result = run_one(case, fake)
    assert_output(case, fake, result)
    assert len(result.attempts) == 1
    assert_ok_attempt(result.attempts[0], case.provider)
    header = fake.auth_header
    assert fake.gated_requests[0].headers[header] == auth_value(case, KEY_A)


def test_server_error_then_success_is_retried(case: Case, started: list[FakeProvider]) -> None:
    fake = start(started, fake_for(case, fail_times=1, fail_status=500))
    result = run_one(case, fake)
    assert_output(case, fake, result)
    assert [(a.http_status, a.error_code) for a in result.attempts] == [
        (500, "server_error"),
        (200, None),
    ]
    assert len(fake.gated_requests) == 2


def test_always_server_error_gives_up_after_max_attempts(
    case: Case, started: list[FakeProvider]
) -> None:
    fake = start(started, fake_for(case, always_status=500))
    err = failure(case, fake, options={"max_attempts": 3})
    assert err.code == "server_error"
    assert err.retryable is True
    assert err.http_status == 500
    assert [(a.http_status, a.error_code) for a in err.attempts] == [(500, "server_error")] * 3
    assert len(fake.gated_requests) == 3


def test_hang_times_out(case: Case, started: list[FakeProvider]) -> None:
    fake = start(started, fake_for(case, hang_seconds=10))
    err = failure(case, fake, options={"timeout_seconds": 0.3, "max_attempts": 2})
    assert err.code == "timeout"
    assert err.retryable is True
    assert len(err.attempts) == 2  # timeouts are retried
    for attempt in err.attempts:
        assert attempt.error_code == "timeout"
        assert attempt.http_status is None
        assert 250 <= attempt.latency_ms < 3000


def test_empty_output_is_a_failure_and_not_retried(case: Case, started: list[FakeProvider]) -> None:
    fake = start(started, fake_for(case, empty=True))
    err = failure(case, fake)
    assert err.code == "empty_output"
    assert err.retryable is False
    assert len(err.attempts) == 1
    assert err.attempts[0].error_code == "empty_output"
    assert err.attempts[0].http_status == 200
    assert len(fake.gated_requests) == 1


def test_bad_request_is_not_retried(case: Case, started: list[FakeProvider]) -> None:
    fake = start(started, fake_for(case, always_status=400))
    err = failure(case, fake)
    assert err.code == "bad_request"
    assert err.retryable is False
    assert err.http_status == 400
    assert [(a.http_status, a.error_code) for a in err.attempts] == [(400, "bad_request")]
    assert len(fake.gated_requests) == 1


def test_rate_limit_rotates_to_the_next_key(keyed_case: Case, started: list[FakeProvider]) -> None:
    case = keyed_case
    fake = start(started, fake_for(case, keys=[KEY_A, KEY_B], rate_limited_keys={KEY_A}))
    first, second = run(execute(case, fake, keys=[KEY_A, KEY_B], jobs=2))
    assert [(a.http_status, a.error_code) for a in first.attempts] == [
        (429, "rate_limited"),
        (200, None),
    ]
    # The rotation is remembered: the next job starts with the key that worked.
    assert [a.http_status for a in second.attempts] == [200]
    assert fake.keys_seen() == [KEY_A, KEY_B, KEY_B]


def test_rate_limited_with_one_key_is_retried_then_fails(
    keyed_case: Case, started: list[FakeProvider]
) -> None:
    fake = start(started, fake_for(keyed_case, rate_limited_keys={KEY_A}, retry_after=0))
    err = failure(keyed_case, fake, options={"max_attempts": 2})
    assert err.code == "rate_limited"
    assert err.http_status == 429
    assert len(err.attempts) == 2
    assert fake.keys_seen() == [KEY_A, KEY_A]


def test_wrong_key_is_unauthorized_and_not_retried(
    keyed_case: Case, started: list[FakeProvider]
) -> None:
    fake = start(started, fake_for(keyed_case, keys=["the-right-key-0000"]))
    err = failure(keyed_case, fake, keys=["wrong-key-123456"])
    assert err.code == "unauthorized"
    assert err.retryable is False
    assert err.http_status == 401
    assert len(err.attempts) == 1


def test_unauthorized_key_rotates_to_a_valid_one(
    keyed_case: Case, started: list[FakeProvider]
) -> None:
    fake = start(started, fake_for(keyed_case, keys=[KEY_B]))
    result = run_one(keyed_case, fake, keys=[KEY_A, KEY_B])
    assert [(a.http_status, a.error_code) for a in result.attempts] == [
        (401, "unauthorized"),
        (200, None),
    ]
    assert fake.keys_seen() == [KEY_A, KEY_B]


def test_all_keys_unauthorized_stops_after_each_key_once(
    keyed_case: Case, started: list[FakeProvider]
) -> None:
    fake = start(started, fake_for(keyed_case, keys=["the-right-key-0000"]))
    err = failure(keyed_case, fake, keys=[KEY_A, KEY_B], options={"max_attempts": 5})
    assert err.code == "unauthorized"
    assert fake.keys_seen() == [KEY_A, KEY_B]


def test_connection_refused_is_a_retried_network_error(case: Case) -> None:
    with serve_asgi(Starlette()) as url:
        pass  # the port is free again once the server stopped
    err = failure(case, url, options={"max_attempts": 2})
    assert err.code == "network"
    assert err.retryable is True
    assert [(a.http_status, a.error_code) for a in err.attempts] == [(None, "network")] * 2


def test_keys_echoed_by_a_provider_are_redacted(keyed_case: Case) -> None:
    async def echo(request: Request) -> JSONResponse:
        leaked = request.headers.get("authorization", "")
        return JSONResponse({"error": {"message": f"invalid request for {leaked}"}}, 400)

    app = Starlette(routes=[Route("/{path:path}", echo, methods=["POST"])])
    with serve_asgi(app) as url:
        err = failure(keyed_case, url)
    assert err.code == "bad_request"
    assert "[redacted]" in err.message


def test_local_runner_secret_is_checked(started: list[FakeProvider]) -> None:
    case = CASES["local"]
    fake = start(started, fake_for(case))
    err = failure(case, fake, runner_secret="not-the-runner-secret")
    assert err.code == "unauthorized"
    assert len(err.attempts) == 1
    assert fake.gated_requests[0].headers["x-runner-secret"] == "not-the-runner-secret"


# --- local (AUTOMATIC1111 + AnimateDiff + chat) ----------------------------------------------


def test_local_txt2img_request_shape(started: list[FakeProvider]) -> None:
    case = CASES["local"]
    fake = start(started, fake_for(case))
    params = {
        **params_for("image"),
        "negative_prompt": "blurry",
        "cfg_scale": 6.5,
        "loras": [{"id": "pixel", "weight": 0.8, "source": "pixel_art_v2"}],
    }
    run_one(case, fake, params=params, options={"sampler_name": "DPM++ 2M"})
    req = fake.gated_requests[0]
    assert req.path == "/sdapi/v1/txt2img"
    body = req.json()
    assert body["prompt"] == "a red fox <lora:pixel_art_v2:0.8>"
    assert body["negative_prompt"] == "blurry"
    assert (body["width"], body["height"], body["steps"], body["seed"]) == (512, 512, 20, 7)
    assert body["cfg_scale"] == 6.5
    assert body["override_settings"] == {"sd_model_checkpoint": "sdxl-base"}
    assert body["sampler_name"] == "DPM++ 2M"  # route option forwarded as a provider param
    assert "timeout_seconds" not in body and "max_attempts" not in body


def test_local_img2img(started: list[FakeProvider]) -> None:
    case = CASES["local"]
    fake = start(started, fake_for(case))
    params = {**params_for("edit"), "denoising_strength": 0.4}
    result = run_one(case, fake, kind="edit", params=params, init_image=INIT_IMAGE)
    req = fake.gated_requests[0]
    assert req.path == "/sdapi/v1/img2img"
    assert req.json()["init_images"] == [base64.b64encode(INIT_IMAGE).decode()]
    assert req.json()["denoising_strength"] == 0.4
    assert result.media == [MediaBlob(fake.outputs[-1], "image/png")]


def test_local_animatediff_video(started: list[FakeProvider]) -> None:
    case = CASES["local"]
    fake = start(started, fake_for(case))
    params = {"prompt": "waves", "width": 256, "height": 256, "duration_seconds": 1.5, "fps": 4}
    result = run_one(case, fake, kind="video", params=params)
    body = fake.gated_requests[0].json()
    args = body["alwayson_scripts"]["AnimateDiff"]["args"][0]
    assert args == {"enable": True, "video_length": 6, "fps": 4, "format": ["GIF"]}
    assert result.media == [MediaBlob(fake.outputs[-1], "image/gif")]


def test_local_chat(started: list[FakeProvider]) -> None:
    case = CASES["local"]
    fake = start(started, fake_for(case))
    result = run_one(case, fake, kind="chat", model="local-chat")
    req = fake.gated_requests[0]
    assert req.path == "/v1/chat/completions"
    assert req.json()["model"] == "local-chat"
    assert req.json()["messages"] == [{"role": "user", "content": "Say hi"}]
    assert result.text == fake.faults.reply_text
    assert result.usage == FAKE_USAGE


# --- openai-compatible -----------------------------------------------------------------------


def test_openai_request_shape(started: list[FakeProvider]) -> None:
    case = CASES["openai"]
    fake = start(started, fake_for(case))
    params = {**params_for("chat"), "temperature": 0.2}
    run_one(case, fake, params=params)
    req = fake.gated_requests[0]
    assert req.path == "/v1/chat/completions"
    assert req.json() == {
        "model": "deepseek-chat",
        "messages": [{"role": "user", "content": "Say hi"}],
        "stream": False,
        "max_tokens": 64,
        "temperature": 0.2,
    }


def test_openai_does_not_do_images() -> None:
    err = failure(CASES["openai"], "http://127.0.0.1:9", kind="image")
    assert err.code == "not_configured"
    assert err.attempts == []


# --- huggingface -----------------------------------------------------------------------------


def test_huggingface_request_shape(started: list[FakeProvider]) -> None:
    case = CASES["huggingface"]
    fake = start(started, fake_for(case))
    run_one(case, fake, params={**params_for("image"), "cfg_scale": 5, "negative_prompt": "x"})
    req = fake.gated_requests[0]
    assert req.path == "/models/stabilityai/sdxl-base-1.0"
    assert req.json() == {
        "inputs": "a red fox",
        "parameters": {
            "negative_prompt": "x",
            "width": 512,
            "height": 512,
            "num_inference_steps": 20,
            "guidance_scale": 5,
            "seed": 7,
        },
    }


def test_huggingface_model_loading_is_retried(started: list[FakeProvider]) -> None:
    case = CASES["huggingface"]
    fake = start(started, fake_for(case, loading_times=1))
    result = run_one(case, fake)
    assert [(a.http_status, a.error_code) for a in result.attempts] == [
        (503, "server_error"),
        (200, None),
    ]


def test_huggingface_loading_message_is_kept(started: list[FakeProvider]) -> None:
    case = CASES["huggingface"]
    fake = start(started, fake_for(case, loading_times=5))
    err = failure(case, fake, options={"max_attempts": 2})
    assert err.code == "server_error"
    assert "currently loading" in err.message


def test_huggingface_refuses_loras() -> None:
    params = {**params_for("image"), "loras": [{"id": "a", "weight": 1, "source": "x/y"}]}
    err = failure(CASES["huggingface"], "http://127.0.0.1:9", params=params)
    assert err.code == "not_configured"


def test_huggingface_video_and_edit(started: list[FakeProvider]) -> None:
    case = CASES["huggingface"]
    fake = start(started, fake_for(case))
    video = run_one(case, fake, kind="video", model="org/text-to-video")
    assert video.media == [MediaBlob(FAKE_MP4, "video/mp4")]
    run_one(case, fake, kind="edit", init_image=INIT_IMAGE)
    body = fake.gated_requests[-1].json()
    assert body["inputs"] == base64.b64encode(INIT_IMAGE).decode()
    assert body["parameters"]["prompt"] == "a red fox"


# --- fal -------------------------------------------------------------------------------------


def test_fal_polls_and_downloads(started: list[FakeProvider]) -> None:
    case = CASES["fal"]
    fake = start(started, fake_for(case, pending_polls=3, file_host="localhost"))
    params = {**params_for("image"), "loras": [{"id": "a", "weight": 0.5, "source": "https://x/l"}]}
    # The files' origin (localhost) is not the endpoint's: only an explicitly local route
    # may fetch from a loopback address it was handed.
    other = start(started, fake_for(case, file_host="localhost"))
    blocked = failure(case, other, params=params)
    assert blocked.code == "blocked_url"
    assert not [r for r in other.requests if r.path.startswith("/files/")]
    result = run_one(case, fake, params=params, options={"allow_local_urls": True})
    assert result.media == [MediaBlob(fake.outputs[-1], "image/png")]
    paths = [r.path for r in fake.requests]
    assert paths[0] == "/fal-ai/flux/dev"
    status_polls = [p for p in paths if p.endswith("/status")]
    assert len(status_polls) == 4
    assert all(p.startswith("/fal-ai/flux/requests/") for p in status_polls)
    body = fake.gated_requests[0].json()
    assert body["image_size"] == {"width": 512, "height": 512}
    assert body["loras"] == [{"path": "https://x/l", "scale": 0.5}]
    assert body["num_inference_steps"] == 20
    # Queue calls carry the key; the output download (another origin, a CDN) does not.
    for rec in fake.requests:
        if rec.path.startswith("/files/"):
            assert "authorization" not in rec.headers
        else:
            assert rec.headers["authorization"] == f"Key {KEY_A}"


def test_fal_failed_job_is_not_retried(started: list[FakeProvider]) -> None:
    case = CASES["fal"]
    fake = start(started, fake_for(case, fail_job=True))
    err = failure(case, fake)
    assert err.code == "provider_failed"
    assert len(err.attempts) == 1


def test_fal_video_and_edit(started: list[FakeProvider]) -> None:
    case = CASES["fal"]
    fake = start(started, fake_for(case))
    video = run_one(case, fake, kind="video", model="fal-ai/kling-video/v2/master/text-to-video")
    assert video.media == [MediaBlob(FAKE_MP4, "video/mp4")]
    run_one(case, fake, kind="edit", init_image=INIT_IMAGE, model="fal-ai/flux/dev/image-to-image")
    body = fake.gated_requests[-1].json()
    assert body["image_url"] == "data:image/png;base64," + base64.b64encode(INIT_IMAGE).decode()


def test_fal_slow_download_times_out(started: list[FakeProvider]) -> None:
    case = CASES["fal"]
    fake = start(started, fake_for(case, hang_downloads=10))
    err = failure(case, fake, options={"timeout_seconds": 0.4, "max_attempts": 1})
    assert err.code == "timeout"


# --- wavespeed -------------------------------------------------------------------------------


def test_wavespeed_polls_and_downloads(started: list[FakeProvider]) -> None:
    case = CASES["wavespeed"]
    fake = start(started, fake_for(case, pending_polls=2))
    result = run_one(case, fake)
    assert result.media == [MediaBlob(fake.outputs[-1], "image/png")]
    body = fake.gated_requests[0].json()
    assert fake.gated_requests[0].path == "/api/v3/wavespeed-ai/flux-dev"
    assert body["size"] == "512*512"
    assert body["prompt"] == "a red fox"
    polls = [r for r in fake.requests if r.path.endswith("/result")]
    assert len(polls) == 3
    assert all(r.headers["authorization"] == f"Bearer {KEY_A}" for r in polls)


def test_wavespeed_failed_job_is_not_retried(started: list[FakeProvider]) -> None:
    case = CASES["wavespeed"]
    fake = start(started, fake_for(case, fail_job=True))
    err = failure(case, fake)
    assert err.code == "provider_failed"
    assert "generation failed" in err.message
    assert len(err.attempts) == 1


def test_wavespeed_video(started: list[FakeProvider]) -> None:
    case = CASES["wavespeed"]
    fake = start(started, fake_for(case))
    params = {"prompt": "surf", "duration_seconds": 5}
    result = run_one(case, fake, kind="video", model="wavespeed-ai/wan-2.1/t2v-480p", params=params)
    assert result.media == [MediaBlob(FAKE_MP4, "video/mp4")]
    assert fake.gated_requests[0].json()["duration"] == 5


# --- gradio ----------------------------------------------------------------------------------


def test_gradio_inputs_option_builds_the_data_list(started: list[FakeProvider]) -> None:
    case = CASES["gradio"]
    fake = start(started, fake_for(case))
    inputs = ["prompt", "negative_prompt", "seed", {"value": True}, "width"]
    run_one(case, fake, options={"inputs": inputs}, params={**params_for("image")})
    req = fake.gated_requests[0]
    assert req.path == "/gradio_api/call/generate"
    assert req.json() == {"data": ["a red fox", None, 7, True, 512]}


def test_gradio_gallery_and_video_outputs(started: list[FakeProvider]) -> None:
    case = CASES["gradio"]
    gallery = start(started, fake_for(case, output="gallery"))
    assert run_one(case, gallery).media == [MediaBlob(gallery.outputs[-1], "image/png")]
    video = start(started, fake_for(case, output="video"))
    assert run_one(case, video, kind="video").media == [MediaBlob(FAKE_MP4, "video/mp4")]


def test_gradio_edit_uploads_the_input_image(started: list[FakeProvider]) -> None:
    case = CASES["gradio"]
    fake = start(started, FakeGradio(keys=[KEY_A]))
    run_one(case, fake, kind="edit", init_image=INIT_IMAGE)
    assert fake.requests[0].path == "/gradio_api/upload"
    (path,) = fake.uploads
    assert INIT_IMAGE in fake.uploads[path]
    data = fake.gated_requests[0].json()["data"]
    assert data == [{"path": path, "meta": {"_type": "gradio.FileData"}}, "a red fox"]


def test_gradio_chat(started: list[FakeProvider]) -> None:
    case = CASES["gradio"]
    fake = start(started, fake_for(case, output="text"))
    result = run_one(case, fake, kind="chat", options={"fn": "/chat"})
    assert result.text == fake.faults.reply_text
    assert fake.gated_requests[0].path == "/gradio_api/call/chat"
    assert fake.gated_requests[0].json() == {"data": ["Say hi"]}


def test_gradio_error_event_is_provider_failed(started: list[FakeProvider]) -> None:
    case = CASES["gradio"]
    fake = start(started, fake_for(case, fail_job=True))
    err = failure(case, fake)
    assert err.code == "provider_failed"
    assert "Something went wrong" in err.message
    assert len(err.attempts) == 1


# --- gateway configuration -------------------------------------------------------------------


def test_unknown_provider_and_missing_keys_are_not_configured() -> None:
    unknown = Case("replicate", FakeOpenAI, "chat", "m")
    assert failure(unknown, "http://127.0.0.1:9").code == "not_configured"
    err = failure(CASES["openai"], "http://127.0.0.1:9", options={"api_key_ref": "absent"})
    assert err.code == "not_configured"
    bad = failure(CASES["openai"], "http://127.0.0.1:9", options={"timeout_seconds": "soon"})
    assert bad.code == "not_configured"


def test_backoff_is_full_jitter_within_bounds() -> None:
    async def delays() -> list[float]:
        async with httpx.AsyncClient() as http:
            gateway = ProviderGateway(http, base_backoff=0.5, max_backoff=8.0)
            return [gateway._backoff(n, None) for n in (1, 2, 3, 10) for _ in range(50)]

    values = run(delays())
    first, fourth = values[:50], values[150:]
    assert all(0 <= v <= 0.5 for v in first)
    assert all(0 <= v <= 8.0 for v in fourth)
    assert len(set(first)) > 1


def test_error_codes_are_the_documented_set() -> None:
    assert json.dumps(sorted(ERROR_CODES)) == json.dumps(
        sorted(
            [
                "timeout",
                "rate_limited",
                "server_error",
                "bad_request",
                "unauthorized",
                "empty_output",
                "network",
                "provider_failed",
                "not_configured",
                "blocked_url",
                "too_large",
                "invalid_output",
            ]
        )
    )
