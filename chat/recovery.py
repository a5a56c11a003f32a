"""Catching a room's replica up with its stream, and restoring rooms the store lost (§12).

A recovery starts when the hub sees a gap in a room's offsets, a new epoch, a commit of its
own that does not come back in time, or when the backend's subscriptions come back after a
loss. It runs as one task per room; entries that arrive meanwhile are parked, and applied in
order once it is done.

1. **Read back** the entries after the replica's offset from the stream (:meth:`read_after`)
   and apply them in order, exactly as if they had arrived live: every missed event reaches
   the local members once and in order, and every missed decision binds.
2. If the stream no longer holds them all (a long outage, or the store lost its memory),
   **reload**: read a snapshot; deliver the room messages the local members missed from the
   history (by ``seq``, so exactly once); tell them what changed meanwhile (who left or
   joined, mutes, the room's settings); and close every local connection whose member is
   gone or held elsewhere.
3. If the store has no such room and it did not end (the store lost its memory), or holds it
   at an older offset than this worker (a failover lost writes), **restore** it from the
   replica: the backend writes it back as a commit in a new epoch, every worker's replica
   sees the new epoch and reloads, and all of them agree again.
"""

from __future__ import annotations

import asyncio
import logging

from chat.envelope import Delivery
from chat.errors import Unavailable
from chat.events import Joined, Knock, Left, Muted, Unmuted
from chat.hub import Hub
from chat.localroom import LocalRoom, message_event, room_event
from chat.roomstate import RoomState

log = logging.getLogger("hearth.recovery")

BACKOFF_FIRST = 0.1
BACKOFF_CAP = 2.0
WATCH_EVERY = 2.0  # seconds between checks that every replica has heard its whole stream
IN_FLIGHT = 0.5  # seconds an entry may take to arrive before it counts as missed


def install(hub: Hub) -> None:
    """Let ``hub`` start recoveries."""
    hub.recover = lambda room: start(hub, room)


async def watch(hub: Hub) -> None:
    """Every :data:`WATCH_EVERY` seconds, compare every replica with its stream in the store:
    a room whose stream is ahead of the replica for longer than an entry takes to arrive
    missed one without noticing (a lost publish, a subscription that died quietly), and
    recovers. This bounds how long a missed decision can go unenforced (§12: 5 s) even when
    nothing else happens in the room. Runs until cancelled; not needed when the backend is
    not shared (one process cannot miss its own entries)."""
    if not hub.backend.shared:
        return
    while True:
        await asyncio.sleep(WATCH_EVERY)
        try:
            await _check_positions(hub)
        except Unavailable:
            continue
        except Exception:
            log.exception("stream watch failed")


async def _check_positions(hub: Hub) -> None:
    rooms = [r for r in hub.rooms.values() if r.state is not None and not r.closed]
    if not rooms:
        return
    positions = await hub.backend.positions([r.id for r in rooms])

    def behind(room: LocalRoom) -> bool:
        state = room.state
        if state is None or room.closed or room.recovery is not None:
            return False
        store = positions.get(room.id)
        # Ahead: we missed entries. Behind: the store lost writes (a failover). Either way.
        return store is None or store != (state.epoch, state.off)

    lagging = [room for room in rooms if behind(room)]
    if lagging:
        await asyncio.sleep(IN_FLIGHT)  # entries on their way arrive meanwhile
        for room in lagging:
            if behind(room):
                start(hub, room)


def start(hub: Hub, room: LocalRoom) -> None:
    """Start the room's recovery unless one is running (or the room is not loaded)."""
    if room.recovery is None and room.state is not None and not room.closed:
        room.recovery = asyncio.ensure_future(_recover(hub, room))


async def _recover(hub: Hub, room: LocalRoom) -> None:
    delay = BACKOFF_FIRST
    try:
        while not room.closed:
            try:
                await _catch_up(hub, room)
            except Unavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP)
                continue
            state = room.state
            ahead = state is not None and any(
                epoch != state.epoch or off > state.off + 1 for epoch, off in room.pending
            )
            if not ahead:
                break
    except Exception:
        log.exception("recovery failed")
    finally:
        room.recovery = None
    hub.drain(room)


async def _catch_up(hub: Hub, room: LocalRoom) -> None:
    state = room.state
    assert state is not None
    entries = await hub.backend.read_after(room.id, state.epoch, state.off)
    if entries is None:
        await _reload(hub, room)
    else:
        for entry in entries:
            current = room.state
            if room.closed or current is None:
                return
            if entry.epoch == current.epoch and entry.off == current.off + 1:
                hub.apply_entry(room, entry)
    hub.drain(room)


async def _reload(hub: Hub, room: LocalRoom) -> None:
    old = room.state
    assert old is not None
    backend = hub.backend
    fresh = await backend.snapshot(room.id)
    if fresh is None:
        if await backend.ended(room.id):
            hub.close_room(room)
            return
        log.warning("a room was missing from the store; restoring it from this worker")
        await backend.restore(old)
        fresh = await backend.snapshot(room.id)
    elif fresh.epoch == old.epoch and fresh.off < old.off:
        log.warning("the store is behind this worker on a room; restoring it")
        await backend.restore(old)
        fresh = await backend.snapshot(room.id)
    if fresh is None:
        raise Unavailable("the room could not be restored yet")
    missed = await backend.history(room.id, old.seq) if fresh.seq > old.seq else []
    if room.closed:
        return
    room.state = fresh
    for entry in missed:
        message = message_event(entry)
        if message is not None and entry.seq <= fresh.seq:
            room.fan_out([Delivery(message)], entry.seq)
    room.fan_out(differences(old, fresh))
    if room.reconcile_all():
        hub.release_if_empty(room)
    for key in [k for k in room.pending if k[0] != fresh.epoch or k[1] <= fresh.off]:
        del room.pending[key]


def differences(old: RoomState, new: RoomState) -> list[Delivery]:
    """The events that tell a room's members what changed between two states of it."""
    out: list[Delivery] = []
    for pid, member in old.members.items():
        if pid not in new.members:
            out.append(Delivery(Left(pid), facilitators=member.waiting))
    for pid, member in new.members.items():
        before = old.members.get(pid)
        if member.waiting:
            if before is None:
                out.append(Delivery(Knock(member.public()), facilitators=True))
            continue
        if before is None or before.waiting:
            out.append(Delivery(Joined(member.public()), exclude=pid))
            continue
        if (member.muted, member.muted_until) != (before.muted, before.muted_until):
            change = Muted(pid, member.muted_until) if member.muted else Unmuted(pid)
            out.append(Delivery(change))
    if room_event(old) != room_event(new):
        out.append(Delivery(room_event(new)))
    return out
