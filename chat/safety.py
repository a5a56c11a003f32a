"""Safety tools of protocol §14 beyond review and keys: warnings, closing the loop on reports
and help flares, crisis language and contact details in ``say``, ignore, content warnings,
the room's ``review``/``contact`` settings, and the facilitators' backchannel.

Every decision is one commit on the room's stream (§12). What a participant says is screened
here on its way in: crisis language first (:func:`in_distress`), before anything can refuse
the message, so that a person in distress is shown the resources and the facilitators are
flagged even when the ``say`` itself is refused (:func:`distress_refused`); then contact
details (:func:`screen`), which answer ``check_first`` or ``not_allowed`` before anything is
committed. A crisis phrase in a message that goes through adds a ``flag`` for the
facilitators (never the text) to the message's own commit. Nothing of it is logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chat import metrics, structure
from chat.context import Answer, Caller, Services, facilitator, now_ms, present
from chat.envelope import Delivery
from chat.errors import ErrorCode, RequestError, Unavailable
from chat.events import (
    ContentWarning,
    Flag,
    HelpSeen,
    ReportReviewed,
    Resolved,
    Resources,
    Room,
    Warned,
    WhisperEvent,
)
from chat.localroom import LocalRoom
from chat.ops import HistoryEdit, MemberSet, Op, Refused, ReportDrop, RoomSet
from chat.requests import Cw, Ignore, Resolve, RoomSettings, Say, Unignore, Warn, Whisper
from chat.requests import HelpSeen as HelpSeenRequest
from chat.roomstate import PARTICIPANT, MemberState, RoomState, Value
from chat.screening import contact_kinds, crisis
from chat.staff import RETRIES, decide, logged, target

RESOURCES_EVERY_MS = 15 * 60 * 1000  # crisis resources at most this often per member (§14)
MAX_IGNORES = 200
BACKCHANNEL = "facilitators"  # the whisper ``to`` that reaches every facilitator (§14)


def spend(services: Services, member: MemberState, now: int) -> MemberSet:
    """One token of the member's message bucket (``--rate``/``--burst``), as the change to
    commit with the message: say, whisper, report and the help flare all draw on it. It is kept
    in the room's state, so a reconnect, a resume or another connection refills nothing (§11).

    Raises:
        RequestError: ``rate_limited`` with ``retry_after`` (ms).
    """
    settings = services.settings
    tokens = min(float(settings.burst), member.tokens + (now - member.stamp) / 1000 * settings.rate)
    if tokens < 1:
        wait_ms = int((1 - tokens) / settings.rate * 1000) + 1
        raise RequestError(ErrorCode.RATE_LIMITED, "You are sending too fast.", retry_after=wait_ms)
    return MemberSet(member.pid, {"tokens": tokens - 1, "stamp": now})


def room_lang(state: RoomState) -> str:
    """The room's language (protocol §15): which crisis phrases and phone formats apply."""
    return state.lang


@dataclass(slots=True)
class Screened:
    """What screening a ``say`` found: the member fields and events it adds to the commit, and
    whether the sender is shown the crisis resources afterwards."""

    fields: dict[str, Value] = field(default_factory=dict)
    crisis: bool = False
    resources: bool = False

    def deliveries(self, mid: str, pid: str) -> list[Delivery]:
        if not self.crisis:
            return []
        return [Delivery(Flag(mid, pid, "crisis"), facilitators=True)]

    def after(self, services: Services, caller: Caller, state: RoomState) -> None:
        """Once committed: count the flag, show the resources (the help flare's own answer)
        right after the ``ack``."""
        if self.crisis:
            metrics.FLAGS.labels(kind="crisis").inc()
        if self.resources:
            caller.follow(resources(services, state).wire())


def resources(services: Services, state: RoomState) -> Resources:
    """The operator's crisis resources, in the room's language where it has them (§15)."""
    settings = services.settings
    return Resources(**settings.crisis_resources.answer(state.lang, settings.default_lang))


def in_distress(services: Services, room: LocalRoom, member: MemberState, msg: Say) -> bool:
    """Whether a participant's ``say`` holds crisis language (facilitators are not checked).
    Asked before anything may refuse the message (§14; docs/protocol.md Part 2)."""
    state = room.state
    if state is None or member.role != PARTICIPANT:
        return False
    return crisis(msg.text, room_lang(state), services.settings.safety_words)


async def distress_refused(services: Services, caller: Caller, refusal: RequestError) -> None:
    """A ``say`` in crisis language was refused (muted, paused, slow, rate, contact details...):
    nothing reached the room, but the person is still shown the resources (at most once every
    15 minutes, as for a message that goes through) and the facilitators get a ``flag``
    without ``mid`` that names the refusal. Both go after the ``error``."""
    try:
        room, member = present(caller)
    except RequestError:
        return  # no longer in the room: nobody to show anything to
    state = room.state
    assert state is not None
    now = now_ms()
    show = now - member.resources_at >= RESOURCES_EVERY_MS
    flag = Delivery(Flag(None, member.pid, "crisis", refused=str(refusal.code)), facilitators=True)
    was: dict[str, Value] = {"resources_at": member.resources_at}
    for _ in range(2):
        # Shown on the condition that nobody showed them meanwhile (two refusals at once).
        ops: list[Op] = [MemberSet(member.pid, {"resources_at": now}, was)] if show else []
        try:
            await services.hub.commit(room, ops, [flag])
            break
        except Refused as exc:
            if exc.reason != "mismatch" or not show:
                return  # gone from the room meanwhile, say: the refusal stands on its own
            show = False  # a concurrent say showed them; the flag still goes
        except Unavailable:
            return  # the store is away: the refusal stands on its own
    metrics.FLAGS.labels(kind="crisis").inc()
    if show:
        caller.follow(resources(services, state).wire())


def screen(
    services: Services,
    room: LocalRoom,
    member: MemberState,
    msg: Say,
    now: int,
    distress: bool,
) -> Screened:
    """Screen a ``say`` before it is committed (participants only; facilitators are exempt);
    ``distress``: :func:`in_distress` found crisis language in it.

    Raises:
        RequestError: ``check_first`` (contact details under ``nudge``, without ``confirm``)
            or ``not_allowed`` (under ``block``), each with ``kinds``.
    """
    out = Screened()
    state = room.state
    if state is None or member.role != PARTICIPANT:
        return out
    if state.contact != "allow" and not (state.contact == "nudge" and msg.confirm is True):
        # Read only when the text has an "@" (a reply to someone present is not a handle):
        # not a walk over the whole room for every message.
        names = (m.name for m in state.members.values() if not m.waiting)
        kinds = contact_kinds(msg.text, room_lang(state), names)
        if kinds and state.contact == "block":
            raise RequestError(
                ErrorCode.NOT_ALLOWED, "Contact details can't be shared in this room.", kinds=kinds
            )
        if kinds:
            raise RequestError(
                ErrorCode.CHECK_FIRST,
                "That looks like contact details. Send it again with confirm to share it.",
                kinds=kinds,
            )
    if distress:
        out.crisis = True
        if now - member.resources_at >= RESOURCES_EVERY_MS:
            out.resources = True
            out.fields["resources_at"] = now
    return out


async def warn(services: Services, caller: Caller, msg: Warn) -> Answer:
    """Tell one participant, and nobody else, that a facilitator has warned them; the count
    is theirs for the room (a member field: a resume changes nothing)."""
    room, me = facilitator(caller)
    for _ in range(RETRIES):
        member = target(room, msg.pid)
        count = member.warnings + 1
        require: dict[str, Value] = {"warnings": member.warnings, "role": PARTICIPANT}
        ops: list[Op] = [
            MemberSet(member.pid, {"warnings": count}, require),
            logged(room, msg.t, me, pid=member.pid),
        ]
        out = [Delivery(Warned(msg.reason or "", count), to=(member.pid,))]
        try:
            await services.hub.commit(room, ops, out)
            return None
        except Refused as exc:
            if exc.reason == "missing":
                raise RequestError(ErrorCode.NOT_FOUND, "No such member in this room.") from None
            if exc.reason != "mismatch":
                raise Unavailable(f"warn refused: {exc.reason}") from None
            await services.hub.refresh(room)  # warned by another facilitator meanwhile
    raise Unavailable("the member changed too often to warn")


async def resolve(services: Services, caller: Caller, msg: Resolve) -> Answer:
    """Take a message's reports off the open list; facilitators get ``resolved``, each
    reporter ``report_reviewed`` (never what was done)."""
    room, me = facilitator(caller)
    state = room.state
    assert state is not None
    reporters = tuple(dict.fromkeys(r["by"] for r in state.reports.values() if r["mid"] == msg.mid))
    if not reporters:
        raise RequestError(ErrorCode.NOT_FOUND, "No open report of that message.")
    out = [
        Delivery(Resolved(msg.mid, me.pid), facilitators=True),
        Delivery(ReportReviewed(msg.mid), to=reporters),
    ]
    await decide(services, room, [ReportDrop(msg.mid), logged(room, msg.t, me, mid=msg.mid)], out)
    return None


async def help_seen(services: Services, caller: Caller, msg: HelpSeenRequest) -> Answer:
    """Tell a participant who asked for help that a facilitator has seen it, and the other
    facilitators who answered."""
    room, me = facilitator(caller)
    member = target(room, msg.pid)
    out = [
        Delivery(HelpSeen(), to=(member.pid,)),
        Delivery(HelpSeen(member.pid, me.pid), facilitators=True),
    ]
    await decide(services, room, [logged(room, msg.t, me, pid=member.pid)], out)
    await structure.flare_answered(services, room, member.pid)  # §13's kept flares
    return None


async def ignore(services: Services, caller: Caller, msg: Ignore | Unignore) -> Answer:
    """``ignore`` / ``unignore``: kept in the ignorer's member state (it survives a resume and
    holds on every worker); the hub then leaves the ignorer out of that member's ``msg`` and
    ``typing``. The target is never told."""
    room, me = present(caller)
    on = isinstance(msg, Ignore)
    for _ in range(RETRIES):
        state = room.state
        assert state is not None
        me = state.members.get(me.pid) or me
        if on:
            other = state.members.get(msg.pid)
            if other is None or other.waiting:
                raise RequestError(ErrorCode.NOT_FOUND, "No such member in this room.")
            if other.role != PARTICIPANT:
                raise RequestError(ErrorCode.FORBIDDEN, "Only participants can be ignored.")
            if other.pid == me.pid:
                raise RequestError(ErrorCode.BAD_REQUEST, "You cannot ignore yourself.")
        old = list(me.ignores)
        if (msg.pid in old) == on:
            return None  # nothing to change
        if on and len(old) >= MAX_IGNORES:
            raise RequestError(ErrorCode.BAD_REQUEST, "You ignore too many people already.")
        new = [*old, msg.pid] if on else [p for p in old if p != msg.pid]
        try:
            await services.hub.commit(room, [MemberSet(me.pid, {"ignores": new}, {"ignores": old})])
            return None
        except Refused as exc:
            if exc.reason != "mismatch":
                raise Unavailable(f"ignore refused: {exc.reason}") from None
            await services.hub.refresh(room)
    raise Unavailable("the member changed too often")


async def content_warning(services: Services, caller: Caller, msg: Cw) -> Answer:
    """Set (or with "" remove) a message's content warning; the room is told and the kept
    history follows."""
    room, me = facilitator(caller)
    ops: list[Op] = [HistoryEdit(msg.mid, msg.cw), logged(room, msg.t, me, mid=msg.mid)]
    await decide(services, room, ops, [Delivery(ContentWarning(msg.mid, msg.cw))])
    return None


async def room_settings(services: Services, caller: Caller, msg: RoomSettings) -> Answer:
    """``settings``: the room's ``review`` and ``contact``; everyone gets the ``room`` event."""
    room, me = facilitator(caller)
    wanted: dict[str, Value] = {}
    if msg.review is not None:
        wanted["review"] = msg.review
    if msg.contact is not None:
        wanted["contact"] = msg.contact
    if not wanted:
        raise RequestError(ErrorCode.BAD_REQUEST, "Name a setting to change: review or contact.")
    await decide(services, room, [RoomSet(wanted), logged(room, msg.t, me)], [Delivery(Room())])
    return None


async def backchannel(services: Services, caller: Caller, msg: Whisper) -> Answer:
    """``whisper`` to ``"facilitators"``: every facilitator gets it, no participant does."""
    room, me = present(caller)
    if not me.is_facilitator:
        raise RequestError(ErrorCode.FORBIDDEN, "Only facilitators can use their backchannel.")
    now = now_ms()
    spent = spend(services, me, now)
    event = WhisperEvent(me.pid, BACKCHANNEL, msg.text, now)
    await services.hub.commit(room, [spent], [Delivery(event, facilitators=True)])
    return None
