"""This worker's rooms: who is connected here, and fan-out of encoded frames to them.

The hub subscribes the broker to a room when the room's first local member arrives and
unsubscribes when the last one leaves. Every event for a room, this worker's own included,
comes back through the broker and :meth:`Hub.deliver`, which encodes it once per encoding and
hands the same frame to every local member it is addressed to. Delivery never awaits a
member: each member queues the frame, and the worker's outbox flushes every member's queue
once per loop turn (protocol §10; chat.outbox).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from chat import metrics
from chat.broker.base import Broker
from chat.protocol import Encoding, Message, encode, pack_envelope, unpack_envelope
from chat.state.base import FACILITATOR, RoomRecord

log = logging.getLogger("hearth.hub")

# Events after which the member the event concerns must also act (close, change state).
CONTROL_EVENTS = frozenset({"removed", "closed", "denied", "muted", "unmuted"})


class Member(Protocol):
    """What the hub needs of a connected member."""

    @property
    def pid(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def encoding(self) -> Encoding: ...

    def send_frame(self, frame: bytes, seq: int) -> None:
        """Queue an encoded frame; never awaits. ``seq`` is 0 for unsequenced events."""
        ...

    def control(self, event: Message) -> None:
        """React to an event that concerns this member (after its frame, if any, is queued)."""
        ...


@dataclass(slots=True)
class LocalRoom:
    """A room as this worker sees it: its local members and the settings fan-out needs."""

    record: RoomRecord
    members: dict[str, Member] = field(default_factory=dict)
    subscribed: asyncio.Future[None] | None = None


class Hub:
    """Rooms with members on this worker.

    Args:
        broker: the broker that carries every room's events between workers.
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.rooms: dict[str, LocalRoom] = {}

    async def start(self) -> None:
        await self.broker.start(self.deliver)

    async def aclose(self) -> None:
        await self.broker.aclose()
        self.rooms.clear()
        metrics.ROOMS.set(0)

    async def attach(self, record: RoomRecord, member: Member) -> None:
        """Add a local member; the first one subscribes this worker to the room."""
        room = self.rooms.get(record.id)
        if room is None:
            room = self.rooms[record.id] = LocalRoom(record)
            room.subscribed = asyncio.get_running_loop().create_future()
            metrics.ROOMS.set(len(self.rooms))
            room.members[member.pid] = member
            try:
                await self.broker.subscribe(record.id)
            except BaseException as exc:
                # Whoever joined meanwhile is not subscribed either: they fail the same way.
                del self.rooms[record.id]
                metrics.ROOMS.set(len(self.rooms))
                room.subscribed.set_exception(
                    exc if isinstance(exc, Exception) else RuntimeError("subscribe cancelled")
                )
                room.subscribed.exception()  # retrieved: nobody else may be waiting
                raise
            room.subscribed.set_result(None)
            return
        previous = room.members.get(member.pid)
        room.members[member.pid] = member
        if previous is not None and previous is not member:
            # The same member on a newer connection here (a resume): the old one gives way.
            # A takeover published through the broker would now find only the new one.
            previous.control({"t": "_takeover", "pid": member.pid})
        if room.subscribed is not None and not room.subscribed.done():
            try:
                await asyncio.shield(room.subscribed)
            except Exception:
                room.members.pop(member.pid, None)
                raise

    async def detach(self, room_id: str, pid: str, member: Member) -> None:
        """Remove a local member; the last one unsubscribes this worker from the room.

        ``pid`` is given explicitly: a member that is leaving may have dropped its seat.
        """
        room = self.rooms.get(room_id)
        if room is None or room.members.get(pid) is not member:
            return
        del room.members[pid]
        if self._forget_if_empty(room_id, room):
            await self.broker.unsubscribe(room_id)

    def _forget_if_empty(self, room_id: str, room: LocalRoom) -> bool:
        if room.members or self.rooms.get(room_id) is not room:
            return False
        del self.rooms[room_id]
        metrics.ROOMS.set(len(self.rooms))
        return True

    def local(self, room_id: str) -> LocalRoom | None:
        return self.rooms.get(room_id)

    async def publish(
        self,
        room_id: str,
        event: Message,
        *,
        to: list[str] | None = None,
        exclude: str | None = None,
        facilitators: bool = False,
        sequenced: bool = False,
    ) -> int:
        """Send an event to the room's members on every worker.

        Args:
            room_id: the room.
            event: the server message, without ``seq`` (a sequenced publish adds it).
            to: only these pids.
            exclude: everyone but this pid.
            facilitators: only facilitators (combined with ``to``: those pids as well).
            sequenced: give the event the room's next ``seq``.

        Returns:
            The assigned ``seq``, or 0.

        Raises:
            BrokerUnavailable: nothing was sent.
        """
        envelope: dict[str, Any] = {"e": event}
        if to is not None:
            envelope["to"] = to
        if exclude is not None:
            envelope["x"] = exclude
        if facilitators:
            envelope["f"] = 1
        return await self.broker.publish(room_id, pack_envelope(envelope), sequenced=sequenced)

    def deliver(self, room_id: str, seq: int, data: bytes) -> None:
        """Hand one published event to its local recipients. Never awaits, never raises."""
        room = self.rooms.get(room_id)
        if room is None:
            return
        try:
            envelope = unpack_envelope(data)
            event = envelope["e"]
            kind = event["t"]
            if not isinstance(kind, str):
                raise TypeError("t is not a string")
            if kind == "room":
                room.record.locked = bool(event.get("locked"))
                room.record.slow = int(event.get("slow") or 0)
        except (ValueError, KeyError, TypeError):
            metrics.BUS_DROPPED.labels(reason="malformed").inc()
            return
        if seq:
            event["seq"] = seq
            metrics.MESSAGES.inc()
        recipients = self._recipients(room, envelope)
        internal = kind.startswith("_")  # hub-to-connection signals, never sent to a client
        if not internal:
            # One encode per encoding per event, whatever the number of recipients (§10).
            frames: dict[Encoding, bytes] = {}
            for member in recipients:
                encoding = member.encoding
                frame = frames.get(encoding)
                if frame is None:
                    frame = frames[encoding] = encode(event, encoding)
                member.send_frame(frame, seq)
        if internal or kind in CONTROL_EVENTS:
            for member in recipients:
                self._control(member, event)

    def _recipients(self, room: LocalRoom, envelope: Message) -> list[Member]:
        to = envelope.get("to")
        exclude = envelope.get("x")
        only_facilitators = envelope.get("f")
        if to is not None and not only_facilitators:
            return [m for pid in to if (m := room.members.get(pid)) is not None]
        if not only_facilitators:  # the room message: everyone, maybe but one
            if exclude is None:
                return list(room.members.values())
            return [m for pid, m in room.members.items() if pid != exclude]
        wanted = set(to or ())
        return [
            m
            for pid, m in room.members.items()
            if pid != exclude and (m.role == FACILITATOR or pid in wanted)
        ]

    def _control(self, member: Member, event: Message) -> None:
        target = event.get("pid")
        if event["t"] in {"muted", "unmuted"} and target != member.pid:
            return
        try:
            member.control(event)
        except Exception:
            log.exception("member control failed", extra={"event": event["t"]})
