"""Waiting for a condition that another process or thread brings about."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll predicate every 50 ms until it holds; AssertionError naming `what` after timeout s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
