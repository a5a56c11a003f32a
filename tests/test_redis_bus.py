"""The Redis backend's own behaviour: pipelined commits, a sealed bus, key rotation, TTLs,
presence, and what a lost, killed, frozen or restarted Redis connection does."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
import redis.asyncio as aioredis

from chat import metrics
from chat.buscrypt import Sealer
from chat.errors import Unavailable
from chat.ops import MemberAdd, MemberDrop, Refused, RoomSet
from chat.redis.backend import RedisBackend
from chat.redis.client import RedisSpace, connect, room_key
from tests.redis_server import RedisServer, monitor, own_redis, redis_server
from tests.test_backend import KEY, Inbox, commit, member, new_room, now_ms, redis_backend, say
from tests.timing import WAIT, scaled, wait_until

__all__ = ["own_redis", "redis_server"]  # fixtures, imported for pytest

pytestmark = pytest.mark.redis


async def started(backend: RedisBackend, inbox: Inbox | None = None, **kwargs: Any) -> Inbox:
    inbox = inbox or Inbox()
    await backend.start(inbox, kwargs.pop("reconnected", lambda: None))
    return inbox


async def test_commands_are_written_without_a_socket_timeout(redis_server: RedisServer) -> None:
    """Our callers bound every command with asyncio.timeout; a socket_timeout would also send
    each write through asyncio.wait_for, a task per command on Python 3.11 that can lose a
    cancellation, and redis-py 8 sets one (5 s) unless told None."""
    client = connect(redis_server.url)
    try:
        conn = client.connection_pool.make_connection()
        assert conn.socket_timeout is None
        assert conn.socket_connect_timeout  # connecting stays bounded
    finally:
        await client.aclose(close_connection_pool=True)


async def test_commits_of_one_turn_share_one_pipeline(redis_server: RedisServer) -> None:
    """Commits made together go out as one pipeline, in order; a flushed script reloads."""
    backend = redis_backend(redis_server, "t" + secrets.token_hex(4))
    inbox = await started(backend)
    try:
        room = new_room()
        await backend.create_room(room)
        await backend.subscribe(room.id)
        await say(backend, room.id, "f", "warm", guarded=False)  # a connection, the script
        async with monitor(redis_server) as seen:
            seqs = await asyncio.gather(
                *(say(backend, room.id, "f", f"m{i}", guarded=False) for i in range(20))
            )
        assert seqs == list(range(2, 22))  # Redis ran them in the order they were made
        senders = {  # "<time> [<db> <client address>] <command>": the address
            bytes(line.split(b"[", 1)[1].split(b"]", 1)[0])
            for line in seen.splitlines()
            if b'"EVALSHA"' in line.upper() and b" lua]" not in line
        }
        assert len(senders) == 1  # one connection, one write: not twenty
        await inbox.wait_for(21)
        admin = aioredis.Redis.from_url(redis_server.url)
        try:
            await admin.script_flush()
        finally:
            await admin.aclose()
        assert await asyncio.gather(
            say(backend, room.id, "f", "x", guarded=False),
            say(backend, room.id, "f", "y", guarded=False),
        ) == [22, 23]
    finally:
        await backend.aclose()


async def test_bus_and_store_are_sealed_and_forgeries_dropped(redis_server: RedisServer) -> None:
    """With a bus key neither the channel nor any key holds a name or text in clear; a forged
    frame is dropped and counted."""
    prefix = "t" + secrets.token_hex(4)
    backend = redis_backend(redis_server, prefix)
    inbox = await started(backend)
    spy = aioredis.Redis.from_url(redis_server.url)
    pubsub = spy.pubsub()
    room = new_room()
    channel = room_key(prefix, room.id, "bus")
    try:
        await backend.create_room(room)
        await backend.subscribe(room.id)
        await pubsub.subscribe(channel)
        someone = member("p1")
        someone.name = "NAME-MARKER"
        await commit(backend, room.id, MemberAdd(someone))
        await say(backend, room.id, "p1", "SECRET-MARKER")
        await inbox.wait_for(2)
        frames = []
        async with asyncio.timeout(WAIT):
            while len(frames) < 2:
                got = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if got is not None:
                    frames.append(got["data"])
        dump = b"".join(frames)
        for key in await spy.keys(f"{prefix}:*"):
            kind = await spy.type(key)
            if kind == b"hash":
                dump += b"".join(k + v for k, v in (await spy.hgetall(key)).items())
            elif kind == b"zset":
                dump += b"".join(await spy.zrange(key, 0, -1))
        for marker in (b"SECRET-MARKER", b"NAME-MARKER", b"Tuesday", b"Be kind"):
            assert marker not in dump
        before = metrics.BUS_DROPPED.labels(reason="auth")._value.get()
        await spy.publish(channel, b"1:3:0:\x00forged in clear")
        forged = bytearray(frames[-1])
        forged[-1] ^= 1
        await spy.publish(channel, bytes(forged))
        await wait_until(
            lambda: metrics.BUS_DROPPED.labels(reason="auth")._value.get() == before + 2
        )
        assert len(inbox.got) == 2
    finally:
        await pubsub.aclose()
        await spy.aclose()
        await backend.aclose()


async def test_rotation_reads_the_old_key(redis_server: RedisServer) -> None:
    """A worker on the new key (old key kept) reads what a worker still on the old key wrote."""
    prefix = "t" + secrets.token_hex(4)
    old = redis_backend(redis_server, prefix, sealer=Sealer(KEY))
    new = redis_backend(redis_server, prefix, sealer=Sealer(bytes(reversed(KEY)), KEY))
    await started(old)
    inbox = await started(new)
    try:
        room = new_room()
        await old.create_room(room)
        await new.subscribe(room.id)
        await say(old, room.id, "f", "from-old", guarded=False)
        await say(new, room.id, "f", "from-new", guarded=False)
        assert len(await inbox.wait_for(2)) == 2
        state = await new.snapshot(room.id)
        assert state is not None and state.title == "Tuesday"
    finally:
        await old.aclose()
        await new.aclose()


async def test_every_key_expires_with_the_room(redis_server: RedisServer) -> None:
    """Every key a room uses carries the idle TTL, and a heartbeat renews it."""
    prefix = "t" + secrets.token_hex(4)
    backend = redis_backend(redis_server, prefix)
    await started(backend)
    client = connect(redis_server.url)
    try:
        room = new_room()
        await backend.create_room(room)
        await commit(backend, room.id, MemberAdd(member("p1")))
        await say(backend, room.id, "p1", "hi")
        await backend.vouch(room.id, ["p1"])
        keys = [k async for k in client.scan_iter(match=room_key(prefix, "*", "*"))]
        assert len(keys) >= 8
        for key in keys:
            ttl = await client.pttl(key)
            assert 0 < ttl <= 60_000, key
    finally:
        await client.aclose()
        await backend.aclose()


async def test_lapsed_members_are_dropped_once(redis_server: RedisServer) -> None:
    """Two workers sweeping at once: a member nobody vouched for goes, once; one vouched for
    stays, and its name is free again only when it goes."""
    prefix = "t" + secrets.token_hex(4)
    a, b = redis_backend(redis_server, prefix), redis_backend(redis_server, prefix)
    await started(a)
    await started(b)
    try:
        room = new_room()
        await a.create_room(room)
        await commit(a, room.id, MemberAdd(member("gone")), MemberAdd(member("here")))
        await asyncio.sleep(0.05)  # wall-clock time must pass: "gone" is older than the cutoff
        await b.vouch(room.id, ["here"])
        cutoff = now_ms() - 20
        assert await a.vouch(room.id, [], cutoff) == ["gone"]
        results = await asyncio.gather(
            commit(a, room.id, MemberDrop("gone", "expired", lapsed_before=cutoff)),
            commit(b, room.id, MemberDrop("gone", "expired", lapsed_before=cutoff)),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["Refused", "int"]
        with pytest.raises(Refused) as refused:
            await commit(a, room.id, MemberDrop("here", "expired", lapsed_before=cutoff))
        assert refused.value.reason == "lapsed"
        state = await b.snapshot(room.id)
        assert state is not None and list(state.members) == ["here"]
    finally:
        await a.aclose()
        await b.aclose()


async def test_pubsub_connection_killed_reconnects_and_says_so(redis_server: RedisServer) -> None:
    """CLIENT KILL TYPE pubsub: not ready, then ready again by itself; the hub is told, so that
    it can read back what its rooms missed; delivery resumes."""
    backend = redis_backend(redis_server, "t" + secrets.token_hex(4))
    told: list[int] = []
    inbox = await started(backend, reconnected=lambda: told.append(1))
    try:
        room = new_room()
        await backend.create_room(room)
        await backend.subscribe(room.id)
        redis_server.cli("CLIENT", "KILL", "TYPE", "pubsub")
        await wait_until(lambda: not backend.ready)
        with pytest.raises(Unavailable):  # fails fast while it would not hear the room
            await commit(backend, room.id, RoomSet({"slow": 1}))
        await wait_until(lambda: backend.ready)
        assert told == [1]
        await commit(backend, room.id, RoomSet({"slow": 2}))
        assert (await inbox.wait_for(1))[-1][1].off == 1
    finally:
        await backend.aclose()


async def test_redis_down_then_up(own_redis: RedisServer) -> None:
    """Down: not ready, and commits are unavailable. Up again: ready by itself."""
    own_redis.kill()
    backend = redis_backend(own_redis, "t" + secrets.token_hex(4))
    inbox = Inbox()
    await backend.start(inbox, lambda: None)  # must not fail with Redis down
    try:
        assert not backend.ready
        with pytest.raises(Unavailable):
            await commit(backend, "r", RoomSet({"slow": 1}))
        with pytest.raises(Unavailable):
            await backend.subscribe("r")
        own_redis.start()
        await wait_until(lambda: backend.ready, timeout=3 * WAIT)
        room = new_room()
        await backend.create_room(room)
        await backend.subscribe(room.id)
        await commit(backend, room.id, RoomSet({"slow": 1}))
        assert len(await inbox.wait_for(1)) == 1
    finally:
        await backend.aclose()


class FreezingProxy:
    """A TCP proxy whose open connections can go silent (a dead peer that sends no FIN/RST),
    while new connections still work: the silent-partition trap."""

    def __init__(self, port: int) -> None:
        self.target = port
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


async def test_silent_partition_is_noticed_by_the_health_probe(
    redis_server: RedisServer,
) -> None:
    """A pub/sub connection that goes silent (no FIN, no RST) is noticed by the health probe
    within seconds: not ready meanwhile, then reconnected and delivering again."""
    proxy = FreezingProxy(redis_server.port)
    port = await proxy.start()
    space = RedisSpace(
        connect(f"redis://127.0.0.1:{port}/0"), "t" + secrets.token_hex(4), Sealer(None), 60
    )
    backend = RedisBackend(space, history_messages=10, history_seconds=60)
    inbox = await started(backend)
    try:
        room = new_room()
        await backend.create_room(room)
        await backend.subscribe(room.id)
        assert backend.ready
        proxy.freeze()
        await wait_until(lambda: not backend.ready, timeout=scaled(4.0))
        await wait_until(lambda: backend.ready, timeout=3 * WAIT)

        async def committed() -> bool:
            try:
                await commit(backend, room.id, RoomSet({"slow": 2}))
                return True
            except Unavailable:  # the pool may still hand out a frozen connection once
                return False

        await wait_until(committed, 3 * WAIT, "a commit through a fresh connection")
        assert (await inbox.wait_for(1))[-1][1].off >= 1
    finally:
        await backend.aclose()
        await proxy.close()
