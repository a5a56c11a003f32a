"""The Redis broker: every room's fan-out between worker processes, over Redis pub/sub.

This module owns the one pub/sub connection per worker that carries all of its rooms, the
reader task, publishing, and reconnecting with capped exponential backoff. Key and channel
naming, the command client and the publish script live in :mod:`chat.broker.redis_client`.

On the bus a frame is ``b"<seq>:" + blob``, where ``blob`` is the hub's envelope sealed by
:mod:`chat.buscrypt` (clear when there is no bus key) with the room id bound in. A sequenced
publish runs :data:`PUBLISH_SCRIPT`, which increments the room's ``seq`` key and publishes in
one atomic step, so Redis hands every subscriber a room's messages in ``seq`` order. The script
takes a floor, the highest ``seq`` this worker has seen in the room, so that a Redis that lost
its memory (a restart) never hands out a ``seq`` twice: ``seq`` stays strictly increasing
(protocol §5). When the room store keeps history in Redis, the same script also adds the
message to the room's history (the store's :data:`History` hook says what to add), so that a
``say`` costs one round trip to Redis.

Pub/sub delivers at most once: what is published while this worker's pub/sub connection is
down is lost for its members (a member who reconnects with ``resume`` and ``since`` gets it
back from history). While the connection is down, or its health probe fails, :attr:`ready`
is False, ``/readyz`` answers 503 and :meth:`RedisBroker.publish` raises ``BrokerUnavailable``
at once, so that an ``ack`` always means the message went out to every worker, this one
included.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Callable
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from chat import metrics
from chat.broker.base import BrokerUnavailable, Deliver
from chat.broker.redis_batch import ScriptBatch
from chat.broker.redis_client import (
    COMMAND_TIMEOUT,
    PUBLISH_SCRIPT,
    History,
    RedisSpace,
    room_channel,
)
from chat.buscrypt import SealError, context

log = logging.getLogger("hearth.broker")

SUBSCRIBE_TIMEOUT = 5.0
POLL = 0.5  # seconds the reader waits for a frame before looking at its health probe
BACKOFF_FIRST = 0.1
BACKOFF_CAP = 5.0
SUBSCRIBE_CHUNK = 512  # channels per SUBSCRIBE when re-subscribing after a reconnect


class _Unhealthy(Exception):
    """The pub/sub connection did not echo a health probe in time."""


class RedisBroker:
    """Redis pub/sub behind the :class:`~chat.broker.base.Broker` interface.

    Args:
        space: the client (closed by :meth:`aclose`), key prefix, sealer and room TTL, shared
            with the room store.
        health_interval: seconds between health probes on the pub/sub connection.
        health_timeout: seconds a probe may take before the connection counts as dead.
        observe: also called with every delivery, before the hub gets it (the room store's
            worker-memory history listens here when history cannot be kept in Redis).
        unobserve: called when this worker unsubscribes a room: what ``observe`` kept of it
            would go stale (it misses later messages and deletions), so it is dropped.
        linger: with ``unobserve``, seconds a room stays subscribed after its last local
            member left (the resume grace), so that its history is still whole for them.
        history: asked, for every sequenced publish, what to keep in the room's history in
            the same script (the room store's hook when history is kept in Redis).
    """

    def __init__(
        self,
        space: RedisSpace,
        *,
        health_interval: float = 2.0,
        health_timeout: float = 3.0,
        observe: Deliver | None = None,
        unobserve: Callable[[str], None] | None = None,
        linger: float = 0.0,
        history: History | None = None,
    ) -> None:
        self._space = space
        self._client = space.client
        self._health_interval = health_interval
        self._health_timeout = health_timeout
        # Publishes share pipelines, one in flight at a time: one write instead of one each.
        self._script = ScriptBatch(space.client, PUBLISH_SCRIPT, timeout=COMMAND_TIMEOUT)
        self._deliver: Deliver | None = None
        self._observe = observe
        self._unobserve = unobserve
        self._linger = linger
        self._lingering: dict[str, asyncio.TimerHandle] = {}
        self._history = history
        self._reader: asyncio.Task[None] | None = None
        self._conn: AbstractConnection | None = None
        self._ready = False
        self._became_ready = asyncio.Event()
        self._rooms: dict[bytes, str] = {}  # channel -> room, for every room wanted here
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._seen: dict[str, int] = {}  # room -> highest seq seen here (the floor)
        self._health_channel = f"{space.prefix}:health:{secrets.token_hex(8)}".encode()
        self._probing = False  # the health channel is subscribed on the current connection
        self._probe: bytes | None = None
        self._probe_sent = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self, deliver: Deliver, *, wait: float = 2.0) -> None:
        """Start the reader; wait up to ``wait`` seconds for Redis, but never fail on it.

        A Redis that is down at start only means "not ready yet": the reader keeps trying and
        the worker becomes ready by itself when Redis comes up.
        """
        self._deliver = deliver
        self._reader = asyncio.create_task(self._run(), name="hearth-redis-reader")
        try:
            async with asyncio.timeout(wait):
                await self._became_ready.wait()
        except TimeoutError:
            log.warning("redis not reachable yet; not ready until it is")

    async def aclose(self) -> None:
        self._deliver = None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            # asyncio.wait, not await: the reader's CancelledError is its own; ours propagates.
            await asyncio.wait([reader])
        for handle in self._lingering.values():
            handle.cancel()
        self._lingering.clear()
        for task in list(self._tasks):
            task.cancel()
        await self._script.aclose()
        # A client built on our own pool does not close the pool by itself.
        await self._client.aclose(close_connection_pool=True)

    async def subscribe(self, room: str) -> None:
        """Subscribe this worker to the room and wait for Redis to confirm it.

        Waiting matters: the hub publishes ``joined`` and reads ``seq`` right after, and this
        worker must not miss a publish that Redis handles before the subscription.

        Raises:
            BrokerUnavailable: not connected, or no confirmation in time.
        """
        lingering = self._lingering.pop(room, None)
        if lingering is not None:  # still subscribed: it was only lingering
            lingering.cancel()
            return
        channel = room_channel(self._space.prefix, room).encode()
        self._rooms[channel] = room
        try:
            await self._send_and_confirm("SUBSCRIBE", channel)
        except BaseException:
            self._rooms.pop(channel, None)
            raise

    async def unsubscribe(self, room: str) -> None:
        if self._unobserve is not None and self._linger > 0:
            # Worker-memory history is only as good as what this worker hears: keep hearing
            # the room for the resume grace, so that a member who comes back here finds it
            # whole, deletions included; then stop and let the history go.
            if room not in self._lingering:
                self._lingering[room] = asyncio.get_running_loop().call_later(
                    self._linger, self._stop_lingering, room
                )
            return
        await self._unsubscribe_now(room)

    def _stop_lingering(self, room: str) -> None:
        self._lingering.pop(room, None)
        task = asyncio.create_task(self._unsubscribe_now(room))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _unsubscribe_now(self, room: str) -> None:
        channel = room_channel(self._space.prefix, room).encode()
        if self._rooms.pop(channel, None) is None:
            return
        self._seen.pop(room, None)
        if self._unobserve is not None:
            self._unobserve(room)
        conn = self._conn
        if conn is None or not self._ready or not conn.is_connected:
            return  # a reconnect subscribes only the rooms still wanted
        try:
            await conn.send_command("UNSUBSCRIBE", channel, check_health=False)
        except (RedisError, OSError):
            # The reader notices the broken connection too; nothing is subscribed after it.
            log.debug("unsubscribe not sent: connection lost")

    async def publish(self, room: str, data: bytes, *, sequenced: bool = False) -> int:
        if not self._ready:
            raise BrokerUnavailable("redis pub/sub is not connected")
        channel = room_channel(self._space.prefix, room)
        # Asked before sealing: the hook may have to reach Redis once (history placement).
        kept = await self._history(room, data) if sequenced and self._history else None
        blob = self._space.sealer.seal(data, context("bus", room))
        try:
            if not sequenced:
                async with asyncio.timeout(COMMAND_TIMEOUT):
                    await self._client.publish(channel, b"0:" + blob)
                return 0
            keys = [self._space.key(room, "seq")]
            args: list[bytes | str | int] = [
                channel,
                blob,
                self._seen.get(room, 0),
                self._space.ttl_ms,
            ]
            if kept is not None:
                keys.append(self._space.key(room, "history"))
                args += [kept.entry, kept.keep, kept.oldest_ms]
            seq = int(await self._script(keys=keys, args=args))
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable("redis publish failed") from exc
        self._see(room, seq)
        return seq

    async def last_seq(self, room: str) -> int:
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                raw = await self._client.get(self._space.key(room, "seq"))
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable("redis read failed") from exc
        return max(int(raw or 0), self._seen.get(room, 0))

    async def drop(self, room: str) -> None:
        self._seen.pop(room, None)
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                await self._client.delete(self._space.key(room, "seq"))
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable("redis delete failed") from exc

    # --- the reader ----------------------------------------------------------------------

    async def _run(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            # A connection of our own, not redis-py's PubSub: PubSub reconnects and re-subscribes
            # inside any command that finds its socket dead, which would race with this loop.
            conn: AbstractConnection = self._client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
                self._conn = conn
                await self._subscribe_all(conn)
                await self._catch_up_floors()
                await self._pump(conn)
            except (RedisError, OSError, _Unhealthy) as exc:
                if self._ready:
                    log.warning(
                        "redis pub/sub lost; reconnecting", extra={"error": type(exc).__name__}
                    )
                    delay = BACKOFF_FIRST
                else:
                    delay = min(delay * 2, BACKOFF_CAP)
            finally:
                self._ready = False
                self._became_ready.clear()
                self._conn = None
                self._probe = None
                self._probing = False
                await conn.disconnect(nowait=True)
            # Jitter so that many workers do not reconnect in lockstep after an outage.
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _subscribe_all(self, conn: AbstractConnection) -> None:
        # A fresh connection has no subscriptions: subscribe every room still wanted here
        # (redis-py's PubSub.on_connect does the same), and our own health channel.
        # The health channel last: its confirmation (which makes the worker ready) then comes
        # after every room's, even when the rooms take several chunks.
        channels = [*self._rooms, self._health_channel]
        for start in range(0, len(channels), SUBSCRIBE_CHUNK):
            chunk = channels[start : start + SUBSCRIBE_CHUNK]
            await conn.send_command("SUBSCRIBE", *chunk, check_health=False)

    async def _catch_up_floors(self) -> None:
        """Read every subscribed room's seq before becoming ready.

        While this worker was disconnected, other workers went on numbering; its floors are
        stale. Were Redis to lose its memory next, a stale floor would let seq go backwards.
        """
        rooms = list(self._rooms.values())
        if not rooms:
            return
        async with asyncio.timeout(COMMAND_TIMEOUT):
            values = await self._client.mget([self._space.key(r, "seq") for r in rooms])
        for room, raw in zip(rooms, values, strict=True):
            if raw is not None:
                self._see(room, int(raw))

    async def _pump(self, conn: AbstractConnection) -> None:
        loop = asyncio.get_running_loop()
        next_probe = loop.time()
        while True:
            # An explicit timeout makes read_response return None instead of raising.
            response = await conn.read_response(timeout=POLL, disconnect_on_error=False)
            if response is not None:
                self._on_response(response)
            now = loop.time()
            if self._probe is not None:
                if now - self._probe_sent > self._health_timeout:
                    raise _Unhealthy()
            elif self._probing and now >= next_probe:
                self._send_probe(now)
                next_probe = now + self._health_interval

    def _send_probe(self, now: float) -> None:
        # The probe goes out on the command connection and must come back on the pub/sub one:
        # that checks both, and catches a silently dead TCP peer long before keepalive would.
        token = secrets.token_bytes(8)
        self._probe, self._probe_sent = token, now
        task = asyncio.create_task(self._publish_probe(token))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_probe(self, token: bytes) -> None:
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                await self._client.publish(self._health_channel, token)
        except (RedisError, OSError) as exc:
            # The missing echo fails the health check; the reader then reconnects.
            log.debug("health probe not sent", extra={"error": type(exc).__name__})

    def _on_response(self, response: Any) -> None:
        if not isinstance(response, list) or len(response) < 3:
            return
        kind, channel, payload = response[0], response[1], response[2]
        if kind == b"message":
            if channel == self._health_channel:
                if payload == self._probe:
                    self._probe = None
                    if not self._ready:
                        self._ready = True
                        self._became_ready.set()
                        log.info("redis pub/sub ready")
                return
            room = self._rooms.get(channel)
            if room is not None:
                self._on_frame(room, payload)
        elif kind == b"subscribe":
            if channel == self._health_channel:
                # Probe only now: a probe published before Redis took our SUBSCRIBE is lost.
                self._probing = True
            for waiter in self._waiters.pop(channel, []):
                if not waiter.done():
                    waiter.set_result(None)

    def _on_frame(self, room: str, frame: bytes) -> None:
        head, sep, blob = frame.partition(b":")
        try:
            seq = int(head)
        except ValueError:
            seq = -1
        if not sep or seq < 0:
            metrics.BUS_DROPPED.labels(reason="malformed").inc()
            return
        try:
            data = self._space.sealer.open(blob, context("bus", room))
        except SealError:
            metrics.BUS_DROPPED.labels(reason="auth").inc()
            return
        if seq:
            self._see(room, seq)
        try:
            if self._observe is not None:
                self._observe(room, seq, data)
            deliver = self._deliver
            if deliver is not None:
                deliver(room, seq, data)
        except Exception:
            # One bad frame must not end the reader, which serves every room of this worker.
            log.exception("delivery failed")
            metrics.BUS_DROPPED.labels(reason="error").inc()

    def _see(self, room: str, seq: int) -> None:
        if seq > self._seen.get(room, 0):
            self._seen[room] = seq

    async def _send_and_confirm(self, command: str, channel: bytes) -> None:
        conn = self._conn
        if conn is None or not self._ready or not conn.is_connected:
            raise BrokerUnavailable("redis pub/sub is not connected")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        try:
            await conn.send_command(command, channel, check_health=False)
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                await waiter
        except (RedisError, OSError, TimeoutError) as exc:
            raise BrokerUnavailable("redis subscribe failed") from exc
        finally:
            waiters = self._waiters.get(channel)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[channel]
