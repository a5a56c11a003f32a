"""A room's shared state as a replicated state machine (pure: no I/O, no asyncio).

The store (Redis, or the embedded backend) holds the authoritative :class:`RoomState` of every
room. Every worker that has members of a room holds a *replica* of it. State changes only
through :data:`Op` values committed on the room's stream (protocol §12): the backend checks
each op's preconditions against its authoritative copy and applies the ops atomically with
appending the stream entry that carries them (a Lua script in Redis, :func:`check` and
:func:`apply` here in the embedded backend). Every replica applies the same ops in stream
order with :func:`apply`, so a replica at offset ``off`` *is* the store at ``off``: a safety
check made against it is as good as one made against the store at that moment, and a worker
that missed an entry can tell (a gap in ``off``) and catch up.

The ops are few and generic. Each says what it needs to hold (:func:`check`, which raises
:class:`Refused`) and what it changes (:func:`apply`). ``chat.redis.scripts`` implements the
same table in Lua; the store contract tests run both against the same expectations.

==============  ==========================================  =======================================
op              refused when                                changes
==============  ==========================================  =======================================
RoomSet         a ``require`` field differs                 room settings (the mutable ones)
MemberAdd       name token taken; for a participant: room   adds the member, present from the
                locked, address banned                      room's seq
MemberSet       member absent; a ``require`` field differs  the member's fields
MemberDrop      member absent; a ``require`` field differs  removes it (``ban``: bans its address)
Admit           member absent, not waiting or not online    waiting -> present from the room's seq
BanAdd          -                                           adds an address hash to the bans
ReportAdd       same reporter and mid open (``dup``); the   adds an open report
                reporter has ``cap`` open (``full``)
LogAdd          -                                           appends to the facilitation log
HeldAdd         -                                           keeps a message for review (§14)
HeldDrop        not held (``nomsg``)                        forgets a held message
ReportDrop      no open report of the mid (``missing``)     resolves every report of a message
KeyAdd          label token in use (``taken``)              adds a co-facilitator key (§14)
KeyDrop         no such key (``missing``); members holding  the key is gone (its members are
                it differ from ``pids`` (``mismatch``)      dropped by MemberDrops beside it)
HistoryEdit     (checked by the backend: ``nomsg``)         a kept message's content warning
SeatLimit       ``limit`` or more participants present      nothing: a check (capacity, §13;
                (``waiting``: waiting): ``capacity``        --max-waiting, §11)
HistoryDrop     (checked by the backend: ``nomsg``)         (history is the backend's)
RoomClose       -                                           the room is gone
Reset           -                                           replicas reload from the store
==============  ==========================================  =======================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


# --- ops ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoomSet:
    fields: Mapping[str, Value]
    require: Mapping[str, Value] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _only(self.fields, ROOM_MUTABLE, "room setting")


@dataclass(frozen=True, slots=True)
class MemberAdd:
    member: MemberState


@dataclass(frozen=True, slots=True)
class MemberSet:
    pid: str
    fields: Mapping[str, Value]
    require: Mapping[str, Value] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _only(self.fields, MEMBER_MUTABLE, "member field")


@dataclass(frozen=True, slots=True)
class MemberDrop:
    pid: str
    why: str  # "left", "expired", "removed", "denied"
    require: Mapping[str, Value] = field(default_factory=dict)
    ban: bool = False  # ban the address the member holds now
    lapsed_before: int | None = None  # only if no worker vouched for it since (ms; Redis)


@dataclass(frozen=True, slots=True)
class Admit:
    pid: str


@dataclass(frozen=True, slots=True)
class BanAdd:
    address_hash: str


@dataclass(frozen=True, slots=True)
class ReportAdd:
    report: Message  # {"mid", "by", "reason", "ts"}
    cap: int  # open reports one reporter may have


@dataclass(frozen=True, slots=True)
class LogAdd:
    entry: Message


@dataclass(frozen=True, slots=True)
class SeatLimit:
    """A check, no change: refused (``capacity``) when ``limit`` or more participants are
    present (with ``waiting``: waiting at the door). Committed before a ``MemberAdd`` or
    ``Admit`` so that two workers cannot both take the last seat (§13 capacity, §11
    --max-waiting)."""

    waiting: bool
    limit: int


@dataclass(frozen=True, slots=True)
class HistoryDrop:
    mid: str


@dataclass(frozen=True, slots=True)
class HeldAdd:
    """A participant's message kept for a facilitator's review (§14); ``evict``: the held
    messages that go to keep the list bounded (the oldest, chosen by the committer)."""

    held: Message  # {"mid", "pid", "name", "text", "ts", "cw"?}
    evict: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HeldDrop:
    mid: str


@dataclass(frozen=True, slots=True)
class ReportDrop:
    mid: str  # every open report of this message


@dataclass(frozen=True, slots=True)
class KeyAdd:
    token: str  # the label's token: unique in the room, shows no label
    entry: Message  # {"label", "hash", "ts"}


@dataclass(frozen=True, slots=True)
class KeyDrop:
    token: str
    pids: tuple[str, ...] = ()  # the members who joined with it, all of them


@dataclass(frozen=True, slots=True)
class HistoryEdit:
    mid: str
    cw: str  # "" removes it


@dataclass(frozen=True, slots=True)
class RoomClose:
    pass


@dataclass(frozen=True, slots=True)
class Reset:
    pass


Op = (
    RoomSet
    | MemberAdd
    | MemberSet
    | MemberDrop
    | Admit
    | BanAdd
    | ReportAdd
    | LogAdd
    | SeatLimit
    | HistoryDrop
    | HeldAdd
    | HeldDrop
    | ReportDrop
    | KeyAdd
    | KeyDrop
    | HistoryEdit
    | RoomClose
    | Reset
)


def _only(fields: Mapping[str, Value], allowed: frozenset[str], what: str) -> None:
    """A change names only what may change: a bug, caught where the op is made (a replica
    applying an entry from a newer version ignores what it does not know instead)."""
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"not a mutable {what}: {sorted(unknown)}")


class Refused(Exception):
    """An op's precondition does not hold; nothing of the commit happened.

    Args:
        reason: ``missing`` (member), ``mismatch`` (a required field), ``taken`` (name),
            ``locked``, ``banned``, ``waiting``, ``dup``, ``full``, ``nomsg``, ``lapsed``,
            ``revoked`` (a facilitator's key is gone), ``capacity``, ``noroom`` or ``guard``
            (the sender may not speak now, or not without review).
        index: which op of the commit was refused (-1 for the commit as a whole).
    """

    def __init__(self, reason: str, index: int = -1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.index = index


def report_key(mid: str, by: str) -> str:
    return f"{mid}|{by}"


def check(state: RoomState, ops: Iterable[Op]) -> None:
    """Raise :class:`Refused` unless every op's precondition holds, in order.

    Ops are checked one after the other as if the earlier ones had been applied only where
    that matters (a commit never adds and then changes the same member).
    """
    for index, op in enumerate(ops):
        reason = _refusal(state, op)
        if reason is not None:
            raise Refused(reason, index)


def _refusal(state: RoomState, op: Op) -> str | None:
    if isinstance(op, RoomSet):
        return _mismatch(state, op.require)
    if isinstance(op, MemberAdd):
        member = op.member
        if state.names().get(member.name_token, member.pid) != member.pid:
            return "taken"
        if member.role == PARTICIPANT:
            if member.address_hash in state.bans:
                return "banned"
            if state.locked:
                return "locked"
        elif member.label not in ("", OWNER) and member.label not in state.keys:
            return "revoked"
        return None
    if isinstance(op, MemberSet | MemberDrop):
        existing = state.members.get(op.pid)
        if existing is None:
            return "missing"
        return _mismatch(existing, op.require)
    if isinstance(op, Admit):
        existing = state.members.get(op.pid)
        if existing is None:
            return "missing"
        if not existing.waiting or not existing.online:
            return "waiting"
        return None
    if isinstance(op, ReportAdd):
        by = op.report["by"]
        if report_key(op.report["mid"], by) in state.reports:
            return "dup"
        if sum(1 for r in state.reports.values() if r["by"] == by) >= op.cap:
            return "full"
    if isinstance(op, HeldDrop) and op.mid not in state.held:
        return "nomsg"
    if isinstance(op, ReportDrop) and not any(r["mid"] == op.mid for r in state.reports.values()):
        return "missing"
    if isinstance(op, KeyAdd) and (op.token in state.keys or op.token == OWNER):
        return "taken"
    if isinstance(op, KeyDrop):
        if op.token not in state.keys:
            return "missing"
        holders = {m.pid for m in state.members.values() if m.label == op.token}
        if holders != set(op.pids):
            return "mismatch"
    if isinstance(op, SeatLimit):
        seated = sum(
            1 for m in state.members.values() if m.role == PARTICIPANT and m.waiting == op.waiting
        )
        if seated >= op.limit:
            return "capacity"
    return None


def _mismatch(target: object, require: Mapping[str, Value]) -> str | None:
    for name, wanted in require.items():
        if getattr(target, name) != wanted:
            return "mismatch"
    return None


def apply(state: RoomState, op: Op) -> None:
    """Apply one committed op (its precondition held when it was committed)."""
    if isinstance(op, RoomSet):
        for name, value in op.fields.items():
            if name in ROOM_MUTABLE:
                setattr(state, name, value)
    elif isinstance(op, MemberAdd):
        # Present from the room's seq at this point: what was said before stays unseen (§3).
        state.members[op.member.pid] = replace(op.member, joined_seq=state.seq)
        if state.names_index is not None:
            state.names_index[op.member.name_token] = op.member.pid
    elif isinstance(op, MemberSet):
        member = state.members.get(op.pid)
        if member is not None:
            for name, value in op.fields.items():
                if name in MEMBER_MUTABLE:
                    setattr(member, name, value)
    elif isinstance(op, MemberDrop):
        member = state.members.pop(op.pid, None)
        index = state.names_index
        if member is not None and index is not None and index.get(member.name_token) == op.pid:
            del index[member.name_token]
        if member is not None and op.ban:
            state.bans.add(member.address_hash)
    elif isinstance(op, Admit):
        member = state.members.get(op.pid)
        if member is not None:
            member.waiting = False
            member.joined_seq = state.seq  # present from admission, not from the knock
    elif isinstance(op, BanAdd):
        state.bans.add(op.address_hash)
    elif isinstance(op, ReportAdd):
        state.reports[report_key(op.report["mid"], op.report["by"])] = dict(op.report)
    elif isinstance(op, LogAdd):
        state.log.append(dict(op.entry))
        del state.log[:-LOG_ENTRIES]
    elif isinstance(op, HeldAdd):
        for mid in op.evict:
            state.held.pop(mid, None)
        state.held[op.held["mid"]] = dict(op.held)
    elif isinstance(op, HeldDrop):
        state.held.pop(op.mid, None)
    elif isinstance(op, ReportDrop):
        state.reports = {k: r for k, r in state.reports.items() if r["mid"] != op.mid}
    elif isinstance(op, KeyAdd):
        state.keys[op.token] = dict(op.entry)
    elif isinstance(op, KeyDrop):
        state.keys.pop(op.token, None)
    # SeatLimit: a check only. HistoryDrop, HistoryEdit: history is the backend's. RoomClose,
    # Reset: the hub acts.


# --- ops on the wire (inside a stream entry's envelope) ----------------------------------

_MEMBER_WIRE = MEMBER_FIELDS


def op_to_wire(op: Op) -> list[Any]:
    """A msgpack-friendly form of an op (for the stream entry that carries it)."""
    if isinstance(op, RoomSet):
        return ["rs", dict(op.fields), dict(op.require)]
    if isinstance(op, MemberAdd):
        return ["ma", [getattr(op.member, name) for name in _MEMBER_WIRE]]
    if isinstance(op, MemberSet):
        return ["ms", op.pid, dict(op.fields), dict(op.require)]
    if isinstance(op, MemberDrop):
        return ["md", op.pid, op.why, dict(op.require), op.ban, op.lapsed_before]
    if isinstance(op, Admit):
        return ["ad", op.pid]
    if isinstance(op, BanAdd):
        return ["ba", op.address_hash]
    if isinstance(op, ReportAdd):
        return ["ra", dict(op.report), op.cap]
    if isinstance(op, LogAdd):
        return ["la", dict(op.entry)]
    if isinstance(op, SeatLimit):
        return ["sl", op.waiting, op.limit]
    if isinstance(op, HistoryDrop):
        return ["hd", op.mid]
    if isinstance(op, HeldAdd):
        return ["ha", dict(op.held), list(op.evict)]
    if isinstance(op, HeldDrop):
        return ["hr", op.mid]
    if isinstance(op, ReportDrop):
        return ["rd", op.mid]
    if isinstance(op, KeyAdd):
        return ["ka", op.token, dict(op.entry)]
    if isinstance(op, KeyDrop):
        return ["kd", op.token, list(op.pids)]
    if isinstance(op, HistoryEdit):
        return ["he", op.mid, op.cw]
    if isinstance(op, RoomClose):
        return ["rc"]
    return ["rr"]


def op_from_wire(raw: list[Any]) -> Op:
    """The op :func:`op_to_wire` made.

    Raises:
        ValueError: not an op this version knows.
    """
    try:
        kind = raw[0]
        # What a newer version adds (fields, settings) is left out, not refused: an older
        # worker in a rolling upgrade follows the stream without it.
        if kind == "rs":
            return RoomSet(_known(raw[1], ROOM_MUTABLE), raw[2])
        if kind == "ma":
            return MemberAdd(MemberState(*raw[1][: len(MEMBER_FIELDS)]))
        if kind == "ms":
            return MemberSet(raw[1], _known(raw[2], MEMBER_MUTABLE), raw[3])
        if kind == "md":
            return MemberDrop(raw[1], raw[2], raw[3], bool(raw[4]), raw[5])
        if kind == "ad":
            return Admit(raw[1])
        if kind == "ba":
            return BanAdd(raw[1])
        if kind == "ra":
            return ReportAdd(raw[1], raw[2])
        if kind == "la":
            return LogAdd(raw[1])
        if kind == "sl":
            return SeatLimit(bool(raw[1]), int(raw[2]))
        if kind == "hd":
            return HistoryDrop(raw[1])
        if kind == "ha":
            return HeldAdd(raw[1], tuple(raw[2]))
        if kind == "hr":
            return HeldDrop(raw[1])
        if kind == "rd":
            return ReportDrop(raw[1])
        if kind == "ka":
            return KeyAdd(raw[1], raw[2])
        if kind == "kd":
            return KeyDrop(raw[1], tuple(raw[2]))
        if kind == "he":
            return HistoryEdit(raw[1], raw[2])
        if kind == "rc":
            return RoomClose()
        if kind == "rr":
            return Reset()
    except (IndexError, TypeError) as exc:
        raise ValueError("malformed op") from exc
    raise ValueError("unknown op")


def _known(fields: Mapping[str, Value], allowed: frozenset[str]) -> dict[str, Value]:
    return {name: value for name, value in fields.items() if name in allowed}


def touched_pids(ops: Iterable[Op]) -> set[str]:
    """The members whose local connections may have to act after these ops."""
    out: set[str] = set()
    for op in ops:
        if isinstance(op, MemberAdd):
            out.add(op.member.pid)
        elif isinstance(op, MemberSet | MemberDrop | Admit):
            out.add(op.pid)
    return out
