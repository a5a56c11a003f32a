"""The client's messages as typed values: one frozen dataclass per ``t`` (protocol §4-§15).

:func:`chat.protocol.decode` is the only maker of these: it checks every field before it
builds one, so a handler only ever sees a valid request.

Client → server (every request may carry ``id``: int, 0 ≤ id < 2**31)

=========  ======================================================  =====================
type       fields                                                  answered with
=========  ======================================================  =====================
join       room, name?, key?, resume?, since?, agree?              welcome / waiting
say        text (1..max_text chars after NFKC), cw?, confirm?      ack + msg to the room
typing     –                                                       typing to the others
leave      –                                                       left, close 1000
report     mid, reason?                                            ack; report to facilitators
whisper    to, text                                                ack; whisper to both ends
help       –                                                       resources
mute       pid, seconds?, reason? (≤ 200)                          ack; muted to the room
unmute     pid                                                     ack; unmuted
remove     pid, reason?                                            ack; removed + close 4001
delete     mid                                                     ack; deleted
lock       –                                                       ack; room
unlock     –                                                       ack; room
slow       seconds (0..3600)                                       ack; room
announce   text                                                    ack; msg kind=announce
close      –                                                       ack; closed + close 4010
admit      pid                                                     ack; welcome to the pid
deny       pid                                                     ack; denied + close 4003
warn       pid, reason? (≤ 200)                                    ack; warned to the pid
hold       pid                                                     ack; hold to facilitators
unhold     pid                                                     ack; hold to facilitators
release    mid                                                     ack; msg + reviewed
discard    mid                                                     ack; reviewed
resolve    mid                                                     ack; resolved, report_rev.
help_seen  pid                                                     ack; help_seen
ignore     pid                                                     ack
unignore   pid                                                     ack
cw         mid, cw (0..60 chars; "" removes)                       ack; cw to the room
invite     label (1..40 chars)                                     ack with key and label
revoke     label                                                   ack; close 4003 for its
settings   review? ("off"/"all"), contact? ("allow"/"nudge"/       ack; room to the room
           "block")
pause      – (§13, facilitators)                                   ack; room (paused)
unpause    – (§13, facilitators)                                   ack; room (paused)
extend     minutes (1..120) (§13, facilitators)                    ack; room (ends_at)
round      mode ("queue"/"order"), order? (pids or "random"),      ack; round
           strict? (§13, facilitators)
hand       down? (§13, participants in a queue round)              ack; round
done       – (§13, the speaker)                                    ack; round
next       – (§13, facilitators)                                   ack; round
end_round  – (§13, facilitators)                                   ack; round (active false)
away       on (§13, anyone)                                        ack; away to the room
=========  ======================================================  =====================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class ClientMessage:
    """Base of the client messages; ``id`` is the client's optional request id."""

    t: ClassVar[str] = ""
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Join(ClientMessage):
    t: ClassVar[str] = "join"
    room: str = ""
    name: str | None = None
    key: str | None = None
    resume: str | None = None
    since: int | None = None
    agree: bool | None = None


@dataclass(frozen=True, slots=True)
class Say(ClientMessage):
    t: ClassVar[str] = "say"
    text: str = ""
    cw: str | None = None  # a content warning (§14)
    confirm: bool | None = None  # "yes, send it": past a contact-details nudge (§14)


@dataclass(frozen=True, slots=True)
class Typing(ClientMessage):
    t: ClassVar[str] = "typing"


@dataclass(frozen=True, slots=True)
class Leave(ClientMessage):
    t: ClassVar[str] = "leave"


@dataclass(frozen=True, slots=True)
class Report(ClientMessage):
    t: ClassVar[str] = "report"
    mid: str = ""
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Whisper(ClientMessage):
    t: ClassVar[str] = "whisper"
    to: str = ""
    text: str = ""


@dataclass(frozen=True, slots=True)
class Help(ClientMessage):
    t: ClassVar[str] = "help"


@dataclass(frozen=True, slots=True)
class Mute(ClientMessage):
    t: ClassVar[str] = "mute"
    pid: str = ""
    seconds: int | None = None
    reason: str | None = None  # shown to the target alone (§14)


@dataclass(frozen=True, slots=True)
class Unmute(ClientMessage):
    t: ClassVar[str] = "unmute"
    pid: str = ""


@dataclass(frozen=True, slots=True)
class Remove(ClientMessage):
    t: ClassVar[str] = "remove"
    pid: str = ""
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Delete(ClientMessage):
    t: ClassVar[str] = "delete"
    mid: str = ""


@dataclass(frozen=True, slots=True)
class Lock(ClientMessage):
    t: ClassVar[str] = "lock"


@dataclass(frozen=True, slots=True)
class Unlock(ClientMessage):
    t: ClassVar[str] = "unlock"


@dataclass(frozen=True, slots=True)
class Slow(ClientMessage):
    t: ClassVar[str] = "slow"
    seconds: int = 0


@dataclass(frozen=True, slots=True)
class Announce(ClientMessage):
    t: ClassVar[str] = "announce"
    text: str = ""


@dataclass(frozen=True, slots=True)
class Close(ClientMessage):
    t: ClassVar[str] = "close"


@dataclass(frozen=True, slots=True)
class Admit(ClientMessage):
    t: ClassVar[str] = "admit"
    pid: str = ""


@dataclass(frozen=True, slots=True)
class Deny(ClientMessage):
    t: ClassVar[str] = "deny"
    pid: str = ""


# --- §14: safety tools -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Warn(ClientMessage):
    t: ClassVar[str] = "warn"
    pid: str = ""
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Hold(ClientMessage):
    t: ClassVar[str] = "hold"
    pid: str = ""


@dataclass(frozen=True, slots=True)
class Unhold(ClientMessage):
    t: ClassVar[str] = "unhold"
    pid: str = ""


@dataclass(frozen=True, slots=True)
class Release(ClientMessage):
    t: ClassVar[str] = "release"
    mid: str = ""


@dataclass(frozen=True, slots=True)
class Discard(ClientMessage):
    t: ClassVar[str] = "discard"
    mid: str = ""


@dataclass(frozen=True, slots=True)
class Resolve(ClientMessage):
    t: ClassVar[str] = "resolve"
    mid: str = ""


@dataclass(frozen=True, slots=True)
class HelpSeen(ClientMessage):
    t: ClassVar[str] = "help_seen"
    pid: str = ""


@dataclass(frozen=True, slots=True)
class Ignore(ClientMessage):
    t: ClassVar[str] = "ignore"
    pid: str = ""


@dataclass(frozen=True, slots=True)
class Unignore(ClientMessage):
    t: ClassVar[str] = "unignore"
    pid: str = ""


@dataclass(frozen=True, slots=True)
class Cw(ClientMessage):
    t: ClassVar[str] = "cw"
    mid: str = ""
    cw: str = ""


@dataclass(frozen=True, slots=True)
class Invite(ClientMessage):
    t: ClassVar[str] = "invite"
    label: str = ""


@dataclass(frozen=True, slots=True)
class Revoke(ClientMessage):
    t: ClassVar[str] = "revoke"
    label: str = ""


@dataclass(frozen=True, slots=True)
class RoomSettings(ClientMessage):
    t: ClassVar[str] = "settings"
    review: str | None = None
    contact: str | None = None


# --- §13: session structure -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pause(ClientMessage):
    t: ClassVar[str] = "pause"


@dataclass(frozen=True, slots=True)
class Unpause(ClientMessage):
    t: ClassVar[str] = "unpause"


@dataclass(frozen=True, slots=True)
class Extend(ClientMessage):
    t: ClassVar[str] = "extend"
    minutes: int = 0


@dataclass(frozen=True, slots=True)
class Round(ClientMessage):
    t: ClassVar[str] = "round"
    mode: str = ""
    order: list[str] | str | None = None  # pids, or "random"; absent: the order they came
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class Hand(ClientMessage):
    t: ClassVar[str] = "hand"
    down: bool | None = None


@dataclass(frozen=True, slots=True)
class Done(ClientMessage):
    t: ClassVar[str] = "done"


@dataclass(frozen=True, slots=True)
class Next(ClientMessage):
    t: ClassVar[str] = "next"


@dataclass(frozen=True, slots=True)
class EndRound(ClientMessage):
    t: ClassVar[str] = "end_round"


@dataclass(frozen=True, slots=True)
class Away(ClientMessage):
    t: ClassVar[str] = "away"
    on: bool = False


MESSAGE_TYPES: dict[str, type[ClientMessage]] = {
    cls.t: cls
    for cls in (
        Join,
        Say,
        Typing,
        Leave,
        Report,
        Whisper,
        Help,
        Mute,
        Unmute,
        Remove,
        Delete,
        Lock,
        Unlock,
        Slow,
        Announce,
        Close,
        Admit,
        Deny,
        Warn,
        Hold,
        Unhold,
        Release,
        Discard,
        Resolve,
        HelpSeen,
        Ignore,
        Unignore,
        Cw,
        Invite,
        Revoke,
        RoomSettings,
        Pause,
        Unpause,
        Extend,
        Round,
        Hand,
        Done,
        Next,
        EndRound,
        Away,
    )
}
