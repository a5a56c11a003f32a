"""Server messages as typed values: one frozen dataclass per ``t`` (protocol §4-§8).

Handlers build these; :meth:`Event.wire` gives the map the codec encodes (once per encoding,
:mod:`chat.protocol`) and that stream entries carry between workers. Field names are the wire's,
except ``sender`` (``from`` on the wire, a Python keyword). Optional fields that are ``None``
are left out of the wire map unless the contract says they are sent as ``null``.

=================  ==========================================================================
type               fields
=================  ==========================================================================
welcome            room, you, resume, members, history, seq, round (+ reports, log, waiting,
                   held, flares)
waiting            opens_at? (before the room's opening, §13)
joined             member
knock              member
left               pid, removed?
msg                mid, pid, name, role, text, ts, kind?, cw? (seq added when delivered)
ack                mid?, seq?, held?, key?, label? (id added by the session)
error              code, message, ...extra (id added by the session)
typing             pid?
report             mid, by, reason, ts
whisper            from, to, text, ts
help               pid, ts
resources          text, links
muted              pid, until (null: until unmuted), reason? (the target's copy only)
unmuted            pid
removed            pid, reason
deleted            mid
room               locked, slow, paused, ends_at, review, contact (from the room's state as of
                   its entry)
closed             –
denied             pid
ending             at (§13: five minutes before the end)
round              active, mode, strict, speaker, queue (§13; only active when none)
away               pid, on (§13: stepping out)
warned             reason, count                                  (§14 from here on)
held               mid, pid, name, text, ts, cw?
reviewed           mid, action ("release" or "discard")
resolved           mid, by
report_reviewed    mid
help_seen          pid?, by? (the participant's copy has neither)
flag               mid, pid, kind; or pid, kind, refused (a refused say: extension)
cw                 mid, cw
hold               pid, on, by (extension: facilitators learn who is under review)
=================  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Event:
    """Base of the server messages."""

    t: ClassVar[str] = ""
    # Fields left out of the wire map when None (the contract's "absent", not "null").
    optional: ClassVar[frozenset[str]] = frozenset()
    renamed: ClassVar[dict[str, str]] = {}

    def wire(self) -> Message:
        """The message as a map of plain values, ready to encode."""
        out: Message = {"t": self.t}
        for name, key, optional in _wire_layout(type(self)):
            value = getattr(self, name)
            if value is None and optional:
                continue
            out[key] = value
        return out


_WIRE_LAYOUT: dict[type[Event], tuple[tuple[str, str, bool], ...]] = {}


def _wire_layout(cls: type[Event]) -> tuple[tuple[str, str, bool], ...]:
    """Each field of an event class as (attribute, wire key, left out when None), worked out
    once per class: ``dataclasses.fields`` walks the class's whole field table on every call,
    and a ``msg`` is turned into a map once per message (issue 13's profile)."""
    layout = _WIRE_LAYOUT.get(cls)
    if layout is None:
        layout = _WIRE_LAYOUT[cls] = tuple(
            (f.name, cls.renamed.get(f.name, f.name), f.name in cls.optional) for f in fields(cls)
        )
    return layout


@dataclass(frozen=True, slots=True)
class Welcome(Event):
    t: ClassVar[str] = "welcome"
    optional: ClassVar[frozenset[str]] = frozenset(
        {"reports", "log", "waiting", "held", "round", "flares"}
    )
    room: Message
    you: Message
    resume: str
    members: Any  # list[Message], or kept encoded (chat.protocol.EncodedArray)
    history: list[Message]
    seq: int
    reports: list[Message] | None = None
    log: list[Message] | None = None
    waiting: list[Message] | None = None
    held: list[Message] | None = None
    round: Message | None = None  # §13: the round as it stands ({"active": false}: none)
    flares: list[Message] | None = None  # §13: unanswered help flares, for facilitators


@dataclass(frozen=True, slots=True)
class Waiting(Event):
    t: ClassVar[str] = "waiting"
    optional: ClassVar[frozenset[str]] = frozenset({"opens_at"})
    opens_at: int | None = None  # §13: waiting for the room's opening, not for a facilitator


@dataclass(frozen=True, slots=True)
class Joined(Event):
    t: ClassVar[str] = "joined"
    member: Message


@dataclass(frozen=True, slots=True)
class Knock(Event):
    t: ClassVar[str] = "knock"
    member: Message


@dataclass(frozen=True, slots=True)
class Left(Event):
    t: ClassVar[str] = "left"
    optional: ClassVar[frozenset[str]] = frozenset({"removed"})
    pid: str
    removed: bool | None = None


@dataclass(frozen=True, slots=True)
class Msg(Event):
    t: ClassVar[str] = "msg"
    optional: ClassVar[frozenset[str]] = frozenset({"kind", "cw"})
    mid: str
    pid: str
    name: str
    role: str
    text: str
    ts: int
    kind: str | None = None
    cw: str | None = None


@dataclass(frozen=True, slots=True)
class Ack(Event):
    t: ClassVar[str] = "ack"
    optional: ClassVar[frozenset[str]] = frozenset({"mid", "seq", "held", "key", "label"})
    mid: str | None = None
    seq: int | None = None
    held: bool | None = None
    key: str | None = None
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Error(Event):
    """``error``; ``extra`` holds the code's own fields (``retry_after``, ``until``...)."""

    t: ClassVar[str] = "error"
    code: str
    message: str
    extra: dict[str, Any] = field(default_factory=dict)

    def wire(self) -> Message:
        return {"t": self.t, "code": self.code, "message": self.message, **self.extra}


@dataclass(frozen=True, slots=True)
class Typing(Event):
    t: ClassVar[str] = "typing"
    optional: ClassVar[frozenset[str]] = frozenset({"pid"})
    pid: str | None = None  # absent in "anonymous" rooms


@dataclass(frozen=True, slots=True)
class ReportEvent(Event):
    t: ClassVar[str] = "report"
    mid: str
    by: str
    reason: str
    ts: int


@dataclass(frozen=True, slots=True)
class WhisperEvent(Event):
    t: ClassVar[str] = "whisper"
    renamed: ClassVar[dict[str, str]] = {"sender": "from"}
    sender: str
    to: str
    text: str
    ts: int


@dataclass(frozen=True, slots=True)
class HelpEvent(Event):
    t: ClassVar[str] = "help"
    pid: str
    ts: int


@dataclass(frozen=True, slots=True)
class Resources(Event):
    t: ClassVar[str] = "resources"
    text: str
    links: list[Message]


@dataclass(frozen=True, slots=True)
class Muted(Event):
    t: ClassVar[str] = "muted"
    optional: ClassVar[frozenset[str]] = frozenset({"reason"})
    pid: str
    until: int | None  # sent as null for an open-ended mute
    reason: str | None = None  # the target's copy only (§14)


@dataclass(frozen=True, slots=True)
class Unmuted(Event):
    t: ClassVar[str] = "unmuted"
    pid: str


@dataclass(frozen=True, slots=True)
class Removed(Event):
    t: ClassVar[str] = "removed"
    pid: str
    reason: str


@dataclass(frozen=True, slots=True)
class Deleted(Event):
    t: ClassVar[str] = "deleted"
    mid: str


@dataclass(frozen=True, slots=True)
class Room(Event):
    """``room``: built empty by a decision, filled in by each worker from the room's state as
    of the entry (``localroom.room_event``), so that it is the same everywhere."""

    t: ClassVar[str] = "room"
    optional: ClassVar[frozenset[str]] = frozenset(
        {"locked", "slow", "paused", "review", "contact"}
    )
    locked: bool | None = None
    slow: int | None = None
    paused: bool | None = None
    ends_at: int | None = None  # sent as null when the room has no end time (§13)
    review: str | None = None
    contact: str | None = None


@dataclass(frozen=True, slots=True)
class Closed(Event):
    t: ClassVar[str] = "closed"


@dataclass(frozen=True, slots=True)
class Denied(Event):
    t: ClassVar[str] = "denied"
    pid: str


@dataclass(frozen=True, slots=True)
class Ending(Event):
    """``ending``: the room closes at ``at`` (five minutes from now, or less, §13)."""

    t: ClassVar[str] = "ending"
    at: int


@dataclass(frozen=True, slots=True)
class RoundEvent(Event):
    """``round``: the talking order as it stands (§13); an inactive one is only
    ``{"t":"round","active":false}``, an active one sends ``speaker`` as null when nobody
    holds the turn."""

    t: ClassVar[str] = "round"
    active: bool
    mode: str = ""
    strict: bool = False
    speaker: str | None = None
    queue: list[str] = field(default_factory=list)

    def wire(self) -> Message:
        if not self.active:
            return {"t": self.t, "active": False}
        return {
            "t": self.t,
            "active": True,
            "mode": self.mode,
            "strict": self.strict,
            "speaker": self.speaker,
            "queue": list(self.queue),
        }


@dataclass(frozen=True, slots=True)
class Away(Event):
    """``away``: a member stepped out ("back in a moment") or came back (§13)."""

    t: ClassVar[str] = "away"
    pid: str
    on: bool


# --- §14: safety tools ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Warned(Event):
    t: ClassVar[str] = "warned"
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class HeldEvent(Event):
    t: ClassVar[str] = "held"
    optional: ClassVar[frozenset[str]] = frozenset({"cw"})
    mid: str
    pid: str
    name: str
    text: str
    ts: int
    cw: str | None = None


@dataclass(frozen=True, slots=True)
class Reviewed(Event):
    t: ClassVar[str] = "reviewed"
    mid: str
    action: str  # "release" or "discard"


@dataclass(frozen=True, slots=True)
class Resolved(Event):
    t: ClassVar[str] = "resolved"
    mid: str
    by: str


@dataclass(frozen=True, slots=True)
class ReportReviewed(Event):
    t: ClassVar[str] = "report_reviewed"
    mid: str


@dataclass(frozen=True, slots=True)
class HelpSeen(Event):
    """``help_seen``: the participant's copy is bare; the facilitators' names who and by whom."""

    t: ClassVar[str] = "help_seen"
    optional: ClassVar[frozenset[str]] = frozenset({"pid", "by"})
    pid: str | None = None
    by: str | None = None


@dataclass(frozen=True, slots=True)
class Flag(Event):
    """``flag`` (to facilitators, never with text). A refused ``say`` has no ``mid``: it names
    the refusal's error code in ``refused`` instead (an extension, docs/protocol.md Part 2)."""

    t: ClassVar[str] = "flag"
    optional: ClassVar[frozenset[str]] = frozenset({"mid", "refused"})
    mid: str | None
    pid: str
    kind: str
    refused: str | None = None


@dataclass(frozen=True, slots=True)
class ContentWarning(Event):
    t: ClassVar[str] = "cw"
    mid: str
    cw: str


@dataclass(frozen=True, slots=True)
class Hold(Event):
    """``hold`` (an extension, to facilitators): a participant's review was turned on or off."""

    t: ClassVar[str] = "hold"
    pid: str
    on: bool
    by: str
