"""The ops that change a room's state (:mod:`chat.roomstate`), and the one function that
applies them (pure: no I/O, no asyncio).

A backend checks each op's preconditions against its authoritative copy and applies the ops
atomically with appending the stream entry that carries them (a Lua script in Redis,
:func:`check` and :func:`apply` here in the embedded backend). Every replica applies the same
ops in stream order with :func:`apply` (protocol §12).

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
from dataclasses import dataclass, field, replace

from chat.roomstate import (
    LOG_ENTRIES,
    MEMBER_MUTABLE,
    OWNER,
    PARTICIPANT,
    ROOM_MUTABLE,
    MemberState,
    Message,
    RoomState,
    Value,
)


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
    if not allowed.issuperset(fields):
        raise ValueError(f"not a mutable {what}: {sorted(set(fields) - allowed)}")


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


def touched_pids(ops: Iterable[Op]) -> set[str]:
    """The members whose local connections may have to act after these ops."""
    out: set[str] = set()
    for op in ops:
        if isinstance(op, MemberAdd):
            out.add(op.member.pid)
        elif isinstance(op, MemberSet | MemberDrop | Admit):
            out.add(op.pid)
    return out
