"""One scale for every wait in the suite, settable from the environment, and a poller.

Every timeout and every window a test waits is built from :data:`SCALE` (websockets'
``tests/utils.py`` ``MS`` is the model, style.md §5): ``HEARTH_TEST_SCALE=2`` on a slow machine
stretches them all, so a loaded machine fails nothing that is merely slow, while a hang still
fails in seconds. Durations a *server* is configured with (a join timeout under test, a ping
interval) are not scaled: they are what is tested; what the test waits for them is.

A test polls for what it expects (:func:`wait_until`) instead of sleeping and then asserting.
A plain sleep is left only where a test must show that something does NOT happen within a
window; it says so beside it, and the window is scaled too.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def _scale(raw: str | None) -> float:
    try:
        value = float(raw) if raw else 1.0
    except ValueError:
        value = 0.0
    if not value > 0:
        raise RuntimeError(f"HEARTH_TEST_SCALE must be a positive number, not {raw!r}")
    return value


SCALE = _scale(os.environ.get("HEARTH_TEST_SCALE"))
MS = 0.001 * SCALE  # one millisecond, scaled: ``300 * MS``
WAIT = 5.0 * SCALE  # the longest any single expected event may take
START = 20.0 * SCALE  # the longest a server process may take to start answering
POLL = 0.02  # seconds between two looks of a poller (not scaled: it is not a wait)


def scaled(seconds: float) -> float:
    """A wait of ``seconds`` on an idle machine, stretched by :data:`SCALE`."""
    return seconds * SCALE


async def wait_until(
    condition: Callable[[], T | Awaitable[T]], timeout: float = WAIT, what: str = ""
) -> T:
    """Poll ``condition`` (a plain or async callable) until it returns something true; return it.

    Raises:
        TimeoutError: not true within ``timeout`` seconds (``what`` says what was awaited).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not within {timeout:.1f} s: {what or condition!r}")
        await asyncio.sleep(POLL)


def block_until(condition: Callable[[], T], timeout: float = WAIT, what: str = "") -> T:
    """:func:`wait_until` for code that is not async (process fixtures, the browser tests).

    Raises:
        TimeoutError: not true within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not within {timeout:.1f} s: {what or condition!r}")
        time.sleep(POLL)
    return result
