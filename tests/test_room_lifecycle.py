"""How rooms end by time and how many there may be (protocol §3, §11): --max-rooms,
--room-unused, the idle timeout, and history dropped by age even when nobody reads it."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis

from chat.backend.memory import MemoryBackend
from chat.buscrypt import Sealer
from chat.ops import HeldAdd, HeldDrop, MemberAdd, Refused, RoomSet
from chat.redis.backend import STREAM_MS, RedisBackend
from chat.redis.client import RedisSpace
from chat.redis.scripts import END_LATE_MS
from chat.roomstate import RoomState
from tests.conftest import Server
from tests.redis_server import RedisServer, redis_server, running_redis
from tests.test_backend import Inbox, commit, member, new_room, now_ms, redis_backend, say
from tests.timing import WAIT, scaled, wait_until
from tests.workers import workers

__all__ = ["redis_server"]  # fixture, imported for pytest

SLACK_MS = int(scaled(0.5) * 1000)  # a command's way from the test's clock to Redis, at most


async def ended(server: Server, room: dict[str, str]) -> bool:
    return await server.status(f"/api/rooms/{room['room']}") == 404


async def test_max_rooms_answers_503(start_server) -> None:
    """A deployment holds at most --max-rooms live rooms; then creation answers 503."""
    server = await start_server(max_rooms=2, room_create_rate=100)
    await server.room()
    await server.room()
    async with httpx.AsyncClient(base_url=server.http) as http:
        refused = await http.post("/api/rooms", json={})
    assert refused.status_code == 503
    assert refused.json()["error"] == "unavailable" and "retry-after" in refused.headers


@pytest.mark.redis
async def test_max_rooms_counts_every_worker(redis_server: RedisServer) -> None:
    """With Redis the bound is the deployment's, whichever worker a request reaches."""
    async with workers(redis_server.url, max_rooms=3, room_create_rate=100) as (a, b):
        await a.room()
        await b.room()
        await a.room()
        async with httpx.AsyncClient() as http:
            for base in (a.http, b.http):
                assert (await http.post(f"{base}/api/rooms", json={})).status_code == 503


async def test_a_room_nobody_joined_ends_after_room_unused(start_server) -> None:
    """--room-unused: a room never joined ends; one that was joined lives on."""
    server = await start_server(room_unused=0.5, room_idle=60)
    unused, used = await server.room(), await server.room()
    member = await server.client()
    await member.join(used["room"])
    await wait_until(lambda: ended(server, unused), what="the unused room ended")
    assert await server.status(f"/api/rooms/{used['room']}") == 200


@pytest.mark.redis
async def test_a_room_nobody_joined_expires_in_redis(redis_server: RedisServer) -> None:
    """With Redis, an unused room's keys live for --room-unused, not the idle timeout."""
    async with workers(redis_server.url, room_unused=1.0, room_idle=60) as (a, _):
        room = await a.room()
        assert not await ended(a, room)
        await wait_until(lambda: ended(a, room), what="the unused room's keys expired")


async def test_memory_history_is_dropped_by_age_unread() -> None:
    """The embedded backend drops history past its age on its sweep, read or not."""
    backend = MemoryBackend(history_messages=10, history_seconds=0.3, room_idle=60)
    await backend.start(Inbox(), lambda: None)
    room = new_room()
    await backend.create_room(room)
    await say(backend, room.id, "f", "soon gone", guarded=False)
    await asyncio.sleep(0.4)  # wall-clock time must pass: history is kept for 0.3 s
    await backend.sweep(int(time.time() * 1000))
    assert not backend._history._rooms  # dropped from memory, not just hidden on read


@pytest.mark.redis
async def test_redis_history_is_dropped_by_age_unread(redis_server: RedisServer) -> None:
    """In Redis the heartbeat drops history and stream entries past their age, read or not."""
    prefix = "t" + secrets.token_hex(4)
    backend = redis_backend(redis_server, prefix, history_seconds=0.3)
    await backend.start(Inbox(), lambda: None)
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        room = new_room()
        await backend.create_room(room)
        await say(backend, room.id, "f", "soon gone", guarded=False)
        key = f"{prefix}:{{{room.id}}}:history"
        assert await client.zcard(key) == 1
        await asyncio.sleep(0.4)  # wall-clock time must pass: history is kept for 0.3 s
        await backend.vouch(room.id, [])
        assert await client.zcard(key) == 0
    finally:
        await client.aclose()
        await backend.aclose()


@pytest.mark.redis
async def test_redis_history_expires_by_age_with_nobody_there(redis_server: RedisServer) -> None:
    """History past --history-seconds goes from Redis though no worker holds the room to trim
    it (no heartbeat): its key expires at the age bound, and a later commit that is no message
    (or a heartbeat) does not give it the idle timeout back. The stream lives by its own bound
    (STREAM_MS), the room itself by the idle timeout (60 s here)."""
    prefix = "t" + secrets.token_hex(4)
    backend = redis_backend(redis_server, prefix, history_seconds=0.3)
    await backend.start(Inbox(), lambda: None)
    client = aioredis.Redis.from_url(redis_server.url)
    room = new_room()
    history, stream = f"{prefix}:{{{room.id}}}:history", f"{prefix}:{{{room.id}}}:stream"

    async def gone() -> bool:
        return not await client.exists(history)

    try:
        await backend.create_room(room)
        await say(backend, room.id, "f", "soon gone", guarded=False)
        assert 0 < await client.pttl(history) <= 300
        assert 0 < await client.pttl(stream) <= STREAM_MS
        await commit(backend, room.id, MemberAdd(member("p1")))  # not a message
        assert 0 < await client.pttl(history) <= 300
        await backend.vouch(room.id, ["p1"])
        assert 0 < await client.pttl(history) <= 300
        assert 0 < await client.pttl(stream) <= STREAM_MS
        await wait_until(gone, scaled(0.3) + WAIT, "the history key expired")
        assert await client.pttl(f"{prefix}:{{{room.id}}}:room") > 50_000
        assert await backend.history(room.id, 0) == []
    finally:
        await client.aclose()
        await backend.aclose()


@pytest.mark.redis
async def test_worker_memory_history_is_dropped_by_age_on_the_sweep() -> None:
    """With a persisting Redis (history in worker memory) the sweep drops what is past its
    age, in every room, read or not."""
    with running_redis(persistent=True) as server:
        prefix = "t" + secrets.token_hex(4)
        inbox = Inbox()
        backend = redis_backend(server, prefix, history_seconds=0.3)
        await backend.start(inbox, lambda: None)
        try:
            room = new_room()
            await backend.create_room(room)
            await backend.subscribe(room.id)
            await say(backend, room.id, "f", "soon gone", guarded=False)
            await inbox.wait_for(1)
            assert len(await backend.history(room.id, 0)) == 1  # kept here, not in Redis
            assert backend._history.local._rooms
            await asyncio.sleep(0.4)  # wall-clock time must pass: history is kept for 0.3 s
            await backend.sweep(int(time.time() * 1000))
            assert not backend._history.local._rooms  # dropped from memory, not just hidden on read
        finally:
            await backend.aclose()


@pytest.mark.parametrize("on_redis", [False, pytest.param(True, marks=pytest.mark.redis)])
async def test_a_room_planned_for_later_is_not_unused_before_it_opens(
    start_server, request: pytest.FixtureRequest, on_redis: bool
) -> None:
    """--room-unused counts from a room's opening (§13), not from its creation."""
    overrides: dict[str, object] = {"room_unused": 0.5, "room_idle": 60}
    if on_redis:
        server_redis: RedisServer = request.getfixturevalue("redis_server")
        overrides.update(redis_url=server_redis.url, redis_prefix="t" + secrets.token_hex(4))
    server = await start_server(**overrides)
    later = int(time.time() * 1000) + 3_600_000
    planned = await server.room(settings={"opens_at": later})
    unplanned = await server.room()
    await wait_until(lambda: ended(server, unplanned), what="the unplanned room ended")
    assert not await ended(server, planned)


@pytest.mark.redis
async def test_redis_keys_live_no_longer_than_the_room_end(redis_server: RedisServer) -> None:
    """In Redis every key of a room with an end time expires END_LATE_MS after it at the
    latest (§13): from its creation, through commits and the heartbeat (which would otherwise
    give them the idle timeout, 60 s here), and an ``extend`` moves that bound with it. The
    index of live rooms (--max-rooms) frees its place then too."""
    prefix = "t" + secrets.token_hex(4)
    backend = redis_backend(redis_server, prefix)
    await backend.start(Inbox(), lambda: None)
    client = aioredis.Redis.from_url(redis_server.url)
    room = new_room()
    ends = now_ms() + 20_000
    room.ends_at = ends
    keys = RedisSpace(client, prefix, Sealer(None), 60).keys(room.id)

    async def expiries() -> dict[str, int]:
        """Each existing key's expiry time (ms). The scripts set the time left by the worker's
        clock, so Redis's own reading of it may come later by a command's way there."""
        found = {k: int(await client.execute_command("PEXPIRETIME", k)) for k in keys}
        return {k.rsplit(":", 1)[1]: at for k, at in found.items() if at != -2}

    def at_end(at: int, end: int) -> bool:
        return end <= at <= end + SLACK_MS

    try:
        await backend.create_room(room)
        created = await expiries()
        assert set(created) == {"room", "ctr"}
        assert all(at_end(at, ends + END_LATE_MS) for at in created.values()), created
        await commit(backend, room.id, MemberAdd(member("p1")))
        await say(backend, room.id, "p1", "before the end")
        await backend.vouch(room.id, ["p1"])
        kept = await expiries()
        assert {"room", "members", "fields", "ctr", "history", "alive"} <= set(kept)
        assert all(0 < at <= ends + END_LATE_MS + SLACK_MS for at in kept.values()), kept
        assert at_end(kept["room"], ends + END_LATE_MS)
        assert at_end(kept["members"], ends + END_LATE_MS)
        assert await client.zscore(f"{prefix}:rooms", room.id) == ends + END_LATE_MS
        later = ends + 20_000  # extend: the bound moves with the end (still short of 60 s)
        await commit(backend, room.id, RoomSet({"ends_at": later}, {"ends_at": ends}))
        moved = await expiries()
        assert at_end(moved["room"], later + END_LATE_MS)
        assert at_end(moved["members"], later + END_LATE_MS)
        assert all(at <= later + END_LATE_MS + SLACK_MS for at in moved.values()), moved
        # A room with no end keeps the idle timeout.
        plain = new_room("room2")
        await backend.create_room(plain)
        await commit(backend, plain.id, MemberAdd(member("p1")))
        idle = int(await client.pttl(f"{prefix}:{{room2}}:members"))
        assert 55_000 < idle <= 60_000
    finally:
        await client.aclose()
        await backend.aclose()


@contextlib.asynccontextmanager
async def _held_room(
    redis_server: RedisServer, history_seconds: float
) -> AsyncIterator[tuple[RedisBackend, aioredis.Redis, RoomState, str]]:
    """A started Redis backend with one new room, a plain client on the same server, and the
    name of the room's held-messages key."""
    prefix = "t" + secrets.token_hex(4)
    backend = redis_backend(redis_server, prefix, history_seconds=history_seconds)
    await backend.start(Inbox(), lambda: None)
    client = aioredis.Redis.from_url(redis_server.url)
    room = new_room()
    try:
        await backend.create_room(room)
        yield backend, client, room, f"{prefix}:{{{room.id}}}:held"
    finally:
        await client.aclose()
        await backend.aclose()


def _held(mid: str, ts: int) -> HeldAdd:
    return HeldAdd({"mid": mid, "pid": "p1", "name": "N", "text": "held " + mid, "ts": ts})


async def test_memory_held_messages_are_dropped_by_age_unread() -> None:
    """The embedded store drops held messages past the history's age on its sweep, though
    nothing else is held (§14), and a release of one then finds nothing."""
    backend = MemoryBackend(history_messages=10, history_seconds=0.3, room_idle=60)
    await backend.start(Inbox(), lambda: None)
    room = new_room()
    await backend.create_room(room)
    await commit(backend, room.id, _held("h1", now_ms()))
    assert list((await backend.snapshot(room.id) or room).held) == ["h1"]
    await asyncio.sleep(0.4)  # wall-clock time must pass: held text is kept for 0.3 s
    await backend.sweep(now_ms())
    assert (await backend.snapshot(room.id) or room).held == {}
    with pytest.raises(Refused) as refused:
        await commit(backend, room.id, HeldDrop("h1"))
    assert refused.value.reason == "nomsg"


@pytest.mark.redis
async def test_redis_held_messages_go_by_age_in_commit_and_heartbeat(
    redis_server: RedisServer,
) -> None:
    """In Redis a commit drops held messages past the history's age, the held key expires
    with its newest message's age bound (not the idle timeout, however often the heartbeat or
    a commit renews the room) and the heartbeat drops what is past it; a release of one that
    went is refused (§14)."""
    async with _held_room(redis_server, history_seconds=0.3) as (backend, client, room, held):
        await commit(backend, room.id, MemberAdd(member("p1")))
        await commit(backend, room.id, _held("old", now_ms() - 1_000))
        assert not await client.exists(held)  # past the age already: not kept
        await commit(backend, room.id, _held("h1", now_ms()))
        assert await client.hkeys(held) == [b"h1"]
        assert 0 < await client.pttl(held) <= 300
        await commit(backend, room.id, RoomSet({"slow": 5}))  # not a message: renews the room
        await backend.vouch(room.id, ["p1"])
        assert 0 < await client.pttl(held) <= 300
        await client.persist(held)  # as if its expiry had not come yet: the heartbeat trims
        await asyncio.sleep(0.4)  # wall-clock time must pass: held text is kept for 0.3 s
        await backend.vouch(room.id, ["p1"])
        assert not await client.exists(held)
        await client.hset(held, "h2", f"{now_ms() - 1_000}:x")  # missed by every heartbeat
        with pytest.raises(Refused) as refused:
            await commit(backend, room.id, HeldDrop("h2"))
        assert refused.value.reason == "nomsg"
        assert not await client.exists(held)


@pytest.mark.redis
async def test_a_restored_room_keeps_held_messages_no_longer_than_their_age(
    redis_server: RedisServer,
) -> None:
    """A restore after Redis lost the room writes back the held messages a worker kept, but
    only those within the history's age, and their key expires with the newest's age bound,
    not the idle timeout (§14)."""
    async with _held_room(redis_server, history_seconds=0.5) as (backend, client, room, held):
        await commit(backend, room.id, MemberAdd(member("p1")), _held("h1", now_ms()))
        replica = await backend.snapshot(room.id)
        assert replica is not None and list(replica.held) == ["h1"]
        replica.held["old"] = {**replica.held["h1"], "mid": "old", "ts": now_ms() - 1_000}
        redis_server.cli("FLUSHALL")
        assert await backend.restore(replica)
        assert await client.hkeys(held) == [b"h1"]
        assert 0 < await client.pttl(held) <= 500
        back = await backend.snapshot(room.id)
        assert back is not None and back.held == {"h1": replica.held["h1"]}
