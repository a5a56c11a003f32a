"""A room's shared state: what every worker holding the room keeps a replica of (pure).

The store (Redis, or the embedded backend) holds the authoritative :class:`RoomState` of every
room. Every worker that has members of a room holds a *replica* of it. State changes only
through the ops of :mod:`chat.ops`, committed on the room's stream (protocol §12); every
replica applies the same ops in stream order, so a replica at offset ``off`` *is* the store at
``off``: a safety check made against it is as good as one made against the store at that
moment, and a worker that missed an entry can tell (a gap in ``off``) and catch up. Room
settings have their one home here (:data:`ROOM_SETTINGS`, with the values they may take:
:data:`SETTING_CHOICES`, :data:`MAX_SLOW`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

PARTICIPANT = "participant"
FACILITATOR = "facilitator"

LOG_ENTRIES = 100
OWNER = "owner"  # the label of the key handed out when the room was created (§14)

Message = dict[str, Any]
# A setting's value: a plain value, or a list or map of them (a round's whole state, §13).
Value = str | int | float | bool | None | list[Any] | dict[str, Any]


# --- the state ---------------------------------------------------------------------------


@dataclass(slots=True)
class MemberState:
    """One member of a room, from join until leave, removal or the end of the grace.

    ``name`` is the only field that is sealed at rest in Redis; every other field is kept in
    clear so that one can change on its own (no read-modify-write of a whole record).
    """

    pid: str
    name: str
    role: str
    resume_hash: str
    address_hash: str  # of the connection that holds the member now (§11: bans key on it)
    name_token: str  # the key under which the name is unique in the room
    joined_seq: int = 0
    label: str = ""  # for a facilitator, the label of the key it joined with
    waiting: bool = False
    muted: bool = False
    muted_until: int | None = None  # ms; None with ``muted`` set means until unmuted
    online: bool = True  # a connection holds it (False: away, within the resume grace)
    holder: str = ""  # the connection that holds it; only that one may mark it away
    away_since: int = 0  # ms, when it last went away
    # Say rate and slow mode follow the member, not the connection (§11): kept here.
    tokens: float = 0.0
    stamp: int = 0  # ms of ``tokens``
    last_say: int = 0  # ms of the member's last room message
    # Safety tools (§14), kept here so that a resume changes nothing.
    warnings: int = 0  # warnings had in this room
    held: bool = False  # a facilitator reviews this member's messages before they post
    ignores: list[str] = field(default_factory=list)  # pids whose msg/typing it never gets
    resources_at: int = 0  # ms the crisis resources were last shown to it
    # Session structure (protocol §13).
    arrived: int = 0  # ms of the join: the order people came in (lobby, rounds)
    stepped_out: bool = False  # "back in a moment" (the contract's ``away``)

    @property
    def is_facilitator(self) -> bool:
        return self.role == FACILITATOR

    def public(self) -> Message:
        """The member as others see it (protocol §4)."""
        return {"pid": self.pid, "name": self.name, "role": self.role}

    def listed(self, *, staff: bool = False) -> Message:
        """The member as ``welcome.members`` lists it, with the mute state (and, for a
        facilitator's welcome, whether its messages are held for review, §14)."""
        out = self.public()
        if self.muted:
            out["muted_until"] = self.muted_until
        if staff and self.held:
            out["held"] = True
        if self.stepped_out:
            out["away"] = True  # §13
        return out

    def muted_at(self, now_ms: int) -> bool:
        return self.muted and (self.muted_until is None or self.muted_until > now_ms)


# What listed() reads for a participant's welcome that a MemberSet may change (``held``
# shows in a facilitator's only): a room that keeps its listing encoded drops it when one
# of these changes (chat.localroom.LocalRoom.listing_follows).
LISTED_FIELDS = frozenset({"waiting", "muted", "muted_until", "stepped_out"})
MEMBER_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(MemberState))
# Fields a MemberSet may change: identity (pid, name, role, name token) never changes.
MEMBER_MUTABLE = frozenset(MEMBER_FIELDS) - {"pid", "name", "role", "name_token", "label"}


@dataclass(slots=True)
class RoomState:
    """A room: its settings (their one home), members, bans, reports, log and stream position.

    ``key_hash`` and ``salt`` never leave the server; ``title`` and ``rules`` are sealed at rest.
    """

    id: str
    title: str
    rules: str
    key_hash: str
    salt: bytes
    created_ms: int
    # Settings fixed at creation (protocol §3).
    history: str = "since_join"  # or "recent"
    admission: str = "open"  # or "knock"
    typing: str = "named"  # or "anonymous", "off"
    lang: str = "en"  # a language tag the server has (protocol §15)
    # Settings a facilitator changes (protocol §6): the fields RoomSet may set.
    locked: bool = False
    slow: int = 0
    review: str = "off"  # or "all": every participant message waits for a facilitator (§14)
    contact: str = "nudge"  # or "allow", "block": contact details in participants' say (§14)
    # Session structure (protocol §13): fixed at creation...
    staffed: str = "optional"  # or "required": paused while no facilitator is present
    capacity: int | None = None  # participants present at most
    opens_at: int | None = None  # ms; before it participants wait in the lobby
    # ... and changed by facilitators or by the room's clock (chat.schedule), each a commit.
    ends_at: int | None = None  # ms; the room closes then (``extend`` moves it)
    pause: bool = False  # a facilitator's pause (``paused`` also counts staffing)
    opened: bool = False  # the opening at ``opens_at`` has happened
    warned: int = 0  # the ``ends_at`` whose five-minute notice went out
    round: dict[str, Any] | None = None  # the talking order, its whole state (chat.rounds)
    flares: list[Message] = field(default_factory=list)  # recent help flares [{pid, ts}]
    members: dict[str, MemberState] = field(default_factory=dict)
    bans: set[str] = field(default_factory=set)
    reports: dict[str, Message] = field(default_factory=dict)  # "<mid>|<by>" -> report
    log: list[Message] = field(default_factory=list)
    held: dict[str, Message] = field(default_factory=dict)  # mid -> message under review
    keys: dict[str, Message] = field(default_factory=dict)  # label token -> {label, hash}
    # Where this state stands on the room's stream.
    epoch: int = 0
    off: int = 0
    seq: int = 0
    # Derived, not state: name token -> pid (see names()); rebuilt when None.
    names_index: dict[str, str] | None = field(default=None, repr=False, compare=False)

    def names(self) -> dict[str, str]:
        """Name token -> pid, for everyone holding a name (waiting members too); kept as an
        index by :func:`apply`, so that a join does not walk the whole room."""
        index = self.names_index
        if index is None:
            index = self.names_index = {m.name_token: m.pid for m in self.members.values()}
        return index

    def by_resume(self, resume_hash: str) -> MemberState | None:
        return next((m for m in self.members.values() if m.resume_hash == resume_hash), None)

    def public_settings(self) -> Message:
        """Every setting, as ``welcome.room`` and ``GET /api/rooms/{room}`` show them."""
        out = {name: getattr(self, name) for name in ROOM_SETTINGS if name not in ROOM_PRIVATE}
        out["paused"] = self.paused
        return out

    @property
    def staffed_now(self) -> bool:
        """Whether a facilitator is present (one within the resume grace counts, §13)."""
        return any(m.role == FACILITATOR for m in self.members.values())

    @property
    def paused(self) -> bool:
        """Paused (§13): by a facilitator, or in a ``"required"`` room with none present."""
        return self.pause or (self.staffed == "required" and not self.staffed_now)


ROOM_SETTINGS: tuple[str, ...] = (
    "locked",
    "slow",
    "history",
    "admission",
    "typing",
    "lang",
    "review",
    "contact",
    "staffed",
    "capacity",
    "opens_at",
    "ends_at",
    "pause",
    "opened",
    "warned",
    "round",
    "flares",
)
ROOM_MUTABLE = frozenset(
    {"locked", "slow", "review", "contact", "ends_at", "pause", "opened", "warned", "round"}
    | {"flares"}
)
# Kept with the settings (stored, replicated) but not shown as settings: the pause flag shows
# as ``paused``, the round has its own event and ``welcome.round``, flares are staff-only.
ROOM_PRIVATE = frozenset({"pause", "opened", "warned", "round", "flares"})

# The limits and choices of the settings people set, checked both where a room is created
# (chat.rooms: ``POST /api/rooms``) and where a facilitator changes one (chat.protocol: the
# ``slow`` and ``settings`` messages), so that the two cannot come to accept different values.
MAX_SLOW = 3_600  # seconds of slow mode (§6)
# The words a setting takes; the first is the default, the RoomState field's default too.
SETTING_CHOICES: dict[str, tuple[str, ...]] = {
    "history": ("since_join", "recent"),
    "admission": ("open", "knock"),
    "typing": ("named", "anonymous", "off"),
    "review": ("off", "all"),  # §14
    "contact": ("nudge", "allow", "block"),  # §14
    "staffed": ("optional", "required"),  # §13
}


def copy_state(state: RoomState) -> RoomState:
    """A deep enough copy: members and collections are new objects, values are immutable."""
    return replace(
        state,
        members={pid: replace(m) for pid, m in state.members.items()},
        names_index=None,
        bans=set(state.bans),
        reports=dict(state.reports),
        log=list(state.log),
        held=dict(state.held),
        keys=dict(state.keys),
        flares=list(state.flares),
    )


def forget_old_held(state: RoomState, oldest: int) -> int:
    """Drop the held messages sent before ``oldest`` (ms): held text lives like history, no
    longer than its age bound (§14), whether or not anyone holds more. Returns how many went.

    Not an op: every copy of the room (the embedded store, each worker's replica, Redis's
    scripts) drops by the same rule on its own clock, and a release of one that went is refused
    (``not_found``) wherever it is asked."""
    old = [mid for mid, h in state.held.items() if int(h.get("ts", 0)) < oldest]
    for mid in old:
        del state.held[mid]
    return len(old)
