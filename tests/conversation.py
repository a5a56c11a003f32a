"""Members talking through a fault (a failover, a node restart, a slot that moves), and the
check of protocol §12 afterwards: every member received every acked message exactly once, in
``seq`` order."""

from __future__ import annotations

import asyncio
import contextlib
import time

from tests.client import Client
from tests.timing import WAIT, wait_until

PACE = 0.03  # seconds between one member's messages


class Conversation:
    """Clients that say something every :data:`PACE` seconds until :meth:`stop`.

    Args:
        talkers: the clients that talk; every client given to :meth:`check` listens.
    """

    def __init__(self, *talkers: Client) -> None:
        self.talkers = talkers
        self.acked: list[int] = []
        self.times: list[list[float]] = [[] for _ in talkers]  # each talker's acks (monotonic)
        self.refused = 0  # answers other than an ack (unavailable while Redis moves)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._talk(client, i)) for i, client in enumerate(self.talkers)
        ]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _talk(self, client: Client, index: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            with contextlib.suppress(TimeoutError):
                reply = await client.request({"t": "say", "text": f"t{index}-{n}"})
                if reply["t"] == "ack":
                    self.acked.append(reply["seq"])
                    self.times[index].append(time.monotonic())
                else:
                    self.refused += 1
            await asyncio.sleep(PACE)

    async def more(self, count: int = 10) -> None:
        """Wait until ``count`` more messages have been acked (the conversation goes on)."""
        target = len(self.acked) + count
        await wait_until(lambda: len(self.acked) >= target, WAIT, f"{count} more acks")

    async def talking_again(self, moment: float, timeout: float) -> float:
        """Wait until every talker has had an ack after ``moment``; the seconds from ``moment``
        until the last of them had its first."""

        def first_after(times: list[float]) -> float | None:
            return next((t for t in times if t > moment), None)

        await wait_until(
            lambda: all(first_after(times) is not None for times in self.times),
            timeout,
            "every talker acked again",
        )
        return max(t for times in self.times if (t := first_after(times)) is not None) - moment

    async def check(self, *listeners: Client) -> None:
        """Every listener received every acked seq exactly once, in order."""
        assert len(self.acked) > 20 and len(set(self.acked)) == len(self.acked)
        for index, client in enumerate(listeners):
            seqs = [m["seq"] for m in await client.quiet(1.5) if m["t"] == "msg"]
            assert seqs == sorted(seqs), f"listener {index}: out of order"
            assert len(seqs) == len(set(seqs)), f"listener {index}: a message twice"
            missing = sorted(set(self.acked) - set(seqs))
            assert not missing, f"listener {index} never received acked seqs {missing}"
