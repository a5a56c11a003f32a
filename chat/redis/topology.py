"""How a worker reaches Redis (protocol §16): one server, a Sentinel set, or a Cluster.

This module turns :class:`~chat.settings.Settings` into redis-py clients, and answers the
questions that depend on the topology: is it a cluster, which nodes can this worker reach
(for the persistence check of §7), how to close everything it opened.

* ``--redis-url``: one server, through a blocking pool (:func:`chat.redis.client.connect`).
* ``--redis-sentinel`` with ``--redis-master``: redis-py's asyncio ``Sentinel``. Every new
  connection asks the sentinels for the master's address first, so after a failover a
  connection that broke reconnects to the new master; the pool is blocking, like the
  one-server pool, and follows the sentinels' announcements (:mod:`chat.redis.sentinel`).
* ``--redis-cluster``: redis-py's asyncio ``RedisCluster``, with every room's keys and its
  channel on the room's slot, sharded pub/sub (:mod:`chat.redis.bus`), and a gate that makes
  callers wait for a connection (redis-py's cluster client raises instead).

Every client has no retries and no socket timeout: a retried commit whose reply was lost
would commit twice, and the callers bound every exchange themselves
(:func:`chat.redis.records.unavailable`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.event import EventDispatcher

from chat.luascript import FAILURES, Client
from chat.redis.client import COMMAND_TIMEOUT, CONNECT_TIMEOUT, POOL_SIZE, connect
from chat.redis.sentinel import MasterPool
from chat.settings import Settings

LIMITS_POOL = 8  # the per-address limits' own connections
LIMITS_TIMEOUT = 2.0
SENTINEL_TIMEOUT = 2.0  # a sentinel that does not answer in time is skipped for the next
REPLICA_TIMEOUT = 2.0  # a replica asked for its persistence settings
RETRY_PAUSE = 0.5  # before a node that did not answer CONFIG GET is asked once more


class FreshConnection(Connection):
    """A connection that checks, before each command, that its server has not closed it.

    A one-server pool does this when it hands a connection out (``can_read``: buffered
    bytes, or EOF). redis-py's cluster nodes do not: after a node restarted, each of its
    idle connections would fail one command (with no retries, a caller's ``unavailable``).
    The check reads no socket: asyncio has already seen the EOF.
    """

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if self.is_connected and await self.can_read():
            await self.disconnect()  # closed by the server (or dirty): a new one instead
        await super().send_packed_command(command, check_health)


class FreshSSLConnection(FreshConnection, SSLConnection):
    """:class:`FreshConnection` over TLS."""


class GatedCluster(RedisCluster):
    """redis-py's cluster client, with callers waiting for one of ``gate`` command slots.

    redis-py's cluster nodes raise ``MaxConnectionsError`` when their connections are all in
    use; one Redis's blocking pool makes the caller wait instead (a thousand members leaving
    at once). The gate restores that: at most ``gate`` commands in flight, the others queue.

    Args:
        gate: commands in flight at once (pipelines are not counted: they are few, one per
            node per batch).
        events: the dispatcher redis-py tells when its slot map changes (the bus listens).
    """

    def __init__(self, *args: Any, gate: int, events: EventDispatcher, **kwargs: Any) -> None:
        kwargs["event_dispatcher"] = events
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Semaphore(gate)
        self.events = events
        # Every node made from now on (the slot map's) makes fresh-checked connections.
        tls = issubclass(self.connection_kwargs["connection_class"], SSLConnection)
        fresh = FreshSSLConnection if tls else FreshConnection
        self.connection_kwargs["connection_class"] = fresh
        for node in self.nodes_manager.startup_nodes.values():
            node.connection_class = fresh

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.gate:
            return await super().execute_command(*args, **kwargs)


def command_client(
    settings: Settings,
    *,
    pool_size: int = POOL_SIZE,
    wait: float = COMMAND_TIMEOUT,
    name: str = "hearth",
) -> Client:
    """A command client for the Redis the settings name.

    Args:
        settings: ``redis_url``, or ``redis_sentinel`` and ``redis_master``, or
            ``redis_cluster``, with credentials and TLS (protocol §16).
        pool_size: connections (per node in a cluster) that commands may hold at once.
        wait: seconds a command may wait for a connection.
        name: the connections' ``CLIENT SETNAME``.
    """
    if settings.redis_url:
        return connect(settings.redis_url, pool_size=pool_size, wait=wait, name=name)
    common: dict[str, Any] = dict(
        username=settings.redis_username,
        password=settings.redis_password,
        ssl=settings.redis_tls,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=None,  # see chat.redis.client.connect
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        client_name=name,
        protocol=2,  # the bus parses pub/sub frames itself (see chat.redis.client.connect)
    )
    if settings.redis_cluster:
        return GatedCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in settings.redis_cluster],
            # Serve the rooms of the shards that are up while another one fails over.
            require_full_coverage=False,
            max_connections=pool_size + 16,
            gate=pool_size,
            events=EventDispatcher(),
            **common,
        )
    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        list(settings.redis_sentinel),
        sentinel_kwargs=dict(
            password=settings.redis_sentinel_password,
            ssl=settings.redis_tls,
            socket_connect_timeout=SENTINEL_TIMEOUT,
            socket_timeout=SENTINEL_TIMEOUT,
            protocol=2,
        ),
    )
    client: Redis = sentinels.master_for(
        settings.redis_master or "",
        connection_pool_class=MasterPool,
        max_connections=pool_size,
        timeout=wait,
        **common,
    )
    return client


def limits_client(settings: Settings) -> Client:
    """The per-address limits' own client (chat.guard): a few connections, short waits."""
    return command_client(
        settings, pool_size=LIMITS_POOL, wait=LIMITS_TIMEOUT, name="hearth-limits"
    )


def sentinel_pool(client: Client) -> SentinelConnectionPool | None:
    """The Sentinel pool behind ``client``, or None when it is not a Sentinel master client."""
    if isinstance(client, RedisCluster):
        return None
    pool = client.connection_pool
    return pool if isinstance(pool, SentinelConnectionPool) else None


async def close_client(client: Client) -> None:
    """Close the client, its pool, and the sentinel connections it made."""
    if isinstance(client, RedisCluster):
        await client.aclose()
        return
    sentinels = sentinel_pool(client)
    await client.aclose(close_connection_pool=True)
    if sentinels is not None:
        await sentinels.sentinel_manager.aclose()


async def every_node_config(client: Client, names: tuple[str, ...]) -> list[dict[str, str] | None]:
    """``CONFIG GET`` of ``names`` on every data node: the master (or the one server) and the
    replicas the sentinels list, or every node of the cluster's slot map. A node that refuses
    ``CONFIG`` (an ACL without it) gives ``{}``; a listed node that does not answer gives None
    (the caller decides what silence means: at start it counts as writing to disk, protocol §7;
    after a reconnect it is a node still restarting, asked again until it answers).

    Raises:
        RedisError, RedisClusterException, OSError: the master (or no cluster node at all)
            could not be asked.
    """
    if isinstance(client, RedisCluster):
        if not client.get_nodes():
            await client.initialize()
        # The map as the worker follows it (chat.redis.shards refreshes it on every change).
        nodes = client.get_nodes()
        found: list[Any] = await asyncio.gather(
            *(_config(node.execute_command, names) for node in nodes), return_exceptions=True
        )
        if not any(isinstance(f, dict) for f in found):
            raise next(f for f in found if isinstance(f, BaseException))
        failed = [i for i, f in enumerate(found) if not isinstance(f, dict)]
        if failed:
            # A connection that a map refresh recycled meanwhile fails once; a node that is
            # down fails again.
            await asyncio.sleep(RETRY_PAUSE)
            again = await asyncio.gather(
                *(_config(nodes[i].execute_command, names) for i in failed),
                return_exceptions=True,
            )
            for i, f in zip(failed, again, strict=True):
                found[i] = f
        return [f if isinstance(f, dict) else None for f in found]
    configs: list[dict[str, str] | None] = [await _config(client.execute_command, names)]
    pool = sentinel_pool(client)
    if pool is not None:
        for host, port in await _promotable(pool):
            configs.append(await _replica_or_nothing(pool, host, port, names))
    return configs


async def _replica_or_nothing(
    pool: SentinelConnectionPool, host: str, port: int, names: tuple[str, ...]
) -> dict[str, str] | None:
    """A listed replica's settings, asked twice (one resyncing answers ``LOADING`` for a
    moment); None when it does not answer (listed, so replicating or soon back, it may be
    promoted: the caller decides whether that counts as writing to disk)."""
    try:
        return await _replica_config(pool, host, port, names)
    except FAILURES:
        await asyncio.sleep(RETRY_PAUSE)
    try:
        return await _replica_config(pool, host, port, names)
    except FAILURES:
        return None


async def _promotable(pool: SentinelConnectionPool) -> list[tuple[str, int]]:
    """The replicas the sentinels list: not held down, and heard from at least once. (After a
    crash failover the dead old master is listed as a replica of the new one, never heard
    from — ``info-refresh`` 0 — until it is held down ``down-after-milliseconds`` later: it
    holds nothing the new master sends, and counting it would turn every failover into
    "persisting".) The first sentinel that lists one answers."""
    for sentinel in pool.sentinel_manager.sentinels:
        try:
            listed = await sentinel.sentinel_slaves(pool.service_name)
        except FAILURES:
            continue
        alive = [
            (str(r["ip"]), int(r["port"]))
            for r in listed
            if not (r["is_odown"] or r["is_sdown"]) and int(r.get("info-refresh") or 0) > 0
        ]
        if alive:
            return alive
    return []


async def _config(execute: Any, names: tuple[str, ...]) -> dict[str, str]:
    from redis.exceptions import ResponseError

    out: dict[str, str] = {}
    for name in names:
        try:
            reply = await execute("CONFIG GET", name)
        except ResponseError:
            return {}
        out.update(_pairs(reply))
    return out


async def _replica_config(
    pool: SentinelConnectionPool, host: str, port: int, names: tuple[str, ...]
) -> dict[str, str]:
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k != "connection_pool"}
    ssl = issubclass(pool.connection_class, SSLConnection)
    conn = (SSLConnection if ssl else Connection)(**{**kwargs, "host": host, "port": port})
    try:
        async with asyncio.timeout(REPLICA_TIMEOUT):
            await conn.connect()  # type: ignore[no-untyped-call]

            async def execute(*args: Any) -> Any:
                await conn.send_command(*args)
                return await conn.read_response()

            return await _config(execute, names)
    finally:
        await conn.disconnect()


def _pairs(reply: Any) -> dict[str, str]:
    """A ``CONFIG GET`` reply (a dict, or a flat list from a raw connection) as text."""

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    if isinstance(reply, dict):
        return {text(k): text(v) for k, v in reply.items()}
    items = list(reply or [])
    return {text(items[i]): text(items[i + 1]) for i in range(0, len(items) - 1, 2)}
