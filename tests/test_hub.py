"""The hub on its own: the real embedded backend, and fake connections (the hub's
:class:`~chat.localroom.Connection` protocol, style.md §5), no server and no sockets.

The backend hands the hub its entries through a :class:`Wire` the test can hold, so that a test
can deliver them late, twice or out of order, as a network would.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest

from chat import recovery
from chat.backend.base import Entry, MessageMeta
from chat.backend.memory import MemoryBackend
from chat.envelope import Delivery, Envelope
from chat.errors import CloseCode
from chat.hub import Hub
from chat.localroom import LocalRoom
from chat.ops import Admit, MemberAdd, MemberDrop, MemberSet, RoomClose
from chat.protocol import Encoding
from chat.roomstate import MemberState
from tests.test_backend import member, new_room
from tests.timing import wait_until


@dataclass(eq=False)
class FakeConnection:
    """A member's connection as the hub sees it: what it was sent, how it ended."""

    conn_id: str
    encoding: Encoding = Encoding.MSGPACK
    frames: list[tuple[bytes, int]] = field(default_factory=list)
    endings: list[tuple[CloseCode, str]] = field(default_factory=list)
    changes: list[MemberState] = field(default_factory=list)

    def send_frame(self, frame: bytes, seq: int) -> None:
        self.frames.append((frame, seq))

    def ended(self, code: CloseCode, reason: str) -> None:
        self.endings.append((code, reason))

    def changed(self, member: MemberState) -> None:
        self.changes.append(member)

    def messages(self) -> list[dict[str, Any]]:
        """The frames decoded, in the order they were sent."""
        if self.encoding is Encoding.MSGPACK:
            return [msgpack.unpackb(frame) for frame, _ in self.frames]
        return [json.loads(frame) for frame, _ in self.frames]

    def notes(self) -> list[int]:
        """The ``n`` of every test event received, in order."""
        return [m["n"] for m in self.messages() if m["t"] == "note"]


def _envelope(n: int) -> bytes:
    return Envelope((), [Delivery({"t": "note", "n": n})]).pack()


class Wire:
    """Between the backend and the hub: passes entries on, or holds them for the test."""

    def __init__(self) -> None:
        self.deliver: Callable[[str, Entry], None] = lambda room, entry: None
        self.holding = False
        self.held: list[Entry] = []

    def __call__(self, room: str, entry: Entry) -> None:
        if self.holding:
            self.held.append(entry)
        else:
            self.deliver(room, entry)


@dataclass
class Setup:
    hub: Hub
    backend: MemoryBackend
    wire: Wire
    room: LocalRoom
    conns: dict[str, FakeConnection]

    async def join(self, state: MemberState, encoding: Encoding = Encoding.MSGPACK) -> None:
        """Commit the member and attach a fake connection that holds it (``c<pid>``)."""
        conn = self.conns[state.pid] = FakeConnection(state.holder, encoding)
        await self.hub.commit(self.room, [MemberAdd(state)])
        self.hub.attach(self.room, conn, state)

    async def note(self, n: int, **recipients: Any) -> None:
        """Commit a test event ``{"t": "note", "n": n}`` for ``recipients`` (Delivery's)."""
        await self.hub.commit(self.room, (), [Delivery({"t": "note", "n": n}, **recipients)])


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    backend = MemoryBackend(history_messages=10, history_seconds=600, room_idle=60)
    hub, wire = Hub(backend), Wire()
    wire.deliver = hub.deliver
    await backend.start(wire, lambda: None)
    state = new_room()
    await backend.create_room(state)
    async with hub.using(state.id) as room:
        yield Setup(hub, backend, wire, room, {})
    await hub.aclose()


async def test_fan_out_encodes_once_per_encoding(setup: Setup) -> None:
    """One event to five members: each gets it once, and every member of one encoding gets
    the very same bytes (encoded once per encoding, §10), with the msg's seq."""
    encodings = [Encoding.MSGPACK, Encoding.JSON, Encoding.MSGPACK, Encoding.JSON, Encoding.JSON]
    for i, encoding in enumerate(encodings):
        await setup.join(member(f"p{i}"), encoding)
    said = {"t": "msg", "mid": "m1", "pid": "p0", "text": "hello", "ts": 1}
    await setup.hub.commit(setup.room, (), [Delivery(said)], MessageMeta("m1", 1))
    for encoding in Encoding:
        conns = [c for c in setup.conns.values() if c.encoding is encoding]
        assert all(len(c.frames) == 1 for c in conns)
        assert len({id(c.frames[0][0]) for c in conns}) == 1, f"{encoding} encoded twice"
        assert all(c.frames[0][1] == 1 for c in conns)  # the seq, for the outbox
        assert conns[0].messages() == [{**said, "seq": 1}]


async def test_recipients_follow_to_exclude_facilitators_and_waiting(setup: Setup) -> None:
    """Who gets an event: everyone present by default; ``to`` names pids (waiting ones too);
    ``exclude`` leaves one out; ``facilitators`` only them (plus ``to``); ``waiting`` adds
    the members at the door."""
    await setup.join(member("f1", role="facilitator"))
    await setup.join(member("p1"))
    await setup.join(member("p2"))
    await setup.join(member("w1", waiting=True))
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({}, {"f1", "p1", "p2"}),
        ({"to": ("p1",)}, {"p1"}),
        ({"to": ("w1", "p2")}, {"w1", "p2"}),
        ({"exclude": "p1"}, {"f1", "p2"}),
        ({"facilitators": True}, {"f1"}),
        ({"facilitators": True, "to": ("p2",)}, {"f1", "p2"}),
        ({"facilitators": True, "to": ("w1",)}, {"f1", "w1"}),
        ({"facilitators": True, "exclude": "f1"}, set()),
        ({"waiting": True}, {"f1", "p1", "p2", "w1"}),
        ({"waiting": True, "exclude": "p2"}, {"f1", "p1", "w1"}),
    ]
    for n, (recipients, _) in enumerate(cases):
        await setup.note(n, **recipients)
    for n, (recipients, expected) in enumerate(cases):
        got = {pid for pid, conn in setup.conns.items() if n in conn.notes()}
        assert got == expected, recipients
    assert all(c.notes() == sorted(c.notes()) for c in setup.conns.values())


async def test_a_gap_parks_entries_until_it_is_filled_then_applies_in_order(
    setup: Setup,
) -> None:
    """Entries that arrive after a gap wait; the missing one, arriving late, is applied and
    so are they, in offset order; a duplicate is ignored."""
    await setup.join(member("p1"))
    start = setup.room.state.off if setup.room.state else 0
    setup.wire.holding = True
    for n in (1, 2, 3):  # the hub does not hear them yet
        await setup.backend.commit(setup.room.id, (), _envelope(n))
    first, second, third = setup.wire.held
    conn = setup.conns["p1"]
    setup.hub.deliver(setup.room.id, third)
    setup.hub.deliver(setup.room.id, second)
    assert conn.notes() == [] and set(setup.room.pending) == {
        (third.epoch, third.off),
        (second.epoch, second.off),
    }
    setup.hub.deliver(setup.room.id, first)
    assert conn.notes() == [1, 2, 3]
    assert setup.room.state is not None and setup.room.state.off == start + 3
    assert setup.room.pending == {}
    setup.hub.deliver(setup.room.id, second)  # again: seen already
    assert conn.notes() == [1, 2, 3] and setup.room.pending == {}  # dropped, not parked


async def test_recovery_catches_up_with_what_never_arrived(setup: Setup) -> None:
    """A gap that nothing fills live: recovery (chat.recovery) brings the replica to the
    store's offset. The embedded backend keeps no stream (in one process nothing can be
    missed), so here it reloads the snapshot and tells the notices of the entry it did hear;
    reading missed entries back from a stream is tested on Redis (test_redis_recovery). A late
    copy of a lost entry is then ignored."""
    recovery.install(setup.hub)
    await setup.join(member("p1"))
    setup.wire.holding = True
    for n in (1, 2, 3):
        await setup.backend.commit(setup.room.id, (), _envelope(n))
    _, lost_2, late = setup.wire.held
    setup.wire.holding = False
    conn = setup.conns["p1"]
    setup.hub.deliver(setup.room.id, late)  # 1 and 2 were lost on the way
    assert conn.notes() == [] and setup.room.recovery is not None
    await wait_until(lambda: setup.room.recovery is None, what="the recovery ended")
    assert setup.room.state is not None and setup.room.state.off == late.off
    assert setup.room.pending == {} and conn.notes() == [3]
    setup.hub.deliver(setup.room.id, lost_2)  # a late copy of a lost one: ignored
    assert conn.notes() == [3] and setup.room.pending == {}


async def test_a_removed_members_connection_is_ended_4001(setup: Setup) -> None:
    """A MemberDrop "removed" ends the member's connection with 4001; a "denied" waiting one
    with 4003; a "left" one with 1000. Nobody else's connection ends."""
    for pid in ("p1", "p2", "p3"):
        await setup.join(member(pid))
    await setup.join(member("w1", waiting=True))
    for pid, why in (("p1", "removed"), ("w1", "denied"), ("p2", "left")):
        await setup.hub.commit(setup.room, [MemberDrop(pid, why)])
    codes = {pid: [code for code, _ in c.endings] for pid, c in setup.conns.items()}
    assert codes == {
        "p1": [CloseCode.REMOVED],
        "w1": [CloseCode.FORBIDDEN],
        "p2": [CloseCode.NORMAL],
        "p3": [],
    }
    assert list(setup.room.present) == ["p3"] and setup.room.waiting == {}


async def test_a_takeover_ends_the_old_connection(setup: Setup) -> None:
    """When another connection becomes the member's holder, the old one is ended (1000) and
    the new one is filed; it is not ended."""
    await setup.join(member("p1"))
    old = setup.conns["p1"]
    await setup.hub.commit(setup.room, [MemberSet("p1", {"holder": "new-conn"})])
    assert old.endings == [(CloseCode.NORMAL, "resumed on another connection")]
    assert "p1" not in setup.room.present
    new = FakeConnection("new-conn")
    state = setup.room.state
    assert state is not None
    setup.hub.attach(setup.room, new, state.members["p1"])
    assert setup.room.present["p1"].conn is new and new.endings == []
    assert len(old.endings) == 1


async def test_admit_moves_a_waiting_member_in_and_tells_its_connection(setup: Setup) -> None:
    """Admit: the waiting connection joins the present (it hears room events from then on)
    and is told its member changed."""
    await setup.join(member("w1", waiting=True))
    conn = setup.conns["w1"]
    await setup.note(1)
    await setup.hub.commit(setup.room, [Admit("w1")])
    await setup.note(2)
    assert conn.notes() == [2]
    assert [m.waiting for m in conn.changes][-1] is False
    assert "w1" in setup.room.present and setup.room.waiting == {}


async def test_room_close_ends_everyone_with_4010(setup: Setup) -> None:
    """RoomClose ends every local connection, present or waiting, with 4010, once."""
    await setup.join(member("f1", role="facilitator"))
    await setup.join(member("p1"))
    await setup.join(member("w1", waiting=True))
    await setup.hub.commit(setup.room, [RoomClose()], [Delivery({"t": "closed"}, waiting=True)])
    for conn in setup.conns.values():
        assert [code for code, _ in conn.endings] == [CloseCode.ROOM_CLOSED]
        assert conn.messages()[-1] == {"t": "closed"}
    assert setup.room.closed and setup.room.present == {} and setup.room.waiting == {}
