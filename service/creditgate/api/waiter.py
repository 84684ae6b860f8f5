"""Waiting for a generation to finish: LISTEN/NOTIFY, no per-waiter polling.

One listener connection per process runs ``LISTEN creditgate_generation_settled``
(notified by settle, reap and cancel). A waiter subscribes to its generation id, reads the
status once, and sleeps until a notification whose payload names that id (a bare UUID, or
JSON with ``generation_id`` or ``id``) wakes it, or its deadline; a payload the listener
cannot read wakes every waiter, and so does the listener reconnecting (a notification may
have been lost while it was away). A waiter costs no query while nothing happens, so
thousands of open waits cost the database nothing.

Open waits are capped per user and per process (:meth:`GenerationNotifier.wait_slot`): past
either cap the caller answers at once with the current state instead of waiting.
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
        self._open = 0
        self._open_by_user: dict[str, int] = {}
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

    @contextlib.contextmanager
    def wait_slot(self, user_id: str, *, per_user: int, max_open: int) -> Iterator[bool]:
        """Hold one open-wait slot while the block runs: True, or False (nothing held) when
        the user already holds ``per_user`` slots or the process ``max_open``."""
        held = self._open_by_user.get(user_id, 0)
        if self._open >= max_open or held >= per_user:
            yield False
            return
        self._open += 1
        self._open_by_user[user_id] = held + 1
        try:
            yield True
        finally:
            self._open -= 1
            left = self._open_by_user[user_id] - 1
            if left:
                self._open_by_user[user_id] = left
            else:
                del self._open_by_user[user_id]

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
) -> str | None:
    """Return the status once terminal, or the last status read after ``seconds``.

    The status is read once, then again only after a notification for this generation.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    with notifier.subscribe(generation_id) as event:
        while True:
            event.clear()  # before reading: a notification after the read is not missed
            status = await read_status()
            remaining = deadline - loop.time()
            if status is None or status in TERMINAL or remaining <= 0:
                return status
            try:
                await asyncio.wait_for(event.wait(), timeout=remaining)
            except TimeoutError:
                return status
