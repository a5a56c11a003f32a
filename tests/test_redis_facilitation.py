"""Facilitation across two workers on one Redis: every action binds where the target is.

The facilitator sits on worker B, the participants on worker A (and the other way round where
it matters), so every effect has to cross the broker and the shared store.
"""

from __future__ import annotations

import pytest

from tests.client import JSON, MSGPACK, Client
from tests.conftest import Server
from tests.redis_server import RedisServer, redis_server
from tests.timing import MS, WAIT
from tests.workers import workers

__all__ = ["redis_server"]  # a fixture, imported for pytest

pytestmark = pytest.mark.redis
# A room event also carries §13's and §14's settings; in a room without them, these.
PLAIN = {"paused": False, "ends_at": None, "review": "off", "contact": "nudge"}


async def circle(a: Server, b: Server, **settings: object) -> tuple[dict, Client, Client, Client]:
    """A room with a facilitator on B and two participants on A (one per encoding)."""
    room = await a.room(settings=settings) if settings else await a.room()
    guide = await b.client(JSON)
    await guide.join(room["room"], key=room["facilitator_key"], name="Guide")
    one, two = await a.client(MSGPACK), await a.client(JSON)
    await one.join(room["room"], name="One")
    await two.join(room["room"], name="Two")
    await guide.next("joined", member={"pid": two.pid, "name": "Two", "role": "participant"})
    return room, guide, one, two


async def test_mute_expiry_and_unmute_cross_workers(redis_server: RedisServer) -> None:
    """A timed mute from B ends by itself for everyone; an unmute from B frees A's speaker."""
    async with workers(redis_server.url) as (a, b):
        _, guide, one, two = await circle(a, b)
        assert (await guide.request({"t": "mute", "pid": one.pid, "seconds": 1}))["t"] == "ack"
        assert (await two.next("muted"))["pid"] == one.pid
        assert (await one.request({"t": "say", "text": "x"}))["code"] == "muted"
        assert (await guide.next("unmuted", timeout=WAIT))["pid"] == one.pid
        assert (await two.next("unmuted"))["pid"] == one.pid
        assert (await one.request({"t": "say", "text": "free"}))["t"] == "ack"
        # A window to show: the mute's end is committed once, on one worker.
        assert [m for m in await guide.quiet(300 * MS) if m["t"] == "unmuted"] == []
        await guide.request({"t": "mute", "pid": two.pid})
        assert (await two.request({"t": "say", "text": "x"}))["until"] is None
        await guide.request({"t": "unmute", "pid": two.pid})
        await two.next("unmuted")
        assert (await two.request({"t": "say", "text": "back"}))["t"] == "ack"


async def test_muted_member_stays_muted_when_resuming_on_the_other_worker(
    redis_server: RedisServer,
) -> None:
    """A member muted on A who resumes on B is still muted there."""
    async with workers(redis_server.url) as (a, b):
        _, guide, one, _ = await circle(a, b)
        await guide.request({"t": "mute", "pid": one.pid})
        await one.next("muted")
        one.ws.transport.abort()
        again = await b.client()
        welcome = await again.join(one.welcome["room"]["id"], resume=one.welcome["resume"])
        assert welcome["you"]["pid"] == one.pid
        assert (await again.request({"t": "say", "text": "x"}))["code"] == "muted"


async def test_delete_slow_announce_cross_workers(redis_server: RedisServer) -> None:
    """delete, slow and announce from B bind on A, and the deletion reaches history."""
    async with workers(redis_server.url) as (a, b):
        room, guide, one, two = await circle(a, b, history="recent")
        ack = await one.request({"t": "say", "text": "regrettable"})
        assert (await guide.request({"t": "delete", "mid": ack["mid"]}))["t"] == "ack"
        assert (await two.next("deleted"))["mid"] == ack["mid"]
        late = await a.client()
        assert (await late.join(room["room"], name="Late"))["history"] == []
        await guide.request({"t": "slow", "seconds": 30})
        assert (await two.next("room")) == {"t": "room", "locked": False, "slow": 30, **PLAIN}
        assert (await two.request({"t": "say", "text": "first"}))["t"] == "ack"
        slowed = await two.request({"t": "say", "text": "second"})
        assert slowed["code"] == "slow_mode" and slowed["retry_after"] > 0
        await guide.request({"t": "announce", "text": "Ten minutes left"})
        announced = await one.next("msg", text="Ten minutes left")
        assert announced["role"] == "facilitator" and announced["kind"] == "announce"


async def test_remove_bans_on_every_worker(redis_server: RedisServer) -> None:
    """A member removed from B is closed 4001 on A and refused on both workers afterwards."""
    async with workers(redis_server.url) as (a, b):
        room, guide, one, two = await circle(a, b)
        await guide.request({"t": "remove", "pid": one.pid, "reason": "unkind"})
        assert (await one.next("removed"))["reason"] == "unkind"
        assert await one.closed() == 4001
        assert (await two.next("left")) == {"t": "left", "pid": one.pid, "removed": True}
        for server in (a, b):
            again = await server.client()
            assert (await again.join(room["room"]))["code"] == "banned"
            assert await again.closed() == 4003
            resumed = await server.client()
            answer = await resumed.join(room["room"], resume=one.welcome["resume"])
            assert answer["code"] == "bad_resume"


async def test_close_ends_the_room_on_every_worker(redis_server: RedisServer) -> None:
    """close from B: everyone on A is told and closed 4010; the room is gone everywhere."""
    async with workers(redis_server.url) as (a, b):
        room, guide, one, two = await circle(a, b)
        assert (await guide.request({"t": "close"}))["t"] == "ack"
        for client in (one, two):
            await client.next("closed")
            assert await client.closed() == 4010
        for server in (a, b):
            late = await server.client()
            assert (await late.join(room["room"]))["code"] == "not_found"
            back = await server.client()
            assert (await back.join(room["room"], resume=one.welcome["resume"]))["code"] in {
                "not_found",
                "bad_resume",
            }


async def test_knock_admit_and_deny_across_workers(redis_server: RedisServer) -> None:
    """A knock on A reaches the facilitator on B; admit and deny act on A."""
    async with workers(redis_server.url) as (a, b):
        room = await a.room(settings={"admission": "knock"})
        guide = await b.client()
        await guide.join(room["room"], key=room["facilitator_key"])
        knocker, other = await a.client(), await a.client()
        assert (await knocker.join(room["room"], name="Knocker"))["t"] == "waiting"
        knock = await guide.next("knock")
        assert knock["member"]["name"] == "Knocker"
        late_guide = await a.client()
        welcome = await late_guide.join(room["room"], key=room["facilitator_key"])
        assert [m["name"] for m in welcome["waiting"]] == ["Knocker"]
        assert (await guide.request({"t": "admit", "pid": knock["member"]["pid"]}))["t"] == "ack"
        admitted = await knocker.next("welcome")
        assert admitted["you"]["name"] == "Knocker"
        assert (await other.join(room["room"], name="Other"))["t"] == "waiting"
        knock = await guide.next("knock")
        await guide.request({"t": "deny", "pid": knock["member"]["pid"]})
        await other.next("denied")
        assert await other.closed() == 4003


async def test_report_whisper_help_cross_workers(redis_server: RedisServer) -> None:
    """Report and help from A reach only the facilitator on B; whispers reach both ends only."""
    async with workers(redis_server.url) as (a, b):
        _, guide, one, two = await circle(a, b)
        ack = await one.request({"t": "say", "text": "hmm"})
        await two.request({"t": "report", "mid": ack["mid"], "reason": "hurtful"})
        report = await guide.next("report")
        assert (report["mid"], report["by"], report["reason"]) == (ack["mid"], two.pid, "hurtful")
        await one.request({"t": "whisper", "to": guide.pid, "text": "can we talk?"})
        whisper = await guide.next("whisper")
        assert (whisper["from"], whisper["to"]) == (one.pid, guide.pid)
        assert (await one.request({"t": "whisper", "to": two.pid, "text": "x"}))["code"] == (
            "forbidden"
        )
        resources = await two.request({"t": "help"})
        assert resources["t"] == "resources"
        assert (await guide.next("help"))["pid"] == two.pid
        leaked = {m["t"] for m in await two.quiet(400 * MS)}  # a bystander to the whisper
        assert not leaked & {"report", "whisper", "help"}
