"""One connection's life (chat.session) on its own: its phases, the join timeout, and the
answers that end it. Real Sessions on a real hub (embedded backend); the peer is a fake ASGI
wire the test feeds frames to and reads frames and closes from.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

from chat.context import Phase, Services, now_ms
from chat.protocol import Encoding
from chat.review import forget_old
from chat.session import Session
from chat.settings import Settings
from tests.test_recovery import KEY, start
from tests.timing import MS, wait_until


class Peer:
    """A fake ASGI peer: the test puts frames in; every frame and close the server sends is
    recorded. ``open`` cleared stalls the server's sends, as a client that stopped reading."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.frames: list[dict[str, Any]] = []
        self.closes: list[tuple[int, str]] = []
        self.frames_before_close = 0
        self.open = asyncio.Event()
        self.open.set()

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        await self.open.wait()
        if message["type"] == "websocket.send":
            got = json.loads(message["text"])
            self.frames.extend(got if isinstance(got, list) else [got])
        elif message["type"] == "websocket.close":
            self.closes.append((message["code"], message.get("reason", "")))
            self.frames_before_close = len(self.frames)

    def says(self, **msg: Any) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "text": json.dumps(msg)})

    def hangs_up(self) -> None:
        self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1006})

    def of(self, t: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("t") == t]

    async def next(self, t: str) -> dict[str, Any]:
        got = await wait_until(lambda: self.of(t), what=f"a {t} frame")
        return got[-1]


class Running:
    """A Session served by its own task, as the app runs it."""

    def __init__(self, services: Services, n: int) -> None:
        self.peer = Peer()
        self.session = Session(
            self.peer.receive, self.peer.send, services, Encoding.JSON, f"10.0.1.{n}"
        )
        self.task = asyncio.ensure_future(self.session.run())

    async def over(self) -> None:
        """The peer goes; run() must return (and leave the hub tidy)."""
        self.peer.hangs_up()
        async with asyncio.timeout(5.0):
            await self.task


async def facilitator_and_participant(services: Services, room: str) -> tuple[Running, Running]:
    """Two sessions in the room, both welcomed."""
    fac, participant = Running(services, 1), Running(services, 2)
    fac.peer.says(t="join", room=room, key=KEY, name="Fac")
    participant.peer.says(t="join", room=room, name="Participant")
    await fac.peer.next("welcome")
    await participant.peer.next("welcome")
    return fac, participant


async def test_a_member_goes_from_joining_to_present_to_closing_to_closed() -> None:
    services, _, state = await start()
    one = Running(services, 1)
    assert one.session.phase is Phase.JOINING
    one.peer.says(t="join", room=state.id, key=KEY, name="Fac", id=1)
    welcome = await one.peer.next("welcome")
    assert welcome["id"] == 1 and one.session.phase is Phase.PRESENT
    one.peer.open.clear()  # the close cannot go out yet
    one.peer.says(t="leave", id=2)
    await wait_until(lambda: one.session.phase is Phase.CLOSING, what="closing")
    one.peer.open.set()
    await wait_until(lambda: one.session.phase is Phase.CLOSED, what="closed")
    assert one.peer.closes == [(1000, "")]
    await one.over()
    room = services.hub.rooms.get(state.id)
    assert one.session.room is None and (room is None or not room.present)


async def test_leave_is_acked_with_its_id_before_the_close_and_without_one_just_closes() -> None:
    """The dispatcher's ack for a request that ends the session (leave): the ack carries the
    request's id and comes before the close; a leave without an id gets only the close."""
    services, _, state = await start()
    fac, quiet = await facilitator_and_participant(services, state.id)
    quiet.peer.says(t="leave", id=9)
    await wait_until(lambda: quiet.peer.closes, what="the close after leave")
    assert quiet.peer.frames[-1] == {"t": "ack", "id": 9}
    assert quiet.peer.closes == [(1000, "")]
    left = await fac.peer.next("left")
    assert left["pid"] == quiet.session.pid
    fac.peer.says(t="leave")
    await wait_until(lambda: fac.peer.closes, what="the close after a leave without id")
    assert fac.peer.of("ack") == [] and fac.peer.closes == [(1000, "")]
    await quiet.over()
    await fac.over()


async def test_a_knocker_waits_then_is_admitted_with_its_join_id() -> None:
    services, _, state = await start(admission="knock")
    fac, guest = Running(services, 1), Running(services, 2)
    fac.peer.says(t="join", room=state.id, key=KEY, name="Fac")
    await fac.peer.next("welcome")
    guest.peer.says(t="join", room=state.id, name="Guest", id=4)
    await guest.peer.next("waiting")
    assert guest.session.phase is Phase.WAITING
    fac.peer.says(t="admit", pid=guest.session.pid)
    welcome = await guest.peer.next("welcome")
    assert welcome["id"] == 4 and guest.session.phase is Phase.PRESENT
    await guest.over()
    await fac.over()


async def test_no_join_in_time_gets_not_joined_and_1008_and_a_join_stops_the_clock() -> None:
    services, _, state = await start()
    services = replace(services, settings=replace(Settings(), join_timeout=0.2))
    idle, joined = Running(services, 1), Running(services, 2)
    joined.peer.says(t="join", room=state.id, key=KEY, name="Fac")
    await joined.peer.next("welcome")
    await wait_until(lambda: idle.peer.closes, what="the join timeout")
    assert [e["code"] for e in idle.peer.of("error")] == ["not_joined"]
    assert idle.peer.closes == [(1008, "join timeout")]
    assert idle.session.phase is Phase.CLOSED
    await asyncio.sleep(300 * MS)  # a window to show: a member's connection has no deadline
    assert joined.peer.closes == [] and joined.session.phase is Phase.PRESENT
    await idle.over()
    await joined.over()


async def test_the_closing_facilitator_gets_its_ack_before_4010() -> None:
    """close's ack is sent by the session when the room's end reaches the connection (Part 2:
    acked before ``closed``), with the request's id."""
    services, _, state = await start()
    fac, other = await facilitator_and_participant(services, state.id)
    fac.peer.says(t="close", id=5)
    await wait_until(lambda: fac.peer.closes and other.peer.closes, what="both closed")
    acks = [i for i, f in enumerate(fac.peer.frames) if f == {"t": "ack", "id": 5}]
    assert len(acks) == 1 and acks[0] < fac.peer.frames_before_close
    assert fac.peer.closes[0][0] == 4010 and other.peer.closes[0][0] == 4010
    await fac.over()
    await other.over()


async def test_a_worker_replica_forgets_held_messages_past_the_history_age() -> None:
    """Held text leaves this worker's replica at the history's age (review.forget_old, which
    the heartbeat and the idle sweep run), and a release of it is then not_found (§14)."""
    services, _, state = await start(review="all")
    services = replace(services, settings=replace(Settings(), history_seconds=0.3))
    fac, participant = await facilitator_and_participant(services, state.id)
    participant.peer.says(t="say", text="kept a while", id=3)
    held = await fac.peer.next("held")
    room = services.hub.rooms[state.id]
    assert room.state is not None and list(room.state.held) == [held["mid"]]
    await asyncio.sleep(0.4)  # wall-clock time must pass: held text is kept for 0.3 s
    forget_old(services, services.hub.rooms.values(), now_ms())
    assert room.state.held == {}
    fac.peer.says(t="release", mid=held["mid"], id=4)
    assert (await fac.peer.next("error"))["code"] == "not_found"
    await fac.over()
    await participant.over()
