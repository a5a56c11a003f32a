"""Entering and leaving a room: join, resume, knock admission, welcome, leave and the grace.

A member who disconnects without ``leave`` stays in the room, away, for the resume grace:
the others see no ``left`` unless the grace ends without a reconnect (protocol §7).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from chat.broker.base import BrokerUnavailable
from chat.context import Caller, Seat, Services, now_ms
from chat.errors import CloseCode, ErrorCode, RequestError, SessionEnded
from chat.identity import (
    address_hash,
    hash_secret,
    name_key,
    new_pid,
    new_secret,
    normalise_name,
    pseudonym,
    secret_matches,
)
from chat.protocol import Join, Message
from chat.state.base import FACILITATOR, PARTICIPANT, MemberRecord, RoomRecord

log = logging.getLogger("hearth.join")


async def join(services: Services, caller: Caller, msg: Join) -> None:
    """Handle ``join``: a fresh join, or a resume with ``resume`` and ``since``.

    Raises:
        SessionEnded: not_found (4004), forbidden or banned (4003), room_locked (4005).
        RequestError: already_joined, bad_resume, bad_name, name_taken, rules_not_accepted.
    """
    if caller.seat is not None:
        raise RequestError(ErrorCode.ALREADY_JOINED, "This connection has already joined.")
    store = services.store
    record = await store.get_room(msg.room)
    if record is None:
        raise _ended(CloseCode.NOT_FOUND, ErrorCode.NOT_FOUND, "There is no such room.", msg.id)
    if msg.resume is not None:
        member = await store.member_by_resume(record.id, hash_secret(msg.resume))
        if member is None:
            raise RequestError(ErrorCode.BAD_RESUME, "That session cannot be resumed; join afresh.")
        await _resume(services, caller, record, member, msg)
        return
    role = await _role(record, msg)
    banned_as = address_hash(record.salt, caller.address)
    if role == PARTICIPANT:
        if await store.is_banned(record.id, banned_as):
            raise _ended(
                CloseCode.FORBIDDEN, ErrorCode.BANNED, "You cannot join this room.", msg.id
            )
        local = services.hub.local(record.id)
        if (local.record if local else record).locked:
            raise _ended(CloseCode.LOCKED, ErrorCode.ROOM_LOCKED, "This room is locked.", msg.id)
        if record.rules and msg.agree is not True:
            raise RequestError(
                ErrorCode.RULES_NOT_ACCEPTED, "Please read and accept the room's rules."
            )
    resume = new_secret()
    member = MemberRecord(
        pid=new_pid(),
        name="",
        role=role,
        resume_hash=hash_secret(resume),
        address_hash=banned_as,
        joined_seq=await services.hub.broker.last_seq(record.id),
        waiting=role == PARTICIPANT and record.admission == "knock",
        holder=caller.conn_id,
    )
    await _claim_name(services, record, member, msg)
    seat = Seat(
        record,
        member.pid,
        member.name,
        role,
        resume,
        member.joined_seq,
        waiting=member.waiting,
        join_id=msg.id,
    )
    caller.seat = seat
    if seat.waiting:
        await services.hub.attach(record, caller.member)
        caller.reply({"t": "waiting", "id": msg.id} if msg.id is not None else {"t": "waiting"})
        await services.hub.publish(
            record.id, {"t": "knock", "member": member.public()}, facilitators=True
        )
        return
    try:
        await enter(services, caller, seat, since=None, announce=True)
    except BrokerUnavailable:
        with contextlib.suppress(BrokerUnavailable):  # free the name it reserved
            await services.store.remove_member(record.id, member.pid)
        raise


async def _role(record: RoomRecord, msg: Join) -> str:
    if msg.key is None:
        return PARTICIPANT
    if not secret_matches(msg.key, record.key_hash):
        raise _ended(
            CloseCode.FORBIDDEN, ErrorCode.FORBIDDEN, "That key is not valid here.", msg.id
        )
    return FACILITATOR


async def _claim_name(
    services: Services, record: RoomRecord, member: MemberRecord, msg: Join
) -> None:
    store = services.store
    if msg.name is not None:
        member.name = normalise_name(
            msg.name, participant=member.role == PARTICIPANT, max_length=services.limits.max_name
        )
        if not await store.add_member(record.id, member):
            raise RequestError(ErrorCode.NAME_TAKEN, "Someone in the room has that name.")
        return
    for _ in range(5):
        taken = {name_key(m.name) for m in await store.members(record.id)}
        member.name = pseudonym(taken)
        if await store.add_member(record.id, member):
            return
    raise RequestError(ErrorCode.NAME_TAKEN, "No free name could be found; pick one.")


async def _resume(
    services: Services, caller: Caller, record: RoomRecord, member: MemberRecord, msg: Join
) -> None:
    store = services.store
    pending = services.departures.pop((record.id, member.pid), None)
    if pending is not None:
        pending.cancel()
    member.online = True
    member.holder = caller.conn_id  # from now on the old connection may not mark it away
    await store.save_member(record.id, member)
    seat = Seat(
        record,
        member.pid,
        member.name,
        member.role,
        msg.resume or "",
        member.joined_seq,
        waiting=member.waiting,
        muted=member.muted,
        muted_until=member.muted_until,
        join_id=msg.id,
    )
    caller.seat = seat
    # A connection still open elsewhere for this member (a half-dead socket) gives way.
    await services.hub.publish(
        record.id, {"t": "_takeover", "pid": member.pid, "conn": caller.conn_id}, to=[member.pid]
    )
    if seat.waiting:
        await services.hub.attach(record, caller.member)
        caller.reply({"t": "waiting", "id": msg.id} if msg.id is not None else {"t": "waiting"})
        return
    await enter(services, caller, seat, since=msg.since, announce=False)
    if member.muted:  # restart the timed mute's clock on this connection
        caller.control({"t": "muted", "pid": member.pid, "until": member.muted_until})


async def enter(
    services: Services, caller: Caller, seat: Seat, *, since: int | None, announce: bool
) -> None:
    """Put a member in the room: attach locally, tell the others, send the welcome."""
    hub = services.hub
    caller.hold()
    try:
        await hub.attach(seat.room, caller.member)
        local = hub.local(seat.room.id)
        if local is not None:
            seat.room = local.record
        if announce:
            await hub.publish(
                seat.room.id, {"t": "joined", "member": seat.public()}, exclude=seat.pid
            )
        welcome = await build_welcome(services, seat, since)
    except BaseException:
        # Not in the room after all (the broker failed midway): leave no half-joined seat,
        # so that the client can simply join again.
        caller.release(after_seq=0)
        caller.seat = None
        with contextlib.suppress(BrokerUnavailable):
            await hub.detach(seat.room.id, seat.pid, caller.member)
        raise
    caller.reply(welcome)
    caller.release(after_seq=welcome["seq"])


async def build_welcome(services: Services, seat: Seat, since: int | None) -> Message:
    """The ``welcome`` for a seat (protocol §4), with the facilitator's extras (§6)."""
    store = services.store
    settings = services.settings
    room = seat.room
    members = await store.members(room.id)
    extras: Message = {}
    if seat.is_facilitator:  # read before seq: no await may come between seq and the history
        extras["reports"] = await store.reports(room.id)
        extras["log"] = await store.log(room.id)
        extras["waiting"] = [m.public() for m in members if m.waiting]
    # Facilitators see the recent history whatever the room's mode: they need the context.
    floor = 0 if room.history == "recent" or seat.is_facilitator else seat.joined_seq
    after = max(floor, since) if since is not None else floor
    seq = await services.hub.broker.last_seq(room.id)
    welcome: Message = {
        "t": "welcome",
        "room": {
            "id": room.id,
            "title": room.title,
            "rules": room.rules,
            "locked": room.locked,
            "slow": room.slow,
            "history": room.history,
            "admission": room.admission,
            "typing": room.typing,
            "retention": {
                "messages": settings.history_messages,
                "seconds": int(settings.history_seconds),
                "on_disk": False,
            },
        },
        "you": seat.public(),
        "resume": seat.resume,
        "members": [m.listed() for m in members if not m.waiting],
        "history": [m for m in await store.recall(room.id, after) if m["seq"] <= seq],
        "seq": seq,
    }
    if seat.join_id is not None:
        welcome["id"] = seat.join_id
    welcome.update(extras)
    return welcome


async def admitted(services: Services, caller: Caller) -> None:
    """Complete the join of a waiting participant whom a facilitator admitted."""
    seat = caller.seat
    if seat is None or not seat.waiting:
        return
    caller.hold()  # from here on, room events wait behind the welcome
    seat.waiting = False
    # Present from admission, not from the knock: what was said while waiting stays unseen.
    seat.joined_seq = await services.hub.broker.last_seq(seat.room.id)
    member = await services.store.get_member(seat.room.id, seat.pid)
    if member is not None:  # so that a later resume keeps the same floor
        member.joined_seq = seat.joined_seq
        await services.store.save_member(seat.room.id, member)
    await services.hub.detach(seat.room.id, seat.pid, caller.member)
    await enter(services, caller, seat, since=None, announce=True)


async def leave(services: Services, caller: Caller) -> None:
    """Handle ``leave``: the others see ``left``; the server closes with 1000."""
    seat = caller.seat
    if seat is not None:
        await services.hub.detach(seat.room.id, seat.pid, caller.member)
        caller.seat = None
        await services.store.remove_member(seat.room.id, seat.pid)
        await services.hub.publish(
            seat.room.id,
            {"t": "left", "pid": seat.pid},
            exclude=seat.pid,
            facilitators=seat.waiting,
        )
    caller.end(CloseCode.NORMAL)


async def went_away(services: Services, caller: Caller) -> None:
    """The connection ended without ``leave``: keep the member for the resume grace."""
    seat = caller.seat
    if seat is None:
        return
    await services.hub.detach(seat.room.id, seat.pid, caller.member)
    caller.seat = None
    if caller.departed:  # removed, denied, room closed, or taken over: nothing to keep
        return
    member = await services.store.get_member(seat.room.id, seat.pid)
    if member is None or member.holder != caller.conn_id:
        return  # gone, or already resumed on another connection, which holds it now
    member.online = False
    member.away_since_ms = stamp = now_ms()
    await services.store.save_member(seat.room.id, member)
    loop = asyncio.get_running_loop()
    key = (seat.room.id, seat.pid)
    services.departures[key] = loop.call_later(
        services.settings.resume_grace,
        lambda: services.background(_grace_ended(services, seat.room.id, seat.pid, stamp)),
    )


async def _grace_ended(services: Services, room_id: str, pid: str, stamp: int) -> None:
    services.departures.pop((room_id, pid), None)
    try:
        member = await services.store.get_member(room_id, pid)
        if member is None or member.online or member.away_since_ms != stamp:
            return
        if not await services.store.remove_member(room_id, pid):
            return  # another worker's presence sweep removed it, and announced it
        await services.hub.publish(room_id, {"t": "left", "pid": pid}, facilitators=member.waiting)
    except BrokerUnavailable:
        # With Redis, the presence sweep of a live worker announces it once Redis is back.
        log.warning("could not announce a departure: broker unavailable")


async def end_room(services: Services, room_id: str) -> None:
    """Wipe a room everywhere: members, bans, history, reports, log and its sequence."""
    await services.store.delete_room(room_id)
    await services.hub.broker.drop(room_id)
    for key in [k for k in services.departures if k[0] == room_id]:
        services.departures.pop(key).cancel()


def _ended(close: CloseCode, code: ErrorCode, message: str, request_id: int | None) -> SessionEnded:
    extra = {"id": request_id} if request_id is not None else {}
    return SessionEnded(close, RequestError(code, message, **extra))
