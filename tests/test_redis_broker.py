"""The broker contract, run on MemoryBroker and RedisBroker alike, and Redis failure handling."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from chat import metrics
from chat.broker.base import Broker, BrokerUnavailable
from chat.broker.memory import MemoryBroker
from chat.broker.redis import RedisBroker
from chat.broker.redis_client import RedisSpace, connect, room_channel
from chat.buscrypt import Sealer
from tests.redis_server import RedisServer, monitor, own_redis, redis_server
from tests.timing import WAIT

__all__ = ["own_redis", "redis_server"]  # fixtures, imported for pytest

KEY = bytes(range(32))


class Inbox:
    """Collects deliveries and lets a test wait for them."""

    def __init__(self) -> None:
        self.got: list[tuple[str, int, bytes]] = []
        self._changed = asyncio.Event()

    def __call__(self, room: str, seq: int, data: bytes) -> None:
        self.got.append((room, seq, data))
        self._changed.set()

    async def wait_for(self, count: int) -> list[tuple[str, int, bytes]]:
        async with asyncio.timeout(WAIT):
            while len(self.got) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.got


def redis_broker(server: RedisServer, prefix: str, **kwargs: Any) -> RedisBroker:
    sealer = kwargs.pop("sealer", Sealer(None))
    return RedisBroker(RedisSpace(connect(server.url), prefix, sealer, 60), **kwargs)


async def wait_until(condition: Any, timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polls another process's state
            await asyncio.sleep(0.02)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def brokers(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[Broker, Broker, Inbox, Inbox]]:
    """Two brokers (two "workers") on one bus: the same object for memory, two for Redis."""
    a_inbox, b_inbox = Inbox(), Inbox()
    if request.param == "memory":
        memory = MemoryBroker()

        def both(room: str, seq: int, data: bytes) -> None:
            a_inbox(room, seq, data)
            b_inbox(room, seq, data)

        await memory.start(both)
        yield memory, memory, a_inbox, b_inbox
        await memory.aclose()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    prefix = "t" + secrets.token_hex(4)
    a, b = redis_broker(server, prefix), redis_broker(server, prefix)
    await a.start(a_inbox)
    await b.start(b_inbox)
    assert a.ready and b.ready
    yield a, b, a_inbox, b_inbox
    await a.aclose()
    await b.aclose()


async def test_sequenced_publish_reaches_subscribers_in_seq_order(
    brokers: tuple[Broker, Broker, Inbox, Inbox],
) -> None:
    """Sequenced publishes get 1, 2, 3... and every subscriber receives them in that order."""
    a, b, a_inbox, b_inbox = brokers
    await a.subscribe("r1")
    await b.subscribe("r1")
    seqs = await asyncio.gather(*(a.publish("r1", b"m%d" % i, sequenced=True) for i in range(10)))
    assert sorted(seqs) == list(range(1, 11))
    for inbox in (a_inbox, b_inbox):
        got = await inbox.wait_for(10)
        assert [seq for _, seq, _ in got] == list(range(1, 11))
    assert await a.last_seq("r1") == 10
    assert await b.last_seq("r1") == 10


async def test_publish_reaches_only_subscribed_rooms(
    brokers: tuple[Broker, Broker, Inbox, Inbox],
) -> None:
    """A room's publish reaches the workers subscribed to it, and no other room's subscribers."""
    a, b, a_inbox, b_inbox = brokers
    await a.subscribe("left-room")
    await b.subscribe("right-room")
    assert await a.publish("right-room", b"hello") == 0
    got = await b_inbox.wait_for(1)
    assert got == [("right-room", 0, b"hello")]
    await asyncio.sleep(0.2)
    assert [r for r, _, _ in a_inbox.got if r == "right-room"] == [] or a is b


async def test_unsubscribe_stops_delivery_and_drop_forgets_seq(
    brokers: tuple[Broker, Broker, Inbox, Inbox],
) -> None:
    """After unsubscribe nothing more arrives; after drop the room's seq starts again."""
    a, b, _, b_inbox = brokers
    await b.subscribe("r2")
    await a.publish("r2", b"one", sequenced=True)
    await b_inbox.wait_for(1)
    await b.unsubscribe("r2")
    await a.publish("r2", b"two", sequenced=True)
    await asyncio.sleep(0.2)
    assert [d for _, _, d in b_inbox.got] == [b"one"]
    await a.drop("r2")
    await b.drop("r2")
    assert await a.last_seq("r2") == 0


@pytest.mark.redis
@pytest.mark.redis
async def test_publishes_of_one_turn_share_one_pipeline(redis_server: RedisServer) -> None:
    """Publishes made together go out as one pipeline, in order; a flushed script reloads."""
    prefix = "t" + secrets.token_hex(4)
    inbox = Inbox()
    broker = redis_broker(redis_server, prefix)
    await broker.start(inbox)
    await broker.subscribe("r1")
    await broker.publish("r1", b"warm", sequenced=True)  # a connection and the script, ready
    async with monitor(redis_server) as seen:
        seqs = await asyncio.gather(
            *(broker.publish("r1", b"m%d" % i, sequenced=True) for i in range(20))
        )
    assert seqs == list(range(2, 22))  # Redis ran them in the order they were made
    senders = {  # "<time> [<db> <client address>] <command>": the address
        bytes(line.split(b"[", 1)[1].split(b"]", 1)[0])
        for line in seen.splitlines()
        if b'"EVALSHA"' in line.upper() and b" lua]" not in line
    }
    assert len(senders) == 1  # one connection, one write: not twenty
    got = await inbox.wait_for(21)
    assert [data for _, _, data in got[1:]] == [b"m%d" % i for i in range(20)]
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        await admin.script_flush()
    finally:
        await admin.aclose()
    assert await asyncio.gather(
        broker.publish("r1", b"x", sequenced=True), broker.publish("r1", b"y", sequenced=True)
    ) == [22, 23]
    await broker.aclose()


async def test_seq_never_goes_back_when_redis_forgets(redis_server: RedisServer) -> None:
    """A Redis that lost its memory (FLUSHALL) does not hand out a seq twice: the floor holds."""
    prefix = "t" + secrets.token_hex(4)
    broker, inbox = redis_broker(redis_server, prefix), Inbox()
    await broker.start(inbox)
    try:
        await broker.subscribe("r")
        for _ in range(5):
            await broker.publish("r", b"x", sequenced=True)
        await inbox.wait_for(5)
        redis_server.cli("DEL", f"{prefix}:{{r}}:seq")
        assert await broker.publish("r", b"y", sequenced=True) == 6
        assert await broker.last_seq("r") == 6
    finally:
        await broker.aclose()


@pytest.mark.redis
async def test_bus_is_sealed_and_forgeries_are_dropped(redis_server: RedisServer) -> None:
    """With a bus key the channel carries no plaintext; a forged frame is dropped and counted."""
    prefix = "t" + secrets.token_hex(4)
    broker, inbox = redis_broker(redis_server, prefix, sealer=Sealer(KEY)), Inbox()
    await broker.start(inbox)
    spy = aioredis.Redis.from_url(redis_server.url)
    pubsub = spy.pubsub()
    try:
        await broker.subscribe("r")
        await pubsub.subscribe(room_channel(prefix, "r"))
        await broker.publish("r", b"SECRET-MARKER", sequenced=True)
        assert (await inbox.wait_for(1))[0] == ("r", 1, b"SECRET-MARKER")
        async with asyncio.timeout(WAIT):
            while (
                seen := await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            ) is None:
                pass
        assert b"SECRET-MARKER" not in seen["data"]
        before = metrics.BUS_DROPPED.labels(reason="auth")._value.get()
        await spy.publish(room_channel(prefix, "r"), b"7:\x00forged in clear")
        forged = bytearray(seen["data"])
        forged[-1] ^= 1
        await spy.publish(room_channel(prefix, "r"), bytes(forged))
        await wait_until(
            lambda: metrics.BUS_DROPPED.labels(reason="auth")._value.get() == before + 2
        )
        assert len(inbox.got) == 1
    finally:
        await pubsub.aclose()
        await spy.aclose()
        await broker.aclose()


@pytest.mark.redis
async def test_rotation_reads_the_old_key(redis_server: RedisServer) -> None:
    """A worker on the new key (old key kept) reads a worker still on the old key."""
    prefix = "t" + secrets.token_hex(4)
    new_key = bytes(reversed(range(32)))
    old = redis_broker(redis_server, prefix, sealer=Sealer(KEY))
    new = redis_broker(redis_server, prefix, sealer=Sealer(new_key, KEY))
    inbox = Inbox()
    await old.start(Inbox())
    await new.start(inbox)
    try:
        await new.subscribe("r")
        await old.publish("r", b"from-old")
        await new.publish("r", b"from-new")
        got = await inbox.wait_for(2)
        assert {d for _, _, d in got} == {b"from-old", b"from-new"}
    finally:
        await old.aclose()
        await new.aclose()


@pytest.mark.redis
async def test_pubsub_connection_killed_resubscribes(redis_server: RedisServer) -> None:
    """CLIENT KILL of the pub/sub connection: the reader reconnects and delivery resumes."""
    prefix = "t" + secrets.token_hex(4)
    broker, inbox = redis_broker(redis_server, prefix, health_interval=0.2), Inbox()
    await broker.start(inbox)
    try:
        await broker.subscribe("r")
        redis_server.cli("CLIENT", "KILL", "TYPE", "pubsub")
        await wait_until(lambda: not broker.ready, timeout=WAIT)
        await wait_until(lambda: broker.ready, timeout=WAIT)
        await broker.publish("r", b"after", sequenced=True)
        assert (await inbox.wait_for(1))[-1][2] == b"after"
    finally:
        await broker.aclose()


@pytest.mark.redis
async def test_redis_down_then_up(own_redis: RedisServer) -> None:
    """Down: not ready and publish raises BrokerUnavailable. Up again: ready by itself."""
    prefix = "t" + secrets.token_hex(4)
    own_redis.kill()
    broker, inbox = redis_broker(own_redis, prefix, health_interval=0.2), Inbox()
    await broker.start(inbox, wait=0.2)  # must not fail with Redis down
    try:
        assert not broker.ready
        with pytest.raises(BrokerUnavailable):
            await broker.publish("r", b"x", sequenced=True)
        with pytest.raises(BrokerUnavailable):
            await broker.subscribe("r")
        own_redis.start()
        await wait_until(lambda: broker.ready, timeout=3 * WAIT)
        await broker.subscribe("r")
        own_redis.kill()
        await wait_until(lambda: not broker.ready)
        with pytest.raises(BrokerUnavailable):
            await broker.publish("r", b"x", sequenced=True)
        own_redis.start()
        await wait_until(lambda: broker.ready, timeout=3 * WAIT)
        # Re-subscribed by itself after the reconnect.
        await broker.publish("r", b"back", sequenced=True)
        assert (await inbox.wait_for(1))[-1][2] == b"back"
    finally:
        await broker.aclose()


class FreezingProxy:
    """A TCP proxy whose open connections can go silent (a dead peer that sends no FIN/RST),
    while new connections still work: the silent-partition trap."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.frozen = False
        self.generation = 0
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def freeze(self) -> None:
        """Open connections stop carrying bytes, in both directions, without closing."""
        self.generation += 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        born = self.generation
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while chunk := await src.read(65536):
                if self.generation != born:
                    await asyncio.sleep(3600)  # swallow: the peer hears nothing, ever
                dst.write(chunk)
                await dst.drain()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except ConnectionError:
            return  # one side hung up: so does the proxy
        finally:
            writer.close()
            up_writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks)


@pytest.mark.redis
async def test_silent_partition_is_noticed_by_the_health_probe(
    redis_server: RedisServer,
) -> None:
    """A pub/sub connection that goes silent (no FIN, no RST) is noticed by the health probe
    within seconds: not ready meanwhile, then reconnected and delivering again."""
    proxy = FreezingProxy(redis_server.port)
    port = await proxy.start()
    prefix = "t" + secrets.token_hex(4)
    broker = RedisBroker(
        RedisSpace(connect(f"redis://127.0.0.1:{port}/0"), prefix, Sealer(None), 60),
        health_interval=0.2,
        health_timeout=1.0,
    )
    inbox = Inbox()
    await broker.start(inbox)
    try:
        await broker.subscribe("r")
        assert broker.ready
        proxy.freeze()
        await wait_until(lambda: not broker.ready, timeout=3.0)
        with pytest.raises(BrokerUnavailable):
            await broker.publish("r", b"x", sequenced=True)
        await wait_until(lambda: broker.ready, timeout=3 * WAIT)
        async with asyncio.timeout(3 * WAIT):
            while True:  # the pool may still hand out a frozen command connection once
                try:
                    await broker.publish("r", b"after", sequenced=True)
                    break
                except BrokerUnavailable:
                    await asyncio.sleep(0.1)
        assert (await inbox.wait_for(1))[-1][2] == b"after"
    finally:
        await broker.aclose()
        await proxy.close()
