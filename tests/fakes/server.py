"""Run any ASGI app with uvicorn on 127.0.0.1 (free port) in a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
import uvicorn

ASGIApp = Callable[..., Any]


class LiveServer:
    """uvicorn in a daemon thread: `with LiveServer(app) as url: ...` or start()/stop()."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", graceful: int = 1) -> None:
        self.app = app
        self.host = host
        self.url = ""
        self.port = 0
        self._config = uvicorn.Config(
            app,
            host=host,
            port=0,  # the kernel picks a free port; read back from the bound socket
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=graceful,
        )
        self._server = uvicorn.Server(self._config)
        self._thread = threading.Thread(target=self._server.run, name="live-server", daemon=True)

    def start(self, timeout: float = 10.0) -> str:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("uvicorn exited during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError("uvicorn did not start in time")
            time.sleep(0.005)
        sock = self._server.servers[0].sockets[0]
        self.port = int(sock.getsockname()[1])
        self.url = f"http://{self.host}:{self.port}"
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def serve_asgi(app: ASGIApp) -> Iterator[str]:
    """Context manager yielding the base URL (http://127.0.0.1:PORT) of a live server."""
    with LiveServer(app) as url:
        yield url


@pytest.fixture
def serve_app() -> Iterator[Callable[[ASGIApp], str]]:
    """Fixture: `url = serve_app(app)` starts a server that stops at teardown.

    Import it into a test module or conftest: `from tests.fakes import serve_app`.
    """
    with ExitStack() as stack:
        yield lambda app: stack.enter_context(serve_asgi(app))
