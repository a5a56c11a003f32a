"""Recovery through the hub on a private redis-server: a store behind its replica, and a
busy room the watch leaves alone."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from chat import recovery
from chat.errors import Unavailable
from chat.hub import Hub
from chat.ops import MemberAdd, MemberSet, RoomSet
from tests.redis_server import RedisServer, redis_server
from tests.test_backend import member, new_room, redis_backend
from tests.timing import WAIT, wait_until

__all__ = ["redis_server"]
pytestmark = pytest.mark.redis


async def test_a_store_behind_the_replica_is_restored_through_the_hub(
    redis_server: RedisServer,
) -> None:
    """A failover lost the last writes: the store is at off 1, this worker's replica at 2.
    Recovery must write the replica back (scaling.md); today READ_AFTER answers [] for a
    store that is behind (not nil), so recovery never reloads nor restores, and every commit
    of this worker is refused ``behind`` -> unavailable, for good."""
    prefix = "t" + secrets.token_hex(4)
    backend = redis_backend(redis_server, prefix)
    hub = Hub(backend)
    recovery.install(hub)
    await hub.start()
    try:
        state = new_room()
        await backend.create_room(state)
        async with hub.using(state.id) as room:
            await hub.commit(room, [MemberAdd(member("p1"))])
            await hub.commit(room, [MemberSet("p1", {"muted": True, "muted_until": None})])
            redis_server.cli("HSET", f"{prefix}:{{{state.id}}}:ctr", "off", "1")

            async def committed() -> bool:
                try:
                    await hub.commit(room, [RoomSet({"slow": 1})])
                    return True
                except Unavailable:
                    return False

            try:
                await wait_until(committed, 2 * WAIT, "a commit once the worker restored")
            except TimeoutError:
                stored = await backend.snapshot(state.id)
                assert stored is not None
                pytest.fail(
                    f"never restored: store at off {stored.off}, replica at "
                    f"{room.state.off if room.state else None}"
                )
    finally:
        await hub.aclose()


async def test_the_watch_leaves_a_busy_room_that_is_current_alone(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A room whose replica keeps up (it hears every entry) must not be sent into recovery.
    The watch compares the replica after IN_FLIGHT with store positions read *before* it:
    a room that had one entry in flight at the first look has moved on by the second, so
    the watch starts a recovery (a READ_AFTER, and every live entry parked) each round."""
    prefix = "t" + secrets.token_hex(4)
    backend = redis_backend(redis_server, prefix)
    hub = Hub(backend)
    recovery.install(hub)
    await hub.start()
    started: list[str] = []
    real_start = recovery.start

    def counting(hub_: Hub, room: object) -> None:
        started.append("x")
        real_start(hub_, room)  # type: ignore[arg-type]

    monkeypatch.setattr(recovery, "start", counting)
    monkeypatch.setattr(recovery, "IN_FLIGHT", 0.1)
    stop = asyncio.Event()
    try:
        state = new_room()
        await backend.create_room(state)
        async with hub.using(state.id) as room:
            await hub.commit(room, [MemberAdd(member("p1"))])

            async def busy() -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    await hub.commit(room, [RoomSet({"slow": n % 7})])

            talkers = [asyncio.create_task(busy()) for _ in range(20)]
            for _ in range(10):
                await recovery._check_positions(hub)
            stop.set()
            await asyncio.gather(*talkers)
            assert not started, f"{len(started)} needless recoveries in 10 rounds"
    finally:
        await hub.aclose()
