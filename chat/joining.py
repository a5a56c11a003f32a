"""Entering and leaving a room: join, resume, knock admission, welcome, leave and the grace.

Each step is one commit on the room's stream (protocol §12): a join adds the member, a resume
makes the new connection its holder (which closes any older one, wherever it is), a
disconnect marks it away, the end of the grace or a ``leave`` drops it. The store checks
each one atomically — a resume of a member that was removed is refused, whatever the race —
and a connection is attached only once this worker's replica has applied its commit, and
only if the member is still there and held by it.

A member who disconnects without ``leave`` stays in the room, away, for the resume grace: the
others see no ``left`` unless the grace ends without a reconnect (protocol §7).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace

from chat import lobby, rounds, structure
from chat.context import Answer, Caller, Phase, Services, now_ms
from chat.envelope import Delivery
from chat.errors import CloseCode, ErrorCode, RequestError, SessionEnded, Unavailable
from chat.events import Event, Joined, Knock, Left, Waiting, Welcome
from chat.identity import (
    address_hash,
    hash_secret,
    key_token,
    name_token,
    new_pid,
    new_secret,
    normalise_name,
    pseudonym,
)
from chat.localroom import LocalRoom, RoomGone, message_event
from chat.ops import MemberAdd, MemberDrop, MemberSet, Refused
from chat.protocol import Encoding, Message
from chat.requests import Join, Leave
from chat.review import held_list
from chat.roomstate import FACILITATOR, PARTICIPANT, MemberState, RoomState, Value
from chat.staff import match_key

log = logging.getLogger("hearth.join")
PSEUDONYM_TRIES = 5


async def join(services: Services, caller: Caller, msg: Join) -> Answer:
    """Handle ``join``: a fresh join, or a resume with ``resume`` and ``since``.

    Returns:
        The ``welcome`` (or ``waiting``), which the session sends before the held events.

    Raises:
        SessionEnded: not_found (4004), forbidden or banned (4003), room_locked (4005).
        RequestError: already_joined, bad_resume, bad_name, name_taken, rules_not_accepted.
    """
    if caller.phase is not Phase.JOINING:
        raise RequestError(ErrorCode.ALREADY_JOINED, "This connection has already joined.")
    try:
        async with services.hub.using(msg.room) as room:
            if msg.resume is not None:
                return await _resume(services, caller, room, msg)
            return await _join(services, caller, room, msg)
    except RoomGone:
        raise _ended(CloseCode.NOT_FOUND, ErrorCode.NOT_FOUND, "There is no such room.") from None


async def _join(services: Services, caller: Caller, room: LocalRoom, msg: Join) -> Answer:
    state = room.current()
    role, label = _role(state, msg)
    banned_as = address_hash(state.salt, caller.address)
    if role == PARTICIPANT:
        if banned_as in state.bans:
            raise _ended(CloseCode.FORBIDDEN, ErrorCode.BANNED, "You cannot join this room.")
        if state.locked:
            raise _ended(CloseCode.LOCKED, ErrorCode.ROOM_LOCKED, "This room is locked.")
        if state.rules and msg.agree is not True:
            raise RequestError(
                ErrorCode.RULES_NOT_ACCEPTED, "Please read and accept the room's rules."
            )
    now = now_ms()
    waits, checks = lobby.admission(state, role, now, services.settings.max_waiting)  # §13
    resume = new_secret()
    member = MemberState(
        pid=new_pid(),
        name="",
        role=role,
        resume_hash=hash_secret(resume),
        address_hash=banned_as,
        name_token="",
        label=label,
        waiting=waits,
        holder=caller.conn_id,
        tokens=float(services.settings.burst),
        stamp=now,
        arrived=now,
    )
    settings = services.settings  # §15: generated names come from the room language's words
    words = settings.languages.words(state.lang, settings.default_lang)
    wished = None
    if msg.name is not None:
        wished = normalise_name(
            msg.name,
            participant=role == PARTICIPANT,
            max_length=services.limits.max_name,
            reserved=settings.languages.reserved,
        )

    def taken(key: str) -> bool:  # the replica as it is now: a refused try may reload it
        return key_token(state.salt, key) in room.current().names()

    for _ in range(1 if wished is not None else PSEUDONYM_TRIES):
        if wished is not None:
            member.name, member.name_token = wished, name_token(state.salt, wished)
        else:
            member.name, key = pseudonym(taken, words, len(room.current().names()))
            member.name_token = key_token(state.salt, key)
        try:
            await services.hub.commit(room, [*checks, MemberAdd(member)], [_arrival(member)])
            break
        except Refused as exc:
            _refused_join(exc)
    else:
        raise RequestError(ErrorCode.NAME_TAKEN, "No free name could be found; pick one.")
    try:
        return await _enter(services, caller, room, member.pid, resume, None, msg.id)
    except BaseException:
        # Not in the room after all: free the name, so that the client can simply join again.
        if caller.room is not None:
            caller.unseat()
        with contextlib.suppress(Refused, Unavailable):
            await services.hub.commit(room, [MemberDrop(member.pid, "left")], [_departure(member)])
        raise


def _arrival(member: MemberState) -> Delivery:
    if member.waiting:
        return Delivery(Knock(member.public()), facilitators=True)
    return Delivery(Joined(member.public()), exclude=member.pid)


def _departure(member: MemberState) -> Delivery:
    """``left`` for the others: only the facilitators knew of a member still waiting."""
    return Delivery(Left(member.pid), exclude=member.pid, facilitators=member.waiting)


def _refused_join(exc: Refused) -> None:
    """Turn a refused MemberAdd into the contract's answer (``taken``: the caller retries)."""
    if exc.reason == "banned":
        raise _ended(CloseCode.FORBIDDEN, ErrorCode.BANNED, "You cannot join this room.")
    if exc.reason == "locked":
        raise _ended(CloseCode.LOCKED, ErrorCode.ROOM_LOCKED, "This room is locked.")
    if exc.reason == "revoked":  # the key was revoked while we joined with it (§14)
        raise _ended(CloseCode.FORBIDDEN, ErrorCode.FORBIDDEN, "That key is not valid here.")
    if exc.reason == "capacity":
        raise lobby.full()  # another worker took the last seat first (§13)
    if exc.reason != "taken":
        raise Unavailable(f"join refused: {exc.reason}")


async def _resume(services: Services, caller: Caller, room: LocalRoom, msg: Join) -> Answer:
    state = room.current()
    if state.ends_at is not None and now_ms() >= state.ends_at:
        # Ended (§13), though no clock has closed it yet or its store not let it go: a resume
        # is refused as a join is (chat.lobby.admission), not welcomed to be closed at once.
        raise _ended(CloseCode.NOT_FOUND, ErrorCode.NOT_FOUND, "This room has ended.")
    resume_hash = hash_secret(msg.resume or "")
    member = state.by_resume(resume_hash)
    if member is None:
        raise _bad_resume()
    fields: dict[str, Value] = {
        "online": True,
        "holder": caller.conn_id,  # the old connection, wherever it is, gives way
        "away_since": 0,
        "address_hash": address_hash(state.salt, caller.address),  # a removal bans it (§11)
    }
    try:
        # Checked against the store with the token: a member removed meanwhile is refused.
        await services.hub.commit(
            room, [MemberSet(member.pid, fields, {"resume_hash": resume_hash})]
        )
    except Refused as exc:
        if exc.reason in {"missing", "mismatch"}:
            raise _bad_resume() from None
        raise Unavailable(f"resume refused: {exc.reason}") from None
    pending = services.departures.pop((room.id, member.pid), None)
    if pending is not None:
        pending.cancel()
    try:
        return await _enter(services, caller, room, member.pid, msg.resume or "", msg.since, msg.id)
    except BaseException:
        if caller.room is not None:
            await went_away(services, caller)
        raise


async def _enter(
    services: Services,
    caller: Caller,
    room: LocalRoom,
    pid: str,
    resume: str,
    since: int | None,
    answer_id: int | None,
) -> Event:
    """Attach the connection to its member, now that the replica holds the commit, and build
    the answer: ``waiting``, or the ``welcome``."""
    state = room.current()
    member = state.members.get(pid)
    if member is None or member.holder != caller.conn_id:
        raise _bad_resume()  # removed, or taken over, between our commit and now
    caller.seat(room, member, resume, answer_id)
    if member.waiting:
        return Waiting(lobby.opens_for(state))
    return await with_history(
        services, room.id, draft_welcome(services, room, member, resume, since, caller.encoding)
    )


@dataclass(frozen=True, slots=True)
class Draft:
    """A welcome but its history: where its history starts, and whose messages it leaves out."""

    welcome: Welcome
    after: int
    ignored: set[str]


def draft_welcome(
    services: Services,
    room: LocalRoom,
    member: MemberState,
    resume: str,
    since: int | None,
    encoding: Encoding,
) -> Draft:
    """The ``welcome`` (protocol §4, with the facilitator's extras of §6) but its history, and
    the ``seq`` after which its history starts.

    Taken from the replica at the very moment the member's connection starts to hear the room
    (events after it are held behind the welcome): the history is then read up to the same
    ``seq`` (:func:`with_history`), so nothing comes twice and nothing is lost.
    """
    state = room.current()
    settings = services.settings
    about = {
        "id": state.id,
        "title": state.title,
        "rules": state.rules,
        **state.public_settings(),
        "retention": {
            "messages": settings.history_messages,
            "seconds": int(settings.history_seconds),
            "on_disk": False,
        },
    }
    staff = member.is_facilitator
    members = room.listing(staff, encoding)
    seq = state.seq
    reports = list(state.reports.values()) if staff else None
    log_entries = list(state.log) if staff else None
    waiting = [m.public() for m in lobby.waiting_in_order(state)] if staff else None
    max_age_ms = int(settings.history_seconds * 1000)
    held = held_list(state, now_ms(), max_age_ms) if staff else None  # §14
    flares = structure.recent_flares(state, now_ms()) if staff else None  # §13
    you = member.public()
    if member.ignores:  # Part 2: the member's own ignores, so that a reloaded page knows them
        you["ignores"] = list(member.ignores)
    draft = Welcome(
        about,
        you,
        resume,
        members,
        [],
        seq,
        reports,
        log_entries,
        waiting,
        held,
        round=rounds.as_welcome(state),
        flares=flares,
    )
    # Facilitators see the recent history whatever the room's mode: they need the context.
    floor = 0 if state.history == "recent" or staff else member.joined_seq
    return Draft(draft, max(floor, since) if since is not None else floor, set(member.ignores))


async def with_history(services: Services, room_id: str, draft: Draft) -> Welcome:
    """The drafted welcome with the room's messages after ``draft.after``, up to its own
    ``seq``, leaving out those of members the reader ignores (§14: a resume included)."""
    welcome = draft.welcome
    if draft.after >= welcome.seq:
        return welcome
    entries = await services.hub.backend.history(room_id, draft.after)
    history: list[Message] = [
        message
        for entry in entries
        if entry.seq <= welcome.seq
        and (message := message_event(entry)) is not None
        and message.get("pid") not in draft.ignored
    ]
    return replace(welcome, history=history)


async def admitted(services: Services, caller: Caller, draft: Draft) -> None:
    """Complete the join of a waiting participant whom a facilitator admitted: the session
    drafted the welcome and held room events at the admission; send the welcome (with the
    join's id), then let the held events through."""
    room = caller.room
    if room is None:
        return
    answer = (await with_history(services, room.id, draft)).wire()
    if caller.join_id is not None:
        answer["id"] = caller.join_id
    caller.reply(answer)
    caller.release()


async def leave(services: Services, caller: Caller, msg: Leave) -> Answer:
    """Handle ``leave``: the others see ``left``; the session sends the ack (with the id),
    then the close (1000)."""
    room = caller.room
    state = room.state if room is not None else None
    member = state.members.get(caller.pid) if state is not None else None
    caller.unseat()  # first: the drop's own entry must not close us before the ack
    if room is not None and member is not None:
        with contextlib.suppress(Refused):
            await services.hub.commit(
                room,
                [MemberDrop(member.pid, "left", {"holder": caller.conn_id})],
                [_departure(member)],
            )
    raise SessionEnded(CloseCode.NORMAL, ack=True)


async def went_away(services: Services, caller: Caller) -> None:
    """The connection ended without ``leave``: keep the member for the resume grace."""
    room, pid = caller.room, caller.pid
    if room is None:
        return
    state = room.state
    member = state.members.get(pid) if state is not None else None
    stamp = now_ms()
    try:
        if member is None or member.holder != caller.conn_id:
            return  # gone, or resumed on another connection, which holds it now
        await services.hub.commit(
            room,
            [MemberSet(pid, {"online": False, "away_since": stamp}, {"holder": caller.conn_id})],
        )
    except Refused:
        return
    finally:
        caller.unseat()
    waiting = member.waiting
    key = (room.id, pid)
    services.departures[key] = asyncio.get_running_loop().call_later(
        services.settings.resume_grace,
        lambda: services.background(_grace_ended(services, room.id, pid, stamp, waiting)),
    )


async def _grace_ended(
    services: Services, room_id: str, pid: str, stamp: int, waiting: bool
) -> None:
    services.departures.pop((room_id, pid), None)
    drop = MemberDrop(pid, "expired", {"online": False, "away_since": stamp})
    left = Delivery(Left(pid), exclude=pid, facilitators=waiting)
    try:
        await services.hub.commit_blind(room_id, [drop], [left])
    except Refused:
        return  # resumed meanwhile, or already gone (another worker's sweep announced it)
    except Unavailable:
        # With Redis, the presence sweep of a live worker announces it once Redis is back.
        log.warning("could not announce a departure: backend unavailable")


def _role(state: RoomState, msg: Join) -> tuple[str, str]:
    """The role and, for a facilitator, the token of the key it joins with (§14)."""
    if msg.key is None:
        return PARTICIPANT, ""
    token = match_key(state, msg.key)
    if token is None:
        raise _ended(CloseCode.FORBIDDEN, ErrorCode.FORBIDDEN, "That key is not valid here.")
    return FACILITATOR, token


def _bad_resume() -> RequestError:
    return RequestError(ErrorCode.BAD_RESUME, "That session cannot be resumed; join afresh.")


def _ended(close: CloseCode, code: ErrorCode, message: str) -> SessionEnded:
    return SessionEnded(close, RequestError(code, message))
