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

from chat import rounds
from chat.backend.base import Entry
from chat.envelope import Delivery, Envelope
from chat.errors import Unavailable
from chat.events import Away, Ending, Joined, Knock, Left, Muted, Unmuted
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
    store = await hub.backend.positions([r.id for r in rooms])
    # An entry the store had then has had its time in flight after this: a replica still
    # short of it missed it. (A store behind a replica is found by the next commit: refused
    # ``behind``; a busy room whose replica moves along is left alone.)
    await asyncio.sleep(IN_FLIGHT)
    for room in rooms:
        state = room.state
        if state is None or room.closed or room.recovery is not None:
            continue
        if room.id in store and store[room.id] is None:
            continue  # its shard did not answer: asked again at the next check
        where = store.get(room.id)
        if where is None or where[0] != state.epoch or where[1] > state.off:
            start(hub, room)


def start(hub: Hub, room: LocalRoom) -> None:
    """Start the room's recovery unless one is running (or the room is not loaded)."""
    if room.recovery is None and room.state is not None and not room.closed:
        room.recovery = asyncio.ensure_future(_recover(hub, room))


async def _recover(hub: Hub, room: LocalRoom) -> None:
    delay = BACKOFF_FIRST
    try:
        while not room.closed:
            before = _position(room)
            try:
                await _catch_up(hub, room)
            except Unavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP)
                continue
            if not room.needs_reload and not _gap_ahead(room):
                break
            if _position(room) == before:
                # No progress (what is parked is not in the store's stream yet, or the store
                # is unhappy): wait a little before asking again.
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP)
    except Exception:
        log.exception("recovery failed")
    finally:
        room.recovery = None
    hub.drain(room)


def _position(room: LocalRoom) -> tuple[int, int] | None:
    state = room.state
    return (state.epoch, state.off) if state is not None else None


def _gap_ahead(room: LocalRoom) -> bool:
    state = room.state
    return state is not None and any(
        epoch != state.epoch or off > state.off + 1 for epoch, off in room.pending
    )


async def _catch_up(hub: Hub, room: LocalRoom) -> None:
    if not room.needs_reload:
        hub.drain(room)  # what was heard meanwhile and follows on, first
        state = room.state
        assert state is not None
        entries = await hub.backend.read_after(room.id, state.epoch, state.off)
        if entries is not None:
            for entry in entries:
                current = room.state
                if room.closed or current is None or room.needs_reload:
                    return
                if entry.epoch == current.epoch and entry.off == current.off + 1:
                    hub.apply_entry(room, entry)
            hub.drain(room)
            return
    await _reload(hub, room)
    hub.drain(room)


async def _reload(hub: Hub, room: LocalRoom) -> None:
    backend = hub.backend
    replica = room.state
    assert replica is not None
    fresh = await backend.snapshot(room.id)
    if fresh is None:
        if await backend.ended(room.id):
            hub.close_room(room)
            return
        log.warning("a room was missing from the store; restoring it from this worker")
        await backend.restore(replica)
        fresh = await backend.snapshot(room.id)
    elif fresh.epoch == replica.epoch and fresh.off < replica.off:
        log.warning("the store is behind this worker on a room; restoring it")
        await backend.restore(replica)
        fresh = await backend.snapshot(room.id)
    elif (
        fresh.epoch != replica.epoch
        and fresh.epoch not in room.past_epochs
        and await backend.restore(replica)
    ):
        # A restore in a new epoch by a worker that had heard less than this one: the store
        # took this replica instead, since nothing was committed after it (chat.redis RESTORE).
        fresh = await backend.snapshot(room.id)
    if fresh is None:
        raise Unavailable("the room could not be restored yet")
    missed = await backend.history(room.id, replica.seq) if fresh.seq > replica.seq else []
    if room.closed:
        return
    if not room.needs_reload:
        hub.drain(room)  # entries heard while reading, that follow on from the replica
    old = room.state
    assert old is not None
    if not room.needs_reload and fresh.epoch == old.epoch and old.off >= fresh.off:
        return  # what was heard meanwhile caught the replica up: nothing to adopt
    covered = sorted(
        (key, entry)
        for key, entry in room.pending.items()
        if key[0] == fresh.epoch and key[1] <= fresh.off
    )
    room.adopt(fresh)
    for entry in missed:
        message = message_event(entry)
        if message is not None and old.seq < entry.seq <= fresh.seq:
            room.fan_out([Delivery(message)], entry.seq)
    room.fan_out(differences(old, fresh))
    for key, entry in covered:
        # Heard, but covered by the snapshot: their notices still reach the members (what the
        # state says, and messages, came above).
        del room.pending[key]
        room.fan_out(_notices(entry))
    if room.reconcile_all():
        hub.release_if_empty(room)
    for key in [k for k in room.pending if k[0] != fresh.epoch or k[1] <= fresh.off]:
        del room.pending[key]


# Events that differences() tells again after a reload, or that come from history: a heard
# entry the snapshot covers must not tell them a second time.
_RETOLD = frozenset(
    {"left", "joined", "knock", "muted", "unmuted", "away", "room", "round", "ending", "msg"}
)


def _notices(entry: Entry) -> list[Delivery]:
    try:
        envelope = Envelope.unpack(entry.data)
    except ValueError:
        return []
    return [d for d in envelope.out if d.message.get("t") not in _RETOLD]


def differences(old: RoomState, new: RoomState) -> list[Delivery]:
    """The events that tell a room's members what changed between two states of it."""
    out: list[Delivery] = []
    for pid, member in old.members.items():
        if pid not in new.members:
            # Not to the member itself: its own connection, if here, is closed (reconcile).
            out.append(Delivery(Left(pid), exclude=pid, facilitators=member.waiting))
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
        if member.stepped_out != before.stepped_out:
            out.append(Delivery(Away(pid, member.stepped_out)))
    if room_event(old) != room_event(new):
        out.append(Delivery(room_event(new)))
    if new.ends_at is not None and new.warned == new.ends_at != old.warned:
        # The five-minute notice for the current end went out while this worker was not
        # listening (§13): its members would otherwise never hear it for this end.
        out.append(Delivery(Ending(new.ends_at)))
    if rounds.view(old) != rounds.view(new):
        out.append(Delivery(rounds.view(new)))
    return out
