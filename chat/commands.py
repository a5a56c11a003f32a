"""What each client message does: one small handler per type, and the dispatch table.

Joining and leaving live in ``joining``, facilitator powers in ``facilitation``; the
participant's own messages (say, typing, report, whisper, help) live here.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from chat import facilitation, joining
from chat.context import Caller, Services, now_ms, require_seat
from chat.errors import ErrorCode, RequestError
from chat.identity import new_mid
from chat.protocol import (
    Admit,
    Announce,
    ClientMessage,
    Close,
    Delete,
    Deny,
    Help,
    Join,
    Leave,
    Lock,
    Message,
    Mute,
    Remove,
    Report,
    Say,
    Slow,
    Typing,
    Unlock,
    Unmute,
    Whisper,
    ack,
)
from chat.state.base import PARTICIPANT

TYPING_INTERVAL = 3.0  # protocol §5: at most one typing event every 3 s per member


async def say(services: Services, caller: Caller, msg: Say) -> None:
    """Send a message to the room; the sender gets ``ack`` and the ``msg`` itself."""
    seat = require_seat(caller)
    now = now_ms()
    seat.check_can_speak(now)
    if seat.role == PARTICIPANT and seat.room.slow:
        wait = seat.last_say + seat.room.slow - time.monotonic()
        if wait > 0:
            raise RequestError(
                ErrorCode.SLOW_MODE,
                "Slow mode is on; please wait a moment.",
                retry_after=int(wait * 1000) + 1,
            )
    event: Message = {
        "t": "msg",
        "mid": new_mid(),
        "pid": seat.pid,
        "name": seat.name,
        "role": seat.role,
        "text": msg.text,
        "ts": now,
    }
    seq = await services.hub.publish(seat.room.id, event, sequenced=True)
    seat.last_say = time.monotonic()
    event["seq"] = seq
    await services.store.remember(seat.room.id, event)
    if msg.id is not None:
        caller.reply(ack(msg.id, mid=event["mid"], seq=seq))


async def typing(services: Services, caller: Caller, msg: Typing) -> None:
    """Tell the others that this member is typing, at most every 3 s; extras are dropped."""
    seat = require_seat(caller)
    mode = seat.room.typing
    now = time.monotonic()
    if mode != "off" and now - seat.last_typing >= TYPING_INTERVAL:
        seat.last_typing = now
        event: Message = {"t": "typing", "pid": seat.pid} if mode == "named" else {"t": "typing"}
        await services.hub.publish(seat.room.id, event, exclude=seat.pid)
    if msg.id is not None:
        caller.reply(ack(msg.id))


async def report(services: Services, caller: Caller, msg: Report) -> None:
    """Report a message to the room's facilitators (and to no one else)."""
    seat = require_seat(caller)
    if await services.store.find_message(seat.room.id, msg.mid) is None:
        raise RequestError(ErrorCode.NOT_FOUND, "No such message in this room.")
    entry: Message = {"mid": msg.mid, "by": seat.pid, "reason": msg.reason or "", "ts": now_ms()}
    await services.store.add_report(seat.room.id, entry)
    await services.hub.publish(seat.room.id, {"t": "report", **entry}, facilitators=True)
    if msg.id is not None:
        caller.reply(ack(msg.id))


async def whisper(services: Services, caller: Caller, msg: Whisper) -> None:
    """A private line between a participant and a facilitator, never between participants."""
    seat = require_seat(caller)
    target = await services.store.get_member(seat.room.id, msg.to)
    if target is None or target.waiting or target.pid == seat.pid:
        raise RequestError(ErrorCode.NOT_FOUND, "No such member in this room.")
    if seat.role == PARTICIPANT and target.role == PARTICIPANT:
        raise RequestError(
            ErrorCode.FORBIDDEN, "Whispers go between a participant and a facilitator."
        )
    event: Message = {
        "t": "whisper",
        "from": seat.pid,
        "to": target.pid,
        "text": msg.text,
        "ts": now_ms(),
    }
    await services.hub.publish(seat.room.id, event, to=[seat.pid, target.pid])
    if msg.id is not None:
        caller.reply(ack(msg.id))


async def help_flare(services: Services, caller: Caller, msg: Help) -> None:
    """Alert the facilitators at once and answer with the operator's crisis resources."""
    seat = require_seat(caller)
    await services.hub.publish(
        seat.room.id, {"t": "help", "pid": seat.pid, "ts": now_ms()}, facilitators=True
    )
    answer: Message = {"t": "resources", **services.settings.crisis_resources.as_message_fields()}
    if msg.id is not None:
        answer["id"] = msg.id
    caller.reply(answer)


async def leave(services: Services, caller: Caller, msg: Leave) -> None:
    await joining.leave(services, caller)


Handler = Callable[[Services, Caller, Any], Awaitable[None]]

HANDLERS: dict[type[ClientMessage], Handler] = {
    Join: joining.join,
    Say: say,
    Typing: typing,
    Leave: leave,
    Report: report,
    Whisper: whisper,
    Help: help_flare,
    Mute: facilitation.mute,
    Unmute: facilitation.unmute,
    Remove: facilitation.remove,
    Delete: facilitation.delete,
    Lock: facilitation.room_flags,
    Unlock: facilitation.room_flags,
    Slow: facilitation.room_flags,
    Announce: facilitation.announce,
    Close: facilitation.close,
    Admit: facilitation.admit,
    Deny: facilitation.deny,
}


async def dispatch(services: Services, caller: Caller, msg: ClientMessage) -> None:
    """Run the handler for ``msg``.

    Raises:
        RequestError: the request failed; the connection stays open.
        SessionEnded: the connection must close.
        BrokerUnavailable: the broker could not take a publish.
    """
    if caller.seat is None and not isinstance(msg, (Join, Leave)):
        raise RequestError(ErrorCode.NOT_JOINED, "Join a room first.")
    if caller.seat is not None and caller.seat.waiting and not isinstance(msg, Leave):
        raise RequestError(ErrorCode.NOT_JOINED, "Please wait to be admitted.")
    await HANDLERS[type(msg)](services, caller, msg)
