"""The Redis bus: the pub/sub connections that carry this worker's rooms' streams.

This module owns which connection carries which room, (un)subscribing rooms, the health
probes, and telling the hub when it may have missed something. On the bus a frame is
``b"<epoch>:<off>:<seq>:" + blob``, where ``blob`` is the entry's envelope sealed by
:mod:`chat.buscrypt` (clear when there is no bus key) with the room id bound in; an ephemeral
publish (``typing``) has offset 0.

* One server, or a Sentinel master: one connection (a :class:`~chat.redis.link.Link`) for
  every room, with ``SUBSCRIBE``. Under Sentinel it is made from the Sentinel pool, so each
  reconnect asks the sentinels where the master is now; when the sentinels announce a new
  master (:mod:`chat.redis.sentinel`), and every few seconds anyway, the link checks that it
  still talks to the master they name (a demoted master may stay up).
* A Cluster: sharded pub/sub (``SSUBSCRIBE``), one link per primary, each carrying the rooms
  whose slot that primary holds (:mod:`chat.redis.shards` keeps the map).

Pub/sub delivers at most once: what is published while a connection is down, or before
Redis took a subscription, or while a room's slot moves between nodes, does not arrive here.
That is why every entry has an offset and the stream keeps it for a while: after every
re-subscription (a reconnect, a slot that moved, a failover) the bus calls ``reconnected``,
and the hub reads back what each room missed (``chat.recovery``). While a connection is down,
or its health probe fails, :attr:`Bus.ready` is False and ``/readyz`` answers 503; in a
Cluster, rooms on the other shards keep working meanwhile (:meth:`Bus.hears`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot

from chat import metrics
from chat.backend.base import Entry
from chat.buscrypt import SealError, context
from chat.errors import Unavailable
from chat.luascript import FAILURES
from chat.redis.client import COMMAND_TIMEOUT, RedisSpace
from chat.redis.link import Link
from chat.redis.sentinel import MasterWatch
from chat.redis.shards import Shards
from chat.redis.topology import sentinel_pool
from chat.tasks import TaskSet

log = logging.getLogger("hearth.bus")

SUBSCRIBE_TIMEOUT = 5.0
SUBSCRIBE_CHUNK = 512  # channels per SUBSCRIBE when re-subscribing after a reconnect
ONE = "redis"  # the link's name when there is one server

OnEntry = Callable[[str, Entry], None]


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
    """The worker's pub/sub connections.

    Args:
        space: the client, key prefix and sealer shared with the backend.
        health_interval: seconds between health probes on each connection.
        health_timeout: seconds a probe may take before the connection counts as dead.
    """

    def __init__(
        self, space: RedisSpace, *, health_interval: float = 1.0, health_timeout: float = 2.0
    ) -> None:
        self._space = space
        self._client = space.client
        self.health_interval = health_interval
        self.health_timeout = health_timeout
        self._on_entry: OnEntry | None = None
        self._reconnected: Callable[[], None] | None = None
        self._links: dict[str, Link] = {}
        self._home: dict[bytes, Link] = {}  # channel -> the link that carries it
        self._rooms: dict[bytes, str] = {}  # channel -> room, for every room wanted here
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._moving: set[bytes] = set()  # re-subscribed elsewhere, not yet confirmed
        self._was_ready = False
        self._became_ready = asyncio.Event()
        self._token = secrets.token_hex(8)
        self._shards = (
            Shards(self, self._client, space.prefix)
            if isinstance(self._client, RedisCluster)
            else None
        )
        self._tasks = TaskSet()  # (un)subscriptions sent on the side, the master watch

    @property
    def ready(self) -> bool:
        """Every connection is up and its health probe comes back."""
        return bool(self._links) and all(link.ready for link in self._links.values())

    def hears(self, room: str) -> bool:
        """Whether this worker hears ``room`` right now (any room: whether it is ready)."""
        channel = self._space.channel(room).encode()
        if channel in self._rooms:
            link = self._home.get(channel)
        elif self._shards is not None:  # not held here: the link of the room's shard
            name = self._shards.route(channel)
            link = None if name is None else self._links.get(name)
        else:
            return self.ready
        return link is not None and link.ready

    def subscribed(self, room: str) -> bool:
        return self._space.channel(room).encode() in self._rooms

    async def start(
        self, on_entry: OnEntry, reconnected: Callable[[], None], *, wait: float = 2.0
    ) -> None:
        """Start the readers; wait up to ``wait`` seconds for Redis, but never fail on it.

        A Redis that is down at start only means "not ready yet": the readers keep trying and
        the worker becomes ready by itself when Redis comes up.
        """
        self._on_entry = on_entry
        self._reconnected = reconnected
        if self._shards is not None:
            self._shards.start()
        else:
            self.link(ONE)
        pool = sentinel_pool(self._client)
        if pool is not None:
            watch = MasterWatch(pool, self._master_switched)
            self._tasks.spawn(watch.run())
        try:
            async with asyncio.timeout(wait):
                await self._became_ready.wait()
        except TimeoutError:
            log.warning("redis not reachable yet; not ready until it is")

    async def aclose(self) -> None:
        self._on_entry = None
        if self._shards is not None:
            await self._shards.aclose()
        for link in list(self._links.values()):
            await link.aclose()
        await self._tasks.end()

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
        link = self._links.get(ONE) if self._shards is None else self._shards.link_for(channel)
        if link is None:
            raise Unavailable("redis pub/sub is not connected")
        self._rooms[channel] = room
        self._carry(link, channel)
        try:
            await self._confirm(link, channel)
        except BaseException:
            self._rooms.pop(channel, None)
            home = self._home.pop(channel, None)
            if home is not None:  # a reconnect meanwhile may have subscribed it
                self._tasks.spawn(home.drop(channel))
            raise

    async def unsubscribe(self, room: str) -> None:
        channel = self._space.channel(room).encode()
        if self._rooms.pop(channel, None) is None:
            return
        self._moving.discard(channel)
        link = self._home.pop(channel, None)
        if link is not None:
            await link.drop(channel)

    # --- links ---------------------------------------------------------------------------

    def link(self, name: str) -> Link:
        """The link to the node ``name``, started if new."""
        link = self._links.get(name)
        if link is None:
            link = self._links[name] = Link(self, name)
            self._became_ready.clear()
            link.start()
        return link

    def rearrange(self, owners: set[str], route: Callable[[bytes], str | None]) -> None:
        """Follow a cluster's map: a link to every node in ``owners`` (those that hold slots),
        every wanted channel on its node's link (``route`` names it; None: unknown for now),
        and no link to a node that holds no slot and carries nothing."""
        for name in owners:
            self.link(name)
        self._move(route)
        for name, link in list(self._links.items()):
            if name not in owners and not link.channels:
                del self._links[name]
                self._tasks.spawn(link.aclose())
        if self.ready:
            self._became_ready.set()

    def _move(self, route: Callable[[bytes], str | None]) -> None:
        """Move every wanted channel whose node is not the one that carries it (a slot that
        moved, a failover)."""
        moved: dict[Link, list[bytes]] = {}
        for channel in list(self._rooms):
            target = route(channel)
            home = self._home.get(channel)
            if target is None or (home is not None and home.name == target):
                continue
            if home is not None:
                self._tasks.spawn(home.drop(channel))
            link = self.link(target)
            self._carry(link, channel)
            if link.ready:  # otherwise its (re)connect subscribes it, and says so when up
                moved.setdefault(link, []).append(channel)
        for link, channels in moved.items():
            self._moving.update(channels)
            self._tasks.spawn(self._resubscribe(link, channels))

    def _carry(self, link: Link, channel: bytes) -> None:
        link.channels.add(channel)
        self._home[channel] = link

    async def _resubscribe(self, link: Link, channels: list[bytes]) -> None:
        try:
            for command in self.subscriptions(channels):
                await link.send(*command)
        except FAILURES:
            log.debug("re-subscription not sent: the link reconnects and sends it")

    async def _confirm(self, link: Link, channel: bytes) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        try:
            for command in self.subscriptions([channel]):
                await link.send(*command)
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                await waiter
        except FAILURES as exc:
            raise Unavailable("redis subscribe failed") from exc
        finally:
            waiters = self._waiters.get(channel)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[channel]

    # --- what the links ask and tell (chat.redis.link.Owner) ------------------------------

    def connection(self, link: Link) -> AbstractConnection:
        if self._shards is not None:
            return self._shards.connection(link.name)
        # A connection of our own, not redis-py's PubSub: PubSub reconnects and re-subscribes
        # inside any command that finds its socket dead, which would race with the link. From
        # a Sentinel pool it asks the sentinels for the master's address when it connects.
        conn: AbstractConnection = self._client.connection_pool.make_connection()  # type: ignore[union-attr]
        return conn

    def health_channel(self, link: Link) -> bytes:
        if self._shards is not None:
            return self._shards.health_channel(link.name, self._token)
        return f"{self._space.prefix}:health:{self._token}".encode()

    def subscriptions(self, channels: Iterable[bytes]) -> list[list[Any]]:
        """The (S)SUBSCRIBE commands for ``channels``: one per hash slot in a Cluster (Redis
        refuses a cross-slot SSUBSCRIBE), in chunks."""
        if self._shards is None:
            listed = list(channels)
            return [
                ["SUBSCRIBE", *listed[i : i + SUBSCRIBE_CHUNK]]
                for i in range(0, len(listed), SUBSCRIBE_CHUNK)
            ]
        by_slot: dict[int, list[bytes]] = {}
        for channel in channels:
            by_slot.setdefault(key_slot(channel), []).append(channel)
        return [
            ["SSUBSCRIBE", *same[i : i + SUBSCRIBE_CHUNK]]
            for same in by_slot.values()
            for i in range(0, len(same), SUBSCRIBE_CHUNK)
        ]

    def unsubscription(self, channel: bytes) -> list[Any]:
        return ["SUNSUBSCRIBE" if self._shards is not None else "UNSUBSCRIBE", channel]

    async def probe(self, channel: bytes, token: bytes) -> None:
        async with asyncio.timeout(COMMAND_TIMEOUT):
            if isinstance(self._client, RedisCluster):
                await self._client.spublish(channel, token)
            else:
                await self._client.publish(channel, token)

    async def stale(self, link: Link) -> bool:
        """Sentinel: whether the link talks to a server the sentinels no longer name master."""
        pool = sentinel_pool(self._client)
        conn = link.conn
        if pool is None or conn is None:
            return False
        async with asyncio.timeout(COMMAND_TIMEOUT):
            host, port = await pool.get_master_address()  # type: ignore[no-untyped-call]
        return (str(host), int(port)) != (str(getattr(conn, "host", "")), int(conn.port))  # type: ignore[attr-defined]

    def _master_switched(self) -> None:
        for link in self._links.values():
            link.recheck()

    def frame(self, channel: bytes, payload: bytes) -> None:
        room = self._rooms.get(channel)
        if room is not None:
            self._on_frame(room, payload)

    def confirmed(self, channel: bytes) -> None:
        for waiter in self._waiters.pop(channel, []):
            if not waiter.done():
                waiter.set_result(None)
        if channel in self._moving:
            self._moving.discard(channel)
            if not self._moving:
                self._tell_reconnected()  # what was published while it moved: read it back

    def lost(self, link: Link, channels: list[bytes]) -> None:
        for channel in channels:
            if self._home.get(channel) is link:
                del self._home[channel]
        if self._shards is not None:
            self._shards.request(refresh=True)

    def up(self, link: Link) -> None:
        if self.ready:
            self._became_ready.set()
            log.info("redis pub/sub ready")
        if self._was_ready:
            self._tell_reconnected()
        self._was_ready = True

    def down(self, link: Link, failed: bool) -> None:
        self._became_ready.clear()
        if failed and self._shards is not None:
            self._shards.request(refresh=True)  # a node that left answers "refused", not MOVED

    def _tell_reconnected(self) -> None:
        if self._reconnected is not None:
            # Whatever was published while we were away did not come: the hub reads it back.
            self._reconnected()

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
