"""Per-address limits in memory and on a real Redis: shared by workers, never leaked."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from chat.limiter import (
    AddressHasher,
    LimiterUnavailable,
    MemoryConnections,
    MemoryRoomRate,
    RedisConnections,
    RedisRoomRate,
)
from tests.redis_server import RedisServer, own_redis, redis_server
from tests.timing import WAIT, wait_until

__all__ = ["own_redis", "redis_server"]  # fixtures, imported for pytest


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_room_rate_is_a_sliding_minute() -> None:
    """At most N in any 60 s; the wait names when the oldest leaves the window."""
    clock = Clock()
    rate = MemoryRoomRate(3, clock)
    for _ in range(3):
        assert await rate.take("a") == 0
        clock.now += 10
    assert await rate.wait("a") == pytest.approx(30)  # the first left at 1000 + 60
    assert await rate.take("a") == pytest.approx(30)
    assert await rate.take("b") == 0
    clock.now += 30
    assert await rate.take("a") == 0
    assert await rate.take("a") == pytest.approx(10)


async def test_memory_connections_count_per_key() -> None:
    """acquire stops at the limit; release makes room again; keys are apart."""
    conns = MemoryConnections(2)
    assert [await conns.acquire("a") for _ in range(3)] == [True, True, False]
    assert await conns.acquire("b")
    await conns.release("a")
    assert await conns.acquire("a")


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_server.url)
    yield redis
    await redis.aclose()


def prefix() -> str:
    return "t" + secrets.token_hex(4)


async def test_room_rate_is_shared_by_workers(client: Redis) -> None:
    """Two workers on one Redis allow the limit once between them, not once each."""
    space = prefix()
    a = RedisRoomRate(client, space, 3, AddressHasher(client, space, None))
    b = RedisRoomRate(client, space, 3, AddressHasher(client, space, None))
    assert [await a.take("198.51.100.1"), await b.take("198.51.100.1")] == [0, 0]
    assert await a.take("198.51.100.1") == 0
    wait = await b.take("198.51.100.1")
    assert 59 <= wait <= 60
    assert await b.wait("198.51.100.1") == pytest.approx(wait, abs=1)
    assert await a.take("198.51.100.2") == 0


async def test_connections_are_counted_for_the_deployment(client: Redis) -> None:
    """One address's connections on two workers add up; a release on one frees a place."""
    space = prefix()
    one = RedisConnections(client, space, 4, AddressHasher(client, space, None))
    two = RedisConnections(client, space, 4, AddressHasher(client, space, None))
    results = await asyncio.gather(*(w.acquire("203.0.113.5") for w in (one, two) * 3))
    assert sorted(results) == [False, False, True, True, True, True]
    assert not await one.acquire("203.0.113.5")
    assert await two.acquire("203.0.113.6")
    winner = one if one._counts.get("203.0.113.5") else two
    await winner.release("203.0.113.5")
    assert await (two if winner is one else one).acquire("203.0.113.5")


async def test_concurrent_handshakes_of_one_address_each_count(client: Redis) -> None:
    """Fifty simultaneous acquires on one worker: exactly the limit succeed."""
    space = prefix()
    conns = RedisConnections(client, space, 30, AddressHasher(client, space, None))
    results = await asyncio.gather(*(conns.acquire("203.0.113.7") for _ in range(50)))
    assert results.count(True) == 30


async def test_a_dead_workers_connections_lapse(client: Redis) -> None:
    """A worker that dies without releasing stops counting within one lease; a live worker's
    counts are kept by its heartbeat however long they stay open."""
    space = prefix()
    dying = RedisConnections(client, space, 3, AddressHasher(client, space, None), lease=1.0)
    living = RedisConnections(client, space, 3, AddressHasher(client, space, None), lease=0.6)
    living.start()
    other = RedisConnections(client, space, 3, AddressHasher(client, space, None))
    for _ in range(3):
        assert await dying.acquire("203.0.113.8")
        assert await living.acquire("203.0.113.9")
    assert not await other.acquire("203.0.113.8")
    # A refused acquire changes nothing, so it can be polled: the dying worker's lease (1 s)
    # runs out; by then the living one's (0.6 s) would have too, had it not been renewed.
    await wait_until(lambda: other.acquire("203.0.113.8"), what="the dead worker's lease lapsed")
    assert not await other.acquire("203.0.113.9")
    await living.aclose()


async def test_redis_holds_no_clear_address(client: Redis) -> None:
    """Keys and values carry an HMAC of the address, never the address itself."""
    space = prefix()
    hasher = AddressHasher(client, space, None)
    await RedisRoomRate(client, space, 3, hasher).take("198.51.100.77")
    await RedisConnections(client, space, 3, hasher).acquire("198.51.100.77")
    keys = [k async for k in client.scan_iter(f"{space}:*")]
    assert len(keys) == 3  # the salt, one room log, one connection count
    for key in keys:
        dumped = await client.dump(key)
        assert b"198.51.100.77" not in key and b"198.51.100.77" not in (dumped or b"")


async def test_workers_agree_on_the_hash(client: Redis) -> None:
    """Without a bus key the first worker's salt is everyone's; with one, no salt is stored."""
    space = prefix()
    one, two = AddressHasher(client, space, None), AddressHasher(client, space, None)
    assert await one.key("192.0.2.1") == await two.key("192.0.2.1")
    keyed = prefix()
    bus = AddressHasher(client, keyed, bytes(32))
    assert await bus.key("192.0.2.1") == await AddressHasher(client, keyed, bytes(32)).key(
        "192.0.2.1"
    )
    assert await bus.key("192.0.2.1") != await one.key("192.0.2.1")
    assert not [k async for k in client.scan_iter(f"{keyed}:*")]


async def test_redis_down_is_unavailable(own_redis: RedisServer) -> None:
    """Redis unreachable: the limits say so (the caller answers 503), and recover."""
    redis = Redis.from_url(own_redis.url)
    space = prefix()
    conns = RedisConnections(redis, space, 3, AddressHasher(redis, space, None))
    assert await conns.acquire("192.0.2.9")
    own_redis.kill()
    with pytest.raises(LimiterUnavailable):
        await conns.acquire("192.0.2.9")
    await conns.release("192.0.2.9")  # never raises; the heartbeat writes the truth later
    own_redis.start()
    async with asyncio.timeout(WAIT):
        assert await conns.acquire("192.0.2.9")
    await redis.aclose()


async def test_counts_come_back_after_redis_lost_them(own_redis: RedisServer) -> None:
    """Redis restarted empty (salt and counts gone): within a heartbeat the workers agree on a
    new salt and rewrite what they hold, so the limit holds again."""
    redis = Redis.from_url(own_redis.url)
    space = prefix()
    hasher = AddressHasher(redis, space, None)
    holder = RedisConnections(redis, space, 3, AddressHasher(redis, space, None), lease=0.6)
    other = RedisConnections(redis, space, 3, hasher, lease=0.6)
    holder.start()
    other.start()
    for _ in range(3):
        assert await holder.acquire("192.0.2.10")
    own_redis.restart()

    async def rewritten() -> bool:
        """Redis holds the holder's 3 under the key ``other`` now computes (a new salt)."""
        try:
            name = f"{space}:limits:conn:" + await hasher.key("192.0.2.10")
            return (await redis.hget(name, holder.worker) or b"").startswith(b"3:")
        except (LimiterUnavailable, RedisError):
            return False  # Redis is still coming back

    await wait_until(rewritten, what="a heartbeat rewrote the count")  # heartbeats: 0.2 s
    assert not await other.acquire("192.0.2.10")
    await holder.release("192.0.2.10")
    assert await other.acquire("192.0.2.10")
    await holder.aclose()
    await other.aclose()
    await redis.aclose()
