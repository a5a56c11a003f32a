"""Room messages kept in this process's memory, bounded by count and age (protocol §7).

The embedded backend keeps every room's history here; the Redis backend keeps it here too
when Redis writes to disk, so that message text never reaches Redis (each worker then
remembers what it heard of its rooms).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from chat.backend.base import Entry
from chat.envelope import with_content_warning

SWEEP_MS = 10_000  # how often every room, also the quiet ones, is trimmed by age


@dataclass(frozen=True, slots=True)
class Kept:
    entry: Entry  # the stream entry that carried the message (its seq included)
    mid: str
    ts: int


class MessageHistory:
    """Per-room message history in memory.

    Args:
        max_messages: the most messages kept per room.
        max_seconds: the oldest message kept, in seconds.
    """

    def __init__(self, max_messages: int, max_seconds: float) -> None:
        self._rooms: dict[str, deque[Kept]] = {}
        self._max_messages = max_messages
        self._max_age_ms = int(max_seconds * 1000)
        self._swept_ms = 0

    def add(self, room: str, entry: Entry, mid: str, ts: int) -> None:
        """Keep a message, in ``seq`` order (a repeated seq is ignored)."""
        kept = self._rooms.setdefault(room, deque())
        item = Kept(entry, mid, ts)
        if kept and kept[-1].entry.seq >= entry.seq:
            if any(k.entry.seq == entry.seq for k in kept):
                return
            self._rooms[room] = kept = deque(sorted([*kept, item], key=lambda k: k.entry.seq))
        else:
            kept.append(item)
        while len(kept) > self._max_messages:
            kept.popleft()
        self._trim(room)

    def after(self, room: str, seq: int) -> list[Entry]:
        """The kept entries with a greater ``seq``, oldest first."""
        self._trim(room)
        return [k.entry for k in self._rooms.get(room, ()) if k.entry.seq > seq]

    def has(self, room: str, mid: str) -> bool:
        self._trim(room)
        return any(k.mid == mid for k in self._rooms.get(room, ()))

    def forget(self, room: str, mid: str) -> bool:
        """Delete a message; False when it is not kept."""
        kept = self._rooms.get(room)
        found = next((k for k in kept or () if k.mid == mid), None)
        if kept is None or found is None:
            return False
        kept.remove(found)
        return True

    def edit(self, room: str, mid: str, cw: str) -> bool:
        """Set (or with "" remove) a kept message's content warning; False when not kept."""
        kept = self._rooms.get(room)
        for index, item in enumerate(kept or ()):
            if item.mid == mid and kept is not None:
                entry = item.entry
                data = with_content_warning(entry.data, cw)
                edited = Entry(entry.epoch, entry.off, entry.seq, data)
                kept[index] = Kept(edited, item.mid, item.ts)
                return True
        return False

    def drop(self, room: str) -> None:
        """Forget a room's history: the room has ended, or this worker no longer hears it."""
        self._rooms.pop(room, None)

    def trim_all(self) -> None:
        """Drop what is past its age in every room."""
        self._swept_ms = 0
        self._trim("")

    def _trim(self, room: str) -> None:
        now = int(time.time() * 1000)
        oldest = now - self._max_age_ms
        # Age applies to every room, also those nobody here talks in any more: sweep them all
        # now and then, and the room at hand every time.
        if now - self._swept_ms > SWEEP_MS:
            self._swept_ms = now
            rooms = list(self._rooms)
        else:
            rooms = [room] if room in self._rooms else []
        for rid in rooms:
            kept = self._rooms[rid]
            while kept and kept[0].ts < oldest:
                kept.popleft()
            if not kept:
                del self._rooms[rid]
