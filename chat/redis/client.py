"""Hearth's Redis: the command client for one server, and the naming of every key and channel
(one prefix, a ``{room}`` hash tag, so that all of a room — its keys and its channel — lives on
one Redis Cluster slot). Sentinel and Cluster clients: :mod:`chat.redis.topology`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from chat.buscrypt import Sealer, SealError, context
from chat.errors import Unavailable
from chat.luascript import Client

CONNECT_TIMEOUT = 3.0
COMMAND_TIMEOUT = 5.0
POOL_SIZE = 64  # command connections per worker; the pub/sub reader has its own

# A room's keys, in the order every script receives them (chat.redis.scripts).
ROOM_PARTS = (
    "room",  # hash: "rec" -> sealed record (title, rules, key hash, salt...); "s:<setting>"
    "members",  # hash: pid -> sealed name
    "fields",  # hash: "<pid>|<field>" -> msgpack value (every other member field)
    "names",  # hash: name token (salted hash of the name) -> pid
    "resume",  # hash: resume-token hash -> pid
    "bans",  # set: salted address hashes
    "reports",  # hash: "<mid>|<by>" -> sealed open report
    "log",  # list: sealed facilitation log entries
    "ctr",  # hash: ep, off, seq: where the room's stream stands
    "stream",  # zset: off -> "<ts>:<ep>:<off>:<seq>:" + sealed envelope (a short while)
    "history",  # zset: seq -> "<ts>:<mid>:" + sealed envelope (count and age bounded)
    "held",  # hash: mid -> sealed message held for review (§14; only where history may be)
    "keys",  # hash: label token -> sealed co-facilitator key {label, hash} (§14)
    "alive",  # zset: pid -> ms its worker last vouched for it (presence)
    "closed",  # string: the room was closed (so a restore does not bring it back)
)


def connect(
    url: str, *, pool_size: int = POOL_SIZE, wait: float = COMMAND_TIMEOUT, name: str = "hearth"
) -> Redis:
    """A client for ``url`` (``redis://``, ``rediss://`` for TLS, ``unix://``; user and password
    in the URL for an ACL user), with bounded timeouts and no retries.

    No retries on purpose: a retried commit whose reply was lost would commit twice, and a
    failure must reach the session quickly as ``unavailable``.

    Args:
        url: the server.
        pool_size: connections that commands may hold at once.
        wait: seconds a command may wait for one.
        name: the connections' ``CLIENT SETNAME``.
    """
    # A blocking pool: a burst (a thousand members leaving at once) waits its turn for one of
    # POOL_SIZE connections instead of failing with redis-py's "too many connections".
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=pool_size,
        timeout=wait,
        socket_connect_timeout=CONNECT_TIMEOUT,
        # No socket_timeout: with one set, redis-py wraps every command's write in
        # asyncio.wait_for, a task per command on Python 3.11 (py-spy: a quarter of a busy
        # worker), which can also lose a cancellation (CPython gh-86296). Our callers bound
        # each command with asyncio.timeout(COMMAND_TIMEOUT). Said explicitly: redis-py 8
        # sets 5 s when the argument is left out.
        socket_timeout=None,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        client_name=name,
        # RESP2: the reader parses pub/sub frames itself, and under RESP3 redis-py routes them
        # to a push handler instead of returning them from read_response.
        protocol=2,
    )
    return Redis(connection_pool=pool)


@dataclass(frozen=True, slots=True)
class RedisSpace:
    """What a worker's Redis parts share.

    Args:
        client: the command client (one server, a Sentinel master, or a Cluster); the backend
            closes it.
        prefix: the prefix of every key and channel.
        sealer: seals names and text before they reach Redis (a clear one without a bus key).
        room_ttl: seconds a room's keys live without activity (the room idle timeout).
    """

    client: Client
    prefix: str
    sealer: Sealer
    room_ttl: float
    ttl_ms: int = field(init=False)
    sharded: bool = field(init=False)  # a Cluster: sharded pub/sub (SPUBLISH, SSUBSCRIBE)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ttl_ms", max(1000, int(self.room_ttl * 1000)))
        object.__setattr__(self, "sharded", isinstance(self.client, RedisCluster))

    def key(self, room: str, part: str) -> str:
        """The room's key for ``part``."""
        return room_key(self.prefix, room, part)

    def keys(self, room: str) -> list[str]:
        """Every key of the room, in :data:`ROOM_PARTS` order."""
        return [room_key(self.prefix, room, part) for part in ROOM_PARTS]

    def channel(self, room: str) -> str:
        return room_key(self.prefix, room, "bus")

    def seal(self, data: bytes, room: str) -> bytes:
        """Seal an entry (a packed envelope) for the room's bus, stream and history."""
        return self.sealer.seal(data, context("bus", room))

    def open(self, blob: bytes, room: str) -> bytes:
        """Open what :meth:`seal` sealed.

        Raises:
            Unavailable: it cannot be opened (another deployment's key, or a forgery).
        """
        try:
            return self.sealer.open(blob, context("bus", room))
        except SealError as exc:
            raise Unavailable("an entry could not be opened") from exc


def room_key(prefix: str, room: str, part: str) -> str:
    """A room's key: the ``{room}`` hash tag keeps all of a room on one Redis Cluster slot."""
    return f"{prefix}:{{{room}}}:{part}"
