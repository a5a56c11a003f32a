"""Which handler answers each client message, and the request-id rule of protocol §2.

One module per kind of work: ``joining`` (join, leave), ``talking`` (say, typing, report,
whisper, help), ``facilitation`` (the facilitator's powers of §6), ``safety`` (warn, resolve,
help_seen, ignore, cw, settings: §14), ``review`` (hold, release, discard), ``structure``
(pause, rounds, stepping out, extend: §13) and ``staff`` (invite, revoke). They are layered,
not peers: the first three may call the last four, and each of those the ones after it (the
README's module map). Each returns its answer (:data:`~chat.context.Answer`) or raises; the
session turns that into the wire's ``ack``/``error``/answer with the request's ``id``, in one
place. A request whose success ends the connection (``leave``) raises
``SessionEnded(ack=True)``: the ack with its id, then the close. Only two answers leave the
session later, still with their id: ``close``'s ack, which waits for the room's end to reach
the connection (Part 2: acked before ``closed``), and an admitted knocker's ``welcome``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from chat import facilitation, joining, review, safety, staff, structure, talking
from chat.context import Answer, Caller, Phase, Services
from chat.errors import ErrorCode, RequestError
from chat.requests import (
    Admit,
    Announce,
    Away,
    ClientMessage,
    Close,
    Cw,
    Delete,
    Deny,
    Discard,
    Done,
    EndRound,
    Extend,
    Hand,
    Help,
    HelpSeen,
    Hold,
    Ignore,
    Invite,
    Join,
    Leave,
    Lock,
    Mute,
    Next,
    Pause,
    Release,
    Remove,
    Report,
    Resolve,
    Revoke,
    RoomSettings,
    Round,
    Say,
    Slow,
    Typing,
    Unhold,
    Unignore,
    Unlock,
    Unmute,
    Unpause,
    Warn,
    Whisper,
)

Handler = Callable[[Services, Caller, Any], Awaitable[Answer]]

HANDLERS: dict[type[ClientMessage], Handler] = {
    Join: joining.join,
    Leave: joining.leave,
    Say: talking.say,
    Typing: talking.typing,
    Report: talking.report,
    Whisper: talking.whisper,
    Help: talking.help_flare,
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
    # §14: safety tools
    Warn: safety.warn,
    Hold: review.hold,
    Unhold: review.hold,
    Release: review.review,
    Discard: review.review,
    Resolve: safety.resolve,
    HelpSeen: safety.help_seen,
    Ignore: safety.ignore,
    Unignore: safety.ignore,
    Cw: safety.content_warning,
    Invite: staff.invite,
    Revoke: staff.revoke,
    RoomSettings: safety.room_settings,
    # Session structure (§13)
    Pause: structure.pause,
    Unpause: structure.pause,
    Extend: structure.extend,
    Round: structure.start_round,
    Hand: structure.hand,
    Done: structure.done,
    Next: structure.next_turn,
    EndRound: structure.end_round,
    Away: structure.away,
}


async def dispatch(services: Services, caller: Caller, msg: ClientMessage) -> Answer:
    """Run the handler for ``msg``.

    Raises:
        RequestError: the request failed; the connection stays open.
        SessionEnded: the connection must close.
        Unavailable: the backend could not take it; nothing was done.
    """
    if caller.phase is Phase.JOINING and not isinstance(msg, Join | Leave):
        raise RequestError(ErrorCode.NOT_JOINED, "Join a room first.")
    if caller.phase is Phase.WAITING and not isinstance(msg, Leave):
        raise RequestError(ErrorCode.NOT_JOINED, "Please wait to be admitted.")
    return await HANDLERS[type(msg)](services, caller, msg)


async def refused(
    services: Services, caller: Caller, msg: ClientMessage, error: RequestError
) -> None:
    """What still follows a request the connection refused before any handler saw it (its
    flood bucket): a ``say`` in crisis language still shows the resources and flags (§14)."""
    if isinstance(msg, Say) and caller.phase is Phase.PRESENT:
        await talking.say_refused(services, caller, msg, error)
