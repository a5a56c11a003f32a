"""The Redis backend: every room's state and stream in Redis memory, shared by every worker.

A room's keys (``chat.redis.client.ROOM_PARTS``) all carry the room's ``{room}`` hash tag and
live for the room idle timeout, renewed by every commit and by each worker's presence
heartbeat: a room with members never expires and an empty one goes by itself. A room with an
end time (§13) goes at its end at the latest (:data:`~chat.redis.scripts.END_LATE_MS` after
it), whether or not any worker holds it to commit the close. The stream and the history live
by their own age bounds instead (``STREAM_MS``, ``--history-seconds``), set by each commit
that adds to them, so old text goes even from a room nobody is in. A commit is
one script (:data:`~chat.redis.scripts.COMMIT`), one round trip, shared with other commits
of the same loop turn in one pipeline (:class:`chat.luascript.ScriptBatch`).

Sealed means :mod:`chat.buscrypt` (AES-GCM with the room id bound in) when a bus key is set,
and a one-byte clear marker otherwise. What stays in clear: room ids, pids, offsets, seqs,
timestamps, mids, resume-token hashes, salted address and name hashes, and the members'
and rooms' settings and flags (mutes, lock, slow...). Every method raises
:class:`~chat.errors.Unavailable` when Redis cannot be reached or refuses.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from typing import Any

from chat.backend.base import Deliver, Entry, MessageMeta, Position, Reconnected
from chat.envelope import Envelope
from chat.errors import Unavailable
from chat.luascript import FAILURES, Script, ScriptBatch, by_node
from chat.ops import Op, Refused, Reset, RoomClose
from chat.protocol import pack_value
from chat.redis.bus import Bus, parse_frame
from chat.redis.client import COMMAND_TIMEOUT, RedisSpace
from chat.redis.history import RoomHistory
from chat.redis.layout import Layout
from chat.redis.records import as_bytes, as_text, failed, now_ms, unavailable
from chat.redis.scripts import (
    COMMIT,
    CREATE,
    END_LATE_MS,
    READ_AFTER,
    RESTORE,
    ROOM_SLOT,
    SNAPSHOT,
    VOUCH,
    sharded,
)
from chat.redis.topology import close_client
from chat.roomstate import RoomState
from chat.tasks import TaskSet

log = logging.getLogger("hearth.redis")

STREAM_KEEP = 2_000  # entries a room's stream keeps for workers that missed some
STREAM_MS = 120_000  # and for at most this long


class RedisBackend:
    """The :class:`~chat.backend.base.Backend` in Redis.

    Args:
        space: the client (closed by :meth:`aclose`), key prefix, sealer and room TTL.
        history_messages: the most messages kept per room.
        history_seconds: the oldest message kept, in seconds.
        allow_persistent: keep history in Redis even if Redis writes to disk.
        linger: seconds a room stays subscribed after this worker released it, when history
            is kept in worker memory (the resume grace), so that it is still whole then.
        room_unused: seconds a room nobody has joined lives (its keys' first TTL).
        max_rooms: live rooms the deployment holds at most (§11).
    """

    def __init__(
        self,
        space: RedisSpace,
        *,
        history_messages: int,
        history_seconds: float,
        allow_persistent: bool = False,
        linger: float = 0.0,
        room_unused: float = 600.0,
        max_rooms: int = 10_000,
    ) -> None:
        self._space = space
        self._client = client = space.client
        self._layout = Layout(space.sealer)
        self._bus = Bus(space)
        # Commits share pipelines, one in flight at a time: one write instead of one each.
        # On a Cluster, the scripts that publish do it with SPUBLISH (sharded pub/sub).
        commit = sharded(COMMIT) if space.sharded else COMMIT
        self._commit = ScriptBatch(client, commit, timeout=COMMAND_TIMEOUT)
        self._create = Script(CREATE)
        self._room_slot = Script(ROOM_SLOT)
        self._vouch = Script(VOUCH)
        self._rooms_key = f"{space.prefix}:rooms"
        # A room nobody joined is empty too: the shorter of the two timeouts ends it.
        self._unused_ms = min(space.ttl_ms, max(1000, int(room_unused * 1000)))
        self._max_rooms = max_rooms
        self._snapshot = Script(SNAPSHOT)
        self._restore = Script(sharded(RESTORE) if space.sharded else RESTORE)
        self._read_after = Script(READ_AFTER)
        self._history = RoomHistory(
            space,
            history_messages=history_messages,
            history_seconds=history_seconds,
            allow_persistent=allow_persistent,
        )
        self._linger = linger
        self._lingering: dict[str, asyncio.TimerHandle] = {}
        # Rooms heard closing while history is in worker memory: nothing is left to linger for.
        self._closed: set[str] = set()
        self._deliver: Deliver | None = None
        # room -> (epoch, highest offset) seen here: the store must never be behind it.
        self._seen: dict[str, tuple[int, int]] = {}
        self._top_seq: dict[str, int] = {}  # room -> highest seq seen here, any epoch
        self._tasks = TaskSet()  # history rechecks, unsubscriptions after a linger

    @property
    def ready(self) -> bool:
        return self._bus.ready

    @property
    def shared(self) -> bool:
        return True

    async def start(self, deliver: Deliver, reconnected: Reconnected) -> None:
        self._deliver = deliver

        def on_reconnected() -> None:
            # A failover (+switch-master, a new slot map) may have put a node that writes to
            # disk where the text goes: ask again (protocol §7, §16).
            self._tasks.spawn(self._history.recheck())
            reconnected()

        await self._bus.start(self._on_entry, on_reconnected)
        try:
            await self._history.in_redis()
        except Unavailable:
            log.warning("redis unreachable: history placement is decided when redis comes up")

    async def aclose(self) -> None:
        self._deliver = None
        for handle in self._lingering.values():
            handle.cancel()
        self._lingering.clear()
        await self._tasks.end()
        await self._bus.aclose()
        await self._commit.aclose()
        # A client built on our own pool does not close the pool by itself.
        await close_client(self._client)

    # --- subscriptions -------------------------------------------------------------------

    async def subscribe(self, room: str) -> None:
        lingering = self._lingering.pop(room, None)
        if lingering is not None:  # still subscribed: it was only lingering
            lingering.cancel()
        await self._bus.subscribe(room)

    async def unsubscribe(self, room: str) -> None:
        lingers = room not in self._closed and room in self._seen
        if self._history.in_worker_memory and self._linger > 0 and lingers:
            # Worker-memory history is only as good as what this worker hears: keep hearing
            # the room for the resume grace, so that a member who comes back here finds it
            # whole, deletions included; then stop and let the history go (§12 allows this
            # only here). Not for a room that closed, nor one this worker never heard (a join
            # that found no room): nobody comes back to either.
            if room not in self._lingering:
                self._lingering[room] = asyncio.get_running_loop().call_later(
                    self._linger, self._stop_lingering, room
                )
            return
        await self._unsubscribe_now(room)

    def _stop_lingering(self, room: str) -> None:
        handle = self._lingering.pop(room, None)
        if handle is not None:
            handle.cancel()  # when the room closed before the linger was over
        self._tasks.spawn(self._unsubscribe_now(room))

    async def _unsubscribe_now(self, room: str) -> None:
        self._closed.discard(room)
        self._seen.pop(room, None)
        self._top_seq.pop(room, None)
        self._history.local.drop(room)
        await self._bus.unsubscribe(room)

    def _see(self, room: str, epoch: int, off: int, seq: int) -> None:
        seen_epoch, seen_off = self._seen.get(room, (0, 0))
        # A new epoch (a restore) replaces the old one: its offsets start over.
        self._seen[room] = (epoch, max(off, seen_off) if epoch == seen_epoch else off)
        if seq > self._top_seq.get(room, 0):
            self._top_seq[room] = seq

    def _on_entry(self, room: str, entry: Entry) -> None:
        if entry.off:
            self._see(room, entry.epoch, entry.off, entry.seq)
            if self._history.in_worker_memory and self._history.observe(room, entry):
                # Closed: no member will come back to this history, so stop hearing the room
                # now (§12: never linger after a close), and at once if it was lingering.
                self._closed.add(room)
                if room in self._lingering:
                    self._stop_lingering(room)
        deliver = self._deliver
        if deliver is not None:
            deliver(room, entry)

    # --- rooms ---------------------------------------------------------------------------

    async def create_room(self, state: RoomState) -> None:
        state.epoch = secrets.randbelow(2**31 - 1) + 1
        now = now_ms()
        # Unused, a room lives for the unused timeout: from its opening when that is later
        # (§13: a meeting planned for next week is not "unused" today).
        unused_ms = max(now, state.opens_at or 0) - now + self._unused_ms
        expires = now + unused_ms
        if state.ends_at is not None:  # and no later than its end (§13; CREATE does the same)
            expires = min(expires, state.ends_at + END_LATE_MS)
        async with unavailable():
            # The index of live rooms is one key for the deployment (§11 --max-rooms): a slot
            # first, then the room's own keys, which live for the unused timeout until joined.
            slot = await self._room_slot(
                self._client, keys=[self._rooms_key], args=[state.id, now, expires, self._max_rooms]
            )
            if not slot:
                raise Refused("full")
            await self._create(
                self._client,
                keys=self._space.keys(state.id),
                args=[
                    self._layout.record(state),
                    self._layout.settings(state),
                    state.epoch,
                    unused_ms,
                    now,
                ],
            )

    async def snapshot(self, room: str) -> RoomState | None:
        async with unavailable():
            reply = await self._snapshot(self._client, keys=self._space.keys(room), args=[])
        if reply is None:
            return None
        return self._layout.state_from(room, reply)

    async def ended(self, room: str) -> bool:
        async with unavailable():
            return bool(await self._client.exists(self._space.key(room, "closed")))

    async def sweep(self, now_ms: int) -> int:
        # History kept in worker memory (Redis persists) drops what is past its age here, also
        # in rooms nobody talks in any more (§11).
        self._history.local.trim_all()
        return 0  # every key carries the idle TTL: Redis expires an empty room by itself

    # --- the stream ----------------------------------------------------------------------

    async def commit(
        self,
        room: str,
        ops: Sequence[Op],
        envelope: bytes,
        message: MessageMeta | None = None,
        parsed: Envelope | None = None,  # entries come back through Redis, as bytes
    ) -> Position:
        if not self._bus.hears(room):
            # This worker would not hear the room right now: fail fast, the client retries.
            raise Unavailable("redis pub/sub is not connected")
        history = self._history
        in_redis = await history.in_redis()
        if not in_redis:
            history.check_local(room, ops)  # history is ours: check it here
        edits = await history.edits(room, ops) if in_redis else {}
        seen_epoch, seen_off = self._seen.get(room, (0, 0))
        meta = b""
        if message is not None:
            meta = pack_value([message.mid, message.ts, message.guard], for_lua=True)
        now = now_ms()
        args: list[Any] = [
            pack_value([self._layout.op(room, op, edits) for op in ops], for_lua=True),
            self._space.seal(envelope, room),
            self._space.channel(room),
            now,
            self._space.ttl_ms,
            seen_epoch,
            seen_off,
            meta,
            STREAM_KEEP,
            STREAM_MS,
            history.max_messages,
            now - history.max_age_ms,
            "1" if in_redis else "0",
            self._top_seq.get(room, 0),
        ]
        try:  # the batch bounds the call in time (COMMAND_TIMEOUT)
            reply = await self._commit(keys=self._space.keys(room), args=args)
        except FAILURES as exc:
            raise failed(exc) from exc
        if int(reply[0]) != 1:
            raise Refused(as_text(reply[1]), int(reply[2]))
        position = Position(int(reply[1]), int(reply[2]), int(reply[3]))
        self._see(room, position.epoch, position.off, position.seq)
        if any(isinstance(op, RoomClose) for op in ops):
            async with unavailable():
                await self._client.zrem(self._rooms_key, room)
        return position

    async def positions(self, rooms: Sequence[str]) -> dict[str, tuple[int, int] | None]:
        """Where each room's stream stands in the store (absent: no such room; None: its
        node did not answer). On a Cluster one pipeline per node, so that a shard that is
        down costs the watch its own rooms only (protocol §12, §16)."""
        parts = by_node(self._client, [self._space.key(room, "ctr") for room in rooms])
        outcomes = await asyncio.gather(
            *(self._positions([rooms[i] for i in part]) for part in parts),
            return_exceptions=True,
        )
        found: dict[str, tuple[int, int] | None] = {}
        for part, outcome in zip(parts, outcomes, strict=True):
            if isinstance(outcome, Unavailable):
                found.update(dict.fromkeys(rooms[i] for i in part))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                found.update(outcome)
        return found

    async def _positions(self, rooms: Sequence[str]) -> dict[str, tuple[int, int]]:
        async with unavailable(), self._client.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.hmget(self._space.key(room, "ctr"), ["ep", "off"])
            replies = await pipe.execute()
        return {
            room: (int(epoch), int(off))
            for room, (epoch, off) in zip(rooms, replies, strict=True)
            if epoch is not None and off is not None
        }

    async def publish(self, room: str, envelope: bytes) -> None:
        if not self._bus.hears(room):
            raise Unavailable("redis pub/sub is not connected")
        frame = b"0:0:0:" + self._space.seal(envelope, room)
        async with unavailable():
            if self._space.sharded:
                await self._client.spublish(self._space.channel(room), frame)
            else:
                await self._client.publish(self._space.channel(room), frame)

    async def read_after(self, room: str, epoch: int, off: int) -> list[Entry] | None:
        if not await self._history.in_redis():
            return None  # the stream holds text: it is not kept in a persisting Redis
        async with unavailable():
            reply = await self._read_after(
                self._client, keys=self._space.keys(room), args=[epoch, off]
            )
        if reply is None:
            return None
        entries: list[Entry] = []
        for stored in reply:
            _, _, frame = as_bytes(stored).partition(b":")  # "<ts>:" then the bus frame
            parsed = parse_frame(frame)
            if parsed is None:
                return None
            ep, entry_off, seq, blob = parsed
            entries.append(Entry(ep, entry_off, seq, self._space.open(blob, room)))
        return entries

    async def history(self, room: str, after_seq: int) -> list[Entry]:
        return await self._history.after(room, after_seq)

    async def has_message(self, room: str, mid: str) -> bool:
        return await self._history.has(room, mid)

    async def restore(self, state: RoomState) -> bool:
        packed_state = self._layout.whole_state(state, held_in_redis=self._history.known_in_redis)
        reset = self._space.seal(Envelope([Reset()]).pack(), state.id)
        new_epoch = secrets.randbelow(2**31 - 1) + 1
        now = now_ms()
        async with unavailable():
            reply = await self._restore(
                self._client,
                keys=self._space.keys(state.id),
                args=[
                    state.epoch,
                    state.off,
                    state.seq,
                    new_epoch,
                    packed_state,
                    reset,
                    self._space.channel(state.id),
                    now,
                    self._space.ttl_ms,
                    now - self._history.max_age_ms,
                ],
            )
        if reply is None:
            return False
        expires = now_ms() + self._space.ttl_ms
        if state.ends_at is not None:  # as RESTORE: a room past its end lives a little more
            expires = min(expires, max(state.ends_at, now_ms()) + END_LATE_MS)
        async with unavailable():
            await self._client.zadd(self._rooms_key, {state.id: expires})
        log.warning("restored a room the store had lost")
        return True

    # --- presence ------------------------------------------------------------------------

    async def vouch(self, room: str, pids: Sequence[str], cutoff_ms: int = 0) -> list[str]:
        """Vouch for the members connected here, and keep the room's keys alive.

        ``XX``: a member removed meanwhile (by a facilitator) is not brought back.
        """
        now = now_ms()
        in_redis = "1" if await self._history.in_redis() else "0"
        oldest = now - self._history.max_age_ms
        args: list[str | int] = [
            now, self._space.ttl_ms, oldest, STREAM_MS, in_redis, cutoff_ms, *pids
        ]  # fmt: skip
        async with unavailable():
            expires, lapsed = await self._vouch(
                self._client, keys=self._space.keys(room), args=args
            )
            await self._client.zadd(self._rooms_key, {room: int(expires)}, xx=True)
        return [as_text(pid) for pid in lapsed]
