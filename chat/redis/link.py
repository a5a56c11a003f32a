"""One pub/sub connection to one Redis node, kept up by its own reader task.

A :class:`Link` connects, subscribes every channel it carries plus a health channel of its
own, and reads frames until the connection fails; then it reconnects with capped exponential
backoff (and jitter) and subscribes everything again. It is *ready* once the health probe it
published through the command client has come back on this connection: that proves both
connections work, and catches a silently dead TCP peer long before keepalive would.

What a link carries, which node it talks to and how it subscribes (``SUBSCRIBE``, or
``SSUBSCRIBE`` one hash slot at a time in a Cluster) is the bus's business
(:mod:`chat.redis.bus`); the link reports what it hears back to it. Each link has its own
reader, so one idle node never delays another's frames (redis-py's
``ClusterPubSub.get_sharded_message(timeout=T)`` waits up to T on each node in turn).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Awaitable, Iterable
from typing import Any, Protocol

from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import AskError, ResponseError

from chat.luascript import FAILURES
from chat.tasks import TaskSet, end

log = logging.getLogger("hearth.bus")

POLL = 0.5  # seconds the reader waits for a frame before looking at its health probe
BACKOFF_FIRST = 0.1
# A reconnect after a long outage waits at most this (times a jitter of 0.5-1): well inside
# §12's 5 s for a missed decision to bind, which also takes a probe and a catch-up.
BACKOFF_CAP = 2.0
CHECK_EVERY = 2.0  # seconds between the bus's checks that the link talks to the right node
_MESSAGE = (b"message", b"smessage")
_SUBSCRIBED = (b"subscribe", b"ssubscribe")
_SUBSCRIBE = ("SUBSCRIBE", "SSUBSCRIBE")
_UNSUBSCRIBED = (b"unsubscribe", b"sunsubscribe")


class Unhealthy(Exception):
    """The connection did not echo a health probe in time, or talks to the wrong node."""


_RESTART: tuple[type[BaseException], ...] = (*FAILURES, Unhealthy)


class Owner(Protocol):
    """What a link needs from its bus."""

    health_interval: float
    health_timeout: float

    def connection(self, link: Link) -> AbstractConnection: ...
    def health_channel(self, link: Link) -> bytes: ...
    def subscriptions(self, channels: Iterable[bytes]) -> list[list[Any]]: ...
    def unsubscription(self, channel: bytes) -> list[Any]: ...
    def probe(self, channel: bytes, token: bytes) -> Awaitable[None]: ...
    def stale(self, link: Link) -> Awaitable[bool]: ...
    def frame(self, channel: bytes, payload: bytes) -> None: ...
    def confirmed(self, channel: bytes) -> None: ...
    def lost(self, link: Link, channels: list[bytes]) -> None: ...
    def up(self, link: Link) -> None: ...
    def down(self, link: Link, failed: bool) -> None: ...


class Link:
    """The pub/sub connection to one node.

    Args:
        owner: the bus.
        name: the node (``host:port``), or a fixed name for the one server.
    """

    def __init__(self, owner: Owner, name: str) -> None:
        self.owner = owner
        self.name = name
        self.channels: set[bytes] = set()  # carried here: subscribed now or on (re)connect
        self.ready = False
        self.conn: AbstractConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._health = b""
        self._probing = False  # the health channel is subscribed on this connection
        self._probe: bytes | None = None
        self._probe_sent = 0.0
        self._leaving: set[bytes] = set()  # unsubscribed by us, not yet confirmed
        self._sent: set[bytes] = set()  # subscribed on the current connection
        self._echoed = False  # the health probe came back (before ready)
        self._stale = False
        self._retry = asyncio.Event()  # cuts a reconnect's backoff short
        self._tasks = TaskSet()  # health probes and node checks

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"hearth-redis-link-{self.name}")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await end([task])  # not await task: its CancelledError is its own
        await self._tasks.end()  # a probe sent on the command client, a node check

    def recheck(self) -> None:
        """The node may have changed (the sentinels named a new master): check now whether
        this link talks to the right one, or, while it is down, retry at once."""
        if self.ready:
            self._tasks.spawn(self._check())
        else:
            self._retry.set()

    async def send(self, *command: Any) -> None:
        """Send a (un)subscribe on the current connection.

        Raises:
            ConnectionError: not connected now (the next connection subscribes what the link
                carries then).
        """
        conn = self.conn
        if conn is None or not self.ready or not conn.is_connected:
            raise ConnectionError("redis pub/sub is not connected")
        if command and command[0] in _SUBSCRIBE:
            self._sent.update(command[1:])
        await conn.send_command(*command, check_health=False)

    async def drop(self, channel: bytes) -> None:
        """Stop carrying ``channel``, and unsubscribe it if connected."""
        self.channels.discard(channel)
        self._sent.discard(channel)
        conn = self.conn
        if conn is None or not self.ready or not conn.is_connected:
            return  # a reconnect subscribes only the channels still carried
        self._leaving.add(channel)
        try:
            await conn.send_command(*self.owner.unsubscription(channel), check_health=False)
        except FAILURES:
            # The reader notices the broken connection too; nothing is subscribed after it.
            log.debug("unsubscribe not sent: connection lost")

    # --- the reader ----------------------------------------------------------------------

    async def _run(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            failed = True
            self._retry.clear()  # a poke from now on cuts the next backoff short
            try:
                conn = self.owner.connection(self)
            except FAILURES:
                conn = None
            try:
                if conn is None:
                    raise Unhealthy()
                await conn.connect()  # type: ignore[no-untyped-call]
                self.conn = conn
                await self._subscribe_all(conn)
                await self._pump(conn)
            except _RESTART as exc:
                if self.ready:
                    log.warning(
                        "redis pub/sub lost; reconnecting", extra={"error": type(exc).__name__}
                    )
                    delay = BACKOFF_FIRST
                else:
                    log.debug("redis pub/sub not up yet", extra={"error": type(exc).__name__})
                    delay = min(delay * 2, BACKOFF_CAP)
            except asyncio.CancelledError:
                failed = False
                raise
            finally:
                self.ready = False
                self.conn = None
                self._probe = None
                self._probing = False
                self._stale = False
                self._leaving.clear()
                self._sent.clear()
                self._echoed = False
                self.owner.down(self, failed)
                if conn is not None:
                    await conn.disconnect(nowait=True)
            # Jitter so that many workers do not reconnect in lockstep after an outage.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay * random.uniform(0.5, 1.0)):
                    await self._retry.wait()

    async def _subscribe_all(self, conn: AbstractConnection) -> None:
        # A fresh connection has no subscriptions: subscribe every channel still carried
        # (redis-py's PubSub.on_connect does the same), and our own health channel — last,
        # so that its confirmation (which leads to ready) comes after every room's.
        self._health = self.owner.health_channel(self)
        self._sent = set(self.channels)
        for command in self.owner.subscriptions(self._sent):
            await conn.send_command(*command, check_health=False)
        for command in self.owner.subscriptions([self._health]):
            await conn.send_command(*command, check_health=False)

    async def _pump(self, conn: AbstractConnection) -> None:
        loop = asyncio.get_running_loop()
        next_probe = next_check = loop.time()
        while True:
            try:
                # An explicit timeout makes read_response return None instead of raising.
                response = await conn.read_response(timeout=POLL, disconnect_on_error=False)
            except AskError as exc:  # MOVED (a subclass) or ASK: the slot lives elsewhere
                self._moved(exc.slot_id)
                response = None
            except ResponseError:
                raise  # a refused subscription (an ACL, say): start over, with backoff
            if response is not None:
                self._on_response(response)
            now = loop.time()
            if self._echoed:
                self._echoed = False
                # Channels the bus gave this link while it was connecting: subscribe them too,
                # and probe again before saying ready (the echo then follows their replies).
                late = self.channels - self._sent
                if late:
                    for command in self.owner.subscriptions(late):
                        await conn.send_command(*command, check_health=False)
                    self._sent.update(late)
                    next_probe = now
                else:
                    self.ready = True
                    self.owner.up(self)
            if self._stale:
                raise Unhealthy()
            if self._probe is not None:
                # Overdue only if nothing is coming in: while frames keep arriving the
                # connection is alive, and the echo may just be queued behind them (a busy
                # loop in a join storm must not look like a dead connection).
                if response is None and now - self._probe_sent > self.owner.health_timeout:
                    raise Unhealthy()
            elif self._probing and now >= next_probe:
                self._send_probe(now)
                next_probe = now + self.owner.health_interval
            if self.ready and now >= next_check:
                next_check = now + CHECK_EVERY
                self._tasks.spawn(self._check())

    def _send_probe(self, now: float) -> None:
        # The probe goes out on the command connection and must come back on this one.
        token = secrets.token_bytes(8)
        self._probe, self._probe_sent = token, now
        self._tasks.spawn(self._publish_probe(token))

    async def _publish_probe(self, token: bytes) -> None:
        try:
            await self.owner.probe(self._health, token)
        except FAILURES as exc:
            # The missing echo fails the health check; the reader then reconnects.
            log.debug("health probe not sent", extra={"error": type(exc).__name__})

    async def _check(self) -> None:
        try:
            self._stale = self._stale or await self.owner.stale(self)
        except FAILURES:
            return  # could not tell: the health probe still watches the connection

    def _moved(self, slot: int) -> None:
        """A subscription went to a node that does not hold its slot (it moved)."""
        gone = [c for c in self.channels if key_slot(c) == slot]
        self.channels.difference_update(gone)
        self.owner.lost(self, gone)

    def _on_response(self, response: Any) -> None:
        if not isinstance(response, list) or len(response) < 3:
            return
        kind, channel, payload = response[0], response[1], response[2]
        if kind in _MESSAGE:
            if channel == self._health:
                if payload == self._probe:
                    self._probe = None
                    self._echoed = not self.ready
                return
            self.owner.frame(channel, payload)
        elif kind in _SUBSCRIBED:
            if channel == self._health:
                # Probe only now: a probe published before Redis took our SUBSCRIBE is lost.
                self._probing = True
            else:
                self.owner.confirmed(channel)
        elif kind in _UNSUBSCRIBED:
            if channel in self._leaving:
                self._leaving.discard(channel)
            elif channel == self._health:
                self._stale = True  # its slot moved away: start over with a new one
            elif channel in self.channels:
                # Redis dropped it by itself: its slot now lives on another node.
                self.channels.discard(channel)
                self.owner.lost(self, [channel])
