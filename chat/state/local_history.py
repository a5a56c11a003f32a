"""Message history in one worker's memory, for a Redis that writes to disk (protocol §7).

When Redis persists, message text must not reach it, so each worker keeps the history of its
rooms itself, fed by every ``msg`` on the bus (see ``RedisHistory.observe``). A resume on
another worker then cannot replay what it missed; that is the documented price.
"""

from __future__ import annotations

import time
from collections import deque

from chat.state.base import Message

LOCAL_SWEEP_MS = 10_000


class LocalHistory:
    """History in this worker's memory, for a Redis that writes to disk (protocol §7).

    Args:
        history_messages: the most messages kept per room.
        history_seconds: the oldest message kept, in seconds.
    """

    def __init__(self, history_messages: int, history_seconds: float) -> None:
        self._rooms: dict[str, deque[Message]] = {}
        self._max_messages = history_messages
        self._max_age_ms = int(history_seconds * 1000)
        self._swept_ms = 0

    def remember(self, room_id: str, message: Message) -> None:
        """Keep a message, in ``seq`` order, within the bounds."""
        history = self._rooms.setdefault(room_id, deque())
        if history and history[-1]["seq"] >= message["seq"]:
            # Seen already: the publishing worker remembers it, and the bus brings it too.
            if any(m["seq"] == message["seq"] for m in history):
                return
            items = sorted([*history, message], key=lambda m: m["seq"])
            history = self._rooms[room_id] = deque(items)
        else:
            history.append(message)
        while len(history) > self._max_messages:
            history.popleft()
        self._prune(room_id)

    def recall(self, room_id: str, after_seq: int) -> list[Message]:
        """The kept messages with a greater ``seq``, oldest first."""
        self._prune(room_id)
        return [m for m in self._rooms.get(room_id, ()) if m["seq"] > after_seq]

    def forget(self, room_id: str, mid: str) -> bool:
        """Delete a message; False when it is not kept."""
        history = self._rooms.get(room_id)
        message = self.find(room_id, mid)
        if history is None or message is None:
            return False
        history.remove(message)
        return True

    def find(self, room_id: str, mid: str) -> Message | None:
        """The kept message with this ``mid``."""
        return next((m for m in self._rooms.get(room_id, ()) if m["mid"] == mid), None)

    def drop(self, room_id: str) -> None:
        """Forget a room's history: the room has ended, or this worker no longer hears it."""
        self._rooms.pop(room_id, None)

    def _prune(self, room_id: str) -> None:
        now = int(time.time() * 1000)
        oldest = now - self._max_age_ms
        # Age applies to every room, also those nobody here talks in any more: sweep them all
        # now and then, and the room at hand every time.
        if now - self._swept_ms > LOCAL_SWEEP_MS:
            self._swept_ms = now
            rooms = list(self._rooms)
        else:
            rooms = [room_id] if room_id in self._rooms else []
        for rid in rooms:
            history = self._rooms[rid]
            while history and history[0]["ts"] < oldest:
                history.popleft()
            if not history:
                del self._rooms[rid]
