"""Work a worker starts and does not wait for, kept until it is done, and ended at shutdown.

asyncio keeps only a weak reference to a task: one nobody holds may be collected before it
is done. And work still talking to Redis when the worker closes its client fails with a
connection error, which would be counted and logged as a Redis failure on every ordinary
restart; so the owner ends its tasks (:meth:`TaskSet.finish`, :func:`end`) before it closes
what they use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any

# Seconds cancelled tasks may take to end; a task that is still running is cancelled again
# every RECANCEL_EVERY. A cancellation can be lost: Python 3.11's asyncio.wait_for drops one
# that arrives as its operation completes (CPython gh-86296), and redis-py writes through
# wait_for whenever a connection has a socket timeout (the sentinels' do); such a task goes on
# to its next command as if never cancelled. The price: cleanup that awaits after its
# CancelledError is cut short after RECANCEL_EVERY.
CANCELLED_WAIT = 1.0
RECANCEL_EVERY = 0.05


class TaskSet:
    """The tasks one owner started and has not seen end."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Awaitable[Any]) -> None:
        """Run ``work`` as a task, held here until it is done."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def end(self, grace: float = 0.0) -> None:
        """End every task held now: see :func:`end`."""
        await end(self._tasks, grace)


async def end(tasks: Iterable[asyncio.Future[Any]], grace: float = 0.0) -> None:
    """Let ``tasks`` run on for up to ``grace`` seconds, then cancel what is left and wait
    for it to end, for :data:`CANCELLED_WAIT` at most: a task that will not end must not hold
    up a shutdown."""
    pending = {task for task in tasks if not task.done()}
    if pending and grace > 0:
        _, pending = await asyncio.wait(pending, timeout=grace)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CANCELLED_WAIT
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            return
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_EVERY, left))
