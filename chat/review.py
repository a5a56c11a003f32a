"""Review before posting (protocol §14): held messages, and the facilitators' answer to them.

A participant is *under review* when the room's ``review`` setting is ``"all"`` or a
facilitator put them on ``hold``. Their ``say`` is then acked with ``held: true`` and no
``seq``; the message goes to the facilitators alone (``held``) and waits in the room's state
until a facilitator releases it — to the room, as an ordinary ``msg`` with its own ``mid`` and
a new ``seq`` — or discards it. Held text lives like history: in memory only (the replicas,
and Redis memory where history may be, sealed with the bus key), bounded by the history's
count and age, wiped when the room closes.

The store's guard on a participant's ``say`` refuses a message from someone under review, so a
worker that has not yet heard of a ``hold`` cannot post it to the room (§12).
"""

from __future__ import annotations

from collections.abc import Iterable

from chat.backend.base import MessageMeta
from chat.context import Answer, Caller, Services, facilitator, now_ms
from chat.envelope import Delivery
from chat.errors import ErrorCode, RequestError
from chat.events import Ack, HeldEvent, Hold, Msg, Reviewed
from chat.localroom import LocalRoom
from chat.ops import HeldAdd, HeldDrop, MemberSet, Op, Refused
from chat.requests import Discard, Release, Say, Unhold
from chat.requests import Hold as HoldRequest
from chat.roomstate import PARTICIPANT, MemberState, Message, RoomState, Value, forget_old_held
from chat.staff import decide, logged, target

_PRESENT_PARTICIPANT: dict[str, Value] = {"role": PARTICIPANT, "waiting": False}


def under_review(state: RoomState, member: MemberState) -> bool:
    """Whether the member's messages wait for a facilitator (facilitators never do)."""
    return member.role == PARTICIPANT and (member.held or state.review == "all")


def held_list(state: RoomState, now: int, max_age_ms: int) -> list[Message]:
    """The held messages a facilitator's ``welcome`` lists, oldest first."""
    oldest = now - max_age_ms
    kept = [h for h in state.held.values() if int(h.get("ts", 0)) >= oldest]
    return sorted(kept, key=lambda h: int(h.get("ts", 0)))


def _max_age_ms(services: Services) -> int:
    return int(services.settings.history_seconds * 1000)


def forget_old(services: Services, rooms: Iterable[LocalRoom], now: int) -> None:
    """Drop held messages past the history's age from this worker's replicas, also in rooms
    that hold nothing any more (the store drops them on its own: its sweep, or the commit and
    heartbeat scripts)."""
    oldest = now - _max_age_ms(services)
    for room in rooms:
        if room.state is not None:
            forget_old_held(room.state, oldest)


def _evictions(services: Services, state: RoomState, now: int) -> tuple[str, ...]:
    """The held messages that go as one more comes: those past the history's age, and the
    oldest beyond its count."""
    settings = services.settings
    oldest = now - _max_age_ms(services)
    ordered = sorted(state.held.values(), key=lambda h: int(h.get("ts", 0)))
    old = [h["mid"] for h in ordered if int(h.get("ts", 0)) < oldest]
    young = [h["mid"] for h in ordered if int(h.get("ts", 0)) >= oldest]
    over = max(0, len(young) + 1 - settings.history_messages)
    return tuple(old + young[:over])


async def hold_message(
    services: Services,
    room: LocalRoom,
    member: MemberState,
    msg: Say,
    mid: str,
    now: int,
    ops: list[Op],
    extra: list[Delivery],
) -> Answer:
    """Keep a participant's message for review: facilitators get ``held``, the sender an
    ``ack`` with ``held: true`` and no ``seq``; nothing reaches the room."""
    state = room.state
    assert state is not None
    held: Message = {
        "mid": mid, "pid": member.pid, "name": member.name, "text": msg.text, "ts": now,
    }  # fmt: skip
    if msg.cw is not None:
        held["cw"] = msg.cw
    event = HeldEvent(mid, member.pid, member.name, msg.text, now, msg.cw)
    add = HeldAdd(held, _evictions(services, state, now))
    await services.hub.commit(room, [*ops, add], [Delivery(event, facilitators=True), *extra])
    return Ack(mid=mid, held=True)


async def hold(services: Services, caller: Caller, msg: HoldRequest | Unhold) -> Answer:
    """``hold`` / ``unhold``: review one participant's messages, or stop; messages already held
    stay in the list. Facilitators learn of it (``hold``, an extension)."""
    room, me = facilitator(caller)
    member = target(room, msg.pid)
    on = isinstance(msg, HoldRequest)
    change = MemberSet(member.pid, {"held": on}, _PRESENT_PARTICIPANT)
    out = [Delivery(Hold(member.pid, on, me.pid), facilitators=True)]
    await decide(services, room, [change, logged(room, msg.t, me, pid=member.pid)], out)
    return None


async def review(services: Services, caller: Caller, msg: Release | Discard) -> Answer:
    """``release`` posts a held message to the room (same ``mid``, a new ``seq``); ``discard``
    drops it. The sender (if still here) and every facilitator get ``reviewed``."""
    room, me = facilitator(caller)
    state = room.state
    assert state is not None
    held = state.held.get(msg.mid)
    if held is None or int(held.get("ts", 0)) < now_ms() - _max_age_ms(services):
        # Past the history's age it is gone, here and in the store (even if this replica has
        # not dropped it yet): held text outlives history nowhere (§14).
        raise RequestError(ErrorCode.NOT_FOUND, "That message is no longer waiting.")
    action = "release" if isinstance(msg, Release) else "discard"
    reviewed = Delivery(Reviewed(msg.mid, action), to=(held["pid"],), facilitators=True)
    ops: list[Op] = [HeldDrop(msg.mid), logged(room, msg.t, me, mid=msg.mid)]
    if action == "discard":
        await decide(services, room, ops, [reviewed])
        return None
    now = now_ms()
    event = Msg(
        msg.mid, held["pid"], held["name"], PARTICIPANT, held["text"], now, cw=held.get("cw")
    )
    try:
        await services.hub.commit(room, ops, [Delivery(event), reviewed], MessageMeta(msg.mid, now))
    except Refused as exc:
        if exc.reason == "nomsg":  # released or discarded by another facilitator meanwhile
            raise RequestError(ErrorCode.NOT_FOUND, "That message is no longer waiting.") from None
        raise
    return None
