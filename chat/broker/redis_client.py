"""Hearth's Redis, shared by the broker and the room store: the command client, the naming of
every key and channel (one prefix, a ``{room}`` hash tag), and the publish script that assigns a
room's ``seq``, publishes and keeps the history entry in one step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from chat.buscrypt import Sealer

CONNECT_TIMEOUT = 3.0
COMMAND_TIMEOUT = 5.0
POOL_SIZE = 64  # command connections per worker; the pub/sub reader has its own

# A Lua function for the history zset of a room: keep the newest ``keep`` entries, and none
# older than ``oldest`` (ms). An entry is ``"<ts>:" .. sealed msg``, so its age is readable in
# clear while its text is not. Shared with the room store's own history script.
TRIM_HISTORY = """
local function trim_history(key, keep, oldest)
  redis.call('ZREMRANGEBYRANK', key, 0, -1 - keep)
  while true do
    local first = redis.call('ZRANGE', key, 0, 0)
    if #first == 0 then break end
    local ts = tonumber(string.match(first[1], '^(%d+):'))
    if ts == nil or ts >= oldest then break end
    redis.call('ZREMRANGEBYRANK', key, 0, 0)
  end
end
"""

# KEYS[1] the room's seq key; KEYS[2], for a publish kept in history, the room's history.
# ARGV: channel, blob, floor, ttl (ms); with KEYS[2] also: entry, most entries, oldest ts.
# Recording the history entry here, with the seq as its score, makes a say one round trip.
PUBLISH_SCRIPT = (
    TRIM_HISTORY
    + """
local seq = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[3])
if seq <= floor then
  seq = floor + 1
  redis.call('SET', KEYS[1], seq)
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[1], string.format('%d', seq) .. ':' .. ARGV[2])
if #KEYS == 2 then
  redis.call('ZADD', KEYS[2], seq, ARGV[5])
  trim_history(KEYS[2], tonumber(ARGV[6]), tonumber(ARGV[7]))
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return seq
"""
)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """What a sequenced publish also keeps in its room's history, with its ``seq`` as score."""

    entry: bytes
    """``b"<ts>:" + sealed msg`` (the msg without its ``seq``; a reader adds it back)."""
    keep: int
    """The most entries the room's history keeps."""
    oldest_ms: int
    """Entries older than this (ms since the epoch) are dropped."""


History = Callable[[str, bytes], Awaitable[HistoryEntry | None]]
"""Given a sequenced publish's room and envelope, the history entry to keep with it, if any.

The room store provides it (it knows what history is and whether Redis may hold it); the
broker only writes the entry, so it still never decodes what it publishes.
"""


def connect(url: str) -> Redis:
    """A client for ``url`` (``redis://``, ``rediss://`` for TLS, ``unix://``; user and password
    in the URL for an ACL user), with bounded timeouts and no retries.

    No retries on purpose: a retried sequenced publish whose reply was lost would publish twice,
    and a failure must reach the session quickly as ``unavailable``.
    """
    # A blocking pool: a burst (a thousand members leaving at once) waits its turn for one of
    # POOL_SIZE connections instead of failing with redis-py's "too many connections".
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=COMMAND_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        # No socket_timeout: with one set, redis-py wraps every command's write in
        # asyncio.wait_for, a task per command on Python 3.11 (py-spy: a quarter of a busy
        # worker). Our callers bound each command with asyncio.timeout(COMMAND_TIMEOUT).
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        client_name="hearth",
        # RESP2: the reader parses pub/sub frames itself, and under RESP3 redis-py routes them
        # to a push handler instead of returning them from read_response.
        protocol=2,
    )
    return Redis(connection_pool=pool)


@dataclass(frozen=True, slots=True)
class RedisSpace:
    """What a worker's Redis parts (broker, room store, history) share.

    Args:
        client: the command client; the broker closes it.
        prefix: the prefix of every key and channel.
        sealer: seals names and text before they reach Redis (a clear one without a bus key).
        room_ttl: seconds a room's keys live without activity (the room idle timeout).
    """

    client: Redis
    prefix: str
    sealer: Sealer
    room_ttl: float
    ttl_ms: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ttl_ms", max(1000, int(self.room_ttl * 1000)))

    def key(self, room: str, part: str) -> str:
        """The room's key for ``part``."""
        return room_key(self.prefix, room, part)


def room_key(prefix: str, room: str, part: str) -> str:
    """A room's key: the ``{room}`` hash tag keeps all of a room on one Redis Cluster slot."""
    return f"{prefix}:{{{room}}}:{part}"


def room_channel(prefix: str, room: str) -> str:
    """A room's pub/sub channel."""
    return room_key(prefix, room, "bus")
