"""What Redis gets to see: no history in a Redis that writes to disk, and with a bus key no
names or text in MONITOR or in a dump of every key."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from chat.settings import bus_key
from tests.conftest import running
from tests.redis_server import RedisServer, monitor, own_redis, redis_server, running_redis
from tests.timing import scaled, wait_until
from tests.workers import worker_settings, workers

__all__ = ["own_redis", "redis_server"]  # fixture, imported for pytest

pytestmark = pytest.mark.redis
DOCS = Path(__file__).resolve().parents[1] / "docs" / "scaling.md"
KEY_HEX = bytes(range(32)).hex()
MARKER_TEXT = "MARKERTEXT-quokka-7731"
MARKER_NAME = "Zyzzyva"
MARKER_TITLE = "MarkerTitle-Wombat"


async def all_values(url: str, prefix: str) -> dict[bytes, bytes]:
    """DUMP every key under the prefix: what a snapshot of Redis would hold."""
    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        return {k: (await client.dump(k)) or b"" for k in keys}
    finally:
        await client.aclose()


async def test_persisting_redis_keeps_history_in_worker_memory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Redis with RDB snapshots on: no history key and no text in Redis, the log says so at
    start, and each worker's memory follows the bus (messages said and deleted elsewhere)."""
    caplog.set_level(logging.INFO)
    with running_redis(persistent=True) as server:
        async with workers(server.url) as (a, b):
            assert "history is kept in worker memory" in caplog.text
            room = await a.room()
            alice = await a.client()
            await alice.join(room["room"], name="Alice")
            fac = await b.client()
            await fac.join(room["room"], name="Guide", key=room["facilitator_key"])
            kept = await fac.request({"t": "say", "text": MARKER_TEXT})
            gone = await fac.request({"t": "say", "text": "to be deleted"})
            assert kept["t"] == gone["t"] == "ack"
            await alice.next("msg", seq=gone["seq"])
            assert (await fac.request({"t": "delete", "mid": gone["mid"]}))["t"] == "ack"
            await alice.next("deleted")
            values = await all_values(server.url, a.settings.redis_prefix)
            assert values, "the room should be in Redis"
            assert not [k for k in values if k.endswith(b":history")]
            assert not any(MARKER_TEXT.encode() in v for v in values.values())
            # Worker A serves what was said on B from its own memory, without the deleted one.
            await alice.ws.close()
            again = await a.client()
            welcome = await again.join(
                room["room"], resume=alice.welcome["resume"], since=kept["seq"] - 1
            )
            assert [m["text"] for m in welcome["history"]] == [MARKER_TEXT]
            await again.close()
            await fac.close()


async def test_non_persisting_redis_keeps_history(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis that keeps nothing on disk holds the history, and the log says so."""
    caplog.set_level(logging.INFO)
    async with workers(redis_server.url) as (a, _):
        assert "history is kept in redis memory" in caplog.text
        assert "bus in clear" in caplog.text
        room = await a.room()
        alice = await a.client()
        await alice.join(room["room"], name="Alice")
        await alice.request({"t": "say", "text": "kept"})
        prefix = a.settings.redis_prefix
        values = await all_values(redis_server.url, prefix)
        assert [k for k in values if k.endswith(b":history")]
        await alice.close()


async def test_bus_key_hides_names_and_text(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """With a bus key, neither MONITOR nor a dump of every key shows a name, title or text."""
    caplog.set_level(logging.INFO)
    key = bus_key(KEY_HEX)
    async with (
        workers(redis_server.url, bus_key=key) as (a, b),
        monitor(redis_server) as seen,
    ):
        assert "bus encrypted" in caplog.text
        room = await a.room(title=MARKER_TITLE)
        fac = await b.client()
        await fac.join(room["room"], name="Guide", key=room["facilitator_key"])
        alice = await a.client()
        await alice.join(room["room"], name=MARKER_NAME)
        ack = await alice.request({"t": "say", "text": MARKER_TEXT})
        assert ack["t"] == "ack"
        got = await fac.next("msg")
        assert got["text"] == MARKER_TEXT and got["name"] == MARKER_NAME
        await fac.request({"t": "report", "mid": got["mid"], "reason": MARKER_TEXT})
        await fac.request({"t": "whisper", "to": alice.pid, "text": MARKER_TEXT})
        values = await all_values(redis_server.url, a.settings.redis_prefix)
        await alice.close()
        await fac.close()
    assert len(seen) > 1000, "MONITOR should have seen the conversation"
    for marker in (MARKER_TEXT, MARKER_NAME, MARKER_TITLE):
        assert marker.encode() not in seen
        assert not any(marker.encode() in v for v in values.values())


async def test_documented_acl_user_is_enough(own_redis: RedisServer) -> None:
    """The ACL line in docs/scaling.md lets two workers chat, and nothing outside the prefix."""
    line = re.search(r"^ACL SETUSER .*$", DOCS.read_text(), re.MULTILINE)
    assert line is not None
    assert own_redis.cli(*line.group(0).split()).startswith("+OK")
    url = f"redis://hearth:CHANGE-ME-long-random@127.0.0.1:{own_redis.port}/0"
    async with (
        running(worker_settings(url, "hearth")) as a,
        running(worker_settings(url, "hearth")) as b,
    ):
        room = await a.room()
        alice, bob = await a.client(), await b.client()
        await alice.join(room["room"], name="Alice")
        await bob.join(room["room"], name="Bob")
        ack = await alice.request({"t": "say", "text": "through the acl"})
        assert ack["t"] == "ack"
        assert (await bob.next("msg"))["seq"] == ack["seq"]
        await alice.close()
        await bob.close()
    client = aioredis.Redis.from_url(url)
    try:
        with pytest.raises(aioredis.ResponseError):
            await client.set("other:key", "x")
    finally:
        await client.aclose()


async def test_a_worker_that_stopped_hearing_a_room_forgets_its_history() -> None:
    """Persisting Redis: a message deleted while worker B had nobody in the room never comes
    back in a later welcome from B (B's stale memory of the room is dropped)."""
    with running_redis(persistent=True) as server:
        async with workers(server.url) as (a, b):
            room = await a.room(settings={"history": "recent"})
            fac = await a.client()
            await fac.join(room["room"], name="Guide", key=room["facilitator_key"])
            speaker = await b.client()
            await speaker.join(room["room"], name="Speaker")
            said = await speaker.request({"t": "say", "text": "please delete me"})
            await fac.next("msg", seq=said["seq"])
            await speaker.send({"t": "leave"})
            await speaker.closed()  # B has nobody in the room now
            # B lets the room go shortly after: only A still subscribes to its channel.
            spy = aioredis.Redis.from_url(server.url)
            channel = f"{b.settings.redis_prefix}:{{{room['room']}}}:bus"

            async def only_a_hears() -> bool:
                return int((await spy.pubsub_numsub(channel))[0][1]) == 1

            try:
                await wait_until(only_a_hears, what="worker B let the room go")
            finally:
                await spy.aclose()
            assert (await fac.request({"t": "delete", "mid": said["mid"]}))["t"] == "ack"
            newcomer = await b.client()
            welcome = await newcomer.join(room["room"], name="Newcomer")
            assert "please delete me" not in [m["text"] for m in welcome["history"]]
            await newcomer.close()
            await fac.close()


async def test_a_closed_room_is_not_heard_on_when_redis_persists() -> None:
    """Persisting Redis (history in worker memory): after a mere leave a worker keeps hearing
    the room for the resume grace, so that its history stays whole for a member who comes
    back; after a close nobody comes back, so every worker stops at once, the one that had
    been lingering too (§12: never linger after a close). A join that found no room does not
    linger either."""
    with running_redis(persistent=True) as server:
        async with workers(server.url, resume_grace=60) as (a, b):
            room = await a.room()
            spy = aioredis.Redis.from_url(server.url)

            def channel(room_id: str) -> str:
                return f"{a.settings.redis_prefix}:{{{room_id}}}:bus"

            async def subscribers(room_id: str = room["room"]) -> int:
                return int((await spy.pubsub_numsub(channel(room_id)))[0][1])

            async def none() -> bool:
                return await subscribers() == 0

            try:
                fac = await a.client()
                await fac.join(room["room"], name="Guide", key=room["facilitator_key"])
                member = await b.client()
                await member.join(room["room"], name="Member")
                assert await subscribers() == 2
                assert (await member.request({"t": "leave"}))["t"] == "ack"
                # A window in which nothing may change: B lingers for the 60 s grace.
                await asyncio.sleep(scaled(2.5))
                assert await subscribers() == 2
                await fac.send({"t": "close"})
                assert await fac.closed() == 4010
                await wait_until(none, scaled(5), "no subscriber after the room closed")
                missing = await b.client()
                assert (await missing.join("no-such-room-here"))["code"] == "not_found"

                async def nobody_on_the_missing_room() -> bool:
                    return await subscribers("no-such-room-here") == 0

                await wait_until(nobody_on_the_missing_room, scaled(5), "no linger on no room")
            finally:
                await spy.aclose()
