"""The embedded backend: every room's state and stream in this process's memory, no setup.

A commit checks and applies its ops with :mod:`chat.ops` (the same functions every replica
applies) and hands the entry to the subscribed worker (this one) before ``commit`` returns: in
one process the stream's order and the delivery order are one and the same, and nothing can be
missed. So the stream itself is not kept: :meth:`MemoryBackend.read_after` answers "nothing
missed" for a replica that is current and "reload" otherwise (which never happens in practice
but keeps the hub's recovery path the same on both backends), and the room's messages are kept
as history only.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from chat.backend.base import Deliver, Entry, MessageMeta, Position, Reconnected
from chat.backend.history import MessageHistory
from chat.envelope import Envelope
from chat.ops import (
    HistoryDrop,
    HistoryEdit,
    Op,
    Refused,
    ReportAdd,
    Reset,
    RoomClose,
    apply,
    check,
)
from chat.roomstate import RoomState, copy_state, forget_old_held


@dataclass(slots=True)
class _Room:
    state: RoomState
    empty_since_ms: int = 0
    used: bool = False  # someone has joined it


class MemoryBackend:
    """Rooms in a dict; history bounded by count and age (protocol §7).

    Args:
        history_messages: the most messages kept per room.
        history_seconds: the oldest message kept, in seconds.
        room_idle: seconds an empty room lives.
        room_unused: seconds a room nobody has joined lives.
        max_rooms: live rooms held at most (§11).
    """

    def __init__(
        self,
        *,
        history_messages: int,
        history_seconds: float,
        room_idle: float,
        room_unused: float | None = None,
        max_rooms: int = 10_000,
    ) -> None:
        self._rooms: dict[str, _Room] = {}
        self._subscribed: set[str] = set()
        self._deliver: Deliver | None = None
        self._history = MessageHistory(history_messages, history_seconds)
        self._max_age_ms = int(history_seconds * 1000)
        self._idle_ms = int(room_idle * 1000)
        # A room nobody joined is empty too: the shorter of the two timeouts ends it.
        unused = min(room_idle, room_unused if room_unused is not None else room_idle)
        self._unused_ms = int(unused * 1000)
        self._max_rooms = max_rooms

    @property
    def ready(self) -> bool:
        return self._deliver is not None

    @property
    def shared(self) -> bool:
        return False

    @property
    def rooms(self) -> int:
        """Live rooms (for ``--max-rooms``)."""
        return len(self._rooms)

    async def start(self, deliver: Deliver, reconnected: Reconnected) -> None:
        self._deliver = deliver

    async def aclose(self) -> None:
        self._deliver = None
        self._subscribed.clear()

    async def subscribe(self, room: str) -> None:
        self._subscribed.add(room)

    async def unsubscribe(self, room: str) -> None:
        self._subscribed.discard(room)

    async def create_room(self, state: RoomState) -> None:
        if len(self._rooms) >= self._max_rooms:
            raise Refused("full")
        state.epoch = secrets.randbelow(2**31 - 1) + 1
        self._rooms[state.id] = _Room(copy_state(state), empty_since_ms=state.created_ms)

    async def snapshot(self, room: str) -> RoomState | None:
        found = self._rooms.get(room)
        return copy_state(found.state) if found is not None else None

    async def commit(
        self,
        room: str,
        ops: Sequence[Op],
        envelope: bytes,
        message: MessageMeta | None = None,
        parsed: Envelope | None = None,
    ) -> Position:
        found = self._rooms.get(room)
        if found is None:
            raise Refused("noroom")
        state = found.state
        forget_old_held(state, _now_ms() - self._max_age_ms)  # none past it can be released
        if message is not None and message.guard is not None:
            sender = state.members.get(message.guard)
            if (
                sender is None
                or sender.waiting
                or sender.muted_at(message.ts)
                or sender.held
                or state.review == "all"
            ):
                raise Refused("guard")
        check(state, ops)
        for index, op in enumerate(ops):
            if isinstance(op, HistoryDrop | ReportAdd | HistoryEdit):
                mid = op.report["mid"] if isinstance(op, ReportAdd) else op.mid
                if not self._history.has(room, mid):
                    raise Refused("nomsg", index)
        for op in ops:
            if isinstance(op, HistoryDrop):
                self._history.forget(room, op.mid)
            elif isinstance(op, HistoryEdit):
                self._history.edit(room, op.mid, op.cw)
            elif isinstance(op, RoomClose):
                del self._rooms[room]
                self._history.drop(room)
            elif not isinstance(op, Reset):
                apply(state, op)
        state.off += 1
        if message is not None:
            state.seq += 1
        seq = state.seq if message else 0
        entry = Entry(state.epoch, state.off, seq, envelope, parsed)
        if room in self._rooms:
            if message is not None:  # history keeps the bytes only
                bare = Entry(entry.epoch, entry.off, seq, envelope)
                self._history.add(room, bare, message.mid, message.ts)
            if state.members:
                found.used, found.empty_since_ms = True, 0
            elif not found.empty_since_ms:
                found.empty_since_ms = _now_ms()
        self._hand_over(room, entry)
        return Position(entry.epoch, entry.off, entry.seq)

    async def publish(self, room: str, envelope: bytes) -> None:
        self._hand_over(room, Entry(0, 0, 0, envelope))

    async def read_after(self, room: str, epoch: int, off: int) -> list[Entry] | None:
        found = self._rooms.get(room)
        if found is None or found.state.epoch != epoch:
            return None
        return [] if found.state.off == off else None  # every entry was handed over at once

    async def history(self, room: str, after_seq: int) -> list[Entry]:
        return self._history.after(room, after_seq)

    async def has_message(self, room: str, mid: str) -> bool:
        return self._history.has(room, mid)

    async def restore(self, state: RoomState) -> bool:
        return False  # this process's memory is the store: nothing to lose but everything

    async def ended(self, room: str) -> bool:
        return room not in self._rooms

    async def positions(self, rooms: Sequence[str]) -> dict[str, tuple[int, int] | None]:
        found = {r: self._rooms[r].state for r in rooms if r in self._rooms}
        return {r: (state.epoch, state.off) for r, state in found.items()}

    async def vouch(self, room: str, pids: Sequence[str], cutoff_ms: int = 0) -> list[str]:
        return []

    async def sweep(self, now_ms: int) -> int:
        """Wipe rooms empty for the idle timeout, or never joined for the unused one (§3, §11),
        and rooms past their end time that this worker no longer holds (§13: members in their
        resume grace do not keep it; a room held here is closed by the worker's clock, which
        tells its members)."""
        ended = [
            room_id
            for room_id, room in self._rooms.items()
            if (
                room.state.ends_at is not None
                and room.state.ends_at <= now_ms
                and room_id not in self._subscribed
            )
            or (
                not room.state.members
                and (
                    (room.used and now_ms - room.empty_since_ms >= self._idle_ms)
                    or (not room.used and now_ms - _unused_from(room.state) >= self._unused_ms)
                )
            )
        ]
        for room_id in ended:
            del self._rooms[room_id]
            self._history.drop(room_id)
        self._history.trim_all()  # by age now, not only when someone reads it (§11)
        for room in self._rooms.values():  # held messages too, like history (§14)
            forget_old_held(room.state, now_ms - self._max_age_ms)
        return len(ended)

    # --- helpers -------------------------------------------------------------------------

    def _hand_over(self, room: str, entry: Entry) -> None:
        deliver = self._deliver
        if deliver is not None and room in self._subscribed:
            deliver(room, entry)


def _unused_from(state: RoomState) -> int:
    """When a room's unused timeout starts: at its creation, or at its opening if later (§13)."""
    return max(state.created_ms, state.opens_at or 0)


def _now_ms() -> int:
    return int(time.time() * 1000)
