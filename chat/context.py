"""What every request handler works with: the worker's services, and the connection it serves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from chat.errors import CloseCode, ErrorCode, RequestError
from chat.events import Event
from chat.hub import Hub
from chat.localroom import LocalRoom
from chat.outbox import Outbox
from chat.protocol import Encoding, Limits, Message
from chat.roomstate import MemberState
from chat.settings import Settings
from chat.tasks import TaskSet


@dataclass(slots=True)
class Services:
    """One worker's long-lived objects, built by the app's lifespan."""

    settings: Settings
    hub: Hub
    limits: Limits
    outbox: Outbox = field(default_factory=Outbox)
    departures: dict[tuple[str, str], asyncio.TimerHandle] = field(default_factory=dict)
    connections: int = 0  # open WebSocket connections on this worker
    tasks: TaskSet = field(default_factory=TaskSet)  # departures and timers that fired

    def background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task the worker keeps a reference to until it is done."""
        self.tasks.spawn(work)


class Phase(Enum):
    """Where a connection is in its life. It moves down this list, with one way back: a
    member whose join failed after it was seated (its welcome's history could not be read)
    goes back to ``JOINING`` with the connection still open, free to try again."""

    JOINING = "joining"  # accepted; no member yet (a join may be in progress)
    WAITING = "waiting"  # a member at a knock room's door
    PRESENT = "present"  # a member in the room
    CLOSING = "closing"  # the close is on its way; what the client sends is moot
    CLOSED = "closed"  # the peer is gone or the close went out


class Caller(Protocol):
    """The connection a request came in on (implemented by ``session.Session``)."""

    conn_id: str
    address: str
    encoding: Encoding  # the connection's wire encoding
    phase: Phase
    room: LocalRoom | None  # the room its member is in (waiting or present)
    pid: str
    join_id: int | None  # the join's request id, answered when a knock is admitted
    last_typing: int  # ms of the last typing event relayed for it

    def reply(self, message: Message) -> None:
        """Queue a message for this connection only, in order with room events."""
        ...

    def follow(self, message: Message) -> None:
        """Queue a message for this connection to go right after the answer (``ack`` or
        ``error``) to the request being handled: a say's ``resources`` come after its answer
        (docs/protocol.md Part 2), whatever the answer is."""
        ...

    def end(self, code: CloseCode, reason: str = "") -> None:
        """Close after what is queued has been sent."""
        ...

    def seat(self, room: LocalRoom, member: MemberState, resume: str, join_id: int | None) -> None:
        """Become the connection of ``member`` (attached to the hub); room events are held
        from now until :meth:`release`, so that the answer to the join goes first."""
        ...

    def unseat(self) -> None:
        """No longer the member's connection (leave, disconnect, a join that failed midway)."""
        ...

    def release(self) -> None:
        """Send the held events."""
        ...

    def ack_on_close(self, request_id: int | None) -> None:
        """Answer ``request_id`` with an ``ack`` just before the room's close closes this
        connection (None: not any more)."""
        ...

    def changed(self, member: MemberState) -> None:
        """The member's state changed (hub.Connection)."""
        ...


class Answered:
    """A handler's result when it has answered the request itself (the dispatcher adds
    nothing); see ``facilitation.close``."""


ANSWERED = Answered()

Answer = Event | Answered | None
"""What a handler returns: None (an ``ack`` if the request had an id), a message to send
(the request's id is added), or :data:`ANSWERED`."""


def now_ms() -> int:
    return int(time.time() * 1000)


def present(caller: Caller) -> tuple[LocalRoom, MemberState]:
    """The caller's room and member, if it is in the room.

    Raises:
        RequestError: ``not_joined`` before a completed join, and while waiting (§4).
    """
    room = caller.room
    state = room.state if room is not None else None
    member = state.members.get(caller.pid) if state is not None else None
    if room is None or member is None or caller.phase is not Phase.PRESENT:
        raise RequestError(ErrorCode.NOT_JOINED, "Join a room first.")
    return room, member


def facilitator(caller: Caller) -> tuple[LocalRoom, MemberState]:
    """The caller's room and member, if it is a facilitator in the room.

    Raises:
        RequestError: ``not_joined``, or ``forbidden`` for a participant.
    """
    room, member = present(caller)
    if not member.is_facilitator:
        raise RequestError(ErrorCode.FORBIDDEN, "Only a facilitator can do that.")
    return room, member
