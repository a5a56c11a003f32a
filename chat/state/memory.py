"""Room state in this process's memory, for the embedded broker."""

from __future__ import annotations

import time
from bisect import insort
from collections import deque
from dataclasses import dataclass, field

from chat.identity import name_key
from chat.state.base import MemberRecord, Message, RoomRecord

LOG_ENTRIES = 100
REPORTS = 100


@dataclass(slots=True)
class _Room:
    record: RoomRecord
    members: dict[str, MemberRecord] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # name key -> pid
    resumes: dict[str, str] = field(default_factory=dict)  # resume hash -> pid
    bans: set[str] = field(default_factory=set)
    history: deque[Message] = field(default_factory=deque)
    reports: deque[Message] = field(default_factory=lambda: deque(maxlen=REPORTS))
    log: deque[Message] = field(default_factory=lambda: deque(maxlen=LOG_ENTRIES))
    empty_since_ms: int = 0


class MemoryRoomStore:
    """Every room in a dict; history bounded by count and age (protocol §7).

    Args:
        history_messages: the most messages kept per room.
        history_seconds: the oldest message kept, in seconds.
    """

    def __init__(self, history_messages: int, history_seconds: float) -> None:
        self._rooms: dict[str, _Room] = {}
        self._max_messages = history_messages
        self._max_age_ms = int(history_seconds * 1000)

    async def create_room(self, room: RoomRecord) -> None:
        self._rooms[room.id] = _Room(room, empty_since_ms=room.created_ms)

    async def get_room(self, room_id: str) -> RoomRecord | None:
        room = self._rooms.get(room_id)
        return room.record if room else None

    async def save_room(self, room: RoomRecord) -> None:
        if room.id in self._rooms:
            self._rooms[room.id].record = room

    async def delete_room(self, room_id: str) -> None:
        self._rooms.pop(room_id, None)

    async def add_member(self, room_id: str, member: MemberRecord) -> bool:
        room = self._rooms.get(room_id)
        if room is None:
            return False
        key = name_key(member.name)
        if room.names.get(key, member.pid) != member.pid:
            return False
        room.names[key] = member.pid
        room.resumes[member.resume_hash] = member.pid
        room.members[member.pid] = member
        return True

    async def get_member(self, room_id: str, pid: str) -> MemberRecord | None:
        room = self._rooms.get(room_id)
        return room.members.get(pid) if room else None

    async def member_by_resume(self, room_id: str, resume_hash: str) -> MemberRecord | None:
        room = self._rooms.get(room_id)
        if room is None or resume_hash not in room.resumes:
            return None
        return room.members.get(room.resumes[resume_hash])

    async def save_member(self, room_id: str, member: MemberRecord) -> None:
        room = self._rooms.get(room_id)
        if room is not None and member.pid in room.members:
            room.members[member.pid] = member

    async def remove_member(self, room_id: str, pid: str) -> bool:
        room = self._rooms.get(room_id)
        if room is None or pid not in room.members:
            return False
        member = room.members.pop(pid)
        room.names.pop(name_key(member.name), None)
        room.resumes.pop(member.resume_hash, None)
        if not room.members:
            room.empty_since_ms = _now_ms()
        return True

    async def members(self, room_id: str) -> list[MemberRecord]:
        room = self._rooms.get(room_id)
        return list(room.members.values()) if room else []

    async def ban(self, room_id: str, address_hash: str) -> None:
        if room_id in self._rooms:
            self._rooms[room_id].bans.add(address_hash)

    async def is_banned(self, room_id: str, address_hash: str) -> bool:
        room = self._rooms.get(room_id)
        return room is not None and address_hash in room.bans

    async def remember(self, room_id: str, message: Message) -> None:
        room = self._rooms.get(room_id)
        if room is None:
            return
        history = room.history
        if not history or history[-1]["seq"] < message["seq"]:
            history.append(message)
        else:  # a publish that finished late; keep seq order
            items = list(history)
            insort(items, message, key=lambda m: m["seq"])
            room.history = history = deque(items)
        while len(history) > self._max_messages:
            history.popleft()
        self._prune(room)

    async def recall(self, room_id: str, after_seq: int) -> list[Message]:
        room = self._rooms.get(room_id)
        if room is None:
            return []
        self._prune(room)
        return [m for m in room.history if m["seq"] > after_seq]

    async def forget_message(self, room_id: str, mid: str) -> bool:
        room = self._rooms.get(room_id)
        if room is None:
            return False
        for message in room.history:
            if message["mid"] == mid:
                room.history.remove(message)
                return True
        return False

    async def find_message(self, room_id: str, mid: str) -> Message | None:
        room = self._rooms.get(room_id)
        if room is None:
            return None
        return next((m for m in room.history if m["mid"] == mid), None)

    async def add_report(self, room_id: str, report: Message) -> None:
        if room_id in self._rooms:
            self._rooms[room_id].reports.append(report)

    async def reports(self, room_id: str) -> list[Message]:
        room = self._rooms.get(room_id)
        return list(room.reports) if room else []

    async def add_log(self, room_id: str, entry: Message) -> None:
        if room_id in self._rooms:
            self._rooms[room_id].log.append(entry)

    async def log(self, room_id: str) -> list[Message]:
        room = self._rooms.get(room_id)
        return list(room.log) if room else []

    async def expired_rooms(self, now_ms: int, idle_ms: int) -> list[str]:
        return [
            room_id
            for room_id, room in self._rooms.items()
            if not room.members and now_ms - room.empty_since_ms >= idle_ms
        ]

    def _prune(self, room: _Room) -> None:
        oldest = _now_ms() - self._max_age_ms
        history = room.history
        while history and history[0]["ts"] < oldest:
            history.popleft()


def _now_ms() -> int:
    return int(time.time() * 1000)
