"""A member's own messages: say, typing, report, whisper and the help flare (protocol §5, §6).

Every check is made against the room's replica, which is the store as of its offset (§12);
a participant's ``say`` is checked once more by the store itself as it is committed (the
backend's guard), so that a worker that has not yet heard of a mute or a removal cannot let
the message through.
"""

from __future__ import annotations

from chat import review, rounds, safety, structure
from chat.backend.base import MessageMeta
from chat.context import Answer, Caller, Services, now_ms, present
from chat.envelope import Delivery
from chat.errors import ErrorCode, RequestError
from chat.events import Ack, HelpEvent, Msg, ReportEvent, Resources, Typing, WhisperEvent
from chat.identity import new_mid
from chat.localroom import LocalRoom
from chat.ops import MemberSet, Refused, ReportAdd
from chat.requests import Help, Report, Say, Whisper
from chat.requests import Typing as TypingRequest
from chat.roomstate import PARTICIPANT, MemberState

TYPING_INTERVAL_MS = 3_000  # protocol §5: at most one typing event every 3 s per member
REPORTS_PER_MEMBER = 10  # open reports one member may have in a room (§11)


def check_can_speak(
    services: Services, room: LocalRoom, member: MemberState, now: int
) -> MemberSet:
    """Refuse a room message the member may not send now; else the token it spends.

    Rate and slow mode are the member's, kept in the room's state (§11): a reconnect, a resume
    or a second connection changes nothing.

    Raises:
        RequestError: ``muted`` (with ``until``), ``paused``, ``not_your_turn``, ``slow_mode``
            or ``rate_limited`` (with ``retry_after`` in ms).
    """
    if member.muted_at(now):
        raise RequestError(ErrorCode.MUTED, "You are muted in this room.", until=member.muted_until)
    state = room.state
    assert state is not None
    refusal = rounds.speech_refusal(state, member)  # §13: paused, or not this one's turn
    if refusal is not None:
        raise refusal
    if member.role == PARTICIPANT and state.slow:
        wait = member.last_say + state.slow * 1000 - now
        if wait > 0:
            raise RequestError(
                ErrorCode.SLOW_MODE, "Slow mode is on; please wait a moment.", retry_after=wait
            )
    return safety.spend(services, member, now)


async def say(services: Services, caller: Caller, msg: Say) -> Answer:
    """Send a message to the room; the sender gets ``ack`` and the ``msg`` itself — or, while
    a facilitator reviews their messages, an ``ack`` with ``held`` (§14). Crisis language is
    looked for before anything may refuse the message: a refused one still shows the person
    the resources and flags it to the facilitators (``safety.distress_refused``)."""
    room, member = present(caller)
    distress = safety.in_distress(services, room, member, msg)
    try:
        return await _say(services, caller, msg, distress)
    except RequestError as refusal:
        if distress:
            await safety.distress_refused(services, caller, refusal)
        raise


async def say_refused(services: Services, caller: Caller, msg: Say, refusal: RequestError) -> None:
    """A ``say`` refused before it reached :func:`say` (the connection's own rate): crisis
    language in it still shows the resources and flags it, as in :func:`say`."""
    room, member = present(caller)
    if safety.in_distress(services, room, member, msg):
        await safety.distress_refused(services, caller, refusal)


async def _say(services: Services, caller: Caller, msg: Say, distress: bool) -> Answer:
    """``say`` once screened for crisis language; contact details are screened here
    (``safety.screen``), after the checks of whether the member may speak now."""
    for attempt in range(2):
        room, member = present(caller)
        state = room.state
        assert state is not None
        now = now_ms()
        token = check_can_speak(services, room, member, now)
        screened = safety.screen(services, room, member, msg, now, distress)
        mid = new_mid()
        fields = {**token.fields, "last_say": now, **screened.fields}
        spent = MemberSet(member.pid, fields)
        extra = screened.deliveries(mid, member.pid)
        if review.under_review(state, member):
            answer = await review.hold_message(
                services, room, member, msg, mid, now, [spent], extra
            )
            screened.after(services, caller, state)
            return answer
        event = Msg(mid, member.pid, member.name, member.role, msg.text, now, cw=msg.cw)
        guard = member.pid if member.role == PARTICIPANT else None
        try:
            position = await services.hub.commit(
                room, [spent], [Delivery(event), *extra], MessageMeta(mid, now, guard)
            )
        except Refused as exc:
            # The store knew better than the replica (it has caught up since): answer from it
            # (muted?), or try once more (now under review?).
            if exc.reason == "guard" and attempt == 0:
                continue
            room, member = present(caller)
            check_can_speak(services, room, member, now_ms())
            raise RequestError(ErrorCode.UNAVAILABLE, "Please try again.") from exc
        screened.after(services, caller, state)
        return Ack(mid=mid, seq=position.seq)
    raise RequestError(ErrorCode.UNAVAILABLE, "Please try again.")


async def typing(services: Services, caller: Caller, msg: TypingRequest) -> Answer:
    """Tell the others that this member is typing, at most every 3 s; extras are dropped."""
    room, member = present(caller)
    state = room.state
    assert state is not None
    now = now_ms()
    if state.typing != "off" and now - caller.last_typing >= TYPING_INTERVAL_MS:
        caller.last_typing = now
        event = Typing(member.pid if state.typing == "named" else None)
        await services.hub.publish(room, [Delivery(event, exclude=member.pid)])
    return None


async def report(services: Services, caller: Caller, msg: Report) -> Answer:
    """Report a message to the room's facilitators (and to no one else).

    A member's second report of the same message changes nothing, and a member has at most
    :data:`REPORTS_PER_MEMBER` open reports in a room (§11): a flood cannot push genuine
    reports out of the facilitators' list.
    """
    room, member = present(caller)
    now = now_ms()
    spent = safety.spend(services, member, now)
    event = ReportEvent(msg.mid, member.pid, msg.reason or "", now)
    entry = {"mid": event.mid, "by": event.by, "reason": event.reason, "ts": event.ts}
    try:
        await services.hub.commit(
            room,
            [ReportAdd(entry, REPORTS_PER_MEMBER), spent],
            [Delivery(event, facilitators=True)],
        )
    except Refused as exc:
        if exc.reason == "dup":
            return None  # acked; the first report and its reason stand
        if exc.reason == "full":
            raise RequestError(
                ErrorCode.RATE_LIMITED,
                "You have many open reports; the facilitators will look at them.",
                retry_after=60_000,
            ) from None
        raise RequestError(ErrorCode.NOT_FOUND, "No such message in this room.") from None
    return None


async def whisper(services: Services, caller: Caller, msg: Whisper) -> Answer:
    """A private line between a participant and a facilitator, never between participants;
    to ``"facilitators"``, the facilitators' backchannel (§14)."""
    if msg.to == safety.BACKCHANNEL:
        return await safety.backchannel(services, caller, msg)
    room, member = present(caller)
    state = room.state
    assert state is not None
    target = state.members.get(msg.to)
    if target is None or target.waiting or target.pid == member.pid:
        raise RequestError(ErrorCode.NOT_FOUND, "No such member in this room.")
    if member.role == PARTICIPANT and target.role == PARTICIPANT:
        raise RequestError(
            ErrorCode.FORBIDDEN, "Whispers go between a participant and a facilitator."
        )
    if member.role == PARTICIPANT and state.paused:
        raise RequestError(ErrorCode.PAUSED, "The room is paused for a moment.")  # §13
    now = now_ms()
    spent = safety.spend(services, member, now)
    event = WhisperEvent(member.pid, target.pid, msg.text, now)
    await services.hub.commit(room, [spent], [Delivery(event, to=(member.pid, target.pid))])
    return None


async def help_flare(services: Services, caller: Caller, msg: Help) -> Answer:
    """Alert the facilitators at once and answer with the operator's crisis resources."""
    room, member = present(caller)
    now = now_ms()
    spent = safety.spend(services, member, now)
    alert = HelpEvent(member.pid, now)
    await structure.flare(services, room, alert, spent)  # kept for one who comes later (§13)
    settings = services.settings  # §15: in the room's language, else the default language
    lang = room.state.lang if room.state is not None else settings.default_lang
    return Resources(**settings.crisis_resources.answer(lang, settings.default_lang))
