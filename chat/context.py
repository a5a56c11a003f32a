"""What every command handler works with: the worker's services, the caller, its seat."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from chat.errors import CloseCode, ErrorCode, RequestError
from chat.hub import Hub, Member
from chat.outbox import Outbox
from chat.protocol import Limits, Message
from chat.settings import Settings
from chat.state.base import FACILITATOR, RoomRecord, RoomStore


@dataclass(slots=True)
class Services:
    """One worker's long-lived objects, built by the app's lifespan."""

    settings: Settings
    store: RoomStore
    hub: Hub
    limits: Limits
    outbox: Outbox = field(default_factory=Outbox)
    departures: dict[tuple[str, str], asyncio.TimerHandle] = field(default_factory=dict)
    connections: int = 0  # open WebSocket connections on this worker
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task the worker keeps a reference to until it is done."""
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


@dataclass(slots=True)
class Seat:
    """A joined (or waiting) member's state on the connection that holds it.

    ``room`` is the hub's copy of the room record, which the hub keeps current from ``room``
    events, so slow mode and lock are checked without a store round trip.
    """

    room: RoomRecord
    pid: str
    name: str
    role: str
    resume: str
    joined_seq: int
    waiting: bool = False
    muted: bool = False
    muted_until: int | None = None
    last_say: float = float("-inf")
    last_typing: float = float("-inf")
    join_id: int | None = None  # the join's request id, answered when a knock is admitted

    @property
    def is_facilitator(self) -> bool:
        return self.role == FACILITATOR

    def public(self) -> Message:
        return {"pid": self.pid, "name": self.name, "role": self.role}

    def check_can_speak(self, now_ms: int) -> None:
        """Refuse a ``say`` from a muted member.

        Raises:
            RequestError: ``muted`` with ``until``.
        """
        if self.muted and (self.muted_until is None or self.muted_until > now_ms):
            raise RequestError(
                ErrorCode.MUTED, "You are muted in this room.", until=self.muted_until
            )


class Caller(Protocol):
    """The connection a command came in on (implemented by ``session.Session``)."""

    address: str
    conn_id: str
    seat: Seat | None
    departed: bool  # the member is gone for good (removed, denied, closed, taken over)

    @property
    def member(self) -> Member: ...

    def control(self, event: Message) -> None:
        """Apply an event that concerns this connection's member (see ``hub.Member``)."""
        ...

    def reply(self, message: Message) -> None:
        """Queue a message for this connection only, in order with room events."""
        ...

    def end(self, code: CloseCode, reason: str = "") -> None:
        """Close after what is queued has been sent."""
        ...

    def hold(self) -> None:
        """Buffer room events until :meth:`release` (so ``welcome`` goes first)."""
        ...

    def release(self, after_seq: int) -> None:
        """Send the buffered events, dropping messages with ``seq`` ≤ ``after_seq``."""
        ...


def now_ms() -> int:
    return int(time.time() * 1000)


def require_seat(caller: Caller) -> Seat:
    """The caller's seat in the room.

    Raises:
        RequestError: ``not_joined`` before a completed join, and while waiting (§4).
    """
    seat = caller.seat
    if seat is None or seat.waiting:
        raise RequestError(ErrorCode.NOT_JOINED, "Join a room first.")
    return seat


def require_facilitator(caller: Caller) -> Seat:
    """The caller's seat, if the caller is a facilitator.

    Raises:
        RequestError: ``not_joined``, or ``forbidden`` for a participant.
    """
    seat = require_seat(caller)
    if not seat.is_facilitator:
        raise RequestError(ErrorCode.FORBIDDEN, "Only a facilitator can do that.")
    return seat
