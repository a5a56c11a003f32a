"""Where message history goes with Redis: Redis memory, or each worker's memory (protocol §7),
and reading it back from there (:class:`RoomHistory`).

History (and the room's stream, which carries message text too) goes to Redis memory when
Redis does not write to disk, or the operator allowed it; otherwise it stays in each worker's
memory, so that message text never reaches a disk. :func:`place_history` decides at start;
after a failover the backend asks :func:`redis_persists` again, and moves history out of Redis
if the answer turned (chat.redis.backend).

"Redis" is every data node the worker can reach (protocol §16): a replica that persists
writes what its master sends it to disk just the same, so one persisting master or replica
of a Sentinel set, or one persisting node of a Cluster, makes the deployment persisting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from chat.backend.base import Entry
from chat.backend.history import MessageHistory
from chat.envelope import Envelope, message_of, with_content_warning
from chat.errors import Unavailable
from chat.luascript import Client
from chat.ops import HistoryDrop, HistoryEdit, Op, Refused, ReportAdd, RoomClose
from chat.redis.client import RedisSpace
from chat.redis.records import as_bytes, now_ms, unavailable
from chat.redis.topology import every_node_config

log = logging.getLogger("hearth.redis")

RECHECK_PAUSE = 1.0  # between asks while a node is silent after a reconnect (restarting)
RECHECK_TRIES = 60  # a node silent for a minute is left to the next reconnect


async def node_persistence(client: Client) -> tuple[bool, bool]:
    """Whether any data node that answers writes to disk (RDB snapshots or AOF), per
    ``CONFIG GET`` on each, and whether every listed node answered. A refused ``CONFIG`` (an
    ACL user without it, a renamed command) counts as writing to disk: we cannot tell, so
    message text stays out of it (protocol §7).

    Raises:
        Unavailable: Redis (the master, or every cluster node) cannot be reached.
    """
    async with unavailable():
        configs = await every_node_config(client, ("save", "appendonly"))
    persists = any(
        not config or config.get("save", "").strip() or config.get("appendonly") == "yes"
        for config in configs
        if config is not None
    )
    return persists, None not in configs


async def redis_persists(client: Client) -> bool:
    """Whether any data node this worker can reach writes to disk. A listed replica or
    cluster node that does not answer counts as writing to disk: it may hold the text, or
    be promoted to hold it (protocol §7).

    Raises:
        Unavailable: Redis (the master, or every cluster node) cannot be reached.
    """
    persists, everyone = await node_persistence(client)
    return persists or not everyone


async def place_history(client: Client, *, allow_persistent: bool) -> bool:
    """Decide where history goes, and say so once in the log.

    Returns:
        True when history (and the stream) is kept in Redis.

    Raises:
        Unavailable: Redis cannot be reached yet.
    """
    persists = await redis_persists(client)
    if persists and allow_persistent:
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
    return not persists or allow_persistent


class RoomHistory:
    """Every room's message history for one worker: in Redis (a sorted set per room, scored by
    ``seq``, of ``"<ts>:<mid>:<sealed envelope>"``), or — when Redis writes to disk — in this
    worker's memory, kept in step with the stream it hears (:meth:`observe`).

    Args:
        space: the client, key prefix and sealer.
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
        allow_persistent: bool,
    ) -> None:
        self._space = space
        self.max_messages = history_messages
        self.max_age_ms = int(history_seconds * 1000)
        self._allow_persistent = allow_persistent
        self._in_redis: bool | None = None  # decided once Redis answers
        self._rechecking = False  # a persistence check after a reconnect is under way
        self._recheck_again = False  # a reconnect was heard while it ran
        self.local = MessageHistory(history_messages, history_seconds)

    @property
    def in_worker_memory(self) -> bool:
        """Whether history is known to live in this worker's memory (Redis persists)."""
        return self._in_redis is False

    @property
    def known_in_redis(self) -> bool:
        return self._in_redis is True

    async def in_redis(self) -> bool:
        """Where history goes, decided (and logged) the first time Redis answers.

        Raises:
            Unavailable: Redis cannot be reached yet.
        """
        if self._in_redis is None:
            self._in_redis = await place_history(
                self._space.client, allow_persistent=self._allow_persistent
            )
        return self._in_redis

    async def recheck(self) -> None:
        """After a reconnect: if a node now persists (or refuses to say), keep what comes
        from now on out of Redis, as at a start on a persisting Redis. One way only: what
        Redis held already stays until its TTL, and only a restart moves history back.

        A node that is restarting does not answer for a moment: not a reason to move history
        for good, nor to stop asking (the reconnect that brought us here may have come from
        another node, before that one was back), so it is asked every :data:`RECHECK_PAUSE`
        until every node answers, for at most :data:`RECHECK_TRIES`. A reconnect heard while
        a check runs asks for one more round after it."""
        if self._in_redis is not True or self._allow_persistent:
            return
        if self._rechecking:
            self._recheck_again = True
            return
        self._rechecking = True
        try:
            persists, tries = False, 0
            while not persists and tries < RECHECK_TRIES:
                self._recheck_again = False
                try:
                    persists, everyone = await node_persistence(self._space.client)
                except Unavailable:
                    everyone = False
                if everyone and not self._recheck_again:
                    break
                tries += 1
                await asyncio.sleep(RECHECK_PAUSE)
        finally:
            self._rechecking = False
        if persists and self._in_redis:
            self._in_redis = False
            log.error(
                "after a reconnect or failover a redis node writes to disk or cannot be "
                "asked: new message history is kept in worker memory only; restart the "
                "workers once every node keeps nothing on disk"
            )

    def observe(self, room: str, entry: Entry) -> bool:
        """Keep worker-memory history in step with the stream (Redis persists).

        Returns:
            True when the entry closed the room.
        """
        try:
            envelope = Envelope.unpack(entry.data)
        except ValueError:
            return False
        message = message_of(envelope)
        if message is not None and entry.seq:
            self.local.add(room, entry, str(message.get("mid")), int(message.get("ts", 0)))
        closed = False
        for op in envelope.ops:
            if isinstance(op, HistoryDrop):
                self.local.forget(room, op.mid)
            elif isinstance(op, HistoryEdit):
                self.local.edit(room, op.mid, op.cw)
            elif isinstance(op, RoomClose):
                self.local.drop(room)
                closed = True
        return closed

    def check_local(self, room: str, ops: Sequence[Op]) -> None:
        """With history in worker memory, the ops that name a message need it kept here.

        Raises:
            Refused: ``nomsg`` with the index of the first op whose message is not kept.
        """
        for index, op in enumerate(ops):
            mid = op.mid if isinstance(op, HistoryDrop | HistoryEdit) else None
            if isinstance(op, ReportAdd):
                mid = op.report["mid"]
            if mid is not None and not self.local.has(room, mid):
                raise Refused("nomsg", index)

    async def edits(self, room: str, ops: Sequence[Op]) -> dict[str, tuple[bytes, bytes]]:
        """For each :class:`HistoryEdit`, the history entry as stored in Redis and as it
        becomes: the commit script cannot open a sealed envelope, so the edit is made here and
        the script swaps the two if the old one is still there (else ``nomsg``)."""
        wanted = {op.mid: op.cw for op in ops if isinstance(op, HistoryEdit)}
        if not wanted:
            return {}
        stored = await self._stored(room)
        edits: dict[str, tuple[bytes, bytes]] = {}
        for raw in stored:
            ts, _, rest = as_bytes(raw).partition(b":")
            mid, _, blob = rest.partition(b":")
            cw = wanted.get(mid.decode(errors="replace"))
            if cw is None:
                continue
            try:
                edited = with_content_warning(self._space.open(blob, room), cw)
            except (Unavailable, ValueError):
                continue
            sealed = self._space.seal(edited, room)
            edits[mid.decode()] = (as_bytes(raw), ts + b":" + mid + b":" + sealed)
        return edits

    async def after(self, room: str, after_seq: int) -> list[Entry]:
        """The kept messages with a ``seq`` above ``after_seq``, oldest first."""
        if not await self.in_redis():
            return self.local.after(room, after_seq)
        async with unavailable():
            stored: list[Any] = await self._space.client.zrangebyscore(
                self._space.key(room, "history"), f"({after_seq}", "+inf", withscores=True
            )
        oldest = now_ms() - self.max_age_ms
        out: list[Entry] = []
        for raw, score in stored:
            ts, _, rest = as_bytes(raw).partition(b":")
            _, _, blob = rest.partition(b":")
            if not ts.isdigit() or int(ts) < oldest:
                continue
            try:
                out.append(Entry(0, 0, int(score), self._space.open(blob, room)))
            except Unavailable:
                continue
        return out

    async def has(self, room: str, mid: str) -> bool:
        if not await self.in_redis():
            return self.local.has(room, mid)
        wanted = mid.encode()
        return any(
            as_bytes(raw).split(b":", 2)[1:2] == [wanted] for raw in await self._stored(room)
        )

    async def _stored(self, room: str) -> list[Any]:
        async with unavailable():
            stored: list[Any] = await self._space.client.zrange(
                self._space.key(room, "history"), 0, -1
            )
        return stored
