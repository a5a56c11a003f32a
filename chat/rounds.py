"""Who may speak now (protocol §13): the pause, and the round, a meeting's talking order.

Pure functions of a room's state (no I/O, no asyncio). The round is one room setting,
``RoomState.round``, whose value is its whole state; every change to it (a raised hand, a
``done``, ``next``...) is a compare-and-set of that value on the room's stream, so that two
workers never both hand the turn on. The stored forms:

* queue mode: ``{"mode": "queue", "strict": bool, "speaker": pid | None, "queue": [pid...]}``
* order mode: ``{"mode": "order", "strict": bool, "order": [pid...], "at": int}`` — the
  speaker is the first one still here from position ``at`` on.

What members see (:func:`view`, the ``round`` event) is *derived* from the stored form and
from who is in the room (members within the resume grace count): a speaker who has left, been
removed or whose grace ended has lost the turn to the next in line, and the queue lists only
those still here. Every replica derives the same view from the same state, so the hub can tell
members the round changed whatever changed it — a hand, a ``done``, or a departure — without
a worker having to commit the consequence (``hub.apply_entry``). A change starts from the
normal form (:func:`normal`), so a departure's consequence is written down with the next one.
"""

from __future__ import annotations

import random
from typing import Any

from chat.errors import ErrorCode, RequestError
from chat.events import RoundEvent
from chat.roomstate import PARTICIPANT, MemberState, RoomState

Round = dict[str, Any]
MODES = ("queue", "order")
_SHUFFLE = random.SystemRandom()


def _bad(message: str) -> RequestError:
    return RequestError(ErrorCode.BAD_REQUEST, message)


def _here(state: RoomState, pid: str) -> bool:
    member = state.members.get(pid)
    return member is not None and not member.waiting


# --- what is, now ------------------------------------------------------------------------


def normal(state: RoomState) -> Round | None:
    """The round as it stands: those who left taken out, a turn they held passed on; None
    when no round is active (none started, ended, or an order round with nobody left)."""
    stored = state.round
    if stored is None:
        return None
    if stored["mode"] == "queue":
        speaker = stored["speaker"]
        if speaker is not None and not _here(state, speaker):
            speaker = None
        queue = [pid for pid in stored["queue"] if pid != speaker and _here(state, pid)]
        if speaker is None and queue:
            speaker = queue.pop(0)  # the turn passes to the next in line
        return {"mode": "queue", "strict": stored["strict"], "speaker": speaker, "queue": queue}
    order: list[str] = stored["order"]
    at = next((i for i in range(stored["at"], len(order)) if _here(state, order[i])), None)
    if at is None:
        return None  # an order round ends after its last
    return {"mode": "order", "strict": stored["strict"], "order": order, "at": at}


def view(state: RoomState) -> RoundEvent:
    """The ``round`` event for the state (``welcome.round`` too)."""
    now = normal(state)
    if now is None:
        return RoundEvent(active=False)
    if now["mode"] == "queue":
        return RoundEvent(True, "queue", now["strict"], now["speaker"], now["queue"])
    order, at = now["order"], now["at"]
    queue = [pid for pid in order[at + 1 :] if _here(state, pid)]
    return RoundEvent(True, "order", now["strict"], order[at], queue)


def as_welcome(state: RoomState) -> dict[str, Any]:
    """``welcome.round``: the ``round`` event's fields without its ``t``."""
    shown = view(state).wire()
    del shown["t"]
    return shown


def speaker(state: RoomState) -> str | None:
    """Who holds the turn. O(1) unless the stored speaker has left (then the normal form)."""
    stored = state.round
    if stored is None:
        return None
    if stored["mode"] == "queue":
        pid = stored["speaker"]
        if pid is not None and _here(state, pid):
            return str(pid)
    else:
        order, at = stored["order"], stored["at"]
        if at < len(order) and _here(state, order[at]):
            return str(order[at])
    now = normal(state)
    if now is None:
        return None
    holder = now["speaker"] if now["mode"] == "queue" else now["order"][now["at"]]
    return None if holder is None else str(holder)


def speech_refusal(state: RoomState, member: MemberState) -> RequestError | None:
    """Why a participant may not post to the room now (``say``; ``whisper`` checks only the
    pause): ``paused``, or ``not_your_turn`` in a strict round while someone else holds the
    turn. Facilitators always may. One check on ``say``'s path, O(1) in the common case."""
    if member.role != PARTICIPANT:
        return None
    if state.paused:
        return RequestError(
            ErrorCode.PAUSED,
            "The room is paused for a moment; you can still read and ask for help.",
        )
    stored = state.round
    if stored is not None and stored["strict"]:
        holder = speaker(state)
        if holder is not None and holder != member.pid:
            return RequestError(
                ErrorCode.NOT_YOUR_TURN, "Someone else is speaking now; your turn will come."
            )
    return None


# --- changes: each returns the new stored round (None: no round) -------------------------


def participants_in_order(state: RoomState) -> list[str]:
    """The participants here, in the order they came (the default order of a round)."""
    here = [m for m in state.members.values() if m.role == PARTICIPANT and not m.waiting]
    return [m.pid for m in sorted(here, key=lambda m: (m.arrived, m.pid))]


def start(state: RoomState, mode: str, order: list[str] | str | None, strict: bool) -> Round:
    """A new round (it replaces any other).

    Raises:
        RequestError: ``bad_request`` for an ``order`` that names a facilitator, someone
            twice or someone absent, or an order round with nobody to speak.
    """
    if mode == "queue":
        return {"mode": "queue", "strict": strict, "speaker": None, "queue": []}
    if order == "random":
        pids = participants_in_order(state)
        _SHUFFLE.shuffle(pids)
    elif order is None:
        pids = participants_in_order(state)
    elif isinstance(order, list):
        pids = list(order)
        if len(set(pids)) != len(pids):
            raise _bad("The order names someone twice.")
        for pid in pids:
            member = state.members.get(pid)
            if member is None or member.waiting:
                raise _bad("The order names someone who is not here.")
            if member.role != PARTICIPANT:
                raise _bad("The order names a facilitator; it lists participants.")
    else:
        raise _bad('order must be a list of pids or "random".')
    if not pids:
        raise _bad("There is nobody to speak in an order round.")
    return {"mode": "order", "strict": strict, "order": pids, "at": 0}


def _active(state: RoomState) -> Round:
    now = normal(state)
    if now is None:
        raise RequestError(ErrorCode.NOT_FOUND, "No round is going on.")
    return now


def _queue_round(state: RoomState, member: MemberState) -> Round:
    if member.role != PARTICIPANT:
        raise _bad("Facilitators do not raise a hand; they run the round.")
    now = _active(state)
    if now["mode"] != "queue":
        raise _bad("This round goes in a set order; there is no queue to join.")
    return now


def hand_up(state: RoomState, member: MemberState) -> Round:
    """Raise a hand: the turn at once if nobody holds it, else the end of the queue; a second
    raise changes nothing."""
    now = _queue_round(state, member)
    pid = member.pid
    if now["speaker"] == pid or pid in now["queue"]:
        return now
    if now["speaker"] is None:
        return {**now, "speaker": pid}
    return {**now, "queue": [*now["queue"], pid]}


def hand_down(state: RoomState, member: MemberState) -> Round:
    """Lower a hand: leave the queue (a speaker keeps the turn; ``done`` passes it on)."""
    now = _queue_round(state, member)
    return {**now, "queue": [p for p in now["queue"] if p != member.pid]}


def _advance(state: RoomState, now: Round) -> Round | None:
    if now["mode"] == "queue":
        queue = now["queue"]
        return {**now, "speaker": queue[0] if queue else None, "queue": queue[1:]}
    moved = {**now, "at": now["at"] + 1}
    return moved if _still(state, moved) else None  # after the last: the round ends


def _still(state: RoomState, stored: Round) -> bool:
    order: list[str] = stored["order"]
    return any(_here(state, pid) for pid in order[stored["at"] :])


def done(state: RoomState, member: MemberState) -> Round | None:
    """The speaker passes the turn on.

    Raises:
        RequestError: ``bad_request`` from anyone but the speaker.
    """
    now = normal(state)
    holder = None if now is None else speaker(state)
    if now is None or holder != member.pid:
        raise _bad("Only the person speaking can pass the turn on.")
    return _advance(state, now)


def next_turn(state: RoomState) -> Round | None:
    """A facilitator moves the turn on (``not_found`` with no round)."""
    return _advance(state, _active(state))


def end(state: RoomState) -> None:
    """A facilitator ends the round (``not_found`` with no round)."""
    _active(state)
