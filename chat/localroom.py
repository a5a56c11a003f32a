"""A room as one worker holds it: a replica of its state, and its members' connections here.

Everything here is synchronous: picking the recipients of an event and giving each of them
the frame encoded once per encoding (protocol §10), and making the local connections agree
with the replica after it changed (:meth:`LocalRoom.reconcile`): a member that is gone is
closed with the code that says why, a member now held by another connection is closed, a
waiting member that was admitted moves into the room. The hub (:mod:`chat.hub`) keeps these
rooms, loads them and moves their replicas along the stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chat import rounds
from chat.backend.base import Entry, Position
from chat.envelope import Delivery, Envelope, message_of
from chat.errors import CloseCode
from chat.events import Room
from chat.ignoring import IgnoreIndex, sender_of
from chat.ops import Admit, MemberAdd, MemberDrop, MemberSet, Op
from chat.protocol import EncodedArray, Encoding, Message, encode
from chat.roomstate import LISTED_FIELDS, MemberState, RoomState

log = logging.getLogger("hearth.room")
DIGESTS_KEPT = 256  # recent entries whose digest a replica keeps (fork detection)

# Why a member left, as the close code its own connection gets (protocol §6, §8).
CLOSE_FOR = {
    "removed": (CloseCode.REMOVED, "removed by a facilitator"),
    "denied": (CloseCode.FORBIDDEN, "not admitted"),
    "left": (CloseCode.NORMAL, "left"),
    "expired": (CloseCode.NORMAL, "left"),
    "revoked": (CloseCode.FORBIDDEN, "facilitator key revoked"),
    "full": (CloseCode.ROOM_FULL, "the room is full"),  # §13: beyond the capacity at opening
}


LISTINGS_FROM = 64  # members from which a room keeps its welcome listing encoded


class Connection(Protocol):
    """What a room needs of a member's connection (implemented by ``session.Session``)."""

    @property
    def conn_id(self) -> str: ...

    @property
    def encoding(self) -> Encoding: ...

    def send_frame(self, frame: bytes, seq: int) -> None:
        """Queue an encoded frame; never awaits. ``seq`` is the msg's seq, else 0."""
        ...

    def ended(self, code: CloseCode, reason: str) -> None:
        """The member's presence here is over (removed, denied, room closed, taken over)."""
        ...

    def changed(self, member: MemberState) -> None:
        """The member's state changed (admitted, muted...); react without awaiting."""
        ...


@dataclass(eq=False, slots=True)
class Attached:
    """A local connection as the room files it: who it is for, and how it hears the room."""

    conn: Connection
    pid: str
    facilitator: bool
    waiting: bool


class RoomGone(Exception):
    """There is no such room (it never existed, was closed, or expired)."""


@dataclass(eq=False, slots=True)
class LocalRoom:
    """A room as this worker holds it."""

    id: str
    state: RoomState | None = None  # the replica; None until loaded
    present: dict[str, Attached] = field(default_factory=dict)  # pid -> its connection here
    waiting: dict[str, Attached] = field(default_factory=dict)  # at a knock room's door
    pending: dict[tuple[int, int], Entry] = field(default_factory=dict)  # behind a gap
    loading: asyncio.Task[None] | None = None
    recovery: asyncio.Task[None] | None = None
    waiters: list[tuple[Position, asyncio.Future[None]]] = field(default_factory=list)
    users: int = 0  # handlers between opening the room and attaching: it must stay loaded
    release: asyncio.TimerHandle | None = None
    closed: bool = False
    ignoring: IgnoreIndex = field(default_factory=IgnoreIndex)  # who ignores whom (§14)
    needs_reload: bool = False  # the stream cannot be followed here: reload a snapshot
    past_epochs: set[int] = field(default_factory=set)  # epochs the replica has left behind
    digests: dict[int, int] = field(default_factory=dict)  # off -> hash of the entry applied
    # The present members as a participant's welcome lists them, kept encoded per encoding
    # in large rooms (see listing): grown as members join, dropped when a listed member
    # changes or leaves (listing_follows) and on a reload, then built afresh when next asked.
    listings: dict[Encoding, EncodedArray] = field(default_factory=dict)
    listed_pids: set[str] = field(default_factory=set)  # the members those arrays hold

    def listing(self, staff: bool, encoding: Encoding) -> list[Message] | EncodedArray:
        """The present members as a welcome lists them, as of now.

        A large room keeps the list encoded, and adds each joiner to it: a storm of joiners
        then costs no member's encoding more than once, where building and encoding the
        whole room for each joiner is quadratic (a fifth of the server's time in a storm of a
        thousand, issue 13). A small room, and a facilitator's welcome (which also shows who
        is held), list afresh: a kept list costs memory in every room that has one.
        """
        state = self.current()
        if staff or len(state.members) < LISTINGS_FROM:
            return [m.listed(staff=staff) for m in state.members.values() if not m.waiting]
        found = self.listings.get(encoding)
        if found is None:
            present = [m for m in state.members.values() if not m.waiting]
            found = EncodedArray(encoding, [encode(m.listed(), encoding) for m in present])
            self.listings[encoding] = found
            self.listed_pids.update(m.pid for m in present)
        return found

    def listing_follows(self, ops: Sequence[Op]) -> None:
        """Keep the encoded listing in step with ops just applied to the replica. A joiner
        goes at its end, where the replica's member order puts a new member; any other
        change to a listed member (a mute, a step-out, an admission, a departure) drops it."""
        if not self.listings:
            return
        state = self.state
        assert state is not None
        for op in ops:
            if isinstance(op, MemberAdd):
                member = state.members.get(op.member.pid)
                if op.member.pid in self.listed_pids:  # added again: its place may differ
                    self._drop_listings()
                    return
                if member is not None and not member.waiting:
                    self.listings = {
                        encoding: array.plus(encode(member.listed(), encoding))
                        for encoding, array in self.listings.items()
                    }
                    self.listed_pids.add(member.pid)
            elif isinstance(op, MemberDrop | Admit) or (
                isinstance(op, MemberSet) and not LISTED_FIELDS.isdisjoint(op.fields)
            ):
                self._drop_listings()
                return

    def _drop_listings(self) -> None:
        self.listings = {}
        self.listed_pids = set()

    def current(self) -> RoomState:
        """The replica, or RoomGone when the room has ended."""
        state = self.state
        if state is None or self.closed:
            raise RoomGone(self.id)
        return state

    @property
    def empty(self) -> bool:
        return not self.present and not self.waiting and self.users == 0

    def holds(self, position: Position) -> bool:
        """Whether the replica has applied ``position`` (or left its epoch behind)."""
        state = self.state
        if state is None:
            return False
        if state.epoch == position.epoch:
            return state.off >= position.off
        return position.epoch in self.past_epochs

    def remember(self, entry: Entry) -> None:
        """Keep a digest of an applied entry, to tell a repeat from a fork of the stream."""
        digests = self.digests
        digests[entry.off] = hash(entry.data)
        if len(digests) > DIGESTS_KEPT:
            del digests[next(iter(digests))]

    def seen_before(self, entry: Entry) -> bool:
        """Whether an entry at an offset already applied is the same one (or unknown)."""
        known = self.digests.get(entry.off)
        return known is None or known == hash(entry.data)

    def adopt(self, state: RoomState) -> None:
        """Replace the replica with a snapshot (a reload)."""
        old = self.state
        if old is not None and old.epoch != state.epoch:
            self.past_epochs.add(old.epoch)
        self.state = state
        self.digests.clear()
        self._drop_listings()
        self.needs_reload = False
        self.wake()

    def wake(self) -> None:
        """Resolve the commits waiting for the replica to catch up with them."""
        if not self.waiters:
            return
        still: list[tuple[Position, asyncio.Future[None]]] = []
        for position, waiter in self.waiters:
            if self.holds(position) or self.closed:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((position, waiter))
        self.waiters = still

    # --- connections ---------------------------------------------------------------------

    def attach(self, conn: Connection, member: MemberState) -> None:
        """File a connection under its member; a previous local one of the member gives way."""
        attached = Attached(conn, member.pid, member.is_facilitator, member.waiting)
        previous = self.present.pop(member.pid, None) or self.waiting.pop(member.pid, None)
        (self.waiting if member.waiting else self.present)[member.pid] = attached
        if previous is not None and previous.conn is not conn:
            previous.conn.ended(CloseCode.NORMAL, "resumed on another connection")

    def detach(self, pid: str, conn: Connection) -> None:
        for filed in (self.present, self.waiting):
            attached = filed.get(pid)
            if attached is not None and attached.conn is conn:
                del filed[pid]

    def here(self) -> list[str]:
        """The pids connected to this worker (present and waiting)."""
        return [*self.present, *self.waiting]

    # --- fan-out -------------------------------------------------------------------------

    def fan_out(self, out: Iterable[Delivery], seq: int = 0) -> None:
        """Give each event, encoded once per encoding, to its local recipients (§10)."""
        for delivery in out:
            event = delivery.message
            msg_seq = 0
            if seq and event["t"] == "msg":
                event["seq"] = msg_seq = seq
            # Each encoding's frame, made when a recipient first needs it (two locals, not a
            # dict: an Enum key costs a Python-level __hash__ per recipient).
            packed: bytes | None = None
            text: bytes | None = None
            recipients = self._recipients(delivery)
            sender = sender_of(event, delivery.exclude)
            if sender is not None and self.state is not None:
                # §14: members who ignore the sender are left out; nothing is re-encoded.
                ignorers = self.ignoring.ignorers(self.state, sender)
                if ignorers:
                    skip = {a.conn for pid in ignorers if (a := self.present.get(pid))}
                    recipients = [conn for conn in recipients if conn not in skip]
            for conn in recipients:
                if conn.encoding is Encoding.MSGPACK:
                    if packed is None:
                        packed = encode(event, Encoding.MSGPACK)
                    conn.send_frame(packed, msg_seq)
                else:
                    if text is None:
                        text = encode(event, Encoding.JSON)
                    conn.send_frame(text, msg_seq)

    def _recipients(self, delivery: Delivery) -> list[Connection]:
        present = self.present
        to, exclude = delivery.to, delivery.exclude
        if to is not None and not delivery.facilitators:
            out = [a.conn for pid in to if (a := present.get(pid) or self.waiting.get(pid))]
        elif delivery.facilitators:
            wanted = set(to or ())
            out = [
                a.conn
                for pid, a in present.items()
                if pid != exclude and (a.facilitator or pid in wanted)
            ]
            out += [a.conn for pid, a in self.waiting.items() if pid in wanted]
        elif exclude is None:
            out = [a.conn for a in present.values()]
        else:
            out = [a.conn for pid, a in present.items() if pid != exclude]
        if delivery.waiting and to is None:
            out += [a.conn for pid, a in self.waiting.items() if pid != exclude]
        return out

    # --- agreeing with the state ---------------------------------------------------------

    def reconcile(self, pids: Iterable[str], ops: Sequence[Op] = ()) -> bool:
        """Make these members' local connections agree with the replica.

        Returns:
            Whether a connection was ended (the room may have become empty).
        """
        state = self.state
        if state is None:
            return False
        why = {op.pid: op.why for op in ops if isinstance(op, MemberDrop)}
        ended = False
        for pid in pids:
            attached = self.present.get(pid) or self.waiting.get(pid)
            if attached is None:
                continue
            member = state.members.get(pid)
            if member is None:
                default = "denied" if attached.waiting else "removed"
                code, reason = CLOSE_FOR.get(why.get(pid, default), CLOSE_FOR["removed"])
                self._end(attached, code, reason)
                ended = True
            elif member.holder != attached.conn.conn_id:
                self._end(attached, CloseCode.NORMAL, "resumed on another connection")
                ended = True
            else:
                if attached.waiting and not member.waiting:
                    # Admitted: it moves to the present; its connection sends the welcome.
                    del self.waiting[pid]
                    attached.waiting = False
                    self.present[pid] = attached
                try:
                    attached.conn.changed(member)
                except Exception:
                    log.exception("member change failed")
        return ended

    def reconcile_all(self) -> bool:
        return self.reconcile(self.here())

    def _end(self, attached: Attached, code: CloseCode, reason: str) -> None:
        for filed in (self.present, self.waiting):
            if filed.get(attached.pid) is attached:
                del filed[attached.pid]
        attached.conn.ended(code, reason)

    def end_everyone(self) -> None:
        """The room ended: everyone here is closed with 4010."""
        self.closed = True
        for attached in [*self.present.values(), *self.waiting.values()]:
            attached.conn.ended(CloseCode.ROOM_CLOSED, "the room was closed")
        self.present.clear()
        self.waiting.clear()
        self.wake()


def room_event(state: RoomState) -> Message:
    """The ``room`` event for a state: every setting that can change (§6, §13)."""
    return Room(
        locked=state.locked,
        slow=state.slow,
        paused=state.paused,
        ends_at=state.ends_at,
        review=state.review,
        contact=state.contact,
    ).wire()


Views = tuple[Message, Message]


def views(state: RoomState) -> Views:
    """What members see of the room that the state derives: the ``room`` and ``round``
    events as they would be now."""
    return room_event(state), rounds.view(state).wire()


def view_changes(before: Views, state: RoomState, out: Sequence[Delivery]) -> list[Delivery]:
    """The ``room`` and ``round`` events an entry implies without carrying them (the same on
    every worker: every replica derives them from the same state at the same offset)."""
    room_now, round_now = views(state)
    extra: list[Delivery] = []
    if room_now != before[0] and not any(d.message["t"] == "room" for d in out):
        extra.append(Delivery(room_now))
    if round_now != before[1]:
        extra.append(Delivery(round_now))
    return extra


def message_event(entry: Entry) -> Message | None:
    """The room message a history entry carries, with its ``seq``; None if it holds none."""
    try:
        envelope = Envelope.unpack(entry.data)
    except ValueError:
        return None
    message = message_of(envelope)
    return {**message, "seq": entry.seq} if message is not None else None
