"""Two real servers (two workers) on one private Redis, with real WebSocket clients on both.

A participant on worker A and a facilitator on worker B must not be able to tell that they are
on different processes: one seq order, one member list, moderation that binds across, resume
across workers, and Redis failures that heal by themselves.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any

import httpx
import pytest

from tests.conftest import running
from tests.redis_server import RedisServer, monitor, own_redis, redis_server
from tests.timing import MS, WAIT, wait_until
from tests.workers import wait_ready, worker_settings, workers

__all__ = ["own_redis", "redis_server"]  # fixtures, imported for pytest

pytestmark = pytest.mark.redis
KEY = bytes(range(32))


async def test_chat_across_workers_in_one_seq_order(redis_server: RedisServer) -> None:
    """Messages said on A and on B reach everyone on both, in the same seq order."""
    async with workers(redis_server.url) as (a, b):
        room = await a.room()
        alice = await a.client()
        bob = await b.client()
        await alice.join(room["room"], name="Alice")
        await bob.join(room["room"], name="Bob")
        await alice.next("joined")
        for i in range(5):
            await alice.send({"t": "say", "text": f"a{i}"})
            await bob.send({"t": "say", "text": f"b{i}"})
        seen = []
        for client in (alice, bob):
            got = [await client.next("msg") for _ in range(10)]
            seen.append([(m["seq"], m["text"]) for m in got])
        assert seen[0] == seen[1]
        assert [s for s, _ in seen[0]] == list(range(1, 11))
        await alice.close()
        await bob.close()


async def test_presence_agrees_across_workers(redis_server: RedisServer) -> None:
    """welcome.members is the same on both workers, and ``joined`` crosses over."""
    async with workers(redis_server.url) as (a, b):
        room, fac = await b.hosted()
        alice = await a.client()
        welcome_a = await alice.join(room["room"], name="Alice")
        joined = await fac.next("joined")
        assert joined["member"]["name"] == "Alice"
        carol = await b.client()
        welcome_b = await carol.join(room["room"], name="Carol")
        names_a = {m["name"] for m in welcome_a["members"]}
        names_b = {m["name"] for m in welcome_b["members"]}
        assert names_a == {"Guide", "Alice"}
        assert names_b == {"Guide", "Alice", "Carol"}
        dup = await b.client()
        answer = await dup.join(room["room"], name="alice")
        assert answer["t"] == "error" and answer["code"] == "name_taken"
        for c in (fac, alice, carol, dup):
            await c.close()


async def test_moderation_binds_across_workers(redis_server: RedisServer) -> None:
    """Mute on A refuses say on B; lock on A refuses join on B (4005); remove on A closes 4001."""
    async with workers(redis_server.url) as (a, b):
        room, fac = await a.hosted()
        bob = await b.member(room["room"], "Bob")
        await fac.next("joined")

        assert (await fac.request({"t": "mute", "pid": bob.pid}))["t"] == "ack"
        await bob.next("muted", pid=bob.pid)
        refused = await bob.request({"t": "say", "text": "hello"})
        assert refused["t"] == "error" and refused["code"] == "muted"
        assert (await fac.request({"t": "unmute", "pid": bob.pid}))["t"] == "ack"
        await bob.next("unmuted", pid=bob.pid)
        assert (await bob.request({"t": "say", "text": "hello"}))["t"] == "ack"

        assert (await fac.request({"t": "lock"}))["t"] == "ack"
        await bob.next("room", locked=True)
        late = await b.client()
        answer = await late.join(room["room"], name="Late")
        assert answer["t"] == "error" and answer["code"] == "room_locked"
        assert await late.closed() == 4005

        assert (await fac.request({"t": "remove", "pid": bob.pid}))["t"] == "ack"
        await bob.next("removed")
        assert await bob.closed() == 4001
        await fac.next("left", pid=bob.pid)
        await fac.close()


async def test_resume_on_another_worker_replays_missed(redis_server: RedisServer) -> None:
    """Join on A, drop, resume with since on B: same pid, and the missed messages."""
    async with workers(redis_server.url) as (a, b):
        room = await a.room()
        alice = await a.client()
        welcome = await alice.join(room["room"], name="Alice")
        carol = await b.member(room["room"], "Carol")
        await alice.next("joined")
        await carol.request({"t": "say", "text": "before"})
        first = await alice.next("msg")
        await alice.ws.close()
        for text in ("missed-1", "missed-2"):
            await carol.request({"t": "say", "text": text})
        back = await b.client()
        again = await back.join(room["room"], resume=welcome["resume"], since=first["seq"])
        assert again["t"] == "welcome"
        assert again["you"]["pid"] == welcome["you"]["pid"]
        assert [m["text"] for m in again["history"]] == ["missed-1", "missed-2"]
        assert all(m["t"] != "left" for m in await carol.quiet(500 * MS))
        await back.close()
        await carol.close()


async def test_rate_and_slow_mode_follow_the_member_to_another_worker(
    redis_server: RedisServer,
) -> None:
    """Tokens spent on A are spent on B (§11): after a resume on B, whisper and report are
    rate_limited although B's connection is new; slow mode counts from the say made on A."""
    async with workers(redis_server.url, rate=0.05, burst=4) as (a, b):  # 1 token / 20 s
        room = await a.room()
        host = await b.client()
        await host.join(room["room"], key=room["facilitator_key"], name="Guide")
        mid = (await host.request({"t": "say", "text": "welcome"}))["mid"]
        first = await a.client()
        welcome = await first.join(room["room"], name="Sam")
        for request in (
            {"t": "whisper", "to": host.pid, "text": "hi"},
            {"t": "say", "text": "one"},
            {"t": "say", "text": "two"},
        ):
            assert (await first.request(request))["t"] == "ack", request
        await first.close()  # three of four member tokens, and all of A's connection's

        back = await b.client()
        assert (await back.join(room["room"], resume=welcome["resume"]))["t"] == "welcome"
        assert (await back.request({"t": "report", "mid": mid}))["t"] == "ack"  # the last one
        answer = await back.request({"t": "whisper", "to": host.pid, "text": "again"})
        assert answer["t"] == "error" and answer["code"] == "rate_limited"
        assert 1_000 < answer["retry_after"] <= 20_001
        assert (await host.request({"t": "slow", "seconds": 30}))["t"] == "ack"
        await back.next("room", slow=30)
        answer = await back.request({"t": "say", "text": "three"})
        assert answer["t"] == "error" and answer["code"] == "slow_mode"
        assert 20_000 < answer["retry_after"] <= 30_001
        await back.close()
        await host.close()


async def test_a_say_costs_one_redis_command(redis_server: RedisServer) -> None:
    """A say is one EVALSHA (guard, offset and seq, publish, stream and history together);
    another worker recalls it."""
    says = 5
    async with workers(redis_server.url) as (a, b):
        room = await a.room(settings={"history": "recent"})
        alice = await a.member(room["room"], "Alice")
        # The first run of a script on a fresh Redis is NOSCRIPT, SCRIPT LOAD, EVALSHA again.
        assert (await alice.request({"t": "say", "text": "m0"}))["t"] == "ack"
        async with monitor(redis_server) as seen:
            for i in range(1, says + 1):
                assert (await alice.request({"t": "say", "text": f"m{i}"}))["t"] == "ack"
        # What the workers sent for this room: not what scripts ran inside Redis ("[0 lua]"),
        # nor the presence heartbeat, which runs on its own clock.
        sent = [
            re.findall(r'"([^"]*)"', line)
            for line in seen.decode(errors="replace").splitlines()
            if f"{{{room['room']}}}" in line and " lua]" not in line
        ]
        heartbeat = [c for c in sent if c[0].lower() == "pexpire" or c[1].endswith(":alive")]
        commands = [c for c in sent if c not in heartbeat]
        assert [c[0].lower() for c in commands] == ["evalsha"] * says
        # The commit script gets every key of the room, in chat.redis.client.ROOM_PARTS order.
        assert all(c[3].endswith(":room") and c[13].endswith(":history") for c in commands)
        carol = await b.client()
        welcome = await carol.join(room["room"], name="Carol")
        history = welcome["history"]
        assert [m["text"] for m in history] == [f"m{i}" for i in range(says + 1)]
        assert [m["seq"] for m in history] == sorted(m["seq"] for m in history)
        assert all(m["t"] == "msg" and m["name"] == "Alice" for m in history)
        await alice.close()
        await carol.close()


async def test_redis_restart_mid_conversation(own_redis: RedisServer) -> None:
    """Redis killed: say answers unavailable and /readyz is 503; restarted: chat goes on."""
    async with workers(own_redis.url) as (a, b):
        room = await a.room()
        alice = await a.member(room["room"], "Alice")
        bob = await b.member(room["room"], "Bob")
        assert (await alice.request({"t": "say", "text": "one"}))["t"] == "ack"
        last = (await bob.next("msg"))["seq"]
        own_redis.kill()
        await wait_ready(a, 503)
        answer = await alice.request({"t": "say", "text": "lost"})
        assert answer["t"] == "error" and answer["code"] == "unavailable"
        own_redis.start()
        await wait_ready(a, 200)
        await wait_ready(b, 200)

        async def said() -> dict[str, Any] | None:
            """Ready is not restored: until a worker has written the lost room back, a say
            answers unavailable, which a client retries (§8)."""
            answer = await alice.request({"t": "say", "text": "two"})
            if answer["t"] == "error":
                assert answer["code"] == "unavailable", answer
                return None
            return answer

        ack = await wait_until(said, 3 * WAIT, "a say acked after the restart")
        assert ack["seq"] > last
        got = await bob.next("msg", seq=ack["seq"])
        assert got["text"] == "two"
        await alice.close()
        await bob.close()


async def test_redis_down_at_start(own_redis: RedisServer) -> None:
    """A worker starts with Redis down, answers 503 on /readyz, and becomes ready by itself."""
    own_redis.kill()
    settings = worker_settings(own_redis.url, "t" + secrets.token_hex(4))
    async with running(settings) as server:
        assert await server.status("/readyz") == 503
        async with httpx.AsyncClient(base_url=server.http) as http:
            refused = await http.post("/api/rooms", json={})
        assert refused.status_code == 503 and refused.json()["error"] == "unavailable"
        own_redis.start()
        await wait_ready(server, 200)
        room = await server.room()
        alice = await server.client()
        assert (await alice.join(room["room"], name="Alice"))["t"] == "welcome"
        assert (await alice.request({"t": "say", "text": "hi"}))["t"] == "ack"
        await alice.close()


async def test_a_burst_beyond_the_connection_pool_waits_its_turn(
    redis_server: RedisServer,
) -> None:
    """More simultaneous requests than pooled Redis connections: every one is acked."""
    async with workers(redis_server.url) as (a, _):
        room = await a.room()
        # From six loopback addresses: one address may hold 30 connections (§11).
        clients = [await a.client(source=f"127.0.0.{2 + i // 25}") for i in range(150)]
        for client in clients:
            await client.join(room["room"])
        answers = await asyncio.gather(
            *(c.request({"t": "say", "text": f"n{i}"}) for i, c in enumerate(clients))
        )
        assert {answer["t"] for answer in answers} == {"ack"}
        for client in clients:
            await client.close()


async def test_an_odd_bus_frame_does_not_stop_the_worker(redis_server: RedisServer) -> None:
    """A well-formed but odd envelope on a room's channel is dropped; the room goes on."""
    import msgpack
    import redis.asyncio as aioredis

    async with workers(redis_server.url) as (a, _):
        room = await a.room()
        alice = await a.member(room["room"], "Alice")
        channel = f"{a.settings.redis_prefix}:{{{room['room']}}}:bus"
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            for odd in ({"e": {"t": 5}}, {"e": {"t": "room", "slow": "x"}}, {"e": []}):
                await client.publish(channel, b"0:\x00" + msgpack.packb(odd))  # a clear frame
        finally:
            await client.aclose()
        # Alice's say goes out on the same channel after them: once it comes back, the worker
        # has read past the odd frames.
        assert await a.status("/readyz") == 200
        assert (await alice.request({"t": "say", "text": "still here"}))["t"] == "ack"
        assert (await alice.next("msg"))["text"] == "still here"
        await alice.close()
