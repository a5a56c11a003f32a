"""Recovery and admission edge cases in one process (embedded backend, real Sessions)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

from chat import recovery
from chat.backend.memory import MemoryBackend
from chat.context import Services
from chat.hub import Hub
from chat.identity import hash_secret
from chat.ops import RoomSet
from chat.protocol import Encoding, Limits
from chat.roomstate import RoomState
from chat.session import Session
from chat.settings import Settings
from tests.timing import MS, wait_until

KEY = "k" * 32


async def start(**room: Any) -> tuple[Services, MemoryBackend, RoomState]:
    backend = MemoryBackend(history_messages=50, history_seconds=600, room_idle=600)
    hub = Hub(backend)
    recovery.install(hub)
    await hub.start()
    state = RoomState(
        id="r" + secrets.token_hex(3), title="T", rules="", key_hash=hash_secret(KEY),
        salt=secrets.token_bytes(16), created_ms=int(time.time() * 1000), **room,
    )  # fmt: skip
    await backend.create_room(state)
    return Services(settings=Settings(), hub=hub, limits=Limits()), backend, state


class Wire:
    """A fake ASGI peer: records every frame the server sends."""

    def __init__(self) -> None:
        self.frames: list[Any] = []

    async def receive(self) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            got = json.loads(message["text"])
            self.frames.extend(got if isinstance(got, list) else [got])

    def of(self, t: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("t") == t]


def session(services: Services, n: int) -> tuple[Session, Wire]:
    wire = Wire()
    return Session(wire.receive, wire.send, services, Encoding.JSON, f"10.0.0.{n}"), wire


async def handle(s: Session, wire: Wire, expect: str, **msg: Any) -> None:
    """Hand the session one request and wait for the frame it answers with (the outbox
    writes once per loop turn, after the handler returned)."""
    before = len(wire.of(expect))
    await s._handle(json.dumps(msg))
    await wait_until(lambda: len(wire.of(expect)) > before, what=f"{expect} for {msg['t']}")


async def test_a_reload_wakes_the_commits_waiting_for_it() -> None:
    """A commit whose own entry is lost and then covered by a reload (not by an applied
    entry) must return once the replica holds it: had nothing woken its waiter, the caller
    would wait CATCH_UP_LIMIT and get ``unavailable`` for a change that happened. (The
    embedded backend keeps no stream to read back: recovery reloads.)"""
    services, backend, state = await start()
    async with services.hub.using(state.id) as room:
        backend._subscribed.discard(state.id)  # our own entry is lost, as a dropped publish
        began = time.monotonic()
        await services.hub.commit(room, [RoomSet({"slow": 5})])  # raises Unavailable today
        assert room.state is not None and room.state.slow == 5
        assert time.monotonic() - began < 2.0


async def test_an_admitted_member_gets_no_message_twice() -> None:
    """A message committed between a knock's admission (events held from then on) and the
    admitted task that builds the welcome is in the welcome's history AND among the held
    events: the participant receives it twice."""
    services, _, state = await start(admission="knock")
    fac, fac_wire = session(services, 1)
    talker, talker_wire = session(services, 2)
    guest, wire = session(services, 3)
    await handle(fac, fac_wire, "welcome", t="join", room=state.id, key=KEY, name="Fac")
    await handle(talker, talker_wire, "welcome", t="join", room=state.id, key=KEY, name="Other")
    await handle(guest, wire, "waiting", t="join", room=state.id, name="Guest", id=7)
    assert not wire.of("welcome")
    # The admission and another member's message are handled in the same loop turn.
    await asyncio.gather(
        fac._handle(json.dumps({"t": "admit", "pid": guest.pid})),
        talker._handle(json.dumps({"t": "say", "text": "hello, newcomer"})),
    )
    await wait_until(lambda: wire.of("welcome"), what="the admitted guest's welcome")
    await asyncio.sleep(50 * MS)  # a window to show: no message comes a second time
    [welcome] = wire.of("welcome")
    seen = [m["seq"] for m in welcome["history"]] + [m["seq"] for m in wire.of("msg")]
    assert len(seen) == len(set(seen)), f"seqs received twice: {seen}"


class Spy(dict):  # type: ignore[type-arg]
    """room.pending that stops a runaway loop (it raises once popped too often)."""

    pops = 0

    def pop(self, *args: Any) -> Any:
        Spy.pops += 1
        if Spy.pops > 1000:
            raise RuntimeError("runaway drain")
        return super().pop(*args)


async def test_an_entry_this_worker_cannot_read_does_not_hang_the_worker() -> None:
    """An entry Envelope.unpack refuses (an op kind from a newer version during a rolling
    upgrade; a malformed frame on a clear bus) is re-parked by apply_entry at off+1, and
    drain() pops it again at once: a synchronous infinite loop that freezes the event loop
    (every room and connection of the worker). Here the spy stops it after 1000 rounds."""
    from chat.protocol import pack_envelope

    services, backend, state = await start()
    async with services.hub.using(state.id) as room:
        room.pending = Spy()
        await backend.commit(state.id, [], pack_envelope({"o": [["zz"]], "d": []}))
        room.closed = True  # let the test end
    assert Spy.pops < 10, f"drain popped the same entry {Spy.pops} times"


class FakeConn:
    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self.encoding = Encoding.JSON
        self.got: list[dict[str, Any]] = []

    def send_frame(self, frame: bytes, seq: int) -> None:
        self.got.append(json.loads(frame))

    def ended(self, code: Any, reason: str) -> None:
        self.got.append({"t": "<ended>"})

    def changed(self, member: Any) -> None:
        pass


async def test_a_reload_does_not_drop_the_events_it_had_heard() -> None:
    """With history in worker memory (a persisting Redis) read_after is always None, so any
    recovery (a gap, a nudge of a commit slower than 0.5 s, the watch) reloads. Entries heard
    while it runs are parked, and those the snapshot covers are deleted unseen: a help flare,
    a whisper or a report that nobody missed is dropped on the floor."""
    from chat.envelope import Delivery
    from chat.events import HelpEvent
    from chat.ops import MemberAdd
    from chat.roomstate import MemberState

    services, backend, state = await start()

    async def persisting(room: str, epoch: int, off: int) -> None:
        return None

    backend.read_after = persisting  # type: ignore[method-assign]
    hub = services.hub
    async with hub.using(state.id) as room:
        fac = MemberState(pid="f1", name="Fac", role="facilitator", resume_hash="r",
                          address_hash="a", name_token="n", holder="c1")  # fmt: skip
        await hub.commit(room, [MemberAdd(fac)])
        conn = FakeConn("c1")
        hub.attach(room, conn, room.state.members["f1"])  # type: ignore[union-attr]
        hub.recover(room)  # e.g. the watch, or a commit nudged after 0.5 s
        from chat.envelope import Envelope

        flare = Envelope((), [Delivery(HelpEvent("p9", 1), facilitators=True)]).pack()
        await backend.commit(state.id, [], flare)  # heard here, parked behind the recovery
        await wait_until(lambda: [m for m in conn.got if m["t"] == "help"], what="the flare")


async def test_a_fork_of_the_stream_makes_the_replica_reload() -> None:
    """An entry at an offset already applied, with other content (the store forked after a
    failover lost writes), is not taken as a repeat: the replica reloads from the store."""
    from chat.backend.base import Entry
    from chat.envelope import Envelope

    services, backend, state = await start()
    hub = services.hub
    async with hub.using(state.id) as room:
        await hub.commit(room, [RoomSet({"slow": 5})])
        replica = room.state
        assert replica is not None and replica.slow == 5
        same = Entry(replica.epoch, replica.off, 0, Envelope([RoomSet({"slow": 5})]).pack())
        other = Entry(replica.epoch, replica.off, 0, Envelope([RoomSet({"slow": 9})]).pack())
        reloads = []
        real = backend.snapshot

        async def counted(room_id: str) -> Any:
            reloads.append(room_id)
            return await real(room_id)

        backend.snapshot = counted  # type: ignore[method-assign]
        hub.deliver(state.id, same)  # a repeat: nothing to do
        await asyncio.sleep(50 * MS)  # a window to show: no reload starts
        assert reloads == []
        hub.deliver(state.id, other)
        await wait_until(lambda: reloads == [state.id] and not room.needs_reload, what="reload")
