"""This worker's rooms: loading them, committing to their streams, and following them.

For every room with members connected here the hub holds a :class:`~chat.localroom.LocalRoom`:
a replica of the room's :class:`~chat.roomstate.RoomState` and the local connections of its
members. The backend hands over the room's stream entries (:meth:`Hub.deliver`); the hub
applies them in offset order to the replica, then has the room give each of the entry's
events to its local recipients, encoded once per encoding (protocol §10), and make its
connections agree with the new state. Delivery never awaits a connection.

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
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from chat import metrics
from chat.backend.base import Backend, Entry, MessageMeta, Position
from chat.envelope import Delivery, Envelope
from chat.errors import Unavailable
from chat.localroom import Connection, LocalRoom, RoomGone, room_event, view_changes, views
from chat.ops import (
    Admit,
    MemberAdd,
    MemberDrop,
    MemberSet,
    Op,
    Refused,
    Reset,
    RoomClose,
    RoomSet,
    apply,
    touched_pids,
)
from chat.roomstate import MemberState
from chat.tasks import TaskSet, end

log = logging.getLogger("hearth.hub")

UNSUBSCRIBE_GRACE = 1.0  # seconds an unsubscription under way at shutdown may take to finish
RELEASE_AFTER = 1.0  # seconds a room stays subscribed after its last local member (§12: ≤ 5)
NUDGE_AFTER = 0.5  # seconds a commit waits for its own entry before recovery looks for it
CATCH_UP_LIMIT = 5.0  # seconds a commit waits for its entry at most (then: unavailable)
PENDING_LIMIT = 10_000  # entries buffered behind a gap; beyond, recovery reloads instead
# Ops after which what members see of the room may change without the entry saying so: the
# staffed pause follows facilitators coming and going, the round loses a speaker who left
# (protocol §13). Say's entries carry none of them, so the hot path pays nothing.
_RESHAPING = (RoomSet, MemberAdd, MemberDrop, Admit)
# Ops the replica does not apply to its state: the room ending, and a restore (it reloads).
_NOT_APPLIED = (RoomClose, Reset)


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
        # Wakes the room clock (chat.schedule installs it): an entry set a timed mute, which
        # may end before the clock's next look.
        self.timers_changed: Callable[[], None] = lambda: None
        self._tasks = TaskSet()  # unsubscriptions of released rooms

    async def start(self) -> None:
        await self.backend.start(self.deliver, self._reconnected)

    async def aclose(self) -> None:
        """Close the backend once nothing of the hub's is talking to it any more: loads and
        recoveries are cancelled, unsubscriptions already under way may finish."""
        # No recovery may start from here on (an entry delivered meanwhile that shows a gap,
        # a reconnect): nothing would end it before the backend closes under it.
        self.recover = lambda room: None
        loads: list[asyncio.Future[Any]] = []
        for room in self.rooms.values():
            loads += [task for task in (room.loading, room.recovery) if task is not None]
            if room.release is not None:
                room.release.cancel()
        await end(loads)
        await self._tasks.end(UNSUBSCRIBE_GRACE)
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
            room.adopt(state)
            self.drain(room)
        finally:
            room.loading = None
            if room.state is None:
                room.closed = True
                self._maybe_release(room)

    def attach(self, room: LocalRoom, conn: Connection, member: MemberState) -> None:
        """File a connection under its member (after the commit that made it the holder has
        been applied here). A previous local connection of the same member gives way."""
        room.attach(conn, member)

    def detach(self, room: LocalRoom, pid: str, conn: Connection) -> None:
        """Unfile a connection; the room is released shortly after its last one goes."""
        room.detach(pid, conn)
        self._maybe_release(room)

    def release_if_empty(self, room: LocalRoom) -> None:
        """Release the room shortly if no connection is left in it (after a reconcile)."""
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
        self._tasks.spawn(self._unsubscribe(room.id))

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
        # Events as plain maps once: packed for the stream, and handed as they are to this
        # worker's replica by a backend that delivers in process (Entry.parsed).
        envelope = Envelope(tuple(ops), [d.as_map() for d in out])
        try:
            position = await self.backend.commit(
                room.id, envelope.ops, envelope.pack(), message, envelope
            )
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
                    room.fan_out(entry.envelope().out)
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
            if not room.seen_before(entry):
                # The same offset with other content: the store forked (a failover lost
                # writes and another worker committed over them). The store wins: reload.
                room.needs_reload = True
                self.recover(room)
            room.wake()
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
        while state is not None and not room.closed and not room.needs_reload:
            entry = room.pending.pop((state.epoch, state.off + 1), None)
            if entry is None or not self.apply_entry(room, entry):
                break
            state = room.state
        if state is not None:
            for key in [k for k in room.pending if k[0] == state.epoch and k[1] <= state.off]:
                del room.pending[key]
            if room.pending and not room.closed:
                self.recover(room)

    def apply_entry(self, room: LocalRoom, entry: Entry) -> bool:
        """Apply one entry that follows on from the replica's offset.

        Returns:
            False when the entry cannot be read (a newer version's op, a forged frame on a
            clear bus): the replica cannot follow it, so the room reloads from a snapshot.
        """
        state = room.state
        assert state is not None
        try:
            envelope = entry.envelope()
        except ValueError:
            metrics.BUS_DROPPED.labels(reason="malformed").inc()
            room.needs_reload = True
            self.recover(room)
            return False
        ops = envelope.ops
        ending = reset = reshaping = False
        for op in ops:  # one pass, not a generator per question: this runs for every message
            if isinstance(op, RoomClose):
                ending = True
            elif isinstance(op, Reset):
                reset = True
            elif isinstance(op, _RESHAPING):
                reshaping = True
        before = views(state) if reshaping and not ending else None
        timed = False
        for op in ops:
            if not isinstance(op, _NOT_APPLIED):
                apply(state, op)
                timed = timed or (isinstance(op, MemberSet) and bool(op.fields.get("muted_until")))
        room.ignoring.touched(ops)
        room.listing_follows(ops)
        if timed:
            self.timers_changed()
        state.off = entry.off
        room.remember(entry)
        if entry.seq:
            state.seq = entry.seq
            metrics.MESSAGES.inc()
        for delivery in envelope.out:
            message = delivery.message
            if message["t"] == "room":
                # A room event carries every setting as of its entry, the same on every worker,
                # however the facilitators' changes interleaved.
                message.update(room_event(state))
        out = envelope.out
        if before is not None:
            out = [*out, *view_changes(before, state, out)]
        room.fan_out(out, entry.seq)
        if ending:
            self.close_room(room)
        elif room.reconcile(touched_pids(ops), ops):
            self._maybe_release(room)
        room.wake()
        if reset:
            # A restore: everyone reloads what the restorer wrote.
            room.needs_reload = True
            self.recover(room)
        return True

    def close_room(self, room: LocalRoom) -> None:
        """The room ended: everyone here is closed with 4010 and the replica goes."""
        room.end_everyone()
        self._maybe_release(room)

    # --- the backend's reconnects ---------------------------------------------------------

    def _reconnected(self) -> None:
        """The backend heard nothing for a while: every room may have missed entries."""
        for room in list(self.rooms.values()):
            if room.state is not None:
                self.recover(room)
