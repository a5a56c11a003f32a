"""Protocol §13 in the room: pause (and the staffed pause), rounds, stepping out — every
message, error and setting, over both encodings, on one worker with real clients.
"""

from __future__ import annotations

import time
from typing import Any

from tests.client import Client
from tests.test_facilitation import Circle, acked, newcomer, refused, room_with, said
from tests.timing import MS, WAIT


def round_of(speaker: str | None, queue: list[str], mode: str = "queue", strict: bool = False):
    return {
        "t": "round",
        "active": True,
        "mode": mode,
        "strict": strict,
        "speaker": speaker,
        "queue": queue,
    }


ENDED = {"t": "round", "active": False}


async def everyone_sees(clients: list[Client], expected: dict[str, Any]) -> None:
    """Each client's next ``round`` event is ``expected``."""
    for client in clients:
        got = await client.next(expected["t"])
        assert got == expected, (got, expected)


def everyone(circle: Circle) -> list[Client]:
    return [circle.host, *circle.people]


# --- pause ---------------------------------------------------------------------------------


async def test_pause_and_unpause(server, encoding):
    """pause: the room gets ``room`` with paused; a participant's say and whisper get
    ``paused``; help, report, typing and facilitators still work; unpause lifts it."""
    circle = await room_with(server, 2, encoding)
    host, (one, two) = circle.host, circle.people
    first = await said(one, "before the pause")
    await acked(host, {"t": "pause"})
    for client in everyone(circle):
        room = await client.next("room")
        assert room["paused"] is True and room["ends_at"] is None
    error = await refused(one, {"t": "say", "text": "can I?"}, "paused")
    assert error["message"]
    await refused(one, {"t": "whisper", "to": host.pid, "text": "psst"}, "paused")
    assert (await one.request({"t": "help"}))["t"] == "resources"
    await acked(two, {"t": "report", "mid": first["mid"]})
    await acked(one, {"t": "typing"})
    await said(host, "let us take a breath together")
    await acked(host, {"t": "whisper", "to": one.pid, "text": "take your time"})
    await refused(one, {"t": "pause"}, "forbidden")
    await refused(one, {"t": "unpause"}, "forbidden")
    late, welcome = await newcomer(server, circle, encoding=encoding)
    assert welcome["room"]["paused"] is True
    await acked(host, {"t": "unpause"})
    for client in [*everyone(circle), late]:
        assert (await client.next("room"))["paused"] is False
    await said(one, "after the pause")
    log = (await newcomer(server, circle, facilitator=True, encoding=encoding))[1]["log"]
    assert [e["action"] for e in log if e["action"] in {"pause", "unpause"}] == [
        "pause",
        "unpause",
    ]


async def test_a_staffed_room_is_paused_while_no_facilitator_is_present(start_server, encoding):
    """staffed "required": paused until a facilitator arrives (help still works and is kept
    for them in ``welcome.flares``), unpaused while one is present — also within its resume
    grace — and paused again when the last one has gone."""
    server = await start_server(resume_grace=1.0)
    room = await server.room(settings={"staffed": "required"})
    info = await server_info(server, room["room"])
    assert info["staffed"] == "required" and info["paused"] is True
    person = await server.client(encoding)
    welcome = await person.join(room["room"], name="Early")
    assert welcome["room"]["paused"] is True and welcome["room"]["staffed"] == "required"
    await refused(person, {"t": "say", "text": "hello?"}, "paused")
    asked = time.time() * 1000
    assert (await person.request({"t": "help"}))["t"] == "resources"

    host = await server.client(encoding)
    welcome = await host.join(room["room"], key=room["facilitator_key"])
    assert welcome["room"]["paused"] is False
    (flare,) = welcome["flares"]
    assert flare["pid"] == person.pid and asked - 1000 <= flare["ts"] <= time.time() * 1000
    assert "flares" not in person.welcome
    assert (await person.next("room"))["paused"] is False
    await said(person, "thank you for coming")

    await host.ws.close()  # gone without leave: present for the grace (1 s), then not
    assert all(m["t"] != "room" for m in await person.quiet(500 * MS))
    assert (await person.next("left", timeout=WAIT))["pid"] == host.pid
    assert (await person.next("room"))["paused"] is True
    await refused(person, {"t": "say", "text": "still here"}, "paused")

    again = await server.client(encoding)
    await again.join(room["room"], key=room["facilitator_key"])
    assert (await person.next("room"))["paused"] is False
    await acked(again, {"t": "pause"})
    assert (await person.next("room"))["paused"] is True
    await acked(again, {"t": "leave"})
    await person.next("left")
    assert await person.quiet(300 * MS) == []  # still paused: no room event
    assert (await server_info(server, room["room"]))["paused"] is True


async def server_info(server: Any, room: str) -> dict[str, Any]:
    from tests.client import http_client

    async with http_client(server.http) as http:
        response = await http.get(f"/api/rooms/{room}")
        assert response.status_code == 200
        data: dict[str, Any] = response.json()
        return data


# --- rounds --------------------------------------------------------------------------------


async def test_a_queue_round(server, encoding):
    """Queue mode: raised hands in order, the first takes the turn at once, a second raise
    changes nothing, a lowered hand leaves the queue, done passes the turn on, the round stays
    active with nobody speaking until end_round; welcome.round shows it to newcomers."""
    circle = await room_with(server, 3, encoding)
    host, (one, two, three) = circle.host, circle.people
    assert one.welcome["round"] == {"active": False}
    clients = everyone(circle)
    await acked(host, {"t": "round", "mode": "queue"})
    await everyone_sees(clients, round_of(None, []))
    await acked(two, {"t": "hand"})
    await everyone_sees(clients, round_of(two.pid, []))
    await acked(one, {"t": "hand"})
    await everyone_sees(clients, round_of(two.pid, [one.pid]))
    await acked(three, {"t": "hand"})
    await everyone_sees(clients, round_of(two.pid, [one.pid, three.pid]))
    await acked(one, {"t": "hand"})  # again: nothing changes
    await acked(two, {"t": "hand"})  # the speaker raising again: nothing either
    await acked(one, {"t": "hand", "down": True})
    await everyone_sees(clients, round_of(two.pid, [three.pid]))
    assert [m for m in host.inbox if m["t"] == "round"] == []
    late, welcome = await newcomer(server, circle, encoding=encoding)
    assert welcome["round"] == {k: v for k, v in round_of(two.pid, [three.pid]).items() if k != "t"}
    clients.append(late)
    await refused(three, {"t": "done"}, "bad_request")  # not the speaker
    await acked(two, {"t": "done"})
    await everyone_sees(clients, round_of(three.pid, []))
    await acked(three, {"t": "done"})
    await everyone_sees(clients, round_of(None, []))  # still active, nobody speaking
    await acked(one, {"t": "hand"})
    await everyone_sees(clients, round_of(one.pid, []))
    await acked(host, {"t": "next"})
    await everyone_sees(clients, round_of(None, []))
    await acked(host, {"t": "next"})  # nobody to move on to: nothing changes
    await acked(host, {"t": "end_round"})
    await everyone_sees(clients, ENDED)
    await refused(host, {"t": "end_round"}, "not_found")
    await refused(host, {"t": "next"}, "not_found")
    await refused(one, {"t": "hand"}, "not_found")
    await refused(one, {"t": "done"}, "bad_request")


async def test_an_order_round(server, encoding):
    """Order mode: a given order starts with its first and ends after its last; ``next`` moves
    it on; absent order is join order; "random" is a shuffle of the participants present."""
    circle = await room_with(server, 3, encoding)
    host, (one, two, three) = circle.host, circle.people
    clients = everyone(circle)
    await acked(host, {"t": "round", "mode": "order", "order": [three.pid, one.pid]})
    await everyone_sees(clients, round_of(three.pid, [one.pid], "order"))
    await refused(one, {"t": "done"}, "bad_request")
    await refused(one, {"t": "hand"}, "bad_request")  # no hands in an order round
    await acked(three, {"t": "done"})
    await everyone_sees(clients, round_of(one.pid, [], "order"))
    await acked(host, {"t": "next"})
    await everyone_sees(clients, ENDED)  # after its last

    await acked(host, {"t": "round", "mode": "order", "strict": True})
    await everyone_sees(clients, round_of(one.pid, [two.pid, three.pid], "order", strict=True))
    await acked(host, {"t": "round", "mode": "order", "order": "random"})  # replaces it
    shuffled = await host.next("round")
    assert shuffled["strict"] is False and shuffled["mode"] == "order"
    assert sorted([shuffled["speaker"], *shuffled["queue"]]) == sorted(
        [one.pid, two.pid, three.pid]
    )
    for client in clients[1:]:
        assert await client.next("round") == shuffled


async def test_round_refusals(server, encoding):
    """bad_request for an order naming a facilitator, a pid twice or someone absent, hand from
    a facilitator, malformed fields; forbidden for participants' facilitator actions."""
    circle = await room_with(server, 2, encoding)
    host, (one, two) = circle.host, circle.people
    for order in ([host.pid], [one.pid, one.pid], [one.pid, "nobody-here"], [], [3], "all"):
        await refused(host, {"t": "round", "mode": "order", "order": order}, "bad_request")
    for bad in (
        {"t": "round"},
        {"t": "round", "mode": "circle"},
        {"t": "round", "mode": "queue", "strict": "yes"},
        {"t": "hand", "down": 1},
    ):
        await refused(host if bad["t"] == "round" else one, bad, "bad_request")
    for action in ({"t": "round", "mode": "queue"}, {"t": "next"}, {"t": "end_round"}):
        await refused(one, action, "forbidden")
    await acked(host, {"t": "round", "mode": "queue"})
    await refused(host, {"t": "hand"}, "bad_request")
    await refused(host, {"t": "done"}, "bad_request")
    await acked(two, {"t": "hand"})
    await refused(one, {"t": "done"}, "bad_request")


async def test_a_strict_round_lets_only_the_speaker_and_facilitators_post(server, encoding):
    """strict: a participant's say while someone else holds the turn gets not_your_turn;
    the speaker and facilitators may post; with nobody holding the turn, anyone may."""
    circle = await room_with(server, 2, encoding)
    host, (one, two) = circle.host, circle.people
    await acked(host, {"t": "round", "mode": "queue", "strict": True})
    await said(two, "nobody holds the turn yet")
    await acked(one, {"t": "hand"})
    error = await refused(two, {"t": "say", "text": "what's happening?"}, "not_your_turn")
    assert error["message"]
    await said(one, "my share")
    await said(host, "thank you")
    await acked(two, {"t": "whisper", "to": host.pid, "text": "whispers are fine"})
    await acked(one, {"t": "done"})
    await said(two, "now I may")
    await acked(host, {"t": "round", "mode": "queue"})  # not strict
    await acked(one, {"t": "hand"})
    await said(two, "not strict: anyone may")


async def test_a_speaker_who_leaves_loses_the_turn(start_server, encoding):
    """The turn passes to the next in line when the speaker leaves, is removed, or its grace
    ends; a queued member who goes leaves the queue."""
    server = await start_server(resume_grace=0.5)
    circle = await room_with(server, 4, encoding)
    host, (one, two, three, four) = circle.host, circle.people
    await acked(host, {"t": "round", "mode": "queue"})
    for person in (one, two, three, four):
        await acked(person, {"t": "hand"})
    await host.quiet(200 * MS)
    for client in circle.people:
        client.inbox.clear()
    await acked(one, {"t": "leave"})
    assert await host.next("round") == round_of(two.pid, [three.pid, four.pid])
    await acked(host, {"t": "remove", "pid": two.pid})
    assert await host.next("round") == round_of(three.pid, [four.pid])
    await three.ws.close()  # no leave: keeps the turn for the grace, then loses it
    assert await host.quiet(300 * MS) == []  # within its grace
    got = await host.next("round", timeout=WAIT)
    assert got == round_of(four.pid, [])
    seen = [m for m in await four.quiet(300 * MS) if m["t"] == "round"]
    assert seen[-1] == round_of(four.pid, [])  # the same sequence reached every member


# --- stepping out --------------------------------------------------------------------------


async def test_stepping_out(server, encoding):
    """away: the room, sender included, gets ``away``; welcome.members carries away: true
    while on; it changes nothing in a round."""
    circle = await room_with(server, 2, encoding)
    host, (one, two) = circle.host, circle.people
    await acked(host, {"t": "round", "mode": "queue"})
    await acked(one, {"t": "hand"})
    await host.quiet(200 * MS)
    await acked(one, {"t": "away", "on": True})
    for client in everyone(circle):
        assert await client.next("away") == {"t": "away", "pid": one.pid, "on": True}
    _, welcome = await newcomer(server, circle, encoding=encoding)
    listed = {m["pid"]: m for m in welcome["members"]}
    assert listed[one.pid]["away"] is True and "away" not in listed[two.pid]
    assert welcome["round"]["speaker"] == one.pid
    await acked(host, {"t": "away", "on": True})  # facilitators may step out too
    await acked(one, {"t": "away", "on": False})
    assert await two.next("away") == {"t": "away", "pid": host.pid, "on": True}
    assert await two.next("away") == {"t": "away", "pid": one.pid, "on": False}
    _, welcome = await newcomer(server, circle, encoding=encoding)
    assert "away" not in {m["pid"]: m for m in welcome["members"]}[one.pid]
    for bad in ({"t": "away"}, {"t": "away", "on": "yes"}):
        await refused(one, bad, "bad_request")
    assert [m for m in host.inbox if m["t"] == "round"] == []


async def test_rounds_and_pause_survive_a_facilitator_reconnect(server, encoding):
    """A facilitator who reconnects (resume) finds the round and the pause as they were."""
    circle = await room_with(server, 2, encoding)
    host, (one, _) = circle.host, circle.people
    await acked(host, {"t": "round", "mode": "queue", "strict": True})
    await acked(one, {"t": "hand"})
    await acked(host, {"t": "pause"})
    resume = host.welcome["resume"]
    await host.ws.close()
    back = await server.client(encoding)
    welcome = await back.join(circle.id, resume=resume)
    assert welcome["you"]["pid"] == host.pid
    assert welcome["round"]["speaker"] == one.pid and welcome["round"]["strict"] is True
    assert welcome["room"]["paused"] is True
