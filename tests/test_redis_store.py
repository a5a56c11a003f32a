"""RedisRoomStore on a private Redis: TTLs, atomic name claims, bounded history, the presence
sweep; and the AES-GCM sealing it relies on (chat.buscrypt)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest

from chat.broker.redis_client import RedisSpace, connect, room_key
from chat.buscrypt import Sealer, SealError, context
from chat.state.base import MemberRecord, RoomRecord
from chat.state.redis import RedisRoomStore
from chat.state.redis_history import RedisHistory
from tests.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]  # fixture, imported for pytest

KEY = bytes(range(32))
IDLE = 60.0


def room(room_id: str = "room1") -> RoomRecord:
    return RoomRecord(
        id=room_id, title="t", rules="", key_hash="h", salt=secrets.token_bytes(16), created_ms=1
    )


def member(pid: str, name: str) -> MemberRecord:
    return MemberRecord(
        pid=pid,
        name=name,
        role="participant",
        resume_hash="r" + pid,
        address_hash="a",
        joined_seq=0,
    )


@pytest.fixture
async def stores(redis_server: RedisServer) -> AsyncIterator[tuple[RedisRoomStore, ...]]:
    """Two stores (two workers) on one prefix, with a bus key and three messages of history."""
    prefix = "t" + secrets.token_hex(4)
    clients = [connect(redis_server.url) for _ in range(2)]
    spaces = [RedisSpace(c, prefix, Sealer(KEY), IDLE) for c in clients]
    made = tuple(
        RedisRoomStore(s, history=RedisHistory(s, history_messages=3, history_seconds=600))
        for s in spaces
    )
    yield made
    for c in clients:
        await c.aclose()


@pytest.mark.redis
async def test_name_claims_are_atomic_and_case_insensitive(
    stores: tuple[RedisRoomStore, ...],
) -> None:
    """Two workers claiming "Alice" and "ALICE" at once: exactly one wins; leaving frees it."""
    a, b = stores
    await a.create_room(room())
    results = await asyncio.gather(
        a.add_member("room1", member("p1", "Alice")), b.add_member("room1", member("p2", "ALICE"))
    )
    assert sorted(results) == [False, True]
    winner = "p1" if results[0] else "p2"
    assert [m.pid for m in await b.members("room1")] == [winner]
    assert (await b.member_by_resume("room1", "r" + winner)) is not None
    await b.remove_member("room1", winner)
    assert await a.add_member("room1", member("p3", "alice"))
    assert await a.member_by_resume("room1", "r" + winner) is None


@pytest.mark.redis
async def test_every_key_expires_with_the_room(
    stores: tuple[RedisRoomStore, ...], redis_server: RedisServer
) -> None:
    """Every key a room uses carries the idle TTL, and a heartbeat renews it."""
    a, _ = stores
    await a.create_room(room())
    await a.add_member("room1", member("p1", "Alice"))
    await a.ban("room1", "addr")
    await a.add_report("room1", {"mid": "m", "by": "p1", "reason": "", "ts": 1})
    await a.add_log("room1", {"action": "mute", "by": "p1", "ts": 1})
    await a.remember("room1", {"mid": "m", "seq": 1, "ts": _now_ms(), "text": "x"})
    await a.heartbeat("room1", ["p1"])
    client = connect(redis_server.url)
    try:
        keys = [k async for k in client.scan_iter(match=room_key(a._space.prefix, "*", "*"))]
        assert len(keys) >= 9
        for k in keys:
            ttl = await client.pttl(k)
            assert 0 < ttl <= IDLE * 1000, k
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_history_is_bounded_and_sealed(stores: tuple[RedisRoomStore, ...]) -> None:
    """Only the last N messages stay; delete and find work; another worker reads them."""
    a, b = stores
    await a.create_room(room())
    now = _now_ms()
    for seq in range(1, 6):
        await a.remember("room1", {"mid": f"m{seq}", "seq": seq, "ts": now, "text": f"x{seq}"})
    assert [m["seq"] for m in await b.recall("room1", 0)] == [3, 4, 5]
    assert [m["seq"] for m in await b.recall("room1", 4)] == [5]
    assert (await b.find_message("room1", "m4")) is not None
    assert await b.forget_message("room1", "m4")
    assert not await b.forget_message("room1", "m4")
    assert [m["seq"] for m in await a.recall("room1", 0)] == [3, 5]
    await a.remember("room1", {"mid": "old", "seq": 6, "ts": now - 601_000, "text": "old"})
    assert [m["seq"] for m in await a.recall("room1", 0)] == [3, 5]


@pytest.mark.redis
async def test_sweep_removes_a_lapsed_member_once(stores: tuple[RedisRoomStore, ...]) -> None:
    """Two workers sweeping at once: the lapsed member is removed and returned exactly once;
    a member vouched for recently is kept."""
    a, b = stores
    await a.create_room(room())
    await a.add_member("room1", member("gone", "Gone"))
    await a.add_member("room1", member("here", "Here"))
    await asyncio.sleep(0.05)
    await b.heartbeat("room1", ["here"])
    cutoff = _now_ms() - 20
    swept = await asyncio.gather(
        a.sweep_departed("room1", cutoff), b.sweep_departed("room1", cutoff)
    )
    assert sorted(m.pid for found in swept for m in found) == ["gone"]
    assert [m.pid for m in await a.members("room1")] == ["here"]
    # Removed whole, in the same step: its name is free again, and nothing is left to sweep.
    assert not await b.add_member("room1", member("other", "Here"))
    assert await b.add_member("room1", member("next", "Gone"))
    assert await a.sweep_departed("room1", cutoff) == []


def test_sealing_binds_room_and_kind() -> None:
    """A sealed blob opens only with its key, room and kind; tampering is detected."""
    sealer = Sealer(KEY)
    blob = sealer.seal(b"secret", context("msg", "r1"))
    assert b"secret" not in blob
    assert sealer.open(blob, context("msg", "r1")) == b"secret"
    for wrong in (context("msg", "r2"), context("member", "r1")):
        with pytest.raises(SealError):
            sealer.open(blob, wrong)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(SealError):
        sealer.open(tampered, context("msg", "r1"))


def test_sealing_modes_and_rotation() -> None:
    """Clear blobs are refused with a key, sealed ones without; the old key still opens."""
    clear, old, rotated = Sealer(None), Sealer(KEY), Sealer(bytes(32), KEY)
    ctx = context("bus", "r")
    with pytest.raises(SealError):
        old.open(clear.seal(b"x", ctx), ctx)
    with pytest.raises(SealError):
        clear.open(old.seal(b"x", ctx), ctx)
    assert rotated.open(old.seal(b"x", ctx), ctx) == b"x"
    with pytest.raises(SealError):
        old.open(rotated.seal(b"x", ctx), ctx)


def _now_ms() -> int:
    return int(time.time() * 1000)
