"""Session structure in the room (protocol §13): pause, rounds, stepping out, extending the end,
and the help flares kept for the next facilitator.

Each decision is one commit on the room's stream (§12). A change to a value that depends on
the value before it — the round, the end time, the flares — is a compare-and-set: the commit
requires the value the replica holds, and on ``mismatch`` (another worker changed it first) the
replica is caught up and the change computed again, a bounded number of times. The ``room`` and
``round`` events are not sent by these handlers: every worker derives them from the entry
(``hub.view_changes``), so they go out whatever changed the room — a facilitator's decision, a
facilitator arriving in a staffed room, a speaker leaving.

The room's clock (opening, five-minute notice, end, knock timeout) is ``chat.schedule``; the
door (capacity, lobby, knock limits) is ``chat.lobby``; the round's rules are ``chat.rounds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable

from chat import rounds
from chat.context import Answer, Caller, Services, facilitator, present
from chat.envelope import Delivery
from chat.errors import ErrorCode, RequestError, Unavailable
from chat.events import Away, HelpEvent
from chat.localroom import LocalRoom
from chat.ops import MemberSet, Op, Refused, RoomSet
from chat.protocol import Message
from chat.requests import Away as AwayRequest
from chat.requests import Done as DoneRequest
from chat.requests import EndRound, Extend, Hand, Next, Pause, Round
from chat.requests import Unpause as UnpauseRequest
from chat.roomstate import RoomState, Value
from chat.staff import logged

# Compare-and-set attempts before answering ``unavailable``: a whole room raising hands at
# once races, and each lost race costs one more try (with a growing, random pause between).
TRIES = 25
BACKOFF = 0.005  # seconds, times the attempt number, at most
_JITTER = random.Random()
FLARES_KEPT_MS = 30 * 60 * 1000  # §13: a facilitator's welcome lists the last 30 minutes'
FLARES_MAX = 100  # flares kept at most (one per participant: the latest)


async def _compare_and_set(
    services: Services,
    room: LocalRoom,
    name: str,
    compute: Callable[[RoomState], Value],
    extra: list[Op] | None = None,
    out: list[Delivery] | None = None,
) -> bool:
    """Set the room setting ``name`` to ``compute(state)``, provided it is still what the
    replica held; recompute after a lost race. False when nothing had to change.

    Raises:
        RequestError: what ``compute`` raises (against the caught-up state).
        Unavailable: the race was lost :data:`TRIES` times, or the backend is unreachable.
    """
    for attempt in range(TRIES):
        state = room.current()
        old = getattr(state, name)
        new = compute(state)
        if new == old and not out:
            return False
        change = RoomSet({name: new}, {name: old})
        try:
            await services.hub.commit(room, [change, *(extra or [])], out or [])
            return True
        except Refused as exc:
            if exc.reason != "mismatch":
                raise Unavailable(f"change refused: {exc.reason}") from None
        # Lost a race: the winner's entry is on its way; fetch it unless it is here already.
        await asyncio.sleep(_JITTER.uniform(0, BACKOFF * (attempt + 1)))
        if getattr(room.current(), name) == old:
            await services.hub.refresh(room)
    raise Unavailable("the room kept changing; try again")


# --- pause ---------------------------------------------------------------------------------


async def pause(services: Services, caller: Caller, msg: Pause | UnpauseRequest) -> Answer:
    """``pause`` / ``unpause``: a grounding moment. In a staffed room nobody can unpause the
    room while no facilitator is present — but then nobody could send ``unpause`` either."""
    room, me = facilitator(caller)
    change = RoomSet({"pause": isinstance(msg, Pause)})
    await services.hub.commit(room, [change, logged(room, msg.t, me)])
    return None


# --- the end -------------------------------------------------------------------------------


async def extend(services: Services, caller: Caller, msg: Extend) -> Answer:
    """``extend``: move the end ``minutes`` later; a new ``ending`` comes five minutes before
    the new end (the room's clock sees that this end has not been announced)."""
    room, me = facilitator(caller)

    def later(state: RoomState) -> Value:
        if state.ends_at is None:
            raise RequestError(ErrorCode.BAD_REQUEST, "This room has no end time to extend.")
        return state.ends_at + msg.minutes * 60_000

    await _compare_and_set(services, room, "ends_at", later, [logged(room, msg.t, me)])
    return None


# --- rounds --------------------------------------------------------------------------------


async def start_round(services: Services, caller: Caller, msg: Round) -> Answer:
    """``round``: start a round, or replace the one going on."""
    room, me = facilitator(caller)
    strict = bool(msg.strict)

    def new_round(state: RoomState) -> Value:
        return rounds.start(state, msg.mode, msg.order, strict)

    await _compare_and_set(services, room, "round", new_round, [logged(room, msg.t, me)])
    return None


async def hand(services: Services, caller: Caller, msg: Hand) -> Answer:
    """``hand``: raise a hand (or, with ``down``, lower it) in a queue round."""
    room, me = present(caller)
    change = rounds.hand_down if msg.down else rounds.hand_up
    await _compare_and_set(services, room, "round", _normalised(lambda s: change(s, me)))
    return None


async def done(services: Services, caller: Caller, msg: DoneRequest) -> Answer:
    """``done``: the speaker passes the turn on."""
    room, me = present(caller)
    await _compare_and_set(services, room, "round", _normalised(lambda s: rounds.done(s, me)))
    return None


async def next_turn(services: Services, caller: Caller, msg: Next) -> Answer:
    """``next``: a facilitator moves the turn on."""
    room, me = facilitator(caller)
    await _compare_and_set(
        services, room, "round", _normalised(rounds.next_turn), [logged(room, msg.t, me)]
    )
    return None


async def end_round(services: Services, caller: Caller, msg: EndRound) -> Answer:
    """``end_round``: a facilitator ends the round."""
    room, me = facilitator(caller)

    def ended(state: RoomState) -> Value:
        rounds.end(state)
        return None

    await _compare_and_set(services, room, "round", ended, [logged(room, msg.t, me)])
    return None


def _normalised(change: Callable[[RoomState], Value]) -> Callable[[RoomState], Value]:
    """A round change that leaves the setting alone when it changes nothing but the stored
    form (a second raised hand; ``next`` with nobody in line): no commit, no event."""

    def compute(state: RoomState) -> Value:
        new = change(state)
        return state.round if new == rounds.normal(state) else new

    return compute


# --- stepping out --------------------------------------------------------------------------


async def away(services: Services, caller: Caller, msg: AwayRequest) -> Answer:
    """``away``: "back in a moment" (or back); the room, sender included, is told. It changes
    nothing in a round."""
    room, me = present(caller)
    change = MemberSet(me.pid, {"stepped_out": msg.on})
    await services.hub.commit(room, [change], [Delivery(Away(me.pid, msg.on))])
    return None


# --- help flares ---------------------------------------------------------------------------


def recent_flares(state: RoomState, now: int) -> list[Message]:
    """``welcome.flares`` for a facilitator: the help flares of the last 30 minutes not yet
    answered (§13), oldest first."""
    return [dict(f) for f in state.flares if f["ts"] > now - FLARES_KEPT_MS]


async def flare_answered(services: Services, room: LocalRoom, pid: str) -> None:
    """A facilitator answered ``pid``'s help flare (``help_seen``, §14): it is no longer listed
    for facilitators who come later."""

    def without(state: RoomState) -> Value:
        return [f for f in state.flares if f["pid"] != pid]

    with contextlib.suppress(Unavailable):  # the list is a courtesy; the answer went out
        await _compare_and_set(services, room, "flares", without)


async def flare(services: Services, room: LocalRoom, alert: HelpEvent, spent: Op) -> None:
    """Tell the facilitators of a help flare at once, and keep it in the room so that a
    facilitator who arrives later (a staffed room waiting for one) sees it in its welcome.
    ``spent`` (the sender's message token) is committed with it."""
    out = [Delivery(alert, facilitators=True)]

    def kept(state: RoomState) -> Value:
        fresh = [f for f in state.flares if f["ts"] > alert.ts - FLARES_KEPT_MS]
        fresh = [f for f in fresh if f["pid"] != alert.pid]
        return [*fresh, {"pid": alert.pid, "ts": alert.ts}][-FLARES_MAX:]

    try:
        await _compare_and_set(services, room, "flares", kept, [spent], out)
    except Unavailable:
        # The alert matters more than the list: send it even if the list could not change.
        await services.hub.commit(room, [spent], out)
