"""The embedded broker: one process, no Redis, no setup."""

from __future__ import annotations

from chat.broker.base import Deliver


class MemoryBroker:
    """Delivers publishes to this process's own subscribers, synchronously and in order.

    A publish reaches ``deliver`` before ``publish`` returns, so a room's ``seq`` order and
    its delivery order are the same by construction.
    """

    def __init__(self) -> None:
        self._deliver: Deliver | None = None
        self._subscribed: set[str] = set()
        self._seq: dict[str, int] = {}

    @property
    def ready(self) -> bool:
        return self._deliver is not None

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def aclose(self) -> None:
        self._deliver = None
        self._subscribed.clear()

    async def subscribe(self, room: str) -> None:
        self._subscribed.add(room)

    async def unsubscribe(self, room: str) -> None:
        self._subscribed.discard(room)

    async def publish(self, room: str, data: bytes, *, sequenced: bool = False) -> int:
        seq = 0
        if sequenced:
            seq = self._seq[room] = self._seq.get(room, 0) + 1
        if self._deliver is not None and room in self._subscribed:
            self._deliver(room, seq, data)
        return seq

    async def last_seq(self, room: str) -> int:
        return self._seq.get(room, 0)

    async def drop(self, room: str) -> None:
        self._seq.pop(room, None)
