"""/metrics under attack: bounded label values, rendering off the event loop, and a
configurable listener (bearer token, separate bind), all over real HTTP."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.metrics_core import Metric

from creditgate.observability import REGISTRY
from tests import dbutil
from tests.service.apiutil import running, settings_for

METRICS_TOKEN = "metrics-test-token-0123456789abcdef"


def series(text: str) -> set[str]:
    """Every sample line's name and labels (the value left out)."""
    return {
        line.rsplit(" ", 1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#") and line.startswith("creditgate_http_")
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def url(module_db: dbutil.TestDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running(settings_for(module_db, tmp_path_factory.mktemp("metrics"))) as base:
        yield base


def test_odd_methods_and_paths_add_no_series(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:

        def flood(methods: Iterable[str]) -> None:
            for method in methods:
                client.request(method, f"/x/{uuid.uuid4().hex}")
                client.request(method, "/v1/balance")
                client.request(method, "/v1/generations/" + str(uuid.uuid4()))

        flood(["WARMUP", "PROPFIND"])  # the first odd request may add the `other` series
        client.get("/healthz")
        client.get("/metrics")  # so that the scrapes below add no series of their own
        before = series(client.get("/metrics").text)
        flood(f"M{uuid.uuid4().hex[:12].upper()}" for _ in range(300))
        client.get("/healthz")
        after = series(client.get("/metrics").text)
    assert after == before, sorted(after - before)[:5]
    assert any('method="other"' in s for s in after)
    assert not any("M" in s.split('method="', 1)[1][:2] for s in after if 'method="' in s)


def test_unknown_routes_are_labelled_other(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get(f"/nope/{uuid.uuid4().hex}").status_code == 404
        text = client.get("/metrics").text
    assert 'creditgate_http_requests_total{method="GET",route="other",status="404"}' in text
    assert "/nope/" not in text


class SlowCollector:
    """A collector that takes ``seconds`` to collect: a scrape of a large registry."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def collect(self) -> Iterator[Metric]:
        time.sleep(self.seconds)
        yield from ()


def test_slow_scrape_does_not_block_healthz(url: str) -> None:
    slow = SlowCollector(3.0)
    REGISTRY.register(slow)
    try:
        scrape: dict[str, float] = {}

        def scrape_metrics() -> None:
            started = time.monotonic()
            assert httpx.get(f"{url}/metrics", timeout=30).status_code == 200
            scrape["seconds"] = time.monotonic() - started

        thread = threading.Thread(target=scrape_metrics)
        thread.start()
        time.sleep(0.3)  # the scrape is now inside the slow collector
        started = time.monotonic()
        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
        healthz = time.monotonic() - started
        thread.join(timeout=30)
    finally:
        REGISTRY.unregister(slow)
    assert scrape["seconds"] >= 3.0  # the scrape really was slow
    assert healthz < 1.5, f"/healthz took {healthz:.2f}s behind a scrape"


def test_metrics_token_required_when_configured(
    module_db: dbutil.TestDatabase, tmp_path: Path
) -> None:
    settings = settings_for(module_db, tmp_path, metrics_token=METRICS_TOKEN)
    with running(settings) as base, httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "not_authenticated"
        ok = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert ok.status_code == 200
        assert "creditgate_http_requests_total" in ok.text
        assert client.get("/healthz").status_code == 200  # nothing else needs it


def test_metrics_on_a_separate_listener(module_db: dbutil.TestDatabase, tmp_path: Path) -> None:
    port = free_port()
    settings = settings_for(
        module_db, tmp_path, metrics_host="127.0.0.1", metrics_port=port, metrics_token=""
    )
    with running(settings) as base:
        assert httpx.get(f"{base}/metrics").status_code == 404  # not on the public port
        assert httpx.get(f"{base}/healthz").status_code == 200
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert scraped.status_code == 200
        assert 'creditgate_http_requests_total{method="GET",route="/healthz"' in scraped.text
    with pytest.raises(httpx.ConnectError):  # closed with the service
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_separate_listener_with_token(module_db: dbutil.TestDatabase, tmp_path: Path) -> None:
    port = free_port()
    settings = settings_for(
        module_db,
        tmp_path,
        metrics_host="127.0.0.1",
        metrics_port=port,
        metrics_token=METRICS_TOKEN,
    )
    with running(settings):
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        assert httpx.get(metrics_url, timeout=10).status_code == 401
        wrong = httpx.get(metrics_url, headers={"Authorization": "Bearer x"}, timeout=10)
        assert wrong.status_code == 401
        good = httpx.get(
            metrics_url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
        )
        assert good.status_code == 200
        assert "creditgate_http_requests_total" in good.text
