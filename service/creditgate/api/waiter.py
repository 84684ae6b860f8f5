"""Waiting for a generation to finish: LISTEN/NOTIFY with a polling safety net.

One listener connection per process runs ``LISTEN creditgate_generation_settled``
(notified by settle, reap and cancel). A waiter
subscribes to its generation id; a notification whose payload names that id (a bare UUID, or
JSON with ``generation_id`` or ``id``) wakes it, and a payload the listener cannot read
wakes every waiter. Waiters re-read the status through SQL after each wake-up and also poll
with exponential backoff, so a lost notification or a dropped listener only costs latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator
from uuid import UUID

import psycopg
from psycopg import sql

from creditgate.observability import get_logger

__all__ = ["CHANNEL", "TERMINAL", "GenerationNotifier", "wait_for_terminal"]

# Notified by settle, reap and cancel when a generation reaches a terminal status.
CHANNEL = "creditgate_generation_settled"
TERMINAL = frozenset({"succeeded", "failed", "canceled"})

log = get_logger("creditgate.waiter")


def _ids(payload: str) -> set[str] | None:
    """Generation ids named by a payload; None if it names none we can read."""
    text = payload.strip()
    candidates: list[object] = [text]
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        candidates = [data.get("generation_id"), data.get("id")]
    ids: set[str] = set()
    for value in candidates:
        try:
            ids.add(str(UUID(str(value))))
        except ValueError:
            continue
    return ids or None


class GenerationNotifier:
    def __init__(self, conninfo: str, *, channel: str = CHANNEL) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        #: Set while the LISTEN connection is up.
        self.listening = asyncio.Event()

    async def start(self) -> None:
        if self._task is None and self._conninfo:
            self._task = asyncio.create_task(self._run(), name="creditgate-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @contextlib.contextmanager
    def subscribe(self, generation_id: UUID) -> Iterator[asyncio.Event]:
        key = str(generation_id)
        event = asyncio.Event()
        self._waiters.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[key]

    def dispatch(self, payload: str) -> None:
        ids = _ids(payload)
        targets = self._waiters.keys() if ids is None else ids & self._waiters.keys()
        for key in list(targets):
            for event in self._waiters.get(key, ()):
                event.set()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=5
                )
                async with conn:
                    await conn.execute(sql.SQL("listen {}").format(sql.Identifier(self._channel)))
                    delay = 0.5
                    self.listening.set()
                    self._wake_all()  # anything may have finished while we were away
                    async for notify in conn.notifies():
                        self.dispatch(notify.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep listening; waiters also poll
                log.warning("listener_disconnected", error=type(exc).__name__, retry_in=delay)
            self.listening.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def wait_for_terminal(
    notifier: GenerationNotifier,
    generation_id: UUID,
    read_status: Callable[[], Awaitable[str | None]],
    seconds: float,
    *,
    first_poll: float = 0.05,
    max_poll: float = 1.0,
) -> str | None:
    """Return the status once terminal, or the last status read after ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    delay = first_poll
    with notifier.subscribe(generation_id) as event:
        while True:
            event.clear()  # before reading: a notification after the read is not missed
            status = await read_status()
            remaining = deadline - loop.time()
            if status is None or status in TERMINAL or remaining <= 0:
                return status
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=min(delay, remaining))
            delay = min(delay * 2, max_poll)
