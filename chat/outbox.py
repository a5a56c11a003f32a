"""Connections with frames to send, flushed together once per event-loop turn.

Fan-out only queues frames on members (it never awaits one). The first frame a connection
gets in a turn enters it here; one callback at the start of the next turn then flushes every
connection that got any. Whatever reached a connection within that turn leaves as one
frame (an array when there are several, protocol §2): one write per member per burst, and
no task woken per member.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger("hearth.outbox")


class Flushable(Protocol):
    """A connection that can send what it has queued."""

    def flush(self) -> None:
        """Send (or start sending) everything queued; never awaits."""
        ...


class Outbox:
    """One worker's connections that have frames waiting for this turn's flush."""

    __slots__ = ("_due",)

    def __init__(self) -> None:
        self._due: list[Flushable] = []

    def add(self, connection: Flushable) -> None:
        """Flush ``connection`` at the start of the next loop turn (add it once per burst)."""
        if not self._due:
            asyncio.get_running_loop().call_soon(self._flush)
        self._due.append(connection)

    def _flush(self) -> None:
        due, self._due = self._due, []
        for connection in due:
            try:
                connection.flush()
            except Exception:  # one connection's bug must not silence the others
                log.exception("flush failed")
