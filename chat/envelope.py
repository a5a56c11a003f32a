"""What a stream entry carries between workers: the ops it commits and the events it delivers.

An entry of a room's stream holds one :class:`Envelope`: the state changes (ops, see
:mod:`chat.roomstate`) that every replica applies, and the server messages that go to the
room's members, each with its recipients. Workers exchange it serialised (and, with a bus key,
sealed by the backend); nothing outside the server ever sees it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chat.events import Event
from chat.ops import (
    Admit,
    BanAdd,
    HeldAdd,
    HeldDrop,
    HistoryDrop,
    HistoryEdit,
    KeyAdd,
    KeyDrop,
    LogAdd,
    MemberAdd,
    MemberDrop,
    MemberSet,
    Op,
    ReportAdd,
    ReportDrop,
    Reset,
    RoomClose,
    RoomSet,
    SeatLimit,
)
from chat.protocol import Message, pack_envelope, unpack_envelope
from chat.roomstate import MEMBER_FIELDS, MEMBER_MUTABLE, ROOM_MUTABLE, MemberState, Value


@dataclass(frozen=True, slots=True)
class Delivery:
    """A server message and who on every worker gets it.

    With none of ``to``, ``exclude`` and ``facilitators``: every present member. Members still
    waiting at a knock room's door get only what names them in ``to``, or what is marked
    ``waiting`` (the room closing).

    Args:
        event: the server message (a ``msg`` gets its ``seq`` added when delivered); typed
            when built, a plain map once it has crossed the stream.
        to: only these pids.
        exclude: everyone but this pid.
        facilitators: only facilitators (with ``to``: those pids as well).
        waiting: members waiting at the door get it too.
    """

    event: Event | Message
    to: tuple[str, ...] | None = None
    exclude: str | None = None
    facilitators: bool = False
    waiting: bool = False

    @property
    def message(self) -> Message:
        """The event as a plain map."""
        event = self.event
        return event.wire() if isinstance(event, Event) else event

    def as_map(self) -> Delivery:
        """The same delivery with its event as a plain map (what crosses the stream)."""
        event = self.event
        if not isinstance(event, Event):
            return self
        return Delivery(event.wire(), self.to, self.exclude, self.facilitators, self.waiting)

    def wire(self) -> list[Any]:
        to = list(self.to) if self.to is not None else None
        return [self.message, to, self.exclude, self.facilitators, self.waiting]


@dataclass(frozen=True, slots=True)
class Envelope:
    """One stream entry's content: ops first, then deliveries."""

    ops: Sequence[Op] = ()
    out: Sequence[Delivery] = ()

    def pack(self) -> bytes:
        return pack_envelope(
            {"o": [op_to_wire(op) for op in self.ops], "d": [d.wire() for d in self.out]}
        )

    @classmethod
    def unpack(cls, data: bytes) -> Envelope:
        """Parse a packed envelope.

        Raises:
            ValueError: not an envelope this version can read.
        """
        raw = unpack_envelope(data)
        try:
            ops = tuple(op_from_wire(op) for op in raw.get("o", ()))
            out = tuple(
                Delivery(
                    event=item[0],
                    to=tuple(item[1]) if item[1] is not None else None,
                    exclude=item[2],
                    facilitators=bool(item[3]),
                    waiting=bool(item[4]),
                )
                for item in raw.get("d", ())
            )
        except (TypeError, IndexError, KeyError) as exc:
            raise ValueError("malformed envelope") from exc
        for delivery in out:
            event = delivery.event
            if not isinstance(event, dict) or not isinstance(event.get("t"), str):
                raise ValueError("malformed event")
        return cls(ops, out)


def message_of(envelope: Envelope) -> Message | None:
    """The room message (``msg``) an entry carries, if any: its first delivery."""
    if envelope.out and envelope.out[0].message.get("t") == "msg":
        return envelope.out[0].message
    return None


def with_content_warning(data: bytes, cw: str) -> bytes:
    """A packed entry whose room message carries content warning ``cw`` ("" removes it): how
    history follows a facilitator's ``cw`` (§14).

    Raises:
        ValueError: not an envelope, or one without a room message.
    """
    envelope = Envelope.unpack(data)
    message = message_of(envelope)
    if message is None:
        raise ValueError("no room message")
    edited = {k: v for k, v in message.items() if k != "cw"}
    if cw:
        edited["cw"] = cw
    first = envelope.out[0]
    out = [
        Delivery(edited, first.to, first.exclude, first.facilitators, first.waiting),
        *envelope.out[1:],
    ]
    return Envelope(envelope.ops, out).pack()


# --- ops on the wire ---------------------------------------------------------------------

_MEMBER_WIRE = MEMBER_FIELDS


def op_to_wire(op: Op) -> list[Any]:
    """A msgpack-friendly form of an op (for the stream entry that carries it)."""
    if isinstance(op, RoomSet):
        return ["rs", dict(op.fields), dict(op.require)]
    if isinstance(op, MemberAdd):
        return ["ma", [getattr(op.member, name) for name in _MEMBER_WIRE]]
    if isinstance(op, MemberSet):
        return ["ms", op.pid, dict(op.fields), dict(op.require)]
    if isinstance(op, MemberDrop):
        return ["md", op.pid, op.why, dict(op.require), op.ban, op.lapsed_before]
    if isinstance(op, Admit):
        return ["ad", op.pid]
    if isinstance(op, BanAdd):
        return ["ba", op.address_hash]
    if isinstance(op, ReportAdd):
        return ["ra", dict(op.report), op.cap]
    if isinstance(op, LogAdd):
        return ["la", dict(op.entry)]
    if isinstance(op, SeatLimit):
        return ["sl", op.waiting, op.limit]
    if isinstance(op, HistoryDrop):
        return ["hd", op.mid]
    if isinstance(op, HeldAdd):
        return ["ha", dict(op.held), list(op.evict)]
    if isinstance(op, HeldDrop):
        return ["hr", op.mid]
    if isinstance(op, ReportDrop):
        return ["rd", op.mid]
    if isinstance(op, KeyAdd):
        return ["ka", op.token, dict(op.entry)]
    if isinstance(op, KeyDrop):
        return ["kd", op.token, list(op.pids)]
    if isinstance(op, HistoryEdit):
        return ["he", op.mid, op.cw]
    if isinstance(op, RoomClose):
        return ["rc"]
    return ["rr"]


def op_from_wire(raw: list[Any]) -> Op:
    """The op :func:`op_to_wire` made.

    Raises:
        ValueError: not an op this version knows.
    """
    try:
        kind = raw[0]
        # What a newer version adds (fields, settings) is left out, not refused: an older
        # worker in a rolling upgrade follows the stream without it.
        if kind == "rs":
            return RoomSet(_known(raw[1], ROOM_MUTABLE), raw[2])
        if kind == "ma":
            return MemberAdd(MemberState(*raw[1][: len(MEMBER_FIELDS)]))
        if kind == "ms":
            return MemberSet(raw[1], _known(raw[2], MEMBER_MUTABLE), raw[3])
        if kind == "md":
            return MemberDrop(raw[1], raw[2], raw[3], bool(raw[4]), raw[5])
        if kind == "ad":
            return Admit(raw[1])
        if kind == "ba":
            return BanAdd(raw[1])
        if kind == "ra":
            return ReportAdd(raw[1], raw[2])
        if kind == "la":
            return LogAdd(raw[1])
        if kind == "sl":
            return SeatLimit(bool(raw[1]), int(raw[2]))
        if kind == "hd":
            return HistoryDrop(raw[1])
        if kind == "ha":
            return HeldAdd(raw[1], tuple(raw[2]))
        if kind == "hr":
            return HeldDrop(raw[1])
        if kind == "rd":
            return ReportDrop(raw[1])
        if kind == "ka":
            return KeyAdd(raw[1], raw[2])
        if kind == "kd":
            return KeyDrop(raw[1], tuple(raw[2]))
        if kind == "he":
            return HistoryEdit(raw[1], raw[2])
        if kind == "rc":
            return RoomClose()
        if kind == "rr":
            return Reset()
    except (IndexError, TypeError) as exc:
        raise ValueError("malformed op") from exc
    raise ValueError("unknown op")


def _known(fields: Mapping[str, Value], allowed: frozenset[str]) -> dict[str, Value]:
    return {name: value for name, value in fields.items() if name in allowed}
