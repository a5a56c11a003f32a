"""chat.tasks: background work is kept until done, and ended before what it uses closes."""

from __future__ import annotations

import asyncio

from chat.tasks import CANCELLED_WAIT, TaskSet, end


async def test_work_that_finishes_within_the_grace_is_not_cancelled() -> None:
    tasks, done = TaskSet(), asyncio.Event()

    async def commit() -> None:
        await asyncio.sleep(0.05)
        done.set()

    tasks.spawn(commit())
    await tasks.end(grace=1.0)
    assert done.is_set() and len(tasks) == 0


async def test_work_past_the_grace_is_cancelled_and_has_unwound() -> None:
    tasks, unwound = TaskSet(), asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            unwound.set()

    tasks.spawn(stuck())
    await asyncio.sleep(0)
    await tasks.end(grace=0.05)
    assert unwound.is_set() and len(tasks) == 0


async def test_a_task_that_loses_its_cancellation_is_cancelled_again() -> None:
    """As a task inside Python 3.11's asyncio.wait_for can (CPython gh-86296): it goes on to
    its next await as if it had never been cancelled."""
    lost = False

    async def heartbeat() -> None:
        nonlocal lost
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if lost:
                    raise
                lost = True  # the first cancellation goes missing

    task = asyncio.ensure_future(heartbeat())
    await asyncio.sleep(0.03)
    await end([task])
    assert lost and task.cancelled()


async def test_a_task_that_never_ends_does_not_hold_up_the_shutdown() -> None:
    deaf = True

    async def ignores_cancellation() -> None:
        while True:
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                if not deaf:
                    raise

    task = asyncio.ensure_future(ignores_cancellation())
    await asyncio.sleep(0)
    async with asyncio.timeout(CANCELLED_WAIT + 5):
        await end([task])
    assert not task.done()
    deaf = False  # let the test's loop close
    task.cancel()
    await asyncio.wait([task])
