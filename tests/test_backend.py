"""The backend contract, run on the embedded backend and on Redis alike (two "workers").

Every commit must leave the store exactly as :func:`chat.roomstate.apply` leaves a replica
(the Lua interpreter of ops and the Python one agree), refuse what its preconditions refuse
without changing anything, and reach every subscriber in offset order.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from chat.backend.base import Backend, Entry, MessageMeta
from chat.backend.memory import MemoryBackend
from chat.buscrypt import Sealer
from chat.envelope import Delivery, Envelope
from chat.errors import Unavailable
from chat.ops import (
    Admit,
    BanAdd,
    HeldAdd,
    HeldDrop,
    HistoryDrop,
    HistoryEdit,
    KeyAdd,
    KeyDrop,
    LogAdd,
    MemberAdd,
    MemberDrop,
    MemberSet,
    Op,
    Refused,
    ReportAdd,
    ReportDrop,
    RoomClose,
    RoomSet,
    SeatLimit,
    apply,
)
from chat.redis.backend import RedisBackend
from chat.redis.client import RedisSpace, connect
from chat.roomstate import ROOM_PRIVATE, MemberState, RoomState, copy_state
from tests.redis_server import RedisServer, redis_server
from tests.timing import WAIT, wait_until

__all__ = ["redis_server"]  # fixture, imported for pytest

KEY = bytes(range(32))


class Inbox:
    """Collects delivered entries and lets a test wait for them."""

    def __init__(self) -> None:
        self.got: list[tuple[str, Entry]] = []
        self._changed = asyncio.Event()

    def __call__(self, room: str, entry: Entry) -> None:
        self.got.append((room, entry))
        self._changed.set()

    async def wait_for(self, count: int) -> list[tuple[str, Entry]]:
        async with asyncio.timeout(WAIT):
            while len(self.got) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.got


@dataclass
class Pair:
    """Two workers on one store (the same object for the embedded backend)."""

    a: Backend
    b: Backend
    inbox_a: Inbox
    inbox_b: Inbox
    kind: str


def redis_backend(server: RedisServer, prefix: str, **kwargs: Any) -> RedisBackend:
    sealer = kwargs.pop("sealer", Sealer(KEY))
    space = RedisSpace(connect(server.url), prefix, sealer, 60)
    options: dict[str, Any] = {"history_messages": 3, "history_seconds": 600}
    options.update(kwargs)
    return RedisBackend(space, **options)


@contextlib.asynccontextmanager
async def alone(
    server: RedisServer, prefix: str, inbox: Inbox | None = None
) -> AsyncIterator[RedisBackend]:
    """One started Redis backend on ``prefix`` (a worker on its own), closed afterwards."""
    backend = redis_backend(server, prefix)
    await backend.start(inbox or Inbox(), lambda: None)
    try:
        yield backend
    finally:
        await backend.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    inbox_a, inbox_b = Inbox(), Inbox()
    if request.param == "memory":
        memory = MemoryBackend(history_messages=3, history_seconds=600, room_idle=60)

        def both(room: str, entry: Entry) -> None:
            inbox_a(room, entry)
            inbox_b(room, entry)

        await memory.start(both, lambda: None)
        yield Pair(memory, memory, inbox_a, inbox_b, "memory")
        await memory.aclose()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    prefix = "t" + secrets.token_hex(4)
    a, b = redis_backend(server, prefix), redis_backend(server, prefix)
    await a.start(inbox_a, lambda: None)
    await b.start(inbox_b, lambda: None)
    assert a.ready and b.ready
    yield Pair(a, b, inbox_a, inbox_b, "redis")
    await a.aclose()
    await b.aclose()


ROUND = {"mode": "queue", "strict": False, "speaker": None, "queue": ["p2", "f1"]}


def new_room(room_id: str = "room1") -> RoomState:
    return RoomState(
        id=room_id, title="Tuesday", rules="Be kind", key_hash="h" * 64,
        salt=secrets.token_bytes(16), created_ms=now_ms(),
    )  # fmt: skip


def member(pid: str, *, role: str = "participant", waiting: bool = False) -> MemberState:
    return MemberState(
        pid=pid, name=f"Name {pid}", role=role, resume_hash="r" + pid, address_hash="a" + pid,
        name_token="n" + pid, holder="c" + pid, waiting=waiting, tokens=10.0, stamp=now_ms(),
    )  # fmt: skip


def cofacilitator(pid: str, token: str) -> MemberState:
    joined = member(pid, role="facilitator")
    joined.label = token
    return joined


def now_ms() -> int:
    return int(time.time() * 1000)


def envelope(*ops: Op, event: dict[str, Any] | None = None) -> bytes:
    return Envelope(ops, [Delivery(event)] if event else []).pack()


async def commit(backend: Backend, room: str, *ops: Op, message: MessageMeta | None = None) -> int:
    return (await backend.commit(room, ops, envelope(*ops), message)).off


async def say(backend: Backend, room: str, pid: str, text: str, *, guarded: bool = True) -> int:
    mid = secrets.token_urlsafe(6)
    event = {"t": "msg", "mid": mid, "pid": pid, "text": text, "ts": now_ms()}
    meta = MessageMeta(mid, now_ms(), pid if guarded else None)
    return (await backend.commit(room, [], envelope(event=event), meta)).seq


def comparable(state: RoomState) -> dict[str, Any]:
    """What the store must agree on with a replica (positions aside)."""
    return {
        "settings": state.public_settings(),
        "kept": {name: getattr(state, name) for name in ROOM_PRIVATE},
        "record": (state.title, state.rules, state.key_hash, state.salt, state.created_ms),
        "members": {pid: m for pid, m in sorted(state.members.items())},
        "bans": state.bans,
        "reports": state.reports,
        "log": state.log,
        "held": state.held,
        "keys": state.keys,
    }


async def test_commits_leave_the_store_as_the_replica_rule_says(pair: Pair) -> None:
    """Every op, committed, gives the snapshot that apply() gives a copy of the start."""
    room = new_room()
    await pair.a.create_room(room)
    await pair.a.subscribe(room.id)
    replica = await pair.b.snapshot(room.id)
    assert replica is not None and comparable(replica) == comparable(room)
    await say(pair.a, room.id, "nobody", "from the facilitator", guarded=False)
    replica.seq += 1  # as a replica does when it applies a message's entry
    mid = (await pair.a.history(room.id, 0))[0]
    mid_text = Envelope.unpack(mid.data).out[0].event["mid"]
    now = now_ms()  # held messages are kept for the history's age from their ts (§14)
    steps: list[list[Op]] = [
        [MemberAdd(member("p1")), MemberAdd(member("p2", waiting=True))],
        [MemberAdd(member("f1", role="facilitator"))],
        [MemberSet("p1", {"muted": True, "muted_until": None}, {"role": "participant"})],
        [RoomSet({"locked": True}), RoomSet({"slow": 30})],
        [Admit("p2")],
        [BanAdd("some-address")],
        [ReportAdd({"mid": mid_text, "by": "p2", "reason": "hurtful", "ts": 5}, 10)],
        [LogAdd({"action": "mute", "by": "f1", "pid": "p1", "ts": 6})],
        [MemberSet("p1", {"online": False, "away_since": 7, "tokens": 3.5})],
        [MemberDrop("p1", "removed", {"role": "participant"}, ban=True)],
        [RoomSet({"locked": False})],
        # §14
        [RoomSet({"review": "all", "contact": "block"})],
        [MemberSet("p2", {"held": True, "warnings": 2, "ignores": ["x", "y"]})],
        [MemberSet("p2", {"ignores": ["y"], "resources_at": 9}, {"ignores": ["x", "y"]})],
        [HeldAdd({"mid": "h1", "pid": "p2", "name": "N", "text": "wait", "ts": now + 8})],
        [HeldAdd({"mid": "h2", "pid": "p2", "name": "N", "text": "two", "ts": now + 9, "cw": "c"})],
        [HeldAdd({"mid": "h3", "pid": "p2", "name": "N", "text": "3", "ts": now + 10}, ("h1",))],
        [HeldDrop("h2")],
        [KeyAdd("tok1", {"label": "Sam's key", "hash": "k" * 64, "ts": 11})],
        [MemberAdd(cofacilitator("c1", "tok1"))],
        [ReportDrop(mid_text)],
        [KeyDrop("tok1", ("c1",)), MemberDrop("c1", "revoked", {"label": "tok1"})],
        # §13: settings whose values are whole states, changed by compare-and-set.
        [SeatLimit(False, 5), SeatLimit(True, 5), RoomSet({"round": ROUND}, {"round": None})],
        [RoomSet({"round": {**ROUND, "speaker": "p2"}}, {"round": ROUND})],
        [RoomSet({"pause": True, "ends_at": 10**12, "flares": [{"pid": "p2", "ts": 5}]})],
        [RoomSet({"warned": 10**12, "opened": True}, {"ends_at": 10**12, "warned": 0})],
        [MemberSet("p2", {"stepped_out": True})],
    ]
    for ops in steps:
        for op in ops:
            apply(replica, op)
        await commit(pair.a, room.id, *ops)
        stored = await pair.b.snapshot(room.id)
        assert stored is not None
        assert comparable(stored) == comparable(replica), ops
    assert replica.members["p2"].joined_seq == 1  # admitted after the first message
    assert "ap1" in replica.bans  # the removed member's address
    assert list(replica.held) == ["h3"] and not replica.keys and not replica.reports
    await commit(pair.a, room.id, HistoryEdit(mid_text, "grief"))
    edited = await pair.b.history(room.id, 0)
    assert Envelope.unpack(edited[0].data).out[0].event["cw"] == "grief"
    await commit(pair.a, room.id, HistoryEdit(mid_text, ""))
    edited = await pair.b.history(room.id, 0)
    assert "cw" not in Envelope.unpack(edited[0].data).out[0].event


async def test_refused_commits_change_nothing(pair: Pair) -> None:
    """Each precondition refuses with its reason, and neither state nor offset moves."""
    room = new_room()
    await pair.a.create_room(room)
    await commit(
        pair.a, room.id, MemberAdd(member("p1")), MemberAdd(member("f1", role="facilitator"))
    )
    await commit(pair.a, room.id, MemberAdd(member("w1", waiting=True)), BanAdd("abanned"))
    await commit(pair.a, room.id, MemberSet("p1", {"muted": True, "muted_until": None}))
    await commit(pair.a, room.id, KeyAdd("tok", {"label": "x", "hash": "h", "ts": 1}))
    await commit(pair.a, room.id, MemberAdd(cofacilitator("c1", "tok")))
    await commit(pair.a, room.id, MemberAdd(member("held")), MemberAdd(member("free")))
    await commit(pair.a, room.id, MemberSet("held", {"held": True}))
    before = await pair.a.snapshot(room.id)
    assert before is not None
    taken = member("p9")
    taken.name_token = "np1"
    banned = member("banned")
    refusals: list[tuple[list[Op], str]] = [
        ([MemberAdd(taken)], "taken"),
        ([MemberAdd(banned)], "banned"),
        ([MemberSet("ghost", {"muted": False})], "missing"),
        ([MemberSet("p1", {"muted": False}, {"holder": "someone else"})], "mismatch"),
        ([RoomSet({"slow": 5}), MemberDrop("ghost", "removed")], "missing"),
        ([Admit("p1")], "waiting"),
        ([RoomSet({"slow": 5}, {"locked": True})], "mismatch"),
        ([HistoryDrop("no-such-mid")], "nomsg"),
        ([MemberAdd(member("p8")), SeatLimit(False, 1)], "capacity"),  # p1 is present
        ([SeatLimit(True, 1)], "capacity"),  # w1 is waiting
        ([RoomSet({"round": ROUND}, {"round": {**ROUND, "strict": True}})], "mismatch"),
        ([ReportAdd({"mid": "no-such-mid", "by": "p1", "reason": "", "ts": 1}, 10)], "nomsg"),
        # §14
        ([HeldDrop("no-such-mid")], "nomsg"),
        ([ReportDrop("no-such-mid")], "missing"),
        ([KeyAdd("owner", {"label": "owner", "hash": "h", "ts": 1})], "taken"),
        ([KeyAdd("tok", {"label": "x", "hash": "h", "ts": 1})], "taken"),
        ([KeyDrop("nokey")], "missing"),
        ([KeyDrop("tok", ())], "mismatch"),  # c1 holds it
        ([KeyDrop("tok", ("c1", "f1"))], "mismatch"),
        ([MemberAdd(cofacilitator("c2", "gone"))], "revoked"),
        ([HistoryEdit("no-such-mid", "cw")], "nomsg"),
    ]
    for ops, reason in refusals:
        with pytest.raises(Refused) as refused:
            await commit(pair.a, room.id, *ops)
        assert refused.value.reason == reason, ops
    for guarded in ("p1", "w1", "ghost", "held"):  # muted, waiting, absent, under review
        with pytest.raises(Refused) as refused:
            await say(pair.a, room.id, guarded, "may I?")
        assert refused.value.reason == "guard"
    await say(pair.a, room.id, "free", "fine")
    await commit(pair.a, room.id, RoomSet({"review": "all"}))  # §14: everyone under review
    with pytest.raises(Refused) as refused:
        await say(pair.a, room.id, "free", "and now?")
    assert refused.value.reason == "guard"
    await commit(pair.a, room.id, RoomSet({"review": "off"}))
    await commit(pair.a, room.id, RoomSet({"locked": True}))
    with pytest.raises(Refused) as refused:
        await commit(pair.a, room.id, MemberAdd(member("late")))
    assert refused.value.reason == "locked"
    await commit(pair.a, room.id, MemberAdd(member("f2", role="facilitator")))  # staff may
    after = await pair.a.snapshot(room.id)
    assert after is not None and after.off == before.off + 5
    with pytest.raises(Refused) as refused:
        await commit(pair.a, "no-such-room", RoomSet({"slow": 1}))
    assert refused.value.reason == "noroom"


async def test_reports_are_deduplicated_and_capped_per_reporter(pair: Pair) -> None:
    """A second report of one message by one member is ``dup``; the cap is ``full`` (§11)."""
    room = new_room()
    await pair.a.create_room(room)
    mids = []
    for i in range(3):
        await say(pair.a, room.id, "f", f"m{i}", guarded=False)
    for entry in await pair.a.history(room.id, 0):
        mids.append(Envelope.unpack(entry.data).out[0].event["mid"])
    report = {"mid": mids[0], "by": "p1", "reason": "first", "ts": 1}
    await commit(pair.a, room.id, ReportAdd(report, 2))
    for ops, reason in (([ReportAdd({**report, "reason": "again"}, 2)], "dup"),):
        with pytest.raises(Refused) as refused:
            await commit(pair.a, room.id, *ops)
        assert refused.value.reason == reason
    await commit(pair.a, room.id, ReportAdd({**report, "mid": mids[1]}, 2))
    with pytest.raises(Refused) as refused:
        await commit(pair.a, room.id, ReportAdd({**report, "mid": mids[2]}, 2))
    assert refused.value.reason == "full"
    await commit(pair.a, room.id, ReportAdd({**report, "mid": mids[2], "by": "p2"}, 2))
    state = await pair.b.snapshot(room.id)
    assert state is not None
    assert [r["reason"] for r in state.reports.values()] == ["first", "first", "first"]


async def test_entries_reach_every_subscriber_in_order_and_read_back(pair: Pair) -> None:
    """Offsets go 1, 2, 3... for everything; seq only for messages; the stream reads back
    from Redis (the embedded backend hands every entry over as it commits and keeps no
    stream: a current replica has missed nothing, any other must reload)."""
    room = new_room()
    await pair.a.create_room(room)
    await pair.a.subscribe(room.id)
    await pair.b.subscribe(room.id)
    await commit(pair.a, room.id, MemberAdd(member("p1")))
    seqs = [await say(pair.b, room.id, "p1", f"m{i}") for i in range(3)]
    await commit(pair.a, room.id, RoomSet({"slow": 3}))
    assert seqs == [1, 2, 3]
    for inbox in (pair.inbox_a, pair.inbox_b):
        got = [entry for _, entry in await inbox.wait_for(5)]
        assert [e.off for e in got] == [1, 2, 3, 4, 5]
        assert [e.seq for e in got] == [0, 1, 2, 3, 0]
        assert len({e.epoch for e in got}) == 1
    epoch = pair.inbox_a.got[0][1].epoch
    back = await pair.b.read_after(room.id, epoch, 2)
    if pair.kind == "memory":
        assert back is None
    else:
        assert back is not None and [e.off for e in back] == [3, 4, 5]
        assert [e.data for e in back] == [e.data for _, e in pair.inbox_a.got[2:]]
    assert await pair.a.read_after(room.id, epoch, 5) == []
    assert await pair.a.read_after(room.id, epoch + 1, 0) is None  # another epoch
    await pair.a.publish(room.id, envelope(event={"t": "typing", "pid": "p1"}))
    got = await pair.inbox_b.wait_for(6)
    assert got[-1][1].off == 0  # ephemeral: not on the stream


async def test_only_subscribed_rooms_are_heard(pair: Pair) -> None:
    """A worker hears the rooms it subscribes to and no other; after unsubscribing, not that
    one either. (No sleeps: a later entry of a room still heard shows that an earlier one of
    another room was not delivered, since a worker hears entries in commit order.)"""
    heard, unheard, marker = new_room("heard"), new_room("unheard"), new_room("marker")
    for room in (heard, unheard, marker):
        await pair.a.create_room(room)
    for backend in (pair.a, pair.b):
        await backend.subscribe(heard.id)
        await backend.subscribe(marker.id)
    await commit(pair.a, unheard.id, RoomSet({"slow": 1}))
    await commit(pair.a, heard.id, RoomSet({"slow": 1}))
    for inbox in (pair.inbox_a, pair.inbox_b):
        assert [room for room, _ in await inbox.wait_for(1)] == ["heard"]

    await pair.b.unsubscribe(heard.id)  # on the embedded backend, a is b: nobody hears it
    await commit(pair.a, heard.id, RoomSet({"slow": 2}))
    await commit(pair.a, marker.id, RoomSet({"slow": 2}))
    still = ["heard"] if pair.kind == "redis" else []  # A's own subscription is untouched
    for inbox, expected in ((pair.inbox_a, [*still, "marker"]), (pair.inbox_b, ["marker"])):
        await wait_until(lambda inbox=inbox: inbox.got[-1][0] == "marker", what="the marker")
        assert [room for room, _ in inbox.got] == ["heard", *expected]


async def test_history_is_bounded_and_deletable(pair: Pair) -> None:
    """The last N messages stay, in seq order; a deleted one is gone for every worker."""
    room = new_room()
    await pair.a.create_room(room)
    for i in range(5):
        await say(pair.a, room.id, "f", f"m{i}", guarded=False)
    kept = await pair.b.history(room.id, 0)
    assert [e.seq for e in kept] == [3, 4, 5]
    assert [Envelope.unpack(e.data).out[0].event["text"] for e in kept] == ["m2", "m3", "m4"]
    assert [e.seq for e in await pair.b.history(room.id, 4)] == [5]
    mid = Envelope.unpack(kept[1].data).out[0].event["mid"]
    assert await pair.a.has_message(room.id, mid)
    await commit(pair.a, room.id, HistoryDrop(mid))
    assert not await pair.b.has_message(room.id, mid)
    assert [e.seq for e in await pair.b.history(room.id, 0)] == [3, 5]


async def test_close_wipes_the_room(pair: Pair) -> None:
    """After RoomClose there is no room: no snapshot, ended, and every commit is refused."""
    room = new_room()
    await pair.a.create_room(room)
    await commit(pair.a, room.id, MemberAdd(member("p1")))
    assert not await pair.a.ended(room.id)
    await commit(pair.a, room.id, RoomClose())
    assert await pair.b.snapshot(room.id) is None
    assert await pair.b.ended(room.id)
    assert await pair.b.history(room.id, 0) == []
    with pytest.raises(Refused):
        await commit(pair.b, room.id, MemberAdd(member("p2")))


@pytest.mark.redis
async def test_a_room_lost_with_redis_memory_is_restored(redis_server: RedisServer) -> None:
    """FLUSHALL: no room, but not ended; a worker's replica writes it back in a new epoch,
    with a Reset entry; a closed room is never brought back."""
    prefix = "t" + secrets.token_hex(4)
    inbox = Inbox()
    async with alone(redis_server, prefix, inbox) as a:
        room = new_room()
        await a.create_room(room)
        await a.subscribe(room.id)
        await commit(a, room.id, MemberAdd(member("p1")), BanAdd("abanned"))
        await commit(a, room.id, MemberSet("p1", {"muted": True, "muted_until": None}))
        await say(a, room.id, "f", "hello", guarded=False)
        replica = await a.snapshot(room.id)
        assert replica is not None
        redis_server.cli("FLUSHALL")
        assert await a.snapshot(room.id) is None
        assert not await a.ended(room.id)
        with pytest.raises(Refused) as refused:
            await commit(a, room.id, RoomSet({"slow": 1}))
        assert refused.value.reason == "noroom"
        assert await a.restore(copy_state(replica))
        assert not await a.restore(copy_state(replica))  # once is enough
        back = await a.snapshot(room.id)
        assert back is not None and comparable(back) == comparable(replica)
        assert back.epoch != replica.epoch and back.off == replica.off + 1
        assert back.seq == replica.seq
        got = await inbox.wait_for(4)
        reset = Envelope.unpack(got[-1][1].data)
        assert got[-1][1].epoch == back.epoch and type(reset.ops[0]).__name__ == "Reset"
        with pytest.raises(Refused) as refused:
            await say(a, room.id, "p1", "still muted?")
        assert refused.value.reason == "guard"
        assert await say(a, room.id, "f", "again", guarded=False) == replica.seq + 1
        await commit(a, room.id, RoomClose())
        assert not await a.restore(copy_state(replica))


@pytest.mark.redis
async def test_a_store_behind_a_worker_refuses_and_is_restored(redis_server: RedisServer) -> None:
    """A failover that lost writes leaves the store behind a worker's replica: commits are
    refused (``behind``) until the worker writes its state back."""
    prefix = "t" + secrets.token_hex(4)
    async with alone(redis_server, prefix) as a:
        room = new_room()
        await a.create_room(room)
        await a.subscribe(room.id)
        await commit(a, room.id, MemberAdd(member("p1")))
        await commit(a, room.id, MemberSet("p1", {"muted": True, "muted_until": None}))
        replica = await a.snapshot(room.id)
        assert replica is not None
        # The new master never got the mute: its counter and the member's flag went back.
        redis_server.cli("HSET", f"{prefix}:{{{room.id}}}:ctr", "off", "1")
        with pytest.raises(Refused) as refused:
            await commit(a, room.id, RoomSet({"slow": 1}))
        assert refused.value.reason == "behind"
        assert await a.restore(copy_state(replica))
        back = await a.snapshot(room.id)
        assert back is not None and back.members["p1"].muted


@pytest.mark.redis
async def test_redis_errors_are_unavailable(redis_server: RedisServer) -> None:
    """OOM (maxmemory with noeviction) answers Unavailable, not a crash (§11)."""
    prefix = "t" + secrets.token_hex(4)
    async with alone(redis_server, prefix) as a:
        room = new_room()
        await a.create_room(room)
        redis_server.cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
        redis_server.cli("CONFIG", "SET", "maxmemory", "1")
        try:
            with pytest.raises(Unavailable):
                await a.create_room(new_room("room2"))
            with pytest.raises(Unavailable):
                await commit(a, room.id, MemberAdd(member("p1")))
        finally:
            redis_server.cli("CONFIG", "SET", "maxmemory", "0")


@pytest.mark.redis
async def test_the_worker_that_heard_more_restores_last(redis_server: RedisServer) -> None:
    """After a memory loss, a restore from a replica that had heard less is replaced by one
    that had heard more, unless something was committed in between."""
    prefix = "t" + secrets.token_hex(4)
    async with alone(redis_server, prefix) as a:
        room = new_room()
        await a.create_room(room)
        await commit(a, room.id, MemberAdd(member("p1")))
        behind = await a.snapshot(room.id)
        await commit(a, room.id, MemberSet("p1", {"muted": True, "muted_until": None}))
        ahead = await a.snapshot(room.id)
        assert behind is not None and ahead is not None
        redis_server.cli("FLUSHALL")
        assert await a.restore(copy_state(behind))  # the first to notice had missed the mute
        assert await a.restore(copy_state(ahead))  # the one that heard it wins
        restored = await a.snapshot(room.id)
        assert restored is not None and restored.members["p1"].muted
        assert not await a.restore(copy_state(behind))
        redis_server.cli("FLUSHALL")
        assert await a.restore(copy_state(behind))
        await commit(a, room.id, RoomSet({"slow": 3}))  # then someone acted on it
        assert not await a.restore(copy_state(ahead))
