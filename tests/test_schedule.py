"""Protocol §13, ending on time: the five-minute notice, the close at ``ends_at`` (exactly as a
facilitator's close), and ``extend``. Both encodings, one worker.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from websockets.exceptions import ConnectionClosed

from tests.client import Client, http_client
from tests.test_facilitation import acked, refused, room_with
from tests.test_lobby import LATE, ms
from tests.timing import MS, WAIT


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
