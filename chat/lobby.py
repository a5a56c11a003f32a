"""A room's door (protocol §11, §13): who comes in now, who waits, for how long, and the seats.

Decisions only, made on a room's replica; each comes with the ops its caller commits (a join
in ``chat.joining``, an ``admit`` in ``chat.facilitation``, the room's clock in
``chat.schedule``), and the store checks them once more as it commits (:class:`SeatLimit`), so
that two workers never both give away the last seat.

* **Capacity**: at most ``capacity`` participants present (members within the resume grace
  count; facilitators never do). A participant's join or knock beyond it, or an admission that
  would exceed it, is ``room_full`` (a join then closes 4006).
* **Opening**: before ``opens_at`` a participant waits in the lobby (``waiting`` with
  ``opens_at``); facilitators come in and may admit anyone early. At the opening the waiting
  are let in in the order they came, up to the capacity, and the rest are told ``room_full``
  (4006); in a knock room they stay waiting for a facilitator.
* **Knock limits** (§11, not before the opening): at most ``--max-waiting`` participants wait
  at a knock room's door; one left waiting for ``--knock-timeout`` seconds is ``denied``.
"""

from __future__ import annotations

from chat.envelope import Delivery
from chat.errors import CloseCode, ErrorCode, RequestError, SessionEnded
from chat.events import Denied, Error, Joined, Left
from chat.ops import Admit, MemberDrop, Op, RoomSet, SeatLimit
from chat.roomstate import PARTICIPANT, MemberState, RoomState

FULL_MESSAGE = "This room is full right now."


def full() -> SessionEnded:
    """A participant's join beyond the capacity or the waiting limit: ``room_full``, 4006."""
    return SessionEnded(CloseCode.ROOM_FULL, RequestError(ErrorCode.ROOM_FULL, FULL_MESSAGE))


def full_for_facilitator() -> RequestError:
    """An ``admit`` that would exceed the capacity (the connection stays open)."""
    return RequestError(ErrorCode.ROOM_FULL, "The room is full: no one more can come in.")


def before_opening(state: RoomState) -> bool:
    """Whether the room's opening is still to come (until the clock commits it)."""
    return state.opens_at is not None and not state.opened


def present_participants(state: RoomState) -> int:
    return sum(1 for m in state.members.values() if m.role == PARTICIPANT and not m.waiting)


def waiting_in_order(state: RoomState) -> list[MemberState]:
    """The participants waiting at the door, in the order they came."""
    waiting = [m for m in state.members.values() if m.waiting]
    return sorted(waiting, key=lambda m: (m.arrived, m.pid))


def admission(state: RoomState, role: str, now: int, max_waiting: int) -> tuple[bool, list[Op]]:
    """How a join comes in: whether the member waits, and the checks its ``MemberAdd``
    commits with.

    Raises:
        SessionEnded: ``room_full`` (4006) over the capacity or the waiting limit; ``not_found``
            (4004) once the room's end time has passed (the clock is closing it).
    """
    if state.ends_at is not None and now >= state.ends_at:
        raise SessionEnded(
            CloseCode.NOT_FOUND, RequestError(ErrorCode.NOT_FOUND, "This room has ended.")
        )
    if role != PARTICIPANT:
        return False, []
    lobby = before_opening(state)
    waits = lobby or state.admission == "knock"
    checks: list[Op] = []
    if state.capacity is not None:
        if present_participants(state) >= state.capacity:
            raise full()
        checks.append(SeatLimit(False, state.capacity))
    if waits and not lobby:  # a knock after the opening: --max-waiting applies
        if sum(1 for m in state.members.values() if m.waiting) >= max_waiting:
            raise full()
        checks.append(SeatLimit(True, max_waiting))
    return waits, checks


def opens_for(state: RoomState) -> int | None:
    """``waiting.opens_at``: the opening a waiting participant waits for, if any."""
    return state.opens_at if before_opening(state) else None


def admit_checks(state: RoomState) -> list[Op]:
    """The checks a facilitator's ``admit`` commits with."""
    return [SeatLimit(False, state.capacity)] if state.capacity is not None else []


def opening(state: RoomState, now: int) -> tuple[list[Op], list[Delivery]] | None:
    """The opening, once it is due: the commit that claims it (exactly once, whichever worker
    gets there first) and lets the waiting in. None when it is not due or done."""
    if not before_opening(state) or state.opens_at is None or now < state.opens_at:
        return None
    claim: list[Op] = [RoomSet({"opened": True}, {"opened": False})]
    if state.admission == "knock":
        return claim, []  # they stay waiting for a facilitator
    ops, out = let_in(state, waiting_in_order(state), at_opening=True)
    return claim + ops, out


def let_in(
    state: RoomState, waiting: list[MemberState], *, at_opening: bool = False
) -> tuple[list[Op], list[Delivery]]:
    """Let these waiting participants in, in order, up to the capacity; the rest are told
    ``room_full``. One that is disconnected (within its grace) is left waiting, unless it is
    beyond the capacity at the opening: a resume brings it back to the door, where the clock
    lets it in (or tells it the room is full)."""
    free = None if state.capacity is None else state.capacity - present_participants(state)
    ops: list[Op] = []
    out: list[Delivery] = []
    admitted: list[MemberState] = []
    for member in waiting:
        has_seat = free is None or len(admitted) < free
        if has_seat and member.online:
            admitted.append(member)
            ops.append(Admit(member.pid))
            out.append(Delivery(Joined(member.public()), exclude=member.pid))
        elif not has_seat and (member.online or at_opening):
            ops.append(MemberDrop(member.pid, "full", {"waiting": True}))
            out.append(Delivery(Error(str(ErrorCode.ROOM_FULL), FULL_MESSAGE), to=(member.pid,)))
            out.append(Delivery(Left(member.pid), facilitators=True, exclude=member.pid))
    if admitted and state.capacity is not None:
        # Exactly these seats must still be free when the store commits (§13).
        ops.insert(0, SeatLimit(False, state.capacity - len(admitted) + 1))
    return ops, out


def waiting_since(state: RoomState, member: MemberState) -> int:
    """When a participant's wait for a facilitator started (ms): not before the opening."""
    return max(member.arrived, state.opens_at or 0)


def knock_deadline(state: RoomState, member: MemberState, knock_timeout: float) -> int | None:
    """When a knocker is told ``denied`` (§11 ``--knock-timeout``); None before the opening
    or outside a knock room."""
    if state.admission != "knock" or before_opening(state) or not member.waiting:
        return None
    return waiting_since(state, member) + int(knock_timeout * 1000)


def turned_away(member: MemberState) -> tuple[list[Op], list[Delivery]]:
    """A knocker nobody let in within the knock timeout: ``denied``, then 4003."""
    drop = MemberDrop(member.pid, "denied", {"waiting": True})
    out = [
        Delivery(Denied(member.pid), to=(member.pid,)),
        Delivery(Left(member.pid), facilitators=True, exclude=member.pid),
    ]
    return [drop], out
