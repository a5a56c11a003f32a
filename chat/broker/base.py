"""The broker interface: how one worker's rooms reach every other worker's (interface only).

A broker moves opaque bytes between workers and never decodes them. The hub subscribes a
room when its first local member arrives and unsubscribes when the last one goes; every
worker subscribed to a room gets every publish to it, its own publishes included, so that
there is one delivery path and one order.

A *sequenced* publish also assigns the room's next ``seq`` (protocol §5), atomically with the
publish, so that the order in which workers receive a room's messages is their ``seq`` order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Deliver = Callable[[str, int, bytes], None]
"""Called for every publish to a subscribed room: ``(room, seq or 0, data)``. Never awaits."""


class Broker(Protocol):
    """Publish to a room; subscribe to and unsubscribe from rooms."""

    @property
    def ready(self) -> bool:
        """Whether publishing can succeed right now (``/readyz``)."""
        ...

    async def start(self, deliver: Deliver) -> None:
        """Connect and start handing incoming publishes to ``deliver``."""
        ...

    async def aclose(self) -> None:
        """Stop delivering and release every connection."""
        ...

    async def subscribe(self, room: str) -> None:
        """Start receiving the room's publishes on this worker."""
        ...

    async def unsubscribe(self, room: str) -> None:
        """Stop receiving the room's publishes on this worker."""
        ...

    async def publish(self, room: str, data: bytes, *, sequenced: bool = False) -> int:
        """Send ``data`` to every worker subscribed to ``room``.

        Args:
            room: the room id.
            data: the envelope, already serialised.
            sequenced: assign the room's next ``seq`` to this publish.

        Returns:
            The assigned ``seq``, or 0 for an unsequenced publish.

        Raises:
            BrokerUnavailable: nothing was sent; the caller answers ``unavailable``.
        """
        ...

    async def last_seq(self, room: str) -> int:
        """The room's last assigned ``seq`` (0 before the first)."""
        ...

    async def drop(self, room: str) -> None:
        """Forget the room's sequence: it has ended."""
        ...


class BrokerUnavailable(Exception):
    """The broker cannot take a publish right now; nothing was sent."""
