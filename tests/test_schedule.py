"""Protocol §13, ending on time: the five-minute notice, the close at ``ends_at`` (exactly as a
facilitator's close), and ``extend``. Both encodings, one worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from websockets.exceptions import ConnectionClosed

from chat.redis.client import ROOM_PARTS, room_key
from chat.redis.scripts import END_LATE_MS
from chat.redis.topology import close_client, command_client
from tests.client import Client, http_client
from tests.test_facilitation import acked, refused, room_with
from tests.test_lobby import LATE, ms
from tests.timing import MS, SCALE, WAIT, wait_until


async def until_closed(client: Client) -> tuple[list[dict[str, Any]], int, float]:
    """Everything a client hears until the server closes it, the close code, and when (ms)."""
    heard: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(3 * WAIT):
            while True:
                heard.append(await client.recv(timeout=3 * WAIT))
    except ConnectionClosed as exc:
        assert exc.rcvd is not None
        return heard, exc.rcvd.code, time.time() * 1000
    raise AssertionError("unreachable")


async def test_the_room_gets_a_notice_then_closes_on_time(server, encoding):
    """With less than five minutes left the room gets ``ending`` at once (``at`` = ends_at),
    once; at ends_at everyone gets ``closed`` and close 4010, and the room is gone."""
    ends = ms(2.5)
    circle = await room_with(server, 2, encoding, ends_at=ends, admission="open")
    host, people = circle.host, circle.people
    assert host.welcome["room"]["ends_at"] == ends
    heard = await asyncio.gather(*(until_closed(c) for c in (host, *people)))
    for messages, code, when in heard:
        assert [m for m in messages if m["t"] == "ending"] == [{"t": "ending", "at": ends}]
        assert messages[-1] == {"t": "closed"} and code == 4010
        assert ends <= when <= ends + LATE * 1000
    async with http_client(server.http) as http:
        assert (await http.get(f"/api/rooms/{circle.id}")).status_code == 404
    late = await server.client(encoding)
    assert (await late.join(circle.id))["code"] == "not_found"
    assert await late.closed() == 4004


async def test_extend_moves_the_end_and_brings_a_new_notice(server, encoding):
    """extend (facilitators, 1-120 minutes): ends_at moves by minutes; the room gets a
    ``room`` event with it and a new ``ending`` for the new end; errors as the contract
    says."""
    ends = ms(2.0)
    circle = await room_with(server, 1, encoding, ends_at=ends)
    host, (person,) = circle.host, circle.people
    assert (await person.next("ending", timeout=WAIT))["at"] == ends
    await acked(host, {"t": "extend", "minutes": 1})
    later = ends + 60_000
    for client in (host, person):
        room = await client.next("room")
        assert room["ends_at"] == later and room["paused"] is False
        assert await client.next("ending", timeout=WAIT) == {"t": "ending", "at": later}
    await asyncio.sleep(max(0.0, ends / 1000 - time.time()) + LATE)
    await acked(person, {"t": "say", "text": "still here after the old end"})
    for bad in ({"t": "extend"}, {"t": "extend", "minutes": 0}, {"t": "extend", "minutes": 121},
                {"t": "extend", "minutes": "5"}):  # fmt: skip
        await refused(host, bad, "bad_request")
    await refused(person, {"t": "extend", "minutes": 5}, "forbidden")
    second = await server.client(encoding)
    welcome = await second.join(circle.id, key=circle.key)
    assert welcome["room"]["ends_at"] == later
    assert "extend" in [e["action"] for e in welcome["log"]]
    plain = await room_with(server, 0, encoding)
    await refused(plain.host, {"t": "extend", "minutes": 5}, "bad_request")


async def test_a_far_end_sends_no_notice_yet(server, encoding):
    """An end more than five minutes away sends no ``ending`` yet."""
    circle = await room_with(server, 1, encoding, ends_at=ms(3600))
    assert [m for m in await circle.people[0].quiet(1200 * MS) if m["t"] == "ending"] == []


async def test_a_room_nobody_holds_ends_on_time(start_server, encoding):
    """Everyone left before the end (one with ``leave``, one still in its resume grace), so no
    worker holds the room to close it: at ``ends_at`` it ends all the same, on every broker.
    The store lets it go by itself, with nobody having come back to close it (the embedded
    backend's sweep drops it, history too: with ``--max-rooms 1`` a new room can be created
    again; Redis expires every key of it, leaving no ``closed`` tombstone of a close). GET
    answers 404, and a join or the resume gets ``not_found``."""
    server = await start_server(max_rooms=1, room_unused=2, room_idle=60, room_create_rate=100)
    ends = ms(4 * SCALE)
    circle = await room_with(server, 1, encoding, ends_at=ends)
    host, (person,) = circle.host, circle.people
    resume = person.welcome["resume"]
    await acked(person, {"t": "say", "text": "said before the end"})
    await acked(host, {"t": "leave"})
    await person.ws.close()  # gone without leave: kept for the resume grace

    async def released() -> bool:
        return await server.metric("hearth_rooms") == 0

    await wait_until(released, what="the worker let the room go")
    assert time.time() * 1000 < ends, "too slow: the worker still held the room at its end"
    async with store_of(server) as store, http_client(server.http) as http:

        async def let_go() -> bool:
            if store is None:
                return (await http.post("/api/rooms", json={})).status_code == 201
            keys = [room_key(server.settings.redis_prefix, circle.id, p) for p in ROOM_PARTS]
            return sum([await store.exists(key) for key in keys]) == 0

        assert not await let_go()
        assert (await http.get(f"/api/rooms/{circle.id}")).status_code == 200
        await asyncio.sleep(max(0.0, ends / 1000 - time.time()))
        # The embedded backend sweeps every 0.5 s here; Redis keys go END_LATE_MS after it.
        await wait_until(let_go, END_LATE_MS / 1000 + LATE + WAIT, "the ended room let go")
        assert time.time() * 1000 >= ends
        assert (await http.get(f"/api/rooms/{circle.id}")).status_code == 404
    late = await server.client(encoding)
    assert (await late.join(circle.id))["code"] == "not_found"
    assert await late.closed() == 4004
    back = await server.client(encoding)
    assert (await back.join(circle.id, resume=resume))["code"] == "not_found"
    assert await back.closed() == 4004


@contextlib.asynccontextmanager
async def store_of(server: Any) -> AsyncIterator[Any]:
    """A Redis client for the server's store (Redis, Cluster or Sentinel), or None for the
    embedded broker."""
    if not server.settings.uses_redis:
        yield None
        return
    client = command_client(server.settings, name="test")
    try:
        yield client
    finally:
        await close_client(client)


async def test_room_info_answers_404_from_the_end_on(server):
    """GET /api/rooms/{id} answers 404 once ``ends_at`` has passed, before any clock closed
    the room or its store let it go (nobody ever joined it, so nobody closes it)."""
    ends = ms(2 * SCALE)
    room = await server.room(settings={"ends_at": ends})
    async with http_client(server.http) as http:
        assert (await http.get(f"/api/rooms/{room['room']}")).status_code == 200
        await asyncio.sleep(max(0.0, ends / 1000 - time.time()))
        assert (await http.get(f"/api/rooms/{room['room']}")).status_code == 404


async def test_a_resume_after_the_end_is_refused(server, encoding):
    """A member still within its resume grace comes back after ``ends_at``, before its room
    was closed or let go (nobody held it at the end): ``not_found`` (4004), as a join, rather
    than a welcome into a room that has ended."""
    ends = ms(3 * SCALE)
    circle = await room_with(server, 1, encoding, ends_at=ends)
    person = circle.people[0]
    await acked(circle.host, {"t": "leave"})
    await person.ws.close()  # gone without leave: kept for the resume grace

    async def released() -> bool:
        return await server.metric("hearth_rooms") == 0

    await wait_until(released, what="the worker let the room go")
    assert time.time() * 1000 < ends, "too slow: the worker still held the room at its end"
    await asyncio.sleep(max(0.0, ends / 1000 - time.time()))
    back = await server.client(encoding)
    assert (await back.join(circle.id, resume=person.welcome["resume"]))["code"] == "not_found"
    assert await back.closed() == 4004
