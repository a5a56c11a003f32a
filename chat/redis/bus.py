"""The Redis bus: one pub/sub connection per worker that carries all of its rooms' streams.

This module owns that connection, the reader task, (un)subscribing rooms, a health probe, and
reconnecting with capped exponential backoff. On the bus a frame is
``b"<epoch>:<off>:<seq>:" + blob``, where ``blob`` is the entry's envelope sealed by
:mod:`chat.buscrypt` (clear when there is no bus key) with the room id bound in; an ephemeral
publish (``typing``) has offset 0.

Pub/sub delivers at most once: what is published while this worker's connection is down, or
before Redis took a new subscription, does not arrive here. That is why every entry has an
offset and the stream keeps it for a while: after every reconnect the bus calls
``reconnected``, and the hub reads back what each room missed (``chat.recovery``). While the
connection is down, or its health probe fails, :attr:`Bus.ready` is False and ``/readyz``
answers 503.
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
from chat.backend.base import Entry
from chat.buscrypt import SealError, context
from chat.errors import Unavailable
from chat.redis.client import COMMAND_TIMEOUT, RedisSpace

log = logging.getLogger("hearth.bus")

SUBSCRIBE_TIMEOUT = 5.0
POLL = 0.5  # seconds the reader waits for a frame before looking at its health probe
BACKOFF_FIRST = 0.1
BACKOFF_CAP = 5.0
SUBSCRIBE_CHUNK = 512  # channels per SUBSCRIBE when re-subscribing after a reconnect

OnEntry = Callable[[str, Entry], None]


class _Unhealthy(Exception):
    """The pub/sub connection did not echo a health probe in time."""


def parse_frame(frame: bytes) -> tuple[int, int, int, bytes] | None:
    """``(epoch, off, seq, blob)`` of a bus frame, or None when it is not one."""
    parts = frame.split(b":", 3)
    if len(parts) != 4:
        return None
    try:
        epoch, off, seq = int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None
    if epoch < 0 or off < 0 or seq < 0:
        return None
    return epoch, off, seq, parts[3]


class Bus:
    """The worker's pub/sub connection.

    Args:
        space: the client, key prefix and sealer shared with the backend.
        health_interval: seconds between health probes on the pub/sub connection.
        health_timeout: seconds a probe may take before the connection counts as dead.
    """

    def __init__(
        self, space: RedisSpace, *, health_interval: float = 1.0, health_timeout: float = 2.0
    ) -> None:
        self._space = space
        self._client = space.client
        self._health_interval = health_interval
        self._health_timeout = health_timeout
        self._on_entry: OnEntry | None = None
        self._reconnected: Callable[[], None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._conn: AbstractConnection | None = None
        self._ready = False
        self._was_ready = False
        self._became_ready = asyncio.Event()
        self._rooms: dict[bytes, str] = {}  # channel -> room, for every room wanted here
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._health_channel = f"{space.prefix}:health:{secrets.token_hex(8)}".encode()
        self._probing = False  # the health channel is subscribed on the current connection
        self._probe: bytes | None = None
        self._probe_sent = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def ready(self) -> bool:
        return self._ready

    def subscribed(self, room: str) -> bool:
        return self._space.channel(room).encode() in self._rooms

    async def start(
        self, on_entry: OnEntry, reconnected: Callable[[], None], *, wait: float = 2.0
    ) -> None:
        """Start the reader; wait up to ``wait`` seconds for Redis, but never fail on it.

        A Redis that is down at start only means "not ready yet": the reader keeps trying and
        the worker becomes ready by itself when Redis comes up.
        """
        self._on_entry = on_entry
        self._reconnected = reconnected
        self._reader = asyncio.create_task(self._run(), name="hearth-redis-reader")
        try:
            async with asyncio.timeout(wait):
                await self._became_ready.wait()
        except TimeoutError:
            log.warning("redis not reachable yet; not ready until it is")

    async def aclose(self) -> None:
        self._on_entry = None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            # asyncio.wait, not await: the reader's CancelledError is its own; ours propagates.
            await asyncio.wait([reader])
        for task in list(self._tasks):
            task.cancel()

    async def subscribe(self, room: str) -> None:
        """Subscribe this worker to the room and wait for Redis to confirm it.

        Waiting matters: the hub reads the room's snapshot right after, and must not miss an
        entry that Redis publishes between the snapshot and the subscription.

        Raises:
            Unavailable: not connected, or no confirmation in time.
        """
        channel = self._space.channel(room).encode()
        if channel in self._rooms:
            return
        self._rooms[channel] = room
        try:
            await self._send_and_confirm("SUBSCRIBE", channel)
        except BaseException:
            self._rooms.pop(channel, None)
            self._unsubscribe_quietly(channel)  # a reconnect meanwhile may have subscribed it
            raise

    async def unsubscribe(self, room: str) -> None:
        channel = self._space.channel(room).encode()
        if self._rooms.pop(channel, None) is None:
            return
        conn = self._conn
        if conn is None or not self._ready or not conn.is_connected:
            return  # a reconnect subscribes only the rooms still wanted
        await self._send_unsubscribe(conn, channel)

    def _unsubscribe_quietly(self, channel: bytes) -> None:
        conn = self._conn
        if conn is not None and conn.is_connected:
            task = asyncio.ensure_future(self._send_unsubscribe(conn, channel))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_unsubscribe(self, conn: AbstractConnection, channel: bytes) -> None:
        try:
            await conn.send_command("UNSUBSCRIBE", channel, check_health=False)
        except (RedisError, OSError):
            log.debug("unsubscribe not sent: connection lost")

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
                await self._pump(conn)
            except (RedisError, OSError, _Unhealthy) as exc:
                if self._ready:
                    log.warning(
                        "redis pub/sub lost; reconnecting", extra={"error": type(exc).__name__}
                    )
                    delay = BACKOFF_FIRST
                else:
                    log.debug("redis pub/sub not up yet", extra={"error": type(exc).__name__})
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
                # Overdue only if nothing is coming in: while frames keep arriving the
                # connection is alive, and the echo may just be queued behind them (a busy
                # loop in a join storm must not look like a dead connection).
                if response is None and now - self._probe_sent > self._health_timeout:
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
                        self._became_up()
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

    def _became_up(self) -> None:
        self._ready = True
        self._became_ready.set()
        log.info("redis pub/sub ready")
        if self._was_ready and self._reconnected is not None:
            # Whatever was published while we were away did not come: the hub reads it back.
            self._reconnected()
        self._was_ready = True

    def _on_frame(self, room: str, frame: bytes) -> None:
        parsed = parse_frame(frame)
        if parsed is None:
            metrics.BUS_DROPPED.labels(reason="malformed").inc()
            return
        epoch, off, seq, blob = parsed
        try:
            data = self._space.sealer.open(blob, context("bus", room))
        except SealError:
            metrics.BUS_DROPPED.labels(reason="auth").inc()
            return
        on_entry = self._on_entry
        if on_entry is None:
            return
        try:
            on_entry(room, Entry(epoch, off, seq, data))
        except Exception:
            # One bad frame must not end the reader, which serves every room of this worker.
            log.exception("delivery failed")
            metrics.BUS_DROPPED.labels(reason="error").inc()

    async def _send_and_confirm(self, command: str, channel: bytes) -> None:
        conn = self._conn
        if conn is None or not self._ready or not conn.is_connected:
            raise Unavailable("redis pub/sub is not connected")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        try:
            await conn.send_command(command, channel, check_health=False)
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                await waiter
        except (RedisError, OSError, TimeoutError) as exc:
            raise Unavailable("redis subscribe failed") from exc
        finally:
            waiters = self._waiters.get(channel)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[channel]
