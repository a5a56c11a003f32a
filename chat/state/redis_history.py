"""Message history for the Redis room store: where it is kept, writing it, and reading it back.

History goes to Redis memory when Redis does not write to disk (or the operator allowed it),
and stays in each worker's memory otherwise, so that message text never reaches a disk
(protocol §7); :meth:`RedisHistory.settle` decides once. In Redis, a room's history is a zset
of ``seq -> b"<ts>:" + sealed msg`` (the msg without its seq: the score is the seq), trimmed by
count and age. The broker's publish script writes each entry together with assigning its seq
(:meth:`RedisHistory.record_on_publish`), so that a ``say`` is one round trip.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from chat.broker.redis_client import History, HistoryEntry, RedisSpace
from chat.buscrypt import context
from chat.protocol import pack_envelope, unpack_envelope
from chat.state.base import Message
from chat.state.local_history import LocalHistory
from chat.state.redis_records import as_bytes, as_text, now_ms, open_record, unavailable
from chat.state.redis_scripts import REMEMBER

log = logging.getLogger("hearth.state")


async def redis_persists(client: Redis) -> bool:
    """Whether Redis writes its data to disk (RDB snapshots or AOF), per ``CONFIG GET``.

    A refused ``CONFIG`` (an ACL user without it, a renamed command) counts as persisting: we
    cannot tell, so message text stays out of it (protocol §7).

    Raises:
        BrokerUnavailable: Redis cannot be reached.
    """
    async with unavailable():
        try:
            save = await client.config_get("save")
            aof = await client.config_get("appendonly")
        except ResponseError:
            return True
    save_value = as_text(next(iter(save.values()), ""))
    aof_value = as_text(next(iter(aof.values()), "no"))
    return bool(save_value.strip()) or aof_value == "yes"


class RedisHistory:
    """A room store's message history, in Redis or in this worker's memory.

    Args:
        space: the client, key prefix, sealer and room TTL, shared with the broker.
        history_messages: the most messages kept per room.
        history_seconds: the oldest message kept, in seconds.
        allow_persistent: keep history in Redis even if Redis writes to disk.
    """

    def __init__(
        self,
        space: RedisSpace,
        *,
        history_messages: int,
        history_seconds: float,
        allow_persistent: bool = False,
    ) -> None:
        self._space = space
        self._client = client = space.client
        self._max_messages = history_messages
        self._max_age_ms = int(history_seconds * 1000)
        self._allow_persistent = allow_persistent
        self._history_in_redis: bool | None = None  # decided once Redis has been reached
        self._broker_records = False  # the broker's publish script writes msg history
        self._local = LocalHistory(history_messages, history_seconds)
        self._remember = client.register_script(REMEMBER)

    async def settle(self) -> bool:
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
        if not await self.settle():
            return None
        try:
            event = unpack_envelope(data)["e"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(event, dict) or event.get("t") != "msg":
            return None
        oldest = now_ms() - self._max_age_ms
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

    def unobserve(self, room_id: str) -> None:
        """Forget the worker-memory history of a room this worker no longer hears.

        Kept, it would go stale: later messages and deletions no longer arrive here, and a
        deleted message could come back in a later welcome from this worker.
        """
        self._local.drop(room_id)

    async def remember(self, room_id: str, message: Message) -> None:
        """Keep a message said in the room (a no-op for one the publish script kept)."""
        if not await self.settle():
            self._local.remember(room_id, message)
            return
        if self._broker_records:
            return  # the publish that assigned its seq wrote it already
        oldest = now_ms() - self._max_age_ms
        async with unavailable():
            await self._remember(
                keys=[self._space.key(room_id, "history")],
                args=[
                    message["seq"],
                    self._entry(room_id, message),
                    self._max_messages,
                    oldest,
                    self._space.ttl_ms,
                ],
            )

    async def recall(self, room_id: str, after_seq: int) -> list[Message]:
        """The kept messages with a greater ``seq``, oldest first."""
        if not await self.settle():
            return self._local.recall(room_id, after_seq)
        async with unavailable():
            entries = await self._client.zrangebyscore(
                self._space.key(room_id, "history"), f"({after_seq}", "+inf", withscores=True
            )
        return [m for _, m in self._entries(room_id, entries)]

    async def forget(self, room_id: str, mid: str) -> bool:
        """Delete a kept message; False when it is not kept."""
        if not await self.settle():
            return self._local.forget(room_id, mid)
        key = self._space.key(room_id, "history")
        async with unavailable():
            entries = await self._client.zrange(key, 0, -1, withscores=True)
            for raw, message in self._entries(room_id, entries):
                if message.get("mid") == mid:
                    return bool(await self._client.zrem(key, raw))
        return False

    async def find(self, room_id: str, mid: str) -> Message | None:
        """The kept message with this ``mid``."""
        if not await self.settle():
            return self._local.find(room_id, mid)
        async with unavailable():
            entries = await self._client.zrange(
                self._space.key(room_id, "history"), 0, -1, withscores=True
            )
        return next((m for _, m in self._entries(room_id, entries) if m.get("mid") == mid), None)

    def _entry(self, room_id: str, message: Message) -> bytes:
        # The ts in clear ahead of the sealed msg: the trim reads the age without the key.
        return b"%d:" % message["ts"] + self._space.sealer.seal(
            pack_envelope(message), context("msg", room_id)
        )

    def _entries(self, room_id: str, entries: list[Any]) -> list[tuple[bytes, Message]]:
        """Open ``(entry, score)`` pairs, oldest first, skipping the expired and the unreadable."""
        oldest = now_ms() - self._max_age_ms
        out: list[tuple[bytes, Message]] = []
        for entry, score in entries:
            raw = as_bytes(entry)
            head, _, blob = raw.partition(b":")
            if not head.isdigit() or int(head) < oldest:
                continue
            message = open_record(self._space.sealer, blob, "msg", room_id)
            if message is not None:
                # The score is the seq: the publish script learns it only as it writes.
                message["seq"] = int(score)
                out.append((raw, message))
        return out

    def drop(self, room_id: str) -> None:
        """Forget a room's history in this worker's memory (Redis keys go with the room)."""
        self._local.drop(room_id)
