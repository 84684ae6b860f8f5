"""Fake provider servers for tests: `from tests.fakes import FakeFal, serve_asgi, ...`.

    with FakeFal(keys={"k1"}, fail_times=1) as fal:     # real uvicorn on 127.0.0.1
        ... ProviderJob(provider="fal", endpoint=fal.url, ...)
        assert len(fal.gated_requests) == 2

See tests/fakes/base.py for the fault-injection knobs shared by all fakes.
"""

from creditgate.bench.pgcluster import free_port
from tests.fakes.a1111 import FakeA1111
from tests.fakes.base import FAKE_MP4, FakeProvider, Faults, Recorded, tiny_gif, tiny_png
from tests.fakes.fal import FakeFal
from tests.fakes.gradio import FakeGradio
from tests.fakes.huggingface import FakeHuggingFace
from tests.fakes.openai import FAKE_USAGE, FakeOpenAI
from tests.fakes.server import LiveServer, serve_app, serve_asgi
from tests.fakes.wavespeed import FakeWavespeed

FAKES: dict[str, type[FakeProvider]] = {
    "local": FakeA1111,
    "openai": FakeOpenAI,
    "huggingface": FakeHuggingFace,
    "fal": FakeFal,
    "wavespeed": FakeWavespeed,
    "gradio": FakeGradio,
}

__all__ = [
    "FAKES",
    "FAKE_MP4",
    "FAKE_USAGE",
    "FakeA1111",
    "FakeFal",
    "FakeGradio",
    "FakeHuggingFace",
    "FakeOpenAI",
    "FakeProvider",
    "FakeWavespeed",
    "Faults",
    "LiveServer",
    "Recorded",
    "free_port",
    "serve_app",
    "serve_asgi",
    "tiny_gif",
    "tiny_png",
]
