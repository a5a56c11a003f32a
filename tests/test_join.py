"""Joining a room (protocol §4): pseudonyms, names, keys, rules, and refusals."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from chat.localroom import LISTINGS_FROM
from tests.client import JSON
from tests.test_transport import hearth_metric, stalled_socket
from tests.timing import WAIT, scaled, wait_until


async def test_join_without_a_name_gets_a_pseudonym(server, encoding) -> None:
    """A join with no name gets a friendly generated pseudonym and a full welcome."""
    room = await server.room(title="Circle")
    client = await server.client(encoding)
    welcome = await client.join(room["room"])
    assert welcome["t"] == "welcome"
    you = welcome["you"]
    assert you["role"] == "participant" and " " in you["name"]
    assert welcome["members"] == [{"pid": you["pid"], "name": you["name"], "role": "participant"}]
    assert welcome["room"]["title"] == "Circle"
    assert welcome["room"]["retention"] == {"messages": 200, "seconds": 1800, "on_disk": False}
    assert welcome["seq"] == 0 and welcome["history"] == [] and welcome["resume"]
    for key in ("reports", "log", "waiting"):
        assert key not in welcome


async def test_others_see_joined_not_the_joiner(server) -> None:
    """Everyone else gets ``joined``; the joiner gets only its welcome."""
    room = await server.room()
    first, second = await server.client(), await server.client(JSON)
    await first.join(room["room"], name="Ada")
    await second.join(room["room"], name="Bo")
    joined = await first.next("joined")
    assert joined["member"] == {"pid": second.pid, "name": "Bo", "role": "participant"}
    assert [m["t"] for m in await second.quiet()] == []


async def test_names_are_unique_case_insensitively(server) -> None:
    """A taken name (in any case) answers name_taken; the connection stays open."""
    room = await server.room()
    first, second = await server.client(), await server.client()
    await first.join(room["room"], name="River")
    answer = await second.join(room["room"], name="rIVER")
    assert answer["code"] == "name_taken"
    assert (await second.join(room["room"], name="Stream"))["t"] == "welcome"


@pytest.mark.parametrize("name", ["", "Facilitator", "a\u202eb", "x" * 30])
async def test_bad_names_leave_the_connection_open(server, name: str) -> None:
    """Empty, reserved, control characters or too long: bad_name, and the socket stays open
    for another join."""
    room = await server.room()
    client = await server.client()
    assert (await client.join(room["room"], name=name))["code"] == "bad_name"
    assert (await client.join(room["room"], name="Ok Name"))["t"] == "welcome"


async def test_facilitator_key_gives_the_role_and_extras(server) -> None:
    """The right key joins as facilitator, with reports, log and waiting in the welcome."""
    room = await server.room()
    client = await server.client()
    welcome = await client.join(room["room"], key=room["facilitator_key"], name="Facilitator Jo")
    assert welcome["you"]["role"] == "facilitator"
    assert welcome["reports"] == [] and welcome["log"] == [] and welcome["waiting"] == []


async def test_wrong_key_is_forbidden_and_closes_4003(server) -> None:
    """A wrong facilitator key answers forbidden and closes with 4003."""
    room = await server.room()
    client = await server.client()
    answer = await client.join(room["room"], key="not-the-key")
    assert answer["code"] == "forbidden"
    assert await client.closed() == 4003


async def test_unknown_room_closes_4004(server) -> None:
    """A join to no such room answers not_found and closes 4004."""
    client = await server.client()
    assert (await client.join("no-such-room"))["code"] == "not_found"
    assert await client.closed() == 4004


async def test_rules_must_be_accepted(server) -> None:
    """A room with rules needs ``agree: true``; otherwise rules_not_accepted, socket open."""
    room = await server.room(rules="Speak from your own experience.")
    client = await server.client()
    assert (await client.join(room["room"]))["code"] == "rules_not_accepted"
    assert (await client.join(room["room"], agree=False))["code"] == "rules_not_accepted"
    welcome = await client.join(room["room"], agree=True)
    assert welcome["room"]["rules"] == "Speak from your own experience."


async def test_messages_before_join_are_not_joined(server) -> None:
    """Anything but join before a join answers not_joined."""
    client = await server.client()
    for kind in ("say", "typing", "mute", "help"):
        answer = await client.request({"t": kind, "text": "x", "pid": "p"})
        assert answer["code"] == "not_joined"


async def test_second_join_is_already_joined(server) -> None:
    """A second join on a joined connection answers already_joined."""
    room = await server.room()
    client = await server.client()
    await client.join(room["room"])
    assert (await client.join(room["room"]))["code"] == "already_joined"


async def test_join_timeout_closes_1008(start_server) -> None:
    """A connection that does not join within the join timeout is closed with 1008."""
    server = await start_server(join_timeout=0.3)
    client = await server.client()
    assert await client.closed() == 1008


async def test_since_join_history_hides_earlier_messages(server) -> None:
    """In a since_join room a newcomer sees nothing said before it joined."""
    room = await server.room()
    first = await server.client()
    await first.join(room["room"])
    await first.request({"t": "say", "text": "before you came"})
    late = await server.client()
    welcome = await late.join(room["room"])
    assert welcome["history"] == [] and welcome["seq"] == 1


async def test_recent_history_shows_earlier_messages(server) -> None:
    """In a recent-history room a newcomer sees the recent messages in seq order."""
    room = await server.room(settings={"history": "recent"})
    first = await server.client()
    await first.join(room["room"])
    for text in ("one", "two", "three"):
        await first.request({"t": "say", "text": text})
    late = await server.client(JSON)
    welcome = await late.join(room["room"])
    assert [m["text"] for m in welcome["history"]] == ["one", "two", "three"]
    assert [m["seq"] for m in welcome["history"]] == [1, 2, 3]


async def test_history_is_bounded_by_count(start_server) -> None:
    """History keeps at most --history-messages messages."""
    server = await start_server(history_messages=3)
    room = await server.room(settings={"history": "recent"})
    first = await server.client()
    await first.join(room["room"])
    for n in range(6):
        await first.request({"t": "say", "text": f"m{n}"})
    welcome = await (await server.client()).join(room["room"])
    assert [m["text"] for m in welcome["history"]] == ["m3", "m4", "m5"]
    assert welcome["room"]["retention"]["messages"] == 3


async def test_history_is_bounded_by_age(start_server) -> None:
    """History forgets messages older than --history-seconds."""
    server = await start_server(history_seconds=scaled(0.6))
    room = await server.room(settings={"history": "recent"})
    first = await server.client()
    await first.join(room["room"])
    await first.request({"t": "say", "text": "old"})
    # Wall-clock time must pass (history is trimmed by age when read): not a settle sleep.
    await asyncio.sleep(scaled(0.7))
    await first.request({"t": "say", "text": "new"})
    welcome = await (await server.client()).join(room["room"])
    assert [m["text"] for m in welcome["history"]] == ["new"]


async def test_idle_room_ends(start_server) -> None:
    """An empty room ends after --room-idle; a later join finds no room."""
    server = await start_server(room_idle=0.3)
    room = await server.room()

    async def gone() -> bool:
        return await server.status(f"/api/rooms/{room['room']}") == 404

    await wait_until(gone, what="the idle sweep ended the room")
    client = await server.client()
    assert (await client.join(room["room"]))["code"] == "not_found"


async def test_a_large_rooms_welcome_lists_everyone_as_they_are_at_the_join(
    start_server, encoding
) -> None:
    """From LISTINGS_FROM members on, a room keeps each member's welcome entry encoded between
    welcomes (issue 13). A newcomer still sees everyone as of its own join: a member muted,
    one who stepped out (§13) and one who left since the previous welcome included."""
    server = await start_server(max_per_address=LISTINGS_FROM + 10)
    room = await server.room()
    host = await server.client(encoding)
    await host.join(room["room"], key=room["facilitator_key"])
    people = [await server.client(encoding) for _ in range(LISTINGS_FROM)]
    names = {}
    for person in people:
        names[person.pid] = (await person.join(room["room"]))["you"]["name"]
    first = await (await server.client(encoding)).join(room["room"])
    everyone = {host.pid, *(p.pid for p in people), first["you"]["pid"]}
    assert {m["pid"] for m in first["members"]} == everyone
    assert all(set(m) == {"pid", "name", "role"} for m in first["members"])

    muted, away, leaving = people[0], people[1], people[2]
    answer = await host.request({"t": "mute", "pid": muted.pid})
    assert answer["t"] == "ack", answer
    answer = await away.request({"t": "away", "on": True})
    assert answer["t"] == "ack", answer
    await leaving.send({"t": "leave"})
    await host.next("muted", pid=muted.pid)
    await host.next("left", pid=leaving.pid)

    late = await (await server.client(encoding)).join(room["room"])
    listed = {m["pid"]: m for m in late["members"]}
    assert set(listed) == (everyone - {leaving.pid}) | {late["you"]["pid"]}
    assert listed[muted.pid] == {
        "pid": muted.pid, "name": names[muted.pid], "role": "participant", "muted_until": None
    }  # fmt: skip
    assert listed[away.pid]["away"] is True and "muted_until" not in listed[away.pid]
    assert listed[people[3].pid] == {"pid": people[3].pid, "name": names[people[3].pid],
                                     "role": "participant"}  # fmt: skip


async def test_a_join_storm_is_not_slowness_but_a_stuck_reader_is_closed_4008(
    start_server,
) -> None:
    """Issue 13: what queues within one loop turn, or is held while a join is answered, may
    reach BURST_FACTOR x --queue-frames, so a storm of arrivals drops no joiner and no member
    who keeps reading. A member who stops reading is still closed with 4008."""
    server = await start_server(
        queue_frames=32, max_per_address=1_000, rate=10_000.0, burst=10_000, close_timeout=120
    )
    room = (await server.room())["room"]
    watcher = await server.client(max_queue=None)
    await watcher.join(room)
    stuck = await server.client(sock=stalled_socket(server.settings.port), max_queue=1)
    await stuck.join(room)
    stuck.ws.transport.pause_reading()
    await watcher.next("joined")
    async with httpx.AsyncClient(base_url=server.http) as http:
        drops = await hearth_metric(http, "hearth_closes_total", code="4008")
        storm = 150  # more arrivals than --queue-frames, fewer than BURST_FACTOR times it
        joiners = await asyncio.gather(*(server.client(max_queue=None) for _ in range(storm)))
        welcomes = await asyncio.gather(*(joiner.join(room) for joiner in joiners))
        assert [w["t"] for w in welcomes] == ["welcome"] * storm
        heard = {(await watcher.next("joined"))["member"]["pid"] for _ in range(storm)}
        assert heard == {joiner.pid for joiner in joiners}
        mid = (await watcher.request({"t": "say", "text": "welcome, all"}))["mid"]
        for joiner in joiners:  # every one still here, reading the room
            await joiner.next("msg", mid=mid)
        assert await hearth_metric(http, "hearth_closes_total", code="4008") == drops
        await asyncio.gather(*(joiner.close() for joiner in joiners))

        drain = asyncio.create_task(_drain(watcher))
        text = "🌿" * 1900  # 7.6 KB: some hundreds fill the kernel's buffers on loopback
        async with asyncio.timeout(4 * WAIT):
            while await hearth_metric(http, "hearth_closes_total", code="4008") == drops:
                for _ in range(10):
                    await watcher.send({"t": "say", "text": text})
                await asyncio.sleep(0.005)  # pace the sender: its echoes are read too
        drain.cancel()
        stuck.ws.transport.resume_reading()
        assert await stuck.closed(timeout=2 * WAIT) == 4008
        assert await hearth_metric(http, "hearth_closes_total", code="4008") == drops + 1


async def _drain(client) -> None:
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        while True:
            await client.ws.recv()
