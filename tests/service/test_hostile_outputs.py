"""A hostile provider against the worker: settled against a real database, user refunded.

Issue 18, items 3-6 end to end: the fake providers (tests/fakes/) hand back internal URLs,
redirects, lying content types, bodies over the route's cap, image bombs and metadata; the
in-process worker (tests/service/test_worker.py's harness) runs the job, and the database
must show the job failed with a normalized code, nothing stored, the user refunded in full,
and creditgate.audit() clean, or, for metadata, the stored file stripped and measured.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests import dbutil
from tests.fakes import FakeA1111, FakeFal, FakeHuggingFace, FakeProvider, LiveServer
from tests.service.test_media import mp4_with_moov, png_header_only, png_with_metadata
from tests.service.test_worker import (
    IMG_COST,
    KEY_A,
    PROMPT,
    SECRET,
    check_money,
    harness,
    media_rows,
    new_user,
    provider_calls,
    route,
    runner_url,
    seed,
)

__all__ = ["runner_url"]  # the real runner, a module-scoped fixture of test_worker.py

HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"


@pytest.fixture
def db(module_db: dbutil.TestDatabase) -> dbutil.TestDatabase:
    return module_db


@pytest.fixture
def metadata() -> Iterator[tuple[list[str], str]]:
    """An internal service (cloud metadata look-alike) recording every request."""
    hits: list[str] = []

    async def meta(request: Request) -> Response:
        hits.append(request.url.path)
        return PlainTextResponse("AKIA-internal-credentials", media_type="image/png")

    with LiveServer(Starlette(routes=[Route("/{path:path}", meta)])) as url:
        yield hits, f"{url}/latest/meta-data/iam/security-credentials/role"


def route_to(db: dbutil.TestDatabase, model: str, fake: FakeProvider, **options: Any) -> None:
    seed(db, fake.url)
    if isinstance(fake, FakeA1111):
        route(db, model, options={"timeout_seconds": 30, **options})
        return
    provider_model = {"fal": "fal-ai/flux/dev", "huggingface": "org/model"}[fake.name]
    if model == "video-test":
        provider_model = "org/text-to-video"
    route(
        db,
        model,
        provider=fake.name,
        provider_model=provider_model,
        options={"api_key_ref": "main", "timeout_seconds": 30, "max_attempts": 2, **options},
    )


def run_job(
    db: dbutil.TestDatabase, tmp_path: Path, user: str, model: str = "img-test"
) -> tuple[dict[str, Any], list[str]]:
    async def scenario() -> tuple[dict[str, Any], list[str]]:
        async with harness(db, tmp_path, api_keys={"main": [KEY_A]}) as h:
            requested = await h.request(user, model, {"prompt": PROMPT})
            row = await h.wait_status(requested["generation_id"], {"succeeded", "failed"}, 30)
            return row, h.stored_files()

    return asyncio.run(scenario())


def assert_failed_and_refunded(
    db: dbutil.TestDatabase,
    user: str,
    row: dict[str, Any],
    files: list[str],
    code: str,
    cost: int = IMG_COST,
) -> None:
    gid = str(row["id"])
    assert row["status"] == "failed", row
    assert row["error"]["code"] == code, row["error"]
    assert row["attempts"] == 1  # not retried: the next try would be as hostile
    assert files == [] and media_rows(db, gid) == []
    check_money(db, user, charged={gid: cost}, refunded={gid: cost})


def fake(cls: type[FakeProvider], **faults: Any) -> FakeProvider:
    keys = [SECRET] if cls is FakeA1111 else [KEY_A]
    return cls(keys=keys, **faults)


# --- item 4: internal URLs and lying types ---------------------------------------------------


def test_internal_output_url_fails_and_refunds(
    db: dbutil.TestDatabase, tmp_path: Path, metadata: tuple[list[str], str]
) -> None:
    hits, url = metadata
    with fake(FakeFal, output_url=url) as provider:
        route_to(db, "img-test", provider)
        user = new_user(db)
        row, files = run_job(db, tmp_path, user)
    assert_failed_and_refunded(db, user, row, files, "blocked_url")
    assert hits == []
    [call] = provider_calls(db, str(row["id"]))
    assert call["error_code"] == "blocked_url"


def test_redirect_to_internal_address_fails_and_refunds(
    db: dbutil.TestDatabase, tmp_path: Path, metadata: tuple[list[str], str]
) -> None:
    hits, url = metadata
    with fake(FakeFal, redirect_files_to=url) as provider:
        route_to(db, "img-test", provider)
        user = new_user(db)
        row, files = run_job(db, tmp_path, user)
    assert_failed_and_refunded(db, user, row, files, "blocked_url")
    assert hits == []


@pytest.mark.parametrize("cls", [FakeHuggingFace, FakeA1111, FakeFal])
def test_declared_image_that_is_not_one_fails_and_refunds(
    db: dbutil.TestDatabase, tmp_path: Path, cls: type[FakeProvider]
) -> None:
    with fake(cls, output_bytes=HTML, output_type="image/png") as provider:
        route_to(db, "img-test", provider)
        user = new_user(db)
        row, files = run_job(db, tmp_path, user)
    assert_failed_and_refunded(db, user, row, files, "invalid_output")


# --- item 5: the byte cap --------------------------------------------------------------------


@pytest.mark.parametrize("cls", [FakeHuggingFace, FakeA1111, FakeFal])
def test_body_over_the_route_cap_fails_and_refunds(
    db: dbutil.TestDatabase, tmp_path: Path, cls: type[FakeProvider]
) -> None:
    with fake(cls, huge_body=300 * 1024 * 1024) as provider:
        route_to(db, "img-test", provider, max_download_bytes=1024 * 1024)
        user = new_user(db)
        row, files = run_job(db, tmp_path, user)
    assert_failed_and_refunded(db, user, row, files, "too_large")


# --- item 6: bombs and the model's limits ----------------------------------------------------


def test_a_60000_square_png_fails_and_refunds(db: dbutil.TestDatabase, tmp_path: Path) -> None:
    with fake(FakeHuggingFace, output_bytes=png_header_only(60000, 60000)) as provider:
        route_to(db, "img-test", provider)
        user = new_user(db)
        row, files = run_job(db, tmp_path, user)
    assert_failed_and_refunded(db, user, row, files, "too_large")


def test_an_output_over_the_models_limits_fails_and_refunds(
    db: dbutil.TestDatabase, tmp_path: Path
) -> None:
    """img-test allows 2048x2048: a 2100x8 PNG is over max_width."""
    buf = io.BytesIO()
    Image.new("RGB", (2100, 8), (9, 9, 9)).save(buf, "PNG")
    with fake(FakeA1111, output_bytes=buf.getvalue()) as provider:
        route_to(db, "img-test", provider)
        user = new_user(db)
        row, files = run_job(db, tmp_path, user)
    assert_failed_and_refunded(db, user, row, files, "too_large")


def test_a_gif_with_too_many_frames_fails_quickly_and_refunds(
    db: dbutil.TestDatabase, tmp_path: Path
) -> None:
    frames = [Image.new("RGB", (4, 4), (i % 256, i // 256, 1)) for i in range(1200)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=10)
    with fake(FakeA1111, output_bytes=buf.getvalue()) as provider:
        route_to(db, "img-test", provider)
        user = new_user(db)
        row, files = run_job(db, tmp_path, user)
    assert_failed_and_refunded(db, user, row, files, "too_large")


# --- items 3 and 6: what is stored is stripped and measured ----------------------------------


def test_stored_png_is_stripped_and_measured(db: dbutil.TestDatabase, tmp_path: Path) -> None:
    png = png_with_metadata()
    with fake(FakeA1111, output_bytes=png) as provider:
        route_to(db, "img-test", provider)
        user = new_user(db)
        row, files = run_job(db, tmp_path, user)
    gid = str(row["id"])
    assert row["status"] == "succeeded", row
    assert len(files) == 1
    [media] = media_rows(db, gid)
    assert (media["content_type"], media["width"], media["height"]) == ("image/png", 16, 12)
    stored = (tmp_path / "media" / media["storage_key"]).read_bytes()
    assert media["bytes"] == len(stored) < len(png)
    for marker in (b"tEXt", b"iTXt", b"zTXt", b"eXIf", b"safetensors"):
        assert marker not in stored
    check_money(db, user, charged={gid: IMG_COST}, refunded={})


def test_the_runners_parameters_chunk_is_not_stored(
    db: dbutil.TestDatabase, tmp_path: Path, runner_url: str
) -> None:
    """The real runner writes A1111's `parameters` text chunk (LoRA sources, the provider
    model; see test_runner.py); the stored file has none of it."""
    seed(db, runner_url)
    user = new_user(db)
    row, files = run_job(db, tmp_path, user)
    assert row["status"] == "succeeded", row
    [media] = media_rows(db, str(row["id"]))
    assert files == [media["storage_key"]]
    stored = (tmp_path / "media" / media["storage_key"]).read_bytes()
    assert b"tEXt" not in stored and b"parameters" not in stored
    assert (media["width"], media["height"]) == (512, 512)
    with Image.open(io.BytesIO(stored)) as image:
        assert "parameters" not in image.info


def test_stored_video_dimensions_are_recorded(db: dbutil.TestDatabase, tmp_path: Path) -> None:
    video = mp4_with_moov(640, 360, 4)
    with fake(FakeHuggingFace, output_bytes=video, output_type="video/mp4") as provider:
        route_to(db, "video-test", provider)
        user = new_user(db)
        row, files = run_job(db, tmp_path, user, "video-test")
    assert row["status"] == "succeeded", row
    assert len(files) == 1
    [media] = media_rows(db, str(row["id"]))
    assert (media["content_type"], media["width"], media["height"]) == ("video/mp4", 640, 360)
    assert float(media["duration_seconds"]) == 4.0
    stored = (tmp_path / "media" / media["storage_key"]).read_bytes()
    assert b"udta" not in stored and b"safetensors" not in stored


# --- item 2: clients read a code and a fixed sentence, provider_calls the redacted text -----


def test_provider_text_stays_out_of_the_generation(
    db: dbutil.TestDatabase, tmp_path: Path
) -> None:
    # The key straddles character 300, where the old code cut before redacting.
    text = "CUDA OOM on node gpu-7.internal " + "." * 268 + KEY_A + " " + "y" * 500
    with fake(FakeHuggingFace, always_status=500, error_text=text) as provider:
        route_to(db, "img-test", provider, max_attempts=1)
        user = new_user(db)
        row, files = run_job(db, tmp_path, user)
    gid = str(row["id"])
    assert row["status"] == "failed", row
    assert row["error"] == {"code": "server_error", "message": "the provider failed"}
    assert files == []
    calls = provider_calls(db, gid)
    assert calls and all(c["error_code"] == "server_error" for c in calls)
    for call in calls:
        message = call["error_message"]
        assert "CUDA OOM on node gpu-7.internal" in message
        assert "/models/org/model" in message  # the endpoint path: operators only
        assert "[redacted]" in message
        assert KEY_A[:6] not in message
    check_money(db, user, charged={gid: IMG_COST}, refunded={gid: IMG_COST})
