"""Facilitator powers (protocol §6): each checks its caller, acts on shared state, tells the room.

Every action is checked here, on the worker that received it, against the store; its effect
on the target is applied by the worker that holds the target's connection, when the event
arrives through the broker (see ``Session.control``).
"""

from __future__ import annotations

from chat.broker.base import BrokerUnavailable
from chat.context import Caller, Seat, Services, now_ms, require_facilitator
from chat.errors import ErrorCode, RequestError
from chat.identity import new_mid
from chat.joining import end_room
from chat.protocol import (
    Admit,
    Announce,
    ClientMessage,
    Close,
    Delete,
    Deny,
    Lock,
    Message,
    Mute,
    Remove,
    Slow,
    Unlock,
    Unmute,
    ack,
)
from chat.state.base import FACILITATOR, MemberRecord


async def _target(
    services: Services, seat: Seat, pid: str, *, waiting: bool = False
) -> MemberRecord:
    member = await services.store.get_member(seat.room.id, pid)
    if member is None or member.waiting != waiting:
        raise RequestError(ErrorCode.NOT_FOUND, "No such member in this room.")
    if member.role == FACILITATOR:
        raise RequestError(ErrorCode.FORBIDDEN, "Facilitators cannot act on each other.")
    return member


async def _record(
    services: Services, seat: Seat, msg: ClientMessage, caller: Caller, **target: str
) -> None:
    entry: Message = {"action": msg.t, "by": seat.pid, "ts": now_ms(), **target}
    await services.store.add_log(seat.room.id, entry)
    if msg.id is not None:
        caller.reply(ack(msg.id))


async def mute(services: Services, caller: Caller, msg: Mute) -> None:
    seat = require_facilitator(caller)
    member = await _target(services, seat, msg.pid)
    until = now_ms() + msg.seconds * 1000 if msg.seconds is not None else None
    member.muted, member.muted_until = True, until
    await services.store.save_member(seat.room.id, member)
    await services.hub.publish(seat.room.id, {"t": "muted", "pid": member.pid, "until": until})
    await _record(services, seat, msg, caller, pid=member.pid)


async def unmute(services: Services, caller: Caller, msg: Unmute) -> None:
    seat = require_facilitator(caller)
    member = await _target(services, seat, msg.pid)
    member.muted, member.muted_until = False, None
    await services.store.save_member(seat.room.id, member)
    await services.hub.publish(seat.room.id, {"t": "unmuted", "pid": member.pid})
    await _record(services, seat, msg, caller, pid=member.pid)


async def remove(services: Services, caller: Caller, msg: Remove) -> None:
    seat = require_facilitator(caller)
    member = await _target(services, seat, msg.pid)
    room_id = seat.room.id
    await services.store.ban(room_id, member.address_hash)
    await services.store.remove_member(room_id, member.pid)  # revokes the resume token
    reason = msg.reason or ""
    await services.hub.publish(
        room_id, {"t": "removed", "pid": member.pid, "reason": reason}, to=[member.pid]
    )
    await services.hub.publish(
        room_id, {"t": "left", "pid": member.pid, "removed": True}, exclude=member.pid
    )
    await _record(services, seat, msg, caller, pid=member.pid)


async def delete(services: Services, caller: Caller, msg: Delete) -> None:
    seat = require_facilitator(caller)
    if not await services.store.forget_message(seat.room.id, msg.mid):
        raise RequestError(ErrorCode.NOT_FOUND, "No such message in this room.")
    await services.hub.publish(seat.room.id, {"t": "deleted", "mid": msg.mid})
    await _record(services, seat, msg, caller, mid=msg.mid)


async def room_flags(services: Services, caller: Caller, msg: Lock | Unlock | Slow) -> None:
    """``lock``, ``unlock`` and ``slow``: change the room and tell everyone."""
    seat = require_facilitator(caller)
    record = await services.store.get_room(seat.room.id)
    if record is None:
        raise RequestError(ErrorCode.NOT_FOUND, "This room has ended.")
    if isinstance(msg, Slow):
        record.slow = msg.seconds
    else:
        record.locked = isinstance(msg, Lock)
    await services.store.save_room(record)
    await services.hub.publish(
        seat.room.id, {"t": "room", "locked": record.locked, "slow": record.slow}
    )
    await _record(services, seat, msg, caller)


async def announce(services: Services, caller: Caller, msg: Announce) -> None:
    seat = require_facilitator(caller)
    event: Message = {
        "t": "msg",
        "mid": new_mid(),
        "pid": seat.pid,
        "name": seat.name,
        "role": FACILITATOR,
        "text": msg.text,
        "ts": now_ms(),
        "kind": "announce",
    }
    seq = await services.hub.publish(seat.room.id, dict(event), sequenced=True)
    event["seq"] = seq
    await services.store.remember(seat.room.id, event)
    await _record(services, seat, msg, caller, mid=event["mid"])


async def close(services: Services, caller: Caller, msg: Close) -> None:
    seat = require_facilitator(caller)
    # The ack goes first: the closing facilitator's own connection closes as soon as
    # ``closed`` reaches it, which (through Redis) can be before this handler resumes.
    if not services.hub.broker.ready:
        raise BrokerUnavailable("the broker is not reachable")
    if msg.id is not None:
        caller.reply(ack(msg.id))
    await services.hub.publish(seat.room.id, {"t": "closed"})
    await end_room(services, seat.room.id)


async def admit(services: Services, caller: Caller, msg: Admit) -> None:
    seat = require_facilitator(caller)
    member = await _target(services, seat, msg.pid, waiting=True)
    if not member.online:  # gone from the waiting room: nobody could take the seat
        raise RequestError(ErrorCode.NOT_FOUND, "That person is no longer waiting.")
    member.waiting = False
    await services.store.save_member(seat.room.id, member)
    await services.hub.publish(seat.room.id, {"t": "_admit", "pid": member.pid}, to=[member.pid])
    await _record(services, seat, msg, caller, pid=member.pid)


async def deny(services: Services, caller: Caller, msg: Deny) -> None:
    seat = require_facilitator(caller)
    member = await _target(services, seat, msg.pid, waiting=True)
    await services.store.remove_member(seat.room.id, member.pid)
    await services.hub.publish(seat.room.id, {"t": "denied", "pid": member.pid}, to=[member.pid])
    await services.hub.publish(
        seat.room.id, {"t": "left", "pid": member.pid}, facilitators=True, exclude=member.pid
    )
    await _record(services, seat, msg, caller, pid=member.pid)
