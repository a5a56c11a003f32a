"""Facilitator powers (protocol §6): each checks its caller, then commits its decision.

A decision is one commit on the room's stream: the store checks it and applies it together
with the entry that tells every worker (protocol §12). Each worker applies the entry to its
replica, tells its members, and makes its connections agree with the new state — a removed
member's connection is closed wherever it is, and if a worker missed the entry it finds the
gap and catches up (``chat.recovery``).
"""

from __future__ import annotations

from chat import lobby
from chat.backend.base import MessageMeta
from chat.context import ANSWERED, Answer, Caller, Services, facilitator, now_ms
from chat.envelope import Delivery
from chat.errors import ErrorCode, RequestError
from chat.events import (
    Closed,
    Deleted,
    Denied,
    Joined,
    Left,
    Msg,
    Muted,
    Removed,
    Room,
    Unmuted,
)
from chat.identity import new_mid
from chat.ops import Admit as AdmitOp
from chat.ops import HistoryDrop, MemberDrop, MemberSet, Op, Refused, RoomClose, RoomSet
from chat.requests import (
    Admit,
    Announce,
    Close,
    Delete,
    Deny,
    Lock,
    Mute,
    Remove,
    Slow,
    Unlock,
    Unmute,
)
from chat.roomstate import FACILITATOR, PARTICIPANT, Value
from chat.staff import decide, logged, target

# A participant acted upon must still be one (and not waiting) when the decision lands.
_PRESENT_PARTICIPANT: dict[str, Value] = {"role": PARTICIPANT, "waiting": False}


async def mute(services: Services, caller: Caller, msg: Mute) -> Answer:
    room, me = facilitator(caller)
    member = target(room, msg.pid)
    until = now_ms() + msg.seconds * 1000 if msg.seconds is not None else None
    change = MemberSet(member.pid, {"muted": True, "muted_until": until}, _PRESENT_PARTICIPANT)
    # The reason is the target's alone (§14): everyone else's copy has none.
    out = [Delivery(Muted(member.pid, until))]
    if msg.reason:
        out = [
            Delivery(Muted(member.pid, until, msg.reason), to=(member.pid,)),
            Delivery(Muted(member.pid, until), exclude=member.pid),
        ]
    await decide(services, room, [change, logged(room, msg.t, me, pid=member.pid)], out)
    return None


async def unmute(services: Services, caller: Caller, msg: Unmute) -> Answer:
    room, me = facilitator(caller)
    member = target(room, msg.pid)
    change = MemberSet(member.pid, {"muted": False, "muted_until": None}, _PRESENT_PARTICIPANT)
    event = Unmuted(member.pid)
    ops: list[Op] = [change, logged(room, msg.t, me, pid=member.pid)]
    await decide(services, room, ops, [Delivery(event)])
    return None


async def remove(services: Services, caller: Caller, msg: Remove) -> Answer:
    """Remove a participant: its connection closes with 4001 wherever it is, its resume token
    is revoked with it, and the address it holds now is banned (§6, §11)."""
    room, me = facilitator(caller)
    member = target(room, msg.pid)
    drop = MemberDrop(member.pid, "removed", _PRESENT_PARTICIPANT, ban=True)
    out = [
        Delivery(Removed(member.pid, msg.reason or ""), to=(member.pid,)),
        Delivery(Left(member.pid, removed=True), exclude=member.pid),
    ]
    await decide(services, room, [drop, logged(room, msg.t, me, pid=member.pid)], out)
    return None


async def delete(services: Services, caller: Caller, msg: Delete) -> Answer:
    room, me = facilitator(caller)
    ops: list[Op] = [HistoryDrop(msg.mid), logged(room, msg.t, me, mid=msg.mid)]
    await decide(services, room, ops, [Delivery(Deleted(msg.mid))])
    return None


async def room_flags(services: Services, caller: Caller, msg: Lock | Unlock | Slow) -> Answer:
    """``lock``, ``unlock`` and ``slow``: change the room and tell everyone (the ``room`` event
    carries every setting as of its entry, see ``localroom.room_event``)."""
    room, me = facilitator(caller)
    wanted = {"slow": msg.seconds} if isinstance(msg, Slow) else {"locked": isinstance(msg, Lock)}
    change = RoomSet(wanted)
    await decide(services, room, [change, logged(room, msg.t, me)], [Delivery(Room())])
    return None


async def announce(services: Services, caller: Caller, msg: Announce) -> Answer:
    room, me = facilitator(caller)
    now = now_ms()
    event = Msg(new_mid(), me.pid, me.name, FACILITATOR, msg.text, now, kind="announce")
    entry = logged(room, msg.t, me, mid=event.mid)
    await services.hub.commit(room, [entry], [Delivery(event)], MessageMeta(event.mid, now))
    return None


async def close(services: Services, caller: Caller, msg: Close) -> Answer:
    """Close the room for everyone, wiping it. The closing facilitator's own connection is
    closed as soon as the close reaches its worker, so its ``ack`` goes out just before that
    close (Part 2: acked before ``closed``) — and only once the close is committed."""
    room, _ = facilitator(caller)
    caller.ack_on_close(msg.id)
    try:
        await services.hub.commit(room, [RoomClose()], [Delivery(Closed(), waiting=True)])
    except BaseException:
        caller.ack_on_close(None)
        raise
    return ANSWERED


async def admit(services: Services, caller: Caller, msg: Admit) -> Answer:
    room, me = facilitator(caller)
    member = target(room, msg.pid, waiting=True)
    joined = Delivery(Joined(member.public()), exclude=member.pid)
    checks = lobby.admit_checks(room.state) if room.state is not None else []  # capacity, §13
    ops: list[Op] = [*checks, AdmitOp(member.pid), logged(room, msg.t, me, pid=member.pid)]
    try:
        await services.hub.commit(room, ops, [joined])
    except Refused as exc:
        if exc.reason == "capacity":
            raise lobby.full_for_facilitator() from None
        # Gone from the waiting room (left, disconnected): nobody could take the seat.
        raise RequestError(ErrorCode.NOT_FOUND, "That person is no longer waiting.") from None
    return None


async def deny(services: Services, caller: Caller, msg: Deny) -> Answer:
    room, me = facilitator(caller)
    member = target(room, msg.pid, waiting=True)
    drop = MemberDrop(member.pid, "denied", {"waiting": True})
    out = [
        Delivery(Denied(member.pid), to=(member.pid,)),
        Delivery(Left(member.pid), facilitators=True, exclude=member.pid),
    ]
    await decide(services, room, [drop, logged(room, msg.t, me, pid=member.pid)], out)
    return None
