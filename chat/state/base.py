"""Shared room state: what every worker must agree on about a room (interface only).

The store is the authority for a room's existence, settings and facilitator-key hash, its
members (present, away within the resume grace, or waiting to be admitted), mutes, bans,
reports, facilitation log and ephemeral history. Workers keep no authoritative copy: a worker
that joins a room late reads it here, and changes reach other workers as broker events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

PARTICIPANT = "participant"
FACILITATOR = "facilitator"

Message = dict[str, Any]


@dataclass(slots=True)
class RoomRecord:
    """A room's settings; ``key_hash`` and ``salt`` never leave the server."""

    id: str
    title: str
    rules: str
    key_hash: str
    salt: bytes
    created_ms: int
    history: str = "since_join"  # or "recent"
    admission: str = "open"  # or "knock"
    typing: str = "named"  # or "anonymous", "off"
    locked: bool = False
    slow: int = 0


@dataclass(slots=True)
class MemberRecord:
    """One member of a room, from join until leave, removal or the end of the grace."""

    pid: str
    name: str
    role: str
    resume_hash: str
    address_hash: str
    joined_seq: int
    waiting: bool = False
    muted: bool = False
    muted_until: int | None = None  # ms; None with ``muted`` set means until unmuted
    online: bool = True
    away_since_ms: int = 0  # when the member last went away; the grace timer checks it
    holder: str = ""  # the connection that holds the member now; only it may mark it away

    def public(self) -> Message:
        """The member as others see it (protocol §4)."""
        return {"pid": self.pid, "name": self.name, "role": self.role}

    def listed(self) -> Message:
        """The member as ``welcome.members`` lists it, with the mute state."""
        out = self.public()
        if self.muted:
            out["muted_until"] = self.muted_until
        return out


class RoomStore(Protocol):
    """Where rooms live. Every method may raise ``BrokerUnavailable`` in a networked store."""

    async def create_room(self, room: RoomRecord) -> None: ...

    async def get_room(self, room_id: str) -> RoomRecord | None: ...

    async def save_room(self, room: RoomRecord) -> None:
        """Write back a changed ``locked`` or ``slow``."""
        ...

    async def delete_room(self, room_id: str) -> None:
        """Wipe the room: settings, members, bans, reports, log and history."""
        ...

    async def add_member(self, room_id: str, member: MemberRecord) -> bool:
        """Add a member unless the name is taken (case-insensitively); False if taken."""
        ...

    async def get_member(self, room_id: str, pid: str) -> MemberRecord | None: ...

    async def member_by_resume(self, room_id: str, resume_hash: str) -> MemberRecord | None: ...

    async def save_member(self, room_id: str, member: MemberRecord) -> None: ...

    async def remove_member(self, room_id: str, pid: str) -> bool:
        """Remove a member; False when it was not there (someone else removed it first)."""
        ...

    async def members(self, room_id: str) -> list[MemberRecord]: ...

    async def ban(self, room_id: str, address_hash: str) -> None: ...

    async def is_banned(self, room_id: str, address_hash: str) -> bool: ...

    async def remember(self, room_id: str, message: Message) -> None:
        """Keep a ``msg`` (with its ``seq`` and ``ts``) in the room's bounded history."""
        ...

    async def recall(self, room_id: str, after_seq: int) -> list[Message]:
        """The remembered messages with a greater ``seq``, oldest first."""
        ...

    async def forget_message(self, room_id: str, mid: str) -> bool:
        """Delete a message from history; False when it is not there."""
        ...

    async def find_message(self, room_id: str, mid: str) -> Message | None: ...

    async def add_report(self, room_id: str, report: Message) -> None: ...

    async def reports(self, room_id: str) -> list[Message]: ...

    async def add_log(self, room_id: str, entry: Message) -> None: ...

    async def log(self, room_id: str) -> list[Message]: ...

    async def expired_rooms(self, now_ms: int, idle_ms: int) -> list[str]:
        """Rooms that have had no member for ``idle_ms``; the caller ends them."""
        ...
