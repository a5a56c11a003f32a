"""Room state in Redis memory, shared by every worker: rooms, members, presence and history.

Every key of a room is ``<prefix>:{<room>}:<part>`` (see ``chat.broker.redis.room_key``; the
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
history     zset    seq -> ``b"<ts>:" + sealed msg`` (the msg without its seq: the score is
                    the seq), trimmed by count and age; written by the broker's publish script
                    (see :meth:`RedisRoomStore.record_on_publish`). Only when Redis does not
                    write to disk, or the operator allowed it; otherwise history stays in this
                    worker's memory, protocol §7
reports     list    sealed open reports
log         list    sealed facilitation log entries
seq         string  the room's last seq (owned by the broker)
==========  ======  ===========================================================================

Sealed means :mod:`chat.buscrypt` (AES-GCM with the room id bound in) when a bus key is set,
and a one-byte clear marker otherwise. Every method raises ``BrokerUnavailable`` when Redis
cannot be reached, which the session answers as ``unavailable``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chat import metrics
from chat.broker.base import BrokerUnavailable
from chat.broker.redis import History, HistoryEntry, room_key
from chat.buscrypt import Sealer, SealError, context
from chat.identity import name_key
from chat.protocol import pack_envelope, unpack_envelope
from chat.state.base import MemberRecord, Message, RoomRecord
from chat.state.local_history import LocalHistory
from chat.state.redis_scripts import (
    ADD_MEMBER,
    CLAIM_LAPSED,
    REMEMBER,
    REMOVE_MEMBER,
    SAVE_MEMBER,
    SAVE_ROOM,
)

log = logging.getLogger("hearth.state")

LOG_ENTRIES = 100
REPORTS = 100
SALT_CACHE = 10_000
MEMBER_PARTS = ("room", "names", "members", "resume", "alive")  # ADD_MEMBER's keys, in order
PARTS = ("room", "members", "names", "resume", "alive", "bans", "history", "reports", "log", "seq")


@contextlib.contextmanager
def unavailable() -> Iterator[None]:
    """Turn a lost or refused connection into ``BrokerUnavailable`` (answered ``unavailable``).

    Other Redis errors (a script or type error, an ACL refusal) are bugs or misconfiguration
    and propagate as they are.
    """
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise BrokerUnavailable("redis unavailable") from exc


async def redis_persists(client: Redis) -> bool:
    """Whether Redis writes its data to disk (RDB snapshots or AOF), per ``CONFIG GET``.

    A refused ``CONFIG`` (an ACL user without it, a renamed command) counts as persisting: we
    cannot tell, so message text stays out of it (protocol §7).

    Raises:
        BrokerUnavailable: Redis cannot be reached.
    """
    with unavailable():
        try:
            save = await client.config_get("save")
            aof = await client.config_get("appendonly")
        except ResponseError:
            return True
    save_value = _text(next(iter(save.values()), ""))
    aof_value = _text(next(iter(aof.values()), "no"))
    return bool(save_value.strip()) or aof_value == "yes"


class RedisRoomStore:
    """The :class:`~chat.state.base.RoomStore` in Redis, plus the presence heartbeat and sweep.

    Args:
        client: the command client (shared with the broker, which closes it).
        prefix: the prefix of every key.
        sealer: seals names and text before they reach Redis.
        room_ttl: seconds a room's keys live without activity (the room idle timeout).
        history_messages: the most messages of history kept per room.
        history_seconds: the oldest message kept, in seconds.
        allow_persistent: keep history in Redis even if Redis writes to disk.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str,
        sealer: Sealer,
        room_ttl: float,
        history_messages: int,
        history_seconds: float,
        allow_persistent: bool = False,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._sealer = sealer
        self._ttl_ms = max(1000, int(room_ttl * 1000))
        self._max_messages = history_messages
        self._max_age_ms = int(history_seconds * 1000)
        self._allow_persistent = allow_persistent
        self._history_in_redis: bool | None = None  # decided once Redis has been reached
        self._broker_records = False  # the broker's publish script writes msg history
        self._local = LocalHistory(history_messages, history_seconds)
        self._salts: dict[str, bytes] = {}
        self._add_member = client.register_script(ADD_MEMBER)
        self._save_member = client.register_script(SAVE_MEMBER)
        self._remove_member = client.register_script(REMOVE_MEMBER)
        self._claim = client.register_script(CLAIM_LAPSED)
        self._save_room = client.register_script(SAVE_ROOM)
        self._remember = client.register_script(REMEMBER)

    # --- history placement ---------------------------------------------------------------

    async def settle_history(self) -> bool:
        """Decide, once, whether history goes to Redis or stays in this worker's memory.

        Returns:
            True when history is kept in Redis.

        Raises:
            BrokerUnavailable: Redis cannot be reached yet (asked again on first use).
        """
        if self._history_in_redis is None:
            persists = await redis_persists(self._client)
            self._history_in_redis = not persists or self._allow_persistent
            if persists and self._allow_persistent:
                log.warning(
                    "redis writes to disk and --allow-persistent-redis is set: "
                    "message history is kept in redis and may reach its disk"
                )
            elif persists:
                log.warning(
                    "redis writes to disk (RDB or AOF): message history is kept in worker "
                    "memory only, so a resume on another worker cannot replay missed messages"
                )
            else:
                log.info("message history is kept in redis memory (redis does not persist)")
        return self._history_in_redis

    def record_on_publish(self) -> History:
        """Leave writing ``msg`` history in Redis to the broker's publish script, from now on.

        A ``say`` then costs one round trip (seq, publish and history in one script) instead
        of two, and :meth:`remember` has nothing left to do while history is in Redis.

        Returns:
            The hook to give the broker (``RedisBroker(history=...)``).
        """
        self._broker_records = True
        return self._history_entry

    async def _history_entry(self, room_id: str, data: bytes) -> HistoryEntry | None:
        # The same placement remember() goes by: settled once, never changes after.
        if not await self.settle_history():
            return None
        try:
            event = unpack_envelope(data)["e"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(event, dict) or event.get("t") != "msg":
            return None
        oldest = _now_ms() - self._max_age_ms
        return HistoryEntry(self._entry(room_id, event), self._max_messages, oldest)

    def observe(self, room_id: str, seq: int, data: bytes) -> None:
        """Keep worker-memory history in step with the bus, when history is not in Redis.

        Every worker then remembers what was said in its rooms, by members of any worker, and
        forgets what a facilitator on any worker deleted. Reads the hub's envelope (``e``
        holds the event); never raises.
        """
        if self._history_in_redis is not False:
            return
        try:
            event = unpack_envelope(data)["e"]
            kind = event["t"]
        except (ValueError, KeyError, TypeError):
            return
        if kind == "msg" and seq:
            self._local.remember(room_id, {**event, "seq": seq})
        elif kind == "deleted" and isinstance(event.get("mid"), str):
            self._local.forget(room_id, event["mid"])

    # --- rooms ---------------------------------------------------------------------------

    async def create_room(self, room: RoomRecord) -> None:
        blob = self._seal(pack_envelope(asdict(room)), "room", room.id)
        key = self._key(room.id, "room")
        with unavailable():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"rec": blob, "locked": int(room.locked), "slow": room.slow})
                pipe.pexpire(key, self._ttl_ms)
                await pipe.execute()
        self._cache_salt(room.id, room.salt)

    async def get_room(self, room_id: str) -> RoomRecord | None:
        with unavailable():
            fields = await self._client.hgetall(self._key(room_id, "room"))
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
        with unavailable():
            await self._save_room(
                keys=[self._key(room.id, "room")], args=[int(room.locked), room.slow]
            )

    async def delete_room(self, room_id: str) -> None:
        self._salts.pop(room_id, None)
        self._local.drop(room_id)
        with unavailable():
            await self._client.delete(*(self._key(room_id, p) for p in PARTS if p != "seq"))

    async def expired_rooms(self, now_ms: int, idle_ms: int) -> list[str]:
        # Every key carries the idle TTL: Redis expires an empty room by itself.
        return []

    # --- members -------------------------------------------------------------------------

    async def add_member(self, room_id: str, member: MemberRecord) -> bool:
        name_hash = await self._name_hash(room_id, member.name)
        if name_hash is None:
            return False
        blob = self._seal(pack_envelope(asdict(member)), "member", room_id)
        with unavailable():
            added = await self._add_member(
                keys=[
                    self._key(room_id, p) for p in ("room", "names", "members", "resume", "alive")
                ],
                args=[name_hash, member.pid, blob, member.resume_hash, _now_ms(), self._ttl_ms],
            )
        return bool(added)

    async def get_member(self, room_id: str, pid: str) -> MemberRecord | None:
        with unavailable():
            blob = await self._client.hget(self._key(room_id, "members"), pid)
        return self._member(blob, room_id) if blob is not None else None

    async def member_by_resume(self, room_id: str, resume_hash: str) -> MemberRecord | None:
        with unavailable():
            pid = await self._client.hget(self._key(room_id, "resume"), resume_hash)
        if pid is None:
            return None
        return await self.get_member(room_id, _text(pid))

    async def save_member(self, room_id: str, member: MemberRecord) -> None:
        blob = self._seal(pack_envelope(asdict(member)), "member", room_id)
        score = _now_ms() if member.online else member.away_since_ms
        with unavailable():
            await self._save_member(
                keys=[self._key(room_id, "members"), self._key(room_id, "alive")],
                args=[member.pid, blob, score],
            )

    async def remove_member(self, room_id: str, pid: str) -> None:
        await self._remove(room_id, pid)

    async def members(self, room_id: str) -> list[MemberRecord]:
        with unavailable():
            blobs = await self._client.hvals(self._key(room_id, "members"))
        found = (self._member(blob, room_id) for blob in blobs)
        return [m for m in found if m is not None]

    # --- presence (chat.presence) --------------------------------------------------------

    async def heartbeat(self, room_id: str, pids: list[str]) -> None:
        """Vouch for the members connected to this worker, and keep the room's keys alive.

        ``XX``: a member removed meanwhile (by a facilitator) is not brought back.
        """
        now = _now_ms()
        with unavailable():
            async with self._client.pipeline(transaction=False) as pipe:
                if pids:
                    pipe.zadd(self._key(room_id, "alive"), dict.fromkeys(pids, now), xx=True)
                for part in PARTS:
                    pipe.pexpire(self._key(room_id, part), self._ttl_ms)
                await pipe.execute()

    async def sweep_departed(self, room_id: str, cutoff_ms: int) -> list[MemberRecord]:
        """Remove the members nobody has vouched for since ``cutoff_ms``, and return them.

        Each lapsed member is claimed atomically, so when several workers sweep the same room
        only one of them removes it (and announces ``left``).
        """
        alive = self._key(room_id, "alive")
        with unavailable():
            lapsed = await self._client.zrangebyscore(alive, "-inf", cutoff_ms)
        gone: list[MemberRecord] = []
        for raw in lapsed:
            pid = _text(raw)
            with unavailable():
                claimed = await self._claim(keys=[alive], args=[pid, cutoff_ms])
            if not claimed:
                continue
            member = await self._remove(room_id, pid)
            if member is not None:
                gone.append(member)
        return gone

    # --- bans, reports, log --------------------------------------------------------------

    async def ban(self, room_id: str, address_hash: str) -> None:
        await self._add_to(room_id, "bans", address_hash.encode(), cap=0)

    async def is_banned(self, room_id: str, address_hash: str) -> bool:
        with unavailable():
            return bool(await self._client.sismember(self._key(room_id, "bans"), address_hash))

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

    # --- history -------------------------------------------------------------------------

    async def remember(self, room_id: str, message: Message) -> None:
        if not await self.settle_history():
            self._local.remember(room_id, message)
            return
        if self._broker_records:
            return  # the publish that assigned its seq wrote it already
        oldest = _now_ms() - self._max_age_ms
        with unavailable():
            await self._remember(
                keys=[self._key(room_id, "history")],
                args=[
                    message["seq"],
                    self._entry(room_id, message),
                    self._max_messages,
                    oldest,
                    self._ttl_ms,
                ],
            )

    async def recall(self, room_id: str, after_seq: int) -> list[Message]:
        if not await self.settle_history():
            return self._local.recall(room_id, after_seq)
        with unavailable():
            entries = await self._client.zrangebyscore(
                self._key(room_id, "history"), f"({after_seq}", "+inf", withscores=True
            )
        return [m for _, m in self._history_entries(room_id, entries)]

    async def forget_message(self, room_id: str, mid: str) -> bool:
        if not await self.settle_history():
            return self._local.forget(room_id, mid)
        key = self._key(room_id, "history")
        with unavailable():
            entries = await self._client.zrange(key, 0, -1, withscores=True)
            for raw, message in self._history_entries(room_id, entries):
                if message.get("mid") == mid:
                    return bool(await self._client.zrem(key, raw))
        return False

    async def find_message(self, room_id: str, mid: str) -> Message | None:
        if not await self.settle_history():
            return self._local.find(room_id, mid)
        with unavailable():
            entries = await self._client.zrange(
                self._key(room_id, "history"), 0, -1, withscores=True
            )
        return next(
            (m for _, m in self._history_entries(room_id, entries) if m.get("mid") == mid), None
        )

    # --- helpers -------------------------------------------------------------------------

    def _key(self, room_id: str, part: str) -> str:
        return room_key(self._prefix, room_id, part)

    def _seal(self, data: bytes, kind: str, room_id: str) -> bytes:
        return self._sealer.seal(data, context(kind, room_id))

    def _open_record(self, blob: bytes | str, kind: str, room_id: str) -> dict[str, Any] | None:
        try:
            return unpack_envelope(self._sealer.open(_bytes(blob), context(kind, room_id)))
        except SealError:
            # Forged, or sealed with a key this worker no longer has: treat as absent.
            metrics.BUS_DROPPED.labels(reason="auth").inc()
            return None
        except ValueError:
            metrics.BUS_DROPPED.labels(reason="malformed").inc()
            return None

    def _member(self, blob: bytes | str, room_id: str) -> MemberRecord | None:
        data = self._open_record(blob, "member", room_id)
        return MemberRecord(**data) if data is not None else None

    def _entry(self, room_id: str, message: Message) -> bytes:
        # The ts in clear ahead of the sealed msg: the trim reads the age without the key.
        return b"%d:" % message["ts"] + self._seal(pack_envelope(message), "msg", room_id)

    def _history_entries(self, room_id: str, entries: list[Any]) -> list[tuple[bytes, Message]]:
        """Open ``(entry, score)`` pairs, oldest first, skipping the expired and the unreadable."""
        oldest = _now_ms() - self._max_age_ms
        out: list[tuple[bytes, Message]] = []
        for entry, score in entries:
            raw = _bytes(entry)
            head, _, blob = raw.partition(b":")
            if not head.isdigit() or int(head) < oldest:
                continue
            message = self._open_record(blob, "msg", room_id)
            if message is not None:
                # The score is the seq: the publish script learns it only as it writes.
                message["seq"] = int(score)
                out.append((raw, message))
        return out

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

    async def _remove(self, room_id: str, pid: str) -> MemberRecord | None:
        member = await self.get_member(room_id, pid)
        name_hash = resume_hash = ""
        if member is not None:
            name_hash = await self._name_hash(room_id, member.name) or ""
            resume_hash = member.resume_hash
        with unavailable():
            removed = await self._remove_member(
                keys=[self._key(room_id, p) for p in ("members", "names", "resume", "alive")],
                args=[pid, name_hash, resume_hash],
            )
        return member if removed else None

    async def _add_to(self, room_id: str, part: str, value: bytes, *, cap: int) -> None:
        key = self._key(room_id, part)
        with unavailable():
            async with self._client.pipeline(transaction=True) as pipe:
                if cap:
                    pipe.rpush(key, value)
                    pipe.ltrim(key, -cap, -1)
                else:
                    pipe.sadd(key, value)
                pipe.pexpire(key, self._ttl_ms)
                await pipe.execute()

    async def _list(self, room_id: str, part: str) -> list[Message]:
        with unavailable():
            blobs = await self._client.lrange(self._key(room_id, part), 0, -1)
        kind = "report" if part == "reports" else "log"
        found = (self._open_record(blob, kind, room_id) for blob in blobs)
        return [entry for entry in found if entry is not None]


def _bytes(value: bytes | str) -> bytes:
    # The client does not decode responses: Redis hands back bytes.
    return value if isinstance(value, bytes) else value.encode()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _now_ms() -> int:
    return int(time.time() * 1000)
