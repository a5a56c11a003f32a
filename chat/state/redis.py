"""Room state in Redis memory, shared by every worker: rooms, members, presence and history.

Every key of a room is ``<prefix>:{<room>}:<part>`` (see ``chat.broker.redis_client.room_key``; the
``{room}`` hash tag keeps a room on one Redis Cluster slot) and lives for the room idle timeout,
refreshed by every write and by each worker's presence heartbeat, so a room with members never
expires and an empty one goes after ``room_idle`` by itself (:meth:`expired_rooms` has nothing
to do). The parts:

==========  ======  ===========================================================================
part        type    holds
==========  ======  ===========================================================================
room        hash    ``rec``: the sealed room record (title, rules, key hash, salt...);
                    ``locked`` and ``slow`` in clear, so a facilitator's change is one HSET
members     hash    pid -> sealed member record (name, role, mute, away state...)
names       hash    sha256(room salt + case-folded name) -> pid: name uniqueness, atomically
resume      hash    resume-token hash -> pid
alive       zset    pid -> ms when its worker last vouched for it (presence heartbeat), or when
                    it went away; the cross-worker grace sweep reads it
bans        set     salted address hashes
history     zset    seq -> ``b"<ts>:" + sealed msg``, trimmed by count and age; only when Redis
                    does not write to disk (see :mod:`chat.state.redis_history`)
reports     list    sealed open reports
log         list    sealed facilitation log entries
seq         string  the room's last seq (owned by the broker)
==========  ======  ===========================================================================

Sealed means :mod:`chat.buscrypt` (AES-GCM with the room id bound in) when a bus key is set,
and a one-byte clear marker otherwise. Every method raises ``BrokerUnavailable`` when Redis
cannot be reached, which the session answers as ``unavailable``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict
from typing import Any

from chat.broker.redis_client import RedisSpace
from chat.buscrypt import context
from chat.identity import name_key
from chat.protocol import pack_envelope
from chat.state.base import MemberRecord, Message, RoomRecord
from chat.state.redis_history import RedisHistory
from chat.state.redis_records import as_text, now_ms, open_record, unavailable
from chat.state.redis_scripts import (
    ADD_MEMBER,
    REMOVE_MEMBER,
    SAVE_MEMBER,
    SAVE_ROOM,
)

log = logging.getLogger("hearth.state")

LOG_ENTRIES = 100
REPORTS = 100
SALT_CACHE = 10_000
PARTS = ("room", "members", "names", "resume", "alive", "bans", "history", "reports", "log", "seq")


class RedisRoomStore:
    """The :class:`~chat.state.base.RoomStore` in Redis, plus the presence heartbeat and sweep.

    Args:
        space: the client, key prefix, sealer and room TTL, shared with the broker.
        history: the rooms' message history, in the same space.
    """

    def __init__(self, space: RedisSpace, *, history: RedisHistory) -> None:
        self._space = space
        self._client = client = space.client
        self._history = history
        self._salts: dict[str, bytes] = {}
        self._add_member = client.register_script(ADD_MEMBER)
        self._save_member = client.register_script(SAVE_MEMBER)
        self._remove_member = client.register_script(REMOVE_MEMBER)
        self._save_room = client.register_script(SAVE_ROOM)

    # --- history (chat.state.redis_history; backends.py wires it to the broker) ---------

    async def remember(self, room_id: str, message: Message) -> None:
        await self._history.remember(room_id, message)

    async def recall(self, room_id: str, after_seq: int) -> list[Message]:
        return await self._history.recall(room_id, after_seq)

    async def forget_message(self, room_id: str, mid: str) -> bool:
        return await self._history.forget(room_id, mid)

    async def find_message(self, room_id: str, mid: str) -> Message | None:
        return await self._history.find(room_id, mid)

    # --- rooms ---------------------------------------------------------------------------

    async def create_room(self, room: RoomRecord) -> None:
        blob = self._seal(pack_envelope(asdict(room)), "room", room.id)
        key = self._space.key(room.id, "room")
        async with unavailable(), self._client.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"rec": blob, "locked": int(room.locked), "slow": room.slow})
            pipe.pexpire(key, self._space.ttl_ms)
            await pipe.execute()
        self._cache_salt(room.id, room.salt)

    async def get_room(self, room_id: str) -> RoomRecord | None:
        async with unavailable():
            fields = await self._client.hgetall(self._space.key(room_id, "room"))
        blob = fields.get(b"rec")
        if blob is None:
            return None
        data = self._open_record(blob, "room", room_id)
        if data is None:
            return None
        record = RoomRecord(**data)
        record.locked = fields.get(b"locked", b"0") == b"1"
        record.slow = int(fields.get(b"slow", b"0"))
        self._cache_salt(room_id, record.salt)
        return record

    async def save_room(self, room: RoomRecord) -> None:
        async with unavailable():
            await self._save_room(
                keys=[self._space.key(room.id, "room")], args=[int(room.locked), room.slow]
            )

    async def delete_room(self, room_id: str) -> None:
        self._salts.pop(room_id, None)
        self._history.drop(room_id)
        async with unavailable():
            await self._client.delete(*(self._space.key(room_id, p) for p in PARTS if p != "seq"))

    async def expired_rooms(self, now_ms: int, idle_ms: int) -> list[str]:
        # Every key carries the idle TTL: Redis expires an empty room by itself.
        return []

    # --- members -------------------------------------------------------------------------

    async def add_member(self, room_id: str, member: MemberRecord) -> bool:
        name_hash = await self._name_hash(room_id, member.name)
        if name_hash is None:
            return False
        blob = self._seal(pack_envelope(asdict(member)), "member", room_id)
        async with unavailable():
            added = await self._add_member(
                keys=[
                    self._space.key(room_id, p)
                    for p in ("room", "names", "members", "resume", "alive")
                ],
                args=[
                    name_hash,
                    member.pid,
                    blob,
                    member.resume_hash,
                    now_ms(),
                    self._space.ttl_ms,
                ],
            )
        return bool(added)

    async def get_member(self, room_id: str, pid: str) -> MemberRecord | None:
        async with unavailable():
            blob = await self._client.hget(self._space.key(room_id, "members"), pid)
        return self._member(blob, room_id) if blob is not None else None

    async def member_by_resume(self, room_id: str, resume_hash: str) -> MemberRecord | None:
        async with unavailable():
            pid = await self._client.hget(self._space.key(room_id, "resume"), resume_hash)
        if pid is None:
            return None
        return await self.get_member(room_id, as_text(pid))

    async def save_member(self, room_id: str, member: MemberRecord) -> None:
        blob = self._seal(pack_envelope(asdict(member)), "member", room_id)
        score = now_ms() if member.online else member.away_since_ms
        async with unavailable():
            await self._save_member(
                keys=[self._space.key(room_id, "members"), self._space.key(room_id, "alive")],
                args=[member.pid, blob, score],
            )

    async def remove_member(self, room_id: str, pid: str) -> bool:
        return await self._remove(room_id, pid) is not None

    async def members(self, room_id: str) -> list[MemberRecord]:
        async with unavailable():
            blobs = await self._client.hvals(self._space.key(room_id, "members"))
        found = (self._member(blob, room_id) for blob in blobs)
        return [m for m in found if m is not None]

    # --- presence (chat.presence) --------------------------------------------------------

    async def heartbeat(self, room_id: str, pids: list[str]) -> None:
        """Vouch for the members connected to this worker, and keep the room's keys alive.

        ``XX``: a member removed meanwhile (by a facilitator) is not brought back.
        """
        now = now_ms()
        async with unavailable(), self._client.pipeline(transaction=False) as pipe:
            if pids:
                pipe.zadd(self._space.key(room_id, "alive"), dict.fromkeys(pids, now), xx=True)
            for part in PARTS:
                pipe.pexpire(self._space.key(room_id, part), self._space.ttl_ms)
            await pipe.execute()

    async def sweep_departed(self, room_id: str, cutoff_ms: int) -> list[MemberRecord]:
        """Remove the members nobody has vouched for since ``cutoff_ms``, and return them.

        Each lapsed member is checked and removed in one script, so when several workers sweep
        the same room only one of them removes it (and announces ``left``).
        """
        async with unavailable():
            lapsed = await self._client.zrangebyscore(
                self._space.key(room_id, "alive"), "-inf", cutoff_ms
            )
        gone: list[MemberRecord] = []
        for raw in lapsed:
            member = await self._remove(room_id, as_text(raw), lapsed_by=cutoff_ms)
            if member is not None:
                gone.append(member)
        return gone

    # --- bans, reports, log --------------------------------------------------------------

    async def ban(self, room_id: str, address_hash: str) -> None:
        await self._add_to(room_id, "bans", address_hash.encode(), cap=0)

    async def is_banned(self, room_id: str, address_hash: str) -> bool:
        async with unavailable():
            return bool(
                await self._client.sismember(self._space.key(room_id, "bans"), address_hash)
            )

    async def add_report(self, room_id: str, report: Message) -> None:
        blob = self._seal(pack_envelope(report), "report", room_id)
        await self._add_to(room_id, "reports", blob, cap=REPORTS)

    async def reports(self, room_id: str) -> list[Message]:
        return await self._list(room_id, "reports")

    async def add_log(self, room_id: str, entry: Message) -> None:
        blob = self._seal(pack_envelope(entry), "log", room_id)
        await self._add_to(room_id, "log", blob, cap=LOG_ENTRIES)

    async def log(self, room_id: str) -> list[Message]:
        return await self._list(room_id, "log")

    # --- helpers -------------------------------------------------------------------------

    def _seal(self, data: bytes, kind: str, room_id: str) -> bytes:
        return self._space.sealer.seal(data, context(kind, room_id))

    def _open_record(self, blob: bytes | str, kind: str, room_id: str) -> dict[str, Any] | None:
        return open_record(self._space.sealer, blob, kind, room_id)

    def _member(self, blob: bytes | str, room_id: str) -> MemberRecord | None:
        data = self._open_record(blob, "member", room_id)
        return MemberRecord(**data) if data is not None else None

    async def _name_hash(self, room_id: str, name: str) -> str | None:
        # Keyed with the room's secret salt (inside the sealed room record), so the names
        # hash shows no names and cannot be matched against a list of likely ones.
        salt = self._salts.get(room_id)
        if salt is None:
            record = await self.get_room(room_id)
            if record is None:
                return None
            salt = record.salt
        return hashlib.sha256(salt + name_key(name).encode()).hexdigest()

    def _cache_salt(self, room_id: str, salt: bytes) -> None:
        if len(self._salts) >= SALT_CACHE:
            self._salts.clear()
        self._salts[room_id] = salt

    async def _remove(
        self, room_id: str, pid: str, *, lapsed_by: int | None = None
    ) -> MemberRecord | None:
        """Remove a member; with ``lapsed_by``, only if nobody has vouched for it since."""
        member = await self.get_member(room_id, pid)
        name_hash = resume_hash = ""
        if member is not None:
            name_hash = await self._name_hash(room_id, member.name) or ""
            resume_hash = member.resume_hash
        async with unavailable():
            removed = await self._remove_member(
                keys=[self._space.key(room_id, p) for p in ("members", "names", "resume", "alive")],
                args=[pid, name_hash, resume_hash, "" if lapsed_by is None else lapsed_by],
            )
        return member if removed else None

    async def _add_to(self, room_id: str, part: str, value: bytes, *, cap: int) -> None:
        key = self._space.key(room_id, part)
        async with unavailable(), self._client.pipeline(transaction=True) as pipe:
            if cap:
                pipe.rpush(key, value)
                pipe.ltrim(key, -cap, -1)
            else:
                pipe.sadd(key, value)
            pipe.pexpire(key, self._space.ttl_ms)
            await pipe.execute()

    async def _list(self, room_id: str, part: str) -> list[Message]:
        async with unavailable():
            blobs = await self._client.lrange(self._space.key(room_id, part), 0, -1)
        kind = "report" if part == "reports" else "log"
        found = (self._open_record(blob, kind, room_id) for blob in blobs)
        return [entry for entry in found if entry is not None]
