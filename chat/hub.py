"""This worker's rooms: a replica of each room's state, its local connections, and fan-out.

For every room with members connected here the hub holds a :class:`LocalRoom`: a replica of
the room's :class:`~chat.roomstate.RoomState` and the local connections of its members. The
backend hands over the room's stream entries in order (:meth:`Hub.deliver`); the hub applies
each entry's ops to the replica, then gives each of the entry's events, encoded once per
encoding, to every local recipient (protocol §10), then makes every local connection agree
with the new state (:meth:`Hub._reconcile`): a member that is gone is closed with the code
that says why, a member now held by another connection is closed, a waiting member that was
admitted enters. Delivery never awaits a connection.

Because the replica moves only by applying entries in offset order, it is exactly the store as
of its offset, and every check made against it (muted? removed? locked?) is as good as one
made against the store at that moment (protocol §12). A worker can miss entries (its Redis
subscription dropped, Redis restarted): a jump in the offset, a re-subscription, or a commit
of its own that does not come back in time starts a recovery (:mod:`chat.recovery`), which
reads the missed entries back from the stream, or reloads the room and reconciles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from chat import metrics
from chat.backend.base import Backend, Entry, MessageMeta, Position
from chat.envelope import Delivery, Envelope, message_of
from chat.errors import CloseCode, Unavailable
from chat.events import Room
from chat.protocol import Encoding, Message, encode
from chat.roomstate import (
    MemberDrop,
    MemberState,
    Op,
    Refused,
    Reset,
    RoomClose,
    RoomState,
    apply,
    touched_pids,
)

log = logging.getLogger("hearth.hub")

RELEASE_AFTER = 1.0  # seconds a room stays subscribed after its last local member (§12: ≤ 5)
NUDGE_AFTER = 0.5  # seconds a commit waits for its own entry before recovery looks for it
CATCH_UP_LIMIT = 5.0  # seconds a commit waits for its entry at most (then: unavailable)
PENDING_LIMIT = 10_000  # entries buffered behind a gap; beyond, recovery reloads instead

# Why a member left, as the close code its own connection gets (protocol §6, §8).
CLOSE_FOR = {
    "removed": (CloseCode.REMOVED, "removed by a facilitator"),
    "denied": (CloseCode.FORBIDDEN, "not admitted"),
    "left": (CloseCode.NORMAL, "left"),
    "expired": (CloseCode.NORMAL, "left"),
}


class Connection(Protocol):
    """What the hub needs of a member's connection (implemented by ``session.Session``)."""

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
    """A local connection as the hub files it: who it is for, and how it hears the room."""

    conn: Connection
    pid: str
    facilitator: bool
    waiting: bool


@dataclass(eq=False, slots=True)
class LocalRoom:
    """A room as this worker holds it."""

    id: str
    state: RoomState | None = None  # None until loaded
    present: dict[str, Attached] = field(default_factory=dict)  # pid -> its connection here
    waiting: dict[str, Attached] = field(default_factory=dict)  # at a knock room's door
    pending: dict[tuple[int, int], Entry] = field(default_factory=dict)  # behind a gap
    loading: asyncio.Task[None] | None = None
    recovery: asyncio.Task[None] | None = None
    waiters: list[tuple[Position, asyncio.Future[None]]] = field(default_factory=list)
    users: int = 0  # handlers between open() and attach(): the room must not be released
    release: asyncio.TimerHandle | None = None
    closed: bool = False

    @property
    def empty(self) -> bool:
        return not self.present and not self.waiting and self.users == 0

    def holds(self, position: Position) -> bool:
        state = self.state
        return state is not None and (state.epoch != position.epoch or state.off >= position.off)


class RoomGone(Exception):
    """There is no such room (it never existed, was closed, or expired)."""


class Hub:
    """Rooms with members on this worker.

    Args:
        backend: where rooms' state and streams live.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.rooms: dict[str, LocalRoom] = {}
        # Starts a room's recovery; chat.recovery installs it (it needs the hub, not vice versa).
        self.recover: Callable[[LocalRoom], None] = lambda room: None

    async def start(self) -> None:
        await self.backend.start(self.deliver, self._reconnected)

    async def aclose(self) -> None:
        for room in self.rooms.values():
            for task in (room.loading, room.recovery):
                if task is not None:
                    task.cancel()
            if room.release is not None:
                room.release.cancel()
        await self.backend.aclose()
        self.rooms.clear()
        metrics.ROOMS.set(0)

    # --- opening, attaching, releasing ----------------------------------------------------

    @contextlib.asynccontextmanager
    async def using(self, room_id: str) -> AsyncIterator[LocalRoom]:
        """The room, loaded and current, held open while the caller works with it.

        Raises:
            RoomGone: no such room.
            Unavailable: the backend cannot be reached.
        """
        room = self.rooms.get(room_id)
        if room is None or room.closed:
            room = self.rooms[room_id] = LocalRoom(room_id)
            metrics.ROOMS.set(len(self.rooms))
        room.users += 1
        if room.release is not None:
            room.release.cancel()
            room.release = None
        try:
            if room.state is None and room.loading is None:
                room.loading = asyncio.ensure_future(self._load(room))
            if room.loading is not None:
                await asyncio.shield(room.loading)
            if room.closed or room.state is None:
                raise RoomGone(room_id)
            yield room
        finally:
            room.users -= 1
            self._maybe_release(room)

    async def _load(self, room: LocalRoom) -> None:
        """Subscribe, then read a snapshot: entries that arrive meanwhile wait in ``pending``
        and those after the snapshot's offset are applied on top of it."""
        try:
            await self.backend.subscribe(room.id)
            state = await self.backend.snapshot(room.id)
            if state is None:
                room.closed = True
                raise RoomGone(room.id)
            room.state = state
            self.drain(room)
        finally:
            room.loading = None
            if room.state is None:
                room.closed = True
                self._maybe_release(room)

    def attach(self, room: LocalRoom, conn: Connection, member: MemberState) -> None:
        """File a connection under its member (after the commit that made it the holder has
        been applied here). A previous local connection of the same member gives way."""
        attached = Attached(conn, member.pid, member.is_facilitator, member.waiting)
        previous = room.present.pop(member.pid, None) or room.waiting.pop(member.pid, None)
        (room.waiting if member.waiting else room.present)[member.pid] = attached
        if previous is not None and previous.conn is not conn:
            previous.conn.ended(CloseCode.NORMAL, "resumed on another connection")

    def detach(self, room: LocalRoom, pid: str, conn: Connection) -> None:
        """Unfile a connection; the room is released shortly after its last one goes."""
        for filed in (room.present, room.waiting):
            attached = filed.get(pid)
            if attached is not None and attached.conn is conn:
                del filed[pid]
        self._maybe_release(room)

    def _maybe_release(self, room: LocalRoom) -> None:
        if room.empty and room.release is None and self.rooms.get(room.id) is room:
            delay = 0.0 if room.closed else RELEASE_AFTER
            room.release = asyncio.get_running_loop().call_later(delay, self._release, room)

    def _release(self, room: LocalRoom) -> None:
        room.release = None
        if not room.empty or self.rooms.get(room.id) is not room:
            return
        del self.rooms[room.id]
        metrics.ROOMS.set(len(self.rooms))
        for task in (room.loading, room.recovery):
            if task is not None:
                task.cancel()
        room.closed = True
        self._background(self._unsubscribe(room.id))

    async def _unsubscribe(self, room_id: str) -> None:
        if room_id in self.rooms:
            return  # someone came back meanwhile: the new LocalRoom is subscribed
        try:
            await self.backend.unsubscribe(room_id)
        except Unavailable:
            log.debug("unsubscribe not sent: backend unavailable")

    # --- committing -----------------------------------------------------------------------

    async def commit(
        self,
        room: LocalRoom,
        ops: Sequence[Op] = (),
        out: Sequence[Delivery] = (),
        message: MessageMeta | None = None,
    ) -> Position:
        """Commit ops and events on the room's stream, and wait until this worker's replica
        has applied them (so that the caller reads its own writes).

        Raises:
            Refused: a precondition failed; nothing happened.
            Unavailable: nothing happened, or it is not known whether it did.
        """
        data = Envelope(ops, out).pack()
        try:
            position = await self.backend.commit(room.id, ops, data, message)
        except Refused as exc:
            if exc.reason not in {"noroom", "guard", "behind"}:
                raise
            # The store disagrees with the replica: the replica missed entries, or the store
            # lost the room or some writes. Catch up (or restore) first.
            await self.refresh(room)
            if exc.reason == "guard":
                raise  # the caller re-checks against the caught-up replica
            if room.closed:
                raise RoomGone(room.id) from None
            raise Unavailable(f"commit refused: {exc.reason}") from None
        await self.caught_up(room, position)
        return position

    async def commit_blind(
        self, room_id: str, ops: Sequence[Op] = (), out: Sequence[Delivery] = ()
    ) -> Position:
        """Commit without holding the room here (timers that fire after everyone left it).

        Raises:
            Refused: a precondition failed; nothing happened.
            Unavailable: nothing happened, or it is not known whether it did.
        """
        return await self.backend.commit(room_id, ops, Envelope(ops, out).pack())

    async def refresh(self, room: LocalRoom) -> None:
        """Run the room's recovery now and wait for it (bounded)."""
        self.recover(room)
        task = room.recovery
        if task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CATCH_UP_LIMIT):
                    await asyncio.shield(task)

    async def publish(self, room: LocalRoom, out: Sequence[Delivery]) -> None:
        """An ephemeral event (``typing``): not on the stream, lost if a worker misses it."""
        await self.backend.publish(room.id, Envelope((), out).pack())

    async def caught_up(self, room: LocalRoom, position: Position) -> None:
        """Wait until the replica holds ``position``; nudge recovery if it is slow to come.

        Raises:
            Unavailable: it did not come within :data:`CATCH_UP_LIMIT` seconds.
        """
        if room.holds(position) or room.closed:
            return
        waiter = asyncio.get_running_loop().create_future()
        room.waiters.append((position, waiter))
        try:
            try:
                async with asyncio.timeout(NUDGE_AFTER):
                    await asyncio.shield(waiter)
                return
            except TimeoutError:
                self.recover(room)  # our own entry did not come back: look for it
            async with asyncio.timeout(CATCH_UP_LIMIT):
                await waiter
        except TimeoutError:
            raise Unavailable("the room's stream did not catch up") from None
        finally:
            if not waiter.done():
                waiter.cancel()
            room.waiters = [(p, w) for p, w in room.waiters if w is not waiter]

    # --- receiving ------------------------------------------------------------------------

    def deliver(self, room_id: str, entry: Entry) -> None:
        """Take one entry from the backend. Never awaits, never raises."""
        room = self.rooms.get(room_id)
        if room is None or room.closed:
            return
        try:
            if entry.off == 0:  # ephemeral: only if the replica is current, else moot
                if room.state is not None and room.recovery is None:
                    self._fan_out(room, Envelope.unpack(entry.data).out, 0)
                return
            if room.state is None or room.recovery is not None:
                self._park(room, entry)
                return
            self._take(room, entry)
        except Exception:
            log.exception("delivery failed")
            metrics.BUS_DROPPED.labels(reason="error").inc()

    def _park(self, room: LocalRoom, entry: Entry) -> None:
        if len(room.pending) < PENDING_LIMIT:
            room.pending[(entry.epoch, entry.off)] = entry

    def _take(self, room: LocalRoom, entry: Entry) -> None:
        state = room.state
        assert state is not None
        if entry.epoch == state.epoch and entry.off <= state.off:
            return  # seen already (a recovery read it, or a duplicate)
        if entry.epoch != state.epoch or entry.off != state.off + 1:
            self._park(room, entry)  # a gap, or a new epoch: recovery fills in, or reloads
            self.recover(room)
            return
        self.apply_entry(room, entry)
        self.drain(room)

    def drain(self, room: LocalRoom) -> None:
        """Apply the parked entries that now follow on; a remaining gap starts a recovery."""
        state = room.state
        while state is not None and not room.closed:
            entry = room.pending.pop((state.epoch, state.off + 1), None)
            if entry is None:
                break
            self.apply_entry(room, entry)
            state = room.state
        if state is not None:
            for key in [k for k in room.pending if k[0] == state.epoch and k[1] <= state.off]:
                del room.pending[key]
            if room.pending and not room.closed:
                self.recover(room)

    def apply_entry(self, room: LocalRoom, entry: Entry) -> None:
        """Apply one entry that follows on from the replica's offset."""
        state = room.state
        assert state is not None
        try:
            envelope = Envelope.unpack(entry.data)
        except ValueError:
            # Our own format, unreadable: this worker cannot follow the room; reload it.
            metrics.BUS_DROPPED.labels(reason="malformed").inc()
            self._park(room, entry)
            self.recover(room)
            return
        ending = any(isinstance(op, RoomClose) for op in envelope.ops)
        reset = any(isinstance(op, Reset) for op in envelope.ops)
        for op in envelope.ops:
            if not isinstance(op, RoomClose | Reset):
                apply(state, op)
        state.off = entry.off
        if entry.seq:
            state.seq = entry.seq
            metrics.MESSAGES.inc()
        for delivery in envelope.out:
            message = delivery.message
            if message["t"] == "room":
                # A room event carries every setting as of its entry, the same on every worker,
                # however the facilitators' changes interleaved.
                message.update(room_event(state))
        self._fan_out(room, envelope.out, entry.seq)
        if ending:
            self.close_room(room)
        else:
            self.reconcile(room, touched_pids(envelope.ops), envelope.ops)
        self._wake(room)
        if reset:
            self.recover(room)  # a restore: everyone reloads what the restorer wrote

    def _wake(self, room: LocalRoom) -> None:
        if not room.waiters:
            return
        still: list[tuple[Position, asyncio.Future[None]]] = []
        for position, waiter in room.waiters:
            if room.holds(position) or room.closed:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((position, waiter))
        room.waiters = still

    # --- fan-out --------------------------------------------------------------------------

    def _fan_out(self, room: LocalRoom, out: Iterable[Delivery], seq: int) -> None:
        for delivery in out:
            event = delivery.message
            msg_seq = 0
            if seq and event["t"] == "msg":
                event["seq"] = msg_seq = seq
            # One encode per encoding per event, whatever the number of recipients (§10).
            frames: dict[Encoding, bytes] = {}
            for conn in self._recipients(room, delivery):
                encoding = conn.encoding
                frame = frames.get(encoding)
                if frame is None:
                    frame = frames[encoding] = encode(event, encoding)
                conn.send_frame(frame, msg_seq)

    def fan_out(self, room: LocalRoom, out: Iterable[Delivery], seq: int = 0) -> None:
        """Deliver events to this worker's members only (recovery's catch-up)."""
        self._fan_out(room, out, seq)

    def _recipients(self, room: LocalRoom, delivery: Delivery) -> list[Connection]:
        present = room.present
        to, exclude = delivery.to, delivery.exclude
        if to is not None and not delivery.facilitators:
            out = [a.conn for pid in to if (a := present.get(pid) or room.waiting.get(pid))]
        elif delivery.facilitators:
            wanted = set(to or ())
            out = [
                a.conn
                for pid, a in present.items()
                if pid != exclude and (a.facilitator or pid in wanted)
            ]
            out += [a.conn for pid, a in room.waiting.items() if pid in wanted]
        elif exclude is None:
            out = [a.conn for a in present.values()]
        else:
            out = [a.conn for pid, a in present.items() if pid != exclude]
        if delivery.waiting and to is None:
            out += [a.conn for pid, a in room.waiting.items() if pid != exclude]
        return out

    # --- agreeing with the state ----------------------------------------------------------

    def reconcile(self, room: LocalRoom, pids: Iterable[str], ops: Sequence[Op] = ()) -> None:
        """Make these members' local connections agree with the replica."""
        state = room.state
        if state is None:
            return
        why = {op.pid: op.why for op in ops if isinstance(op, MemberDrop)}
        for pid in pids:
            attached = room.present.get(pid) or room.waiting.get(pid)
            if attached is None:
                continue
            member = state.members.get(pid)
            if member is None:
                default = "denied" if attached.waiting else "removed"
                code, reason = CLOSE_FOR.get(why.get(pid, default), CLOSE_FOR["removed"])
                self._end(room, attached, code, reason)
            elif member.holder != attached.conn.conn_id:
                self._end(room, attached, CloseCode.NORMAL, "resumed on another connection")
            else:
                if attached.waiting and not member.waiting:
                    # Admitted: it moves to the present; its connection sends the welcome.
                    del room.waiting[pid]
                    attached.waiting = False
                    room.present[pid] = attached
                self._notify(attached, member)

    def reconcile_all(self, room: LocalRoom) -> None:
        self.reconcile(room, [*room.present, *room.waiting])

    def _notify(self, attached: Attached, member: MemberState) -> None:
        try:
            attached.conn.changed(member)
        except Exception:
            log.exception("member change failed")

    def _end(self, room: LocalRoom, attached: Attached, code: CloseCode, reason: str) -> None:
        for filed in (room.present, room.waiting):
            if filed.get(attached.pid) is attached:
                del filed[attached.pid]
        attached.conn.ended(code, reason)
        self._maybe_release(room)

    def close_room(self, room: LocalRoom) -> None:
        """The room ended: everyone here is closed with 4010 and the replica goes."""
        room.closed = True
        for attached in [*room.present.values(), *room.waiting.values()]:
            attached.conn.ended(CloseCode.ROOM_CLOSED, "the room was closed")
        room.present.clear()
        room.waiting.clear()
        self._wake(room)
        self._maybe_release(room)

    # --- the backend's reconnects ---------------------------------------------------------

    def _reconnected(self) -> None:
        """The backend heard nothing for a while: every room may have missed entries."""
        for room in list(self.rooms.values()):
            if room.state is not None:
                self.recover(room)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        _TASKS.add(task)
        task.add_done_callback(_TASKS.discard)


_TASKS: set[asyncio.Task[None]] = set()


def room_event(state: RoomState) -> Message:
    """The ``room`` event for a state: every setting a facilitator can change (§6, §13)."""
    return Room(locked=state.locked, slow=state.slow).wire()


def members_here(room: LocalRoom) -> list[str]:
    """The pids connected to this worker (present and waiting)."""
    return [*room.present, *room.waiting]


def message_event(entry: Entry) -> Message | None:
    """The room message a history entry carries, with its ``seq``; None if it holds none."""
    try:
        envelope = Envelope.unpack(entry.data)
    except ValueError:
        return None
    message = message_of(envelope)
    return {**message, "seq": entry.seq} if message is not None else None
