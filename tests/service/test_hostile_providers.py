"""A hostile provider against the gateway, over real HTTP (issue 18, items 2, 4 and 5).

The fakes hand back internal URLs and redirects to them, lie about content types and send
bodies far over the route's cap; the gateway must refuse each before storing anything.
The worker-level tests (tests/service/test_hostile_outputs.py) settle such jobs against a
real database and check the refund.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from creditgate.providers import MediaBlob
from tests.fakes import (
    FakeA1111,
    FakeFal,
    FakeGradio,
    FakeHuggingFace,
    FakeProvider,
    FakeWavespeed,
    LiveServer,
    tiny_png,
)
from tests.service.test_providers import (
    CASES,
    KEY_A,
    failure,
    fake_for,
    run_one,
    start,
)

HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
HUGE = 300 * 1024 * 1024
CAP = 1024 * 1024


class Metadata:
    """An 'internal' service (cloud metadata look-alike) that records every hit."""

    def __init__(self) -> None:
        self.hits: list[str] = []

        async def meta(request: Request) -> Response:
            self.hits.append(request.url.path)
            return PlainTextResponse("AKIA-internal-credentials", media_type="image/png")

        self.app = Starlette(routes=[Route("/{path:path}", meta)])


@pytest.fixture
def metadata() -> Iterator[tuple[Metadata, str]]:
    meta = Metadata()
    with LiveServer(meta.app) as url:
        yield meta, f"{url}/latest/meta-data/iam/security-credentials/role"


@pytest.fixture
def started() -> Iterator[list[FakeProvider]]:
    fakes: list[FakeProvider] = []
    yield fakes
    for fake in fakes:
        fake.stop()


URL_CASES = ["fal", "wavespeed", "gradio"]


# --- item 4: internal URLs, redirects, lying content types -----------------------------------


@pytest.mark.parametrize("provider", URL_CASES)
def test_output_url_to_internal_address_is_not_fetched(
    provider: str, metadata: tuple[Metadata, str], started: list[FakeProvider]
) -> None:
    meta, url = metadata
    case = CASES[provider]
    fake = start(started, fake_for(case, output_url=url))
    err = failure(case, fake)
    assert err.code == "blocked_url"
    assert err.retryable is False
    assert len(err.attempts) == 1
    assert meta.hits == []


@pytest.mark.parametrize("provider", URL_CASES)
def test_redirect_to_internal_address_is_not_followed(
    provider: str, metadata: tuple[Metadata, str], started: list[FakeProvider]
) -> None:
    """The output URL is on the provider's own origin and answers 302 to the metadata URL."""
    meta, url = metadata
    case = CASES[provider]
    if provider == "gradio":  # Gradio serves files from /gradio_api/file=: redirect those
        fake: FakeProvider = start(started, _RedirectingGradio(keys=[KEY_A], redirect_files_to=url))
    else:
        fake = start(started, fake_for(case, redirect_files_to=url))
    err = failure(case, fake)
    assert err.code == "blocked_url"
    assert meta.hits == []


class _RedirectingGradio(FakeGradio):
    async def file(self, request: Request) -> Response:
        await self._record(request, False)
        assert self.faults.redirect_files_to
        return RedirectResponse(self.faults.redirect_files_to, status_code=302)


def test_fal_status_url_to_internal_address_is_not_polled(
    metadata: tuple[Metadata, str], started: list[FakeProvider]
) -> None:
    meta, url = metadata
    case = CASES["fal"]
    fake = start(started, fake_for(case, status_url=url))
    err = failure(case, fake)
    assert err.code == "blocked_url"
    assert meta.hits == []


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "http://169.254.169.254/latest/meta-data/", "http://[::1]:1/x"],
)
def test_other_refused_output_urls(url: str, started: list[FakeProvider]) -> None:
    case = CASES["fal"]
    fake = start(started, fake_for(case, output_url=url))
    assert failure(case, fake).code == "blocked_url"
    # An explicitly local route may reach loopback, never the metadata service or file:.
    if "::1" not in url:
        err = failure(case, fake, options={"allow_local_urls": True})
        assert err.code == "blocked_url"


def test_allow_local_urls_reaches_a_local_cdn(started: list[FakeProvider]) -> None:
    case = CASES["fal"]
    fake = start(started, fake_for(case, file_host="localhost"))
    result = run_one(case, fake, options={"allow_local_urls": True})
    assert result.media == [MediaBlob(fake.outputs[-1], "image/png")]


@pytest.mark.parametrize("provider", ["fal", "wavespeed", "gradio", "huggingface", "local"])
@pytest.mark.parametrize(
    ("body", "declared"),
    [(HTML, "image/png"), (SVG, "image/svg+xml"), (b"AKIA-internal-credentials", "image/jpeg")],
)
def test_declared_image_that_is_not_one_fails(
    provider: str, body: bytes, declared: str, started: list[FakeProvider]
) -> None:
    case = CASES[provider]
    fake = start(started, fake_for(case, output_bytes=body, output_type=declared))
    err = failure(case, fake)
    assert err.code == "invalid_output"
    assert err.retryable is False


@pytest.mark.parametrize("provider", ["fal", "huggingface", "gradio"])
def test_media_type_comes_from_the_bytes(provider: str, started: list[FakeProvider]) -> None:
    png = tiny_png("typed by bytes")
    case = CASES[provider]
    fake = start(started, fake_for(case, output_bytes=png, output_type="text/html"))
    result = run_one(case, fake)
    assert result.media == [MediaBlob(png, "image/png")]


# --- item 5: one streaming cap on every read -------------------------------------------------


@contextmanager
def peak_memory() -> Iterator[Callable[[], int]]:
    """Peak Python allocations (this process: client and fake server) inside the block."""
    tracemalloc.start()
    peak = 0
    try:
        yield lambda: peak
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


HUGE_CASES: dict[str, type[FakeProvider]] = {
    "huggingface": FakeHuggingFace,  # raw image body
    "fal": FakeFal,  # submit JSON
    "wavespeed": FakeWavespeed,  # submit JSON
    "local": FakeA1111,  # base64 JSON
    "gradio": FakeGradio,  # SSE lines
}


@pytest.mark.parametrize("provider", list(HUGE_CASES))
def test_huge_bodies_stop_at_the_route_cap(provider: str, started: list[FakeProvider]) -> None:
    case = CASES[provider]
    fake = start(started, fake_for(case, huge_body=HUGE))
    with peak_memory() as peak:
        err = failure(case, fake, options={"max_download_bytes": CAP})
    assert err.code == "too_large"
    assert err.retryable is False
    # Enforced as bytes arrive: the 300 MB body never sat in memory.
    assert peak() < 32 * CAP


@pytest.mark.parametrize("provider", ["fal", "wavespeed"])
def test_huge_downloads_stop_at_the_route_cap(provider: str, started: list[FakeProvider]) -> None:
    case = CASES[provider]
    fake = start(started, fake_for(case, huge_files=HUGE))
    with peak_memory() as peak:
        err = failure(case, fake, options={"max_download_bytes": CAP})
    assert err.code == "too_large"
    assert peak() < 32 * CAP


def test_a_five_megabyte_output_is_over_a_one_megabyte_cap(started: list[FakeProvider]) -> None:
    case = CASES["huggingface"]
    fake = start(started, fake_for(case, huge_body=5_200_000))
    assert failure(case, fake, options={"max_download_bytes": CAP}).code == "too_large"
    fake = start(started, fake_for(case))
    assert run_one(case, fake, options={"max_download_bytes": CAP}).media


def test_huge_error_bodies_are_read_only_in_part(started: list[FakeProvider]) -> None:
    case = CASES["huggingface"]
    fake = start(started, fake_for(case, always_status=500, error_text="x" * (8 * CAP)))
    err = failure(case, fake, options={"max_attempts": 1})
    assert err.code == "server_error"
    assert len(err.message) <= 1000


# --- item 2: provider texts are redacted before they are cut ---------------------------------


def test_secret_at_the_cut_is_redacted_whole(started: list[FakeProvider]) -> None:
    """A key straddling the old 300-character cut left its first characters behind."""
    case = CASES["huggingface"]
    text = "CUDA OOM on node gpu-7.internal " + "." * 268 + KEY_A + " " + "y" * 2000
    fake = start(started, fake_for(case, always_status=500, error_text=text))
    err = failure(case, fake, options={"max_attempts": 1})
    assert KEY_A[:8] not in err.message
    assert "[redacted]" in err.message


def test_credential_shaped_tokens_are_redacted(started: list[FakeProvider]) -> None:
    case = CASES["huggingface"]
    text = "upstream said: Authorization: Bearer hf_abcdefghijklmnopqrstuvwx rejected"
    fake = start(started, fake_for(case, always_status=400, error_text=text))
    err = failure(case, fake)
    assert "hf_abcdefghijklmnop" not in err.message
