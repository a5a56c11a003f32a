"""Which Redis Cluster node carries which room's channel, kept in step with the cluster.

A room's channel carries the room's ``{room}`` hash tag, so it lives on the room's slot, on
the primary that holds that slot: the bus subscribes it there with ``SSUBSCRIBE`` (sharded
pub/sub), one link per primary. :class:`Shards` keeps that map current. It refreshes redis-py's
slot map when it has reason to believe it changed — a link that fails (a node that leaves
answers "connection refused", never ``MOVED``), a channel that Redis unsubscribed by itself
(its slot migrated: Redis 7 sends ``sunsubscribe``), a subscription answered ``MOVED`` — and
whenever the command client's own map changes (redis-py tells us), it opens links to new
primaries, moves channels whose slot now lives elsewhere, and closes links to nodes that hold
no slot any more. The bus then reads back what each room missed while it moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.event import AsyncAfterSlotsCacheRefreshEvent, AsyncEventListenerInterface

from chat.luascript import FAILURES
from chat.redis.client import COMMAND_TIMEOUT
from chat.tasks import end

if TYPE_CHECKING:
    from chat.redis.bus import Bus
    from chat.redis.link import Link

log = logging.getLogger("hearth.bus")

REFRESH_GAP = 1.0  # seconds between two refreshes of the slot map from the cluster
CHECK_EVERY = 5.0  # seconds between checks of the map the command client already has
BACKOFF_CAP = 2.0


class _Changed(AsyncEventListenerInterface):
    """redis-py's slot map changed (a MOVED, a refresh): look at it again."""

    def __init__(self, shards: Shards) -> None:
        self._shards = shards

    async def listen(self, event: object) -> None:
        self._shards.request(refresh=False)


class Shards:
    """The map from a cluster's primaries to the bus's links.

    Args:
        bus: the bus whose links this keeps.
        client: the cluster's command client.
        prefix: the prefix of every channel.
    """

    def __init__(self, bus: Bus, client: RedisCluster, prefix: str) -> None:
        self._bus = bus
        self._client = client
        self._prefix = prefix
        self._refresh = True
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener = _Changed(self)
        events = getattr(client, "events", None)
        if events is not None:  # chat.redis.topology.GatedCluster
            events.register_listeners({AsyncAfterSlotsCacheRefreshEvent: [self._listener]})

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep(), name="hearth-redis-shards")

    async def aclose(self) -> None:
        events = getattr(self._client, "events", None)
        if events is not None:
            events.unregister_listeners({AsyncAfterSlotsCacheRefreshEvent: [self._listener]})
        task, self._task = self._task, None
        if task is not None:
            await end([task])

    def request(self, *, refresh: bool) -> None:
        """Look at the map again soon; ``refresh``: ask the cluster first."""
        self._refresh = self._refresh or refresh
        self._wake.set()

    def route(self, channel: bytes) -> str | None:
        """The node that holds the channel's slot, per the map (None: not known now)."""
        nodes = self._client.nodes_manager.slots_cache.get(key_slot(channel))
        return str(nodes[0].name) if nodes else None

    def link_for(self, channel: bytes) -> Link | None:
        name = self.route(channel)
        return None if name is None else self._bus.link(name)

    def connection(self, name: str) -> AbstractConnection:
        """A new connection to the node ``name``, as its pool would make one."""
        node = self._client.get_node(node_name=name)
        if node is None:
            raise ConnectionError("no such cluster node")
        kwargs = {**node.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
        conn: AbstractConnection = node.connection_class(**kwargs)
        return conn

    def health_channel(self, name: str, token: str) -> bytes:
        """A health channel of this worker whose slot the node ``name`` holds: a probe
        published to it reaches that node, and comes back on its link only."""
        for i in range(4096):
            channel = f"{self._prefix}:health:{token}:{i}".encode()
            if self.route(channel) == name:
                return channel
        # The node holds no slot (yet): a probe cannot reach it, so the link stays not ready.
        return f"{self._prefix}:health:{token}:none".encode()

    async def _keep(self) -> None:
        delay = 0.1
        loop = asyncio.get_running_loop()
        last = -REFRESH_GAP
        while True:
            self._wake.clear()
            if self._refresh:
                await asyncio.sleep(max(0.0, last + REFRESH_GAP - loop.time()))
                self._refresh = False
                last = loop.time()
                try:
                    async with asyncio.timeout(COMMAND_TIMEOUT):
                        await self._client.initialize()
                        await self._client.nodes_manager.initialize()
                except FAILURES as exc:
                    log.debug("cluster map not refreshed", extra={"error": type(exc).__name__})
                    self._refresh = True
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BACKOFF_CAP)
                    continue
                delay = 0.1
            owners = {nodes[0].name for nodes in self._client.nodes_manager.slots_cache.values()}
            self._bus.rearrange(owners, self.route)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CHECK_EVERY):
                    await self._wake.wait()
