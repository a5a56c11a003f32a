"""Protocol §13 at a room's door, and §11's knock limits: room settings at creation, capacity,
the lobby before the opening, --max-waiting and --knock-timeout. Both encodings, one worker.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from tests.client import Client, http_client
from tests.test_facilitation import acked, refused, room_with
from tests.test_rounds import server_info
from tests.timing import MS, SCALE, WAIT

LATE = 1.5 * SCALE  # seconds a timer may fire late at most (the clock looks every second)


def ms(seconds_from_now: float) -> int:
    return int((time.time() + seconds_from_now) * 1000)


_sources = itertools.count(1)


async def post(server: Any, settings: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST a room, from an address of its own (one address may create 10 a minute, §11)."""
    source = f"127.0.3.{next(_sources) % 250 + 1}"
    async with http_client(server.http, source) as http:
        response = await http.post("/api/rooms", json={"settings": settings})
        return response.status_code, response.json()


async def joined_as(server: Any, room: str, encoding: str, **fields: Any) -> Client:
    client = await server.client(encoding)
    await client.join(room, **fields)
    return client


# --- settings ------------------------------------------------------------------------------


async def test_structure_settings_are_echoed_and_validated(server):
    """staffed, capacity, opens_at and ends_at are echoed in GET /api/rooms/{room} and
    welcome.room; every invalid one answers 400; an opens_at already past has no effect."""
    opens, ends = ms(60), ms(3600)
    settings = {"staffed": "required", "capacity": 12, "opens_at": opens, "ends_at": ends}
    status, created = await post(server, settings)
    assert status == 201
    info = await server_info(server, created["room"])
    assert {k: info[k] for k in settings} == settings
    assert info["paused"] is True and "round" not in info and "flares" not in info
    host = await server.client()
    welcome = await host.join(created["room"], key=created["facilitator_key"])
    assert {k: welcome["room"][k] for k in settings} == settings
    assert welcome["room"]["paused"] is False

    status, created = await post(server, {})
    info = await server_info(server, created["room"])
    assert (info["staffed"], info["capacity"], info["opens_at"], info["ends_at"]) == (
        "optional",
        None,
        None,
        None,
    )
    status, created = await post(server, {"opens_at": ms(-60)})
    assert status == 201 and (await server_info(server, created["room"]))["opens_at"] is None

    for bad in (
        {"staffed": "sometimes"},
        {"staffed": True},
        {"capacity": 0},
        {"capacity": 1001},
        {"capacity": "12"},
        {"capacity": True},
        {"capacity": 2.5},
        {"opens_at": "soon"},
        {"opens_at": ms(60) + 0.5},
        {"ends_at": ms(-1)},
        {"ends_at": True},
        {"opens_at": ms(120), "ends_at": ms(60)},
        {"opens_at": ms(60), "ends_at": ms(60) - 1000},
        {"ends_at": 2**60},
    ):
        status, answer = await post(server, bad)
        assert status == 400 and answer["error"] == "bad_request", bad


# --- capacity ------------------------------------------------------------------------------


async def test_capacity_counts_participants_present_and_in_grace(start_server, encoding):
    """capacity: a join beyond it gets room_full and close 4006; facilitators do not count and
    always get in; a member within the resume grace still counts; a leave frees a seat."""
    server = await start_server(resume_grace=30)
    circle = await room_with(server, 2, encoding, capacity=2)
    one = circle.people[0]
    late = await server.client(encoding)
    answer = await late.join(circle.id)
    assert answer["t"] == "error" and answer["code"] == "room_full" and answer["message"]
    assert await late.closed() == 4006
    second_host = await joined_as(server, circle.id, encoding, key=circle.key)
    assert second_host.welcome["you"]["role"] == "facilitator"
    await one.ws.close()  # gone without leave: still counts for the grace
    await circle.host.quiet(200 * MS)
    again = await server.client(encoding)
    assert (await again.join(circle.id))["code"] == "room_full"
    await circle.people[1].request({"t": "leave"})
    now_in = await server.client(encoding)
    assert (await now_in.join(circle.id))["t"] == "welcome"


async def test_capacity_applies_to_knocks_and_admissions(server, encoding):
    """In a knock room a knock into a full room gets room_full (4006), and an admit that
    would exceed the capacity answers the facilitator room_full."""
    circle = await room_with(server, 0, encoding, capacity=1, admission="knock")
    host = circle.host
    first, second = await server.client(encoding), await server.client(encoding)
    assert (await first.join(circle.id))["t"] == "waiting"
    assert (await second.join(circle.id))["t"] == "waiting"
    await acked(host, {"t": "admit", "pid": (await host.next("knock"))["member"]["pid"]})
    knock = await host.next("knock")
    assert (await first.next("welcome"))["you"]["pid"] != knock["member"]["pid"]
    error = await refused(host, {"t": "admit", "pid": knock["member"]["pid"]}, "room_full")
    assert error["message"]
    third = await server.client(encoding)
    assert (await third.join(circle.id))["code"] == "room_full"
    assert await third.closed() == 4006


# --- the opening ---------------------------------------------------------------------------


async def test_the_lobby_opens_on_time_in_the_order_people_came(server, encoding):
    """Before opens_at a participant's join answers waiting{opens_at}; facilitators hear of
    them as knocks and may come in early; at opens_at the waiting are let in in the order they
    came, up to the capacity, and the rest get room_full and close 4006."""
    opens = ms(1.5)
    room = await server.room(settings={"opens_at": opens, "capacity": 2})
    people = []
    for name in ("First", "Second", "Third"):
        client = await server.client(encoding)
        answer = await client.join(room["room"], name=name)
        assert answer == {"t": "waiting", "opens_at": opens, "id": answer["id"]}
        people.append(client)
        await asyncio.sleep(0.01)  # a distinct arrival time each
    assert (await people[0].request({"t": "say", "text": "hello?"}))["code"] == "not_joined"
    host = await server.client(encoding)
    welcome = await host.join(room["room"], key=room["facilitator_key"])
    assert [m["name"] for m in welcome["waiting"]] == ["First", "Second", "Third"]
    assert welcome["room"]["opens_at"] == opens
    first, second, third = people
    got = await first.next("welcome", timeout=WAIT)
    assert time.time() * 1000 >= opens - 50
    assert got["you"]["name"] == "First"
    assert (await second.next("welcome"))["you"]["name"] == "Second"
    error = await third.next("error")
    assert error["code"] == "room_full"
    assert await third.closed() == 4006
    names = {(await host.next("joined"))["member"]["name"] for _ in range(2)}
    assert names == {"First", "Second"}
    assert (await host.next("left"))["pid"]
    late = await server.client(encoding)
    assert (await late.join(room["room"]))["code"] == "room_full"


async def test_facilitators_may_admit_early_and_a_knock_room_stays_waiting(server, encoding):
    """A facilitator may admit anyone before the opening; in a knock room the waiting stay
    waiting at the opening, for a facilitator."""
    opens = ms(1.0)
    room = await server.room(settings={"opens_at": opens, "admission": "knock"})
    host = await server.client(encoding)
    await host.join(room["room"], key=room["facilitator_key"])
    early, patient = await server.client(encoding), await server.client(encoding)
    assert (await early.join(room["room"], name="Early"))["opens_at"]
    assert (await patient.join(room["room"], name="Patient"))["opens_at"]
    knock = await host.next("knock")
    await acked(host, {"t": "admit", "pid": knock["member"]["pid"]})
    assert (await early.next("welcome"))["you"]["name"] == "Early"
    await asyncio.sleep(max(0.0, opens / 1000 - time.time()))  # the opening passes...
    assert [m["t"] for m in await patient.quiet(500 * MS)] == []  # ... and nobody lets them in
    after = await server.client(encoding)
    answer = await after.join(room["room"])
    assert answer["t"] == "waiting" and "opens_at" not in answer  # a knock, no longer a lobby


# --- knock limits (§11) --------------------------------------------------------------------


async def test_max_waiting_limits_a_knock_room_but_not_the_lobby(start_server, encoding):
    """--max-waiting: beyond it a knock gets room_full and close 4006; before the opening
    any number may wait."""
    server = await start_server(max_waiting=2)
    room = await server.room(settings={"admission": "knock"})
    for _ in range(2):
        assert (await (await server.client(encoding)).join(room["room"]))["t"] == "waiting"
    over = await server.client(encoding)
    assert (await over.join(room["room"]))["code"] == "room_full"
    assert await over.closed() == 4006
    host = await server.client(encoding, source="127.0.0.3")  # the door is full, not the room
    assert (await host.join(room["room"], key=room["facilitator_key"]))["t"] == "welcome"
    assert len(host.welcome["waiting"]) == 2
    open_room = await server.room()
    guest = await server.client(encoding, source="127.0.0.4")
    assert (await guest.join(open_room["room"]))["t"] == "welcome"
    assert (await guest.request({"t": "say", "text": "served"}))["t"] == "ack"
    lobby = await server.room(settings={"admission": "knock", "opens_at": ms(30)})
    for _ in range(4):
        assert (await (await server.client(encoding)).join(lobby["room"]))["t"] == "waiting"


async def test_a_knock_left_waiting_is_denied_after_the_knock_timeout(start_server, encoding):
    """--knock-timeout: a knocker nobody let in is told denied and closed 4003; the clock
    starts at the opening, not before."""
    server = await start_server(knock_timeout=1.0)
    room = await server.room(settings={"admission": "knock"})
    host = await server.client(encoding)
    await host.join(room["room"], key=room["facilitator_key"])
    knocker = await server.client(encoding)
    started = time.monotonic()
    assert (await knocker.join(room["room"]))["t"] == "waiting"
    denied = await knocker.next("denied", timeout=WAIT)
    assert denied["pid"] == (await host.next("knock"))["member"]["pid"]
    assert await knocker.closed() == 4003
    assert 0.9 <= time.monotonic() - started <= 1.0 + LATE
    assert (await host.next("left"))["pid"] == denied["pid"]

    opens = ms(1.5)
    room = await server.room(settings={"admission": "knock", "opens_at": opens})
    early = await server.client(encoding)
    assert (await early.join(room["room"]))["t"] == "waiting"
    await early.next("denied", timeout=WAIT)  # 1 s after the opening, not after the knock
    assert time.time() * 1000 >= opens + 900


@pytest.mark.parametrize("count", [3])
async def test_an_admitted_lobby_member_hears_the_room(server, encoding, count):
    """Members let in at the opening talk with everyone like anyone else."""
    room = await server.room(settings={"opens_at": ms(0.8)})
    clients = [await joined_as(server, room["room"], encoding) for _ in range(count)]
    for client in clients:
        client.welcome = await client.next("welcome", timeout=WAIT)
    await acked(clients[0], {"t": "say", "text": "we are in"})
    for client in clients[1:]:
        assert (await client.next("msg"))["text"] == "we are in"
