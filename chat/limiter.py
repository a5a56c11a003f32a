"""Per-address limits (protocol §11): rooms created a minute, and open WebSocket connections.

Each limit has a memory implementation, for one process, and a Redis implementation that
holds the count for the whole deployment, so that two workers do not each allow the limit.

Nothing here keeps a client address in Redis: keys carry an HMAC-SHA256 of the address. The
HMAC key must be the same on every worker (else two workers would count one address apart):
with a bus key it is derived from the bus key (and then Redis never learns enough to test a
guess), without one it is a random salt the first worker stores in Redis with ``SET NX``.

Redis counts must not outlive a worker that dies without releasing them. Each worker writes
its own count of an address as one field of that address's hash, stamped with a lease
deadline in Redis's clock; a heartbeat rewrites every count the worker holds well before its
lease ends; and readers ignore (and delete) fields whose lease has run out. A dead worker's
connections stop counting within one lease.

Every script touches one key, so the limits run unchanged on a Redis Cluster, where the keys
of different addresses live on different nodes; the scripts are loaded on the node that
asks for them (:mod:`chat.luascript`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from chat.luascript import FAILURES, Client, Script, ScriptBatch
from chat.tasks import end

log = logging.getLogger("hearth.limiter")
T = TypeVar("T")

WINDOW = 60.0  # --room-create-rate counts rooms per minute
LEASE = 60.0  # seconds a worker's Redis count lives without a heartbeat
COMMAND_TIMEOUT = 2.0
HEARTBEAT_BATCH = 256  # counts rewritten per pipeline
SALT_INFO = b"hearth address limits v1"


class LimiterUnavailable(Exception):
    """Redis could not be asked; the caller answers ``unavailable`` (HTTP 503)."""


class RoomRate(Protocol):
    """At most ``limit`` rooms per key in any ``WINDOW`` seconds."""

    async def wait(self, key: str) -> float:
        """Seconds until ``key`` may create a room (0: now); records nothing."""
        ...

    async def take(self, key: str) -> float:
        """Record a room for ``key`` and return 0, or return the seconds to wait."""
        ...


class Connections(Protocol):
    """At most ``limit`` open connections per key."""

    async def acquire(self, key: str) -> bool:
        """Count one more connection for ``key``; False (nothing counted) at the limit."""
        ...

    async def release(self, key: str) -> None:
        """Count one connection of ``key`` fewer (never raises)."""
        ...

    async def aclose(self) -> None: ...


# --- one process ---------------------------------------------------------------------------


class MemoryRoomRate:
    """A sliding log per key: the times of its last ``limit`` rooms."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._log: dict[str, deque[float]] = {}
        self._next_sweep = clock() + WINDOW

    async def wait(self, key: str) -> float:
        return self._wait(key, self._clock())

    async def take(self, key: str) -> float:
        now = self._clock()
        wait = self._wait(key, now)
        if wait == 0:
            self._log.setdefault(key, deque(maxlen=self.limit)).append(now)
        return wait

    def _wait(self, key: str, now: float) -> float:
        if now >= self._next_sweep:  # forget keys with nothing in the window
            self._log = {k: v for k, v in self._log.items() if v and v[-1] > now - WINDOW}
            self._next_sweep = now + WINDOW
        times = self._log.get(key)
        if times is None or len(times) < self.limit:
            return 0.0
        return max(0.0, times[0] + WINDOW - now)


class MemoryConnections:
    """Open connections per key in this process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}

    async def acquire(self, key: str) -> bool:
        count = self._counts.get(key, 0)
        if count >= self.limit:
            return False
        self._counts[key] = count + 1
        return True

    async def release(self, key: str) -> None:
        count = self._counts.get(key, 0) - 1
        if count > 0:
            self._counts[key] = count
        else:
            self._counts.pop(key, None)

    async def aclose(self) -> None:
        self._counts.clear()


# --- the deployment, on Redis --------------------------------------------------------------

_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "

# KEYS[1] the key's log; ARGV limit, window ms, member (nil: only ask). Returns ms to wait.
_RATE = Script(
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + tonumber(ARGV[2]) - now)
end
if ARGV[3] then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
)

# KEYS[1] an address's hash: one field per worker, "count:lease deadline" in Redis ms.
_FIELDS = """
local mine, others = 0, 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local count, deadline = string.match(fields[i + 1], '^(%d+):(%d+)$')
  if count and tonumber(deadline) >= now then
    if fields[i] == ARGV[1] then mine = tonumber(count) else others = others + tonumber(count) end
  else
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
local function put(count)
  if count <= 0 then
    redis.call('HDEL', KEYS[1], ARGV[1])
  else
    redis.call('HSET', KEYS[1], ARGV[1], count .. ':' .. (now + tonumber(ARGV[2])))
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
end
"""

# ARGV worker, lease ms, limit. Returns 1 (counted) or 0 (the address is at the limit).
_ACQUIRE = Script(
    _NOW
    + _FIELDS
    + """
if mine + others + 1 > tonumber(ARGV[3]) then return 0 end
put(mine + 1)
return 1
"""
)

# ARGV worker, lease ms.
_RELEASE = Script(_NOW + _FIELDS + "put(mine - 1) return 1")

# KEYS[1] an address's hash; ARGV worker, lease ms, this worker's count (0: delete its field).
_WRITE = Script(
    _NOW
    + """
if ARGV[3] == '0' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. ':' .. (now + tonumber(ARGV[2])))
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
"""
)


class AddressHasher:
    """HMAC-SHA256 of an address, with a key every worker of the deployment agrees on."""

    def __init__(self, client: Client, prefix: str, bus_key: bytes | None) -> None:
        self._client = client
        self._salt_key = f"{prefix}:limits:salt"
        self._fixed = bus_key is not None
        self._secret = hmac.digest(bus_key, SALT_INFO, "sha256") if bus_key else None

    async def refresh(self) -> None:
        """Without a bus key: read the deployment's salt, made by whichever worker came first.

        Called at start and on every heartbeat, so that after Redis lost its data (the salt and
        every count with it) the workers agree on one new salt within a heartbeat.
        """
        if self._fixed:
            return
        await self._client.set(self._salt_key, secrets.token_hex(32), nx=True)
        stored = await self._client.get(self._salt_key)
        if stored is not None:
            self._secret = bytes.fromhex(stored if isinstance(stored, str) else stored.decode())

    async def key(self, address_key: str) -> str:
        """The HMAC of ``address_key`` in hex.

        Raises:
            LimiterUnavailable: there is no salt and Redis cannot give one.
        """
        if self._secret is None:
            await _ask(self.refresh())
        if self._secret is None:
            raise LimiterUnavailable("no salt")
        return hmac.new(self._secret, address_key.encode(), hashlib.sha256).hexdigest()


async def _ask(work: Awaitable[T]) -> T:
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT):
            return await work
    except FAILURES as exc:
        raise LimiterUnavailable(type(exc).__name__) from None


class RedisRoomRate:
    """The sliding log in a sorted set per hashed address, timed by Redis's clock."""

    def __init__(self, client: Client, prefix: str, limit: int, hasher: AddressHasher) -> None:
        self.limit = limit
        self._client = client
        self._prefix = f"{prefix}:limits:create:"
        self._hasher = hasher
        self._member = secrets.token_hex(8)
        self._taken = 0

    async def wait(self, key: str) -> float:
        return await self._run(key)

    async def take(self, key: str) -> float:
        self._taken += 1
        return await self._run(key, f"{self._member}:{self._taken}")

    async def _run(self, key: str, *member: str) -> float:
        args: list[str | int] = [self.limit, int(WINDOW * 1000), *member]
        keys = [self._prefix + await self._hasher.key(key)]
        wait_ms = await _ask(_RATE(self._client, keys, args))
        return int(wait_ms) / 1000


class RedisConnections:
    """Open connections per hashed address for the deployment, leased per worker.

    Args:
        client: the Redis client.
        prefix: the deployment's key prefix.
        limit: ``--max-per-address``.
        hasher: hashes addresses into key names.
        lease: seconds a count lives without a heartbeat (a third of it between heartbeats).
    """

    def __init__(
        self, client: Client, prefix: str, limit: int, hasher: AddressHasher, lease: float = LEASE
    ) -> None:
        self.limit = limit
        self.worker = secrets.token_hex(8)
        self._client = client
        self._prefix = f"{prefix}:limits:conn:"
        self._hasher = hasher
        self._lease_ms = int(lease * 1000)
        self._period = lease / 3
        # Every handshake and close of the deployment runs one of these: a storm of them
        # (a worker's members resuming here, a thousand joining at once, a worker closing all
        # its connections at shutdown) shares pipelines instead of queueing for the pool's
        # connections one command each (which ended in 503s and cancelled releases).
        self._acquire = ScriptBatch(client, _ACQUIRE.source, timeout=COMMAND_TIMEOUT)
        self._release = ScriptBatch(client, _RELEASE.source, timeout=COMMAND_TIMEOUT)
        self._counts: dict[str, int] = {}  # this worker's, by address key (memory only)
        self._stale: set[str] = set()  # released while Redis failed: rewritten on heartbeat
        self._heartbeat: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._heartbeat = asyncio.create_task(self._beat())

    async def acquire(self, key: str) -> bool:
        keys = [self._prefix + await self._hasher.key(key)]
        args: list[str | int] = [self.worker, self._lease_ms, self.limit]
        # An increment in Redis, not a count from here: concurrent handshakes of one address
        # on this worker must each be counted.
        if not await _ask(self._acquire(keys, args)):
            return False
        self._counts[key] = self._counts.get(key, 0) + 1
        return True

    async def release(self, key: str) -> None:
        count = self._counts.get(key, 0) - 1
        if count > 0:
            self._counts[key] = count
        else:
            self._counts.pop(key, None)
        try:
            keys = [self._prefix + await self._hasher.key(key)]
            await _ask(self._release(keys, [self.worker, self._lease_ms]))
        except LimiterUnavailable:
            self._stale.add(key)  # the heartbeat writes the true count

    async def aclose(self) -> None:
        """Stop the heartbeat, and let the batches already sent come back before the client
        closes; this worker's counts then lapse within one lease."""
        if self._heartbeat is not None:
            await end([self._heartbeat])
        await self._acquire.aclose()
        await self._release.aclose()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._period)
            stale, self._stale = self._stale, set()
            try:
                await _ask(self._hasher.refresh())
                held = [(k, self._counts.get(k, 0)) for k in stale | set(self._counts)]
                await self._write_counts(held)
            except LimiterUnavailable:
                self._stale |= stale
                log.warning("connection counts not renewed: redis unavailable")

    async def _write_counts(self, counts: list[tuple[str, int]]) -> None:
        # One key per script call, pipelined (one pipeline per node in a cluster).
        for start in range(0, len(counts), HEARTBEAT_BATCH):
            calls = [
                ([self._prefix + await self._hasher.key(key)], [self.worker, self._lease_ms, n])
                for key, n in counts[start : start + HEARTBEAT_BATCH]
            ]
            results = await _WRITE.pipelined(self._client, calls, timeout=COMMAND_TIMEOUT)
            failed = next((r for r in results if isinstance(r, BaseException)), None)
            if failed is not None:
                raise LimiterUnavailable(type(failed).__name__)


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
