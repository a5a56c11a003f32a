"""How a room lies in Redis: its state as keys and fields, its ops as the commit script reads them.

A room's record (title, rules, key hash, salt, creation time) is one sealed blob; each setting
is its own field of the ``room`` hash (MessagePack, clear); each member is a sealed name in
``members`` and one field per other member field in ``fields`` (MessagePack, clear); reports
and log entries are sealed blobs. :class:`Layout` turns a :class:`~chat.roomstate.RoomState`
and its ops into that form (sealing what holds names or text) and a snapshot back.
"""

from __future__ import annotations

import re
from typing import Any

from chat.buscrypt import Sealer, SealError, context
from chat.ops import (
    Admit,
    BanAdd,
    HeldAdd,
    HeldDrop,
    HistoryDrop,
    HistoryEdit,
    KeyAdd,
    KeyDrop,
    LogAdd,
    MemberAdd,
    MemberDrop,
    MemberSet,
    Op,
    ReportAdd,
    ReportDrop,
    RoomClose,
    RoomSet,
    SeatLimit,
    report_key,
)
from chat.protocol import pack_envelope, pack_value, unpack_value
from chat.redis.records import as_bytes, as_text, open_record
from chat.roomstate import (
    LOG_ENTRIES,
    MEMBER_FIELDS,
    OWNER,
    PARTICIPANT,
    ROOM_SETTINGS,
    MemberState,
    Message,
    RoomState,
)

RECORD_FIELDS = ("title", "rules", "key_hash", "salt", "created_ms")
# Member fields kept one by one (the name is sealed on its own; joined_seq is set by Lua).
# A member's name is user text: sealed, as the `members` hash's value. (Its key ``label`` is a
# token, a salted hash of the key's label, so that the commit script can find a revoked
# key's members: chat.staff.)
STORED_FIELDS = tuple(f for f in MEMBER_FIELDS if f not in {"pid", "name"})
ADDED_FIELDS = tuple(f for f in STORED_FIELDS if f != "joined_seq")
# The ts that opens a held message's value (Layout.held_value); a value from before it has none.
_HELD_TS = re.compile(rb"^\d{1,16}:")


class Layout:
    """Packs and unpacks one worker's view of rooms in Redis.

    Args:
        sealer: seals names and text (a clear one without a bus key).
    """

    def __init__(self, sealer: Sealer) -> None:
        self._sealer = sealer

    def _seal(self, data: bytes, kind: str, room: str) -> bytes:
        return self._sealer.seal(data, context(kind, room))

    def _sealed_member(self, member: MemberState, room: str) -> bytes:
        return self._seal(pack_value(member.name), "member", room)

    def whole_state(self, state: RoomState, *, held_in_redis: bool = True) -> bytes:
        """The whole room, as the restore script reads it (held messages only where history
        may be: ``held_in_redis``)."""
        members = [
            [
                m.pid,
                self._sealed_member(m, state.id),
                {name: pack_value(getattr(m, name)) for name in STORED_FIELDS},
            ]
            for m in state.members.values()
        ]
        reports = {
            key: self._seal(pack_envelope(r), "report", state.id)
            for key, r in state.reports.items()
        }
        log_entries = [self._seal(pack_envelope(e), "log", state.id) for e in state.log]
        held = {
            mid: self.held_value(h, state.id, with_text=held_in_redis)
            for mid, h in state.held.items()
        }
        keys = {
            token: self._seal(pack_envelope(k), "key", state.id) for token, k in state.keys.items()
        }
        return pack_value(
            [
                self.record(state),
                {name: pack_value(getattr(state, name)) for name in ROOM_SETTINGS},
                members,
                sorted(state.bans),
                reports,
                log_entries,
                held,
                keys,
            ],
            for_lua=True,
        )

    def held_value(self, held: Message, room: str, *, with_text: bool = True) -> bytes:
        """A held message as the room's ``held`` hash keeps it: ``<ts>:<sealed message>``, or
        ``<ts>:`` alone (``with_text`` false: history is not in Redis), so that the scripts
        can drop it by age and check a release in either mode without opening it (§14)."""
        sealed = self._seal(pack_envelope(held), "held", room) if with_text else b""
        return b"%d:%s" % (int(held.get("ts", 0)), sealed)

    def record(self, state: RoomState) -> bytes:
        record = {name: getattr(state, name) for name in RECORD_FIELDS}
        return self._seal(pack_envelope(record), "room", state.id)

    def settings(self, state: RoomState) -> bytes:
        return pack_value(
            {name: pack_value(getattr(state, name)) for name in ROOM_SETTINGS}, for_lua=True
        )

    def op(
        self, room: str, op: Op, edits: dict[str, tuple[bytes, bytes]] | None = None
    ) -> list[Any]:
        """An op as the commit script reads it (sealing what holds names or text);
        ``edits``: for a :class:`HistoryEdit`, the history entry as stored and as it becomes."""
        if isinstance(op, RoomSet):
            return ["rs", _packed(op.fields), _packed(op.require)]
        if isinstance(op, MemberAdd):
            m = op.member
            return [
                "ma",
                m.pid,
                self._sealed_member(m, room),
                {name: pack_value(getattr(m, name)) for name in ADDED_FIELDS},
                m.name_token,
                m.resume_hash,
                m.role == PARTICIPANT,
                m.address_hash,
                m.label if m.label not in ("", OWNER) else "",  # a key that must still exist
            ]
        if isinstance(op, MemberSet):
            return ["ms", op.pid, _packed(op.fields), _packed(op.require)]
        if isinstance(op, MemberDrop):
            return [
                "md",
                op.pid,
                op.why,
                _packed(op.require),
                op.ban,
                op.lapsed_before,
                list(STORED_FIELDS),
            ]
        if isinstance(op, Admit):
            return ["ad", op.pid]
        if isinstance(op, BanAdd):
            return ["ba", op.address_hash]
        if isinstance(op, ReportAdd):
            report = op.report
            sealed = self._seal(pack_envelope(report), "report", room)
            key = report_key(report["mid"], report["by"])
            return ["ra", key, report["by"], sealed, op.cap, report["mid"]]
        if isinstance(op, LogAdd):
            return ["la", self._seal(pack_envelope(op.entry), "log", room), LOG_ENTRIES]
        if isinstance(op, HistoryDrop):
            return ["hd", op.mid]
        if isinstance(op, HeldAdd):
            sealed = self._seal(pack_envelope(op.held), "held", room)
            ts = str(int(op.held.get("ts", 0)))  # as text: Lua prints large numbers as floats
            return ["ha", op.held["mid"], sealed, list(op.evict), ts]
        if isinstance(op, HeldDrop):
            return ["hr", op.mid]
        if isinstance(op, ReportDrop):
            return ["rd", op.mid]
        if isinstance(op, KeyAdd):
            return ["ka", op.token, self._seal(pack_envelope(op.entry), "key", room)]
        if isinstance(op, KeyDrop):
            return ["kd", op.token, list(op.pids)]
        if isinstance(op, HistoryEdit):
            old, new = (edits or {}).get(op.mid, (b"", b""))
            return ["he", op.mid, old, new]
        if isinstance(op, SeatLimit):
            return ["sl", op.waiting, op.limit, pack_value(PARTICIPANT)]
        if isinstance(op, RoomClose):
            return ["rc"]
        return ["rr"]

    def state_from(self, room: str, reply: list[Any]) -> RoomState | None:
        epoch, off, seq = int(reply[0]), int(reply[1]), int(reply[2])
        room_hash = _pairs(reply[3])
        record = open_record(self._sealer, room_hash.get("rec", b""), "room", room)
        if record is None:
            return None
        settings = {
            name[2:]: unpack_value(value)
            for name, value in room_hash.items()
            if name.startswith("s:") and name[2:] in ROOM_SETTINGS
        }
        state = RoomState(id=room, **record, **settings, epoch=epoch, off=off, seq=seq)
        fields: dict[str, dict[str, Any]] = {}
        for key, value in _pairs(reply[5]).items():
            pid, _, name = key.partition("|")
            if name in STORED_FIELDS:
                fields.setdefault(pid, {})[name] = unpack_value(value)
        for pid, sealed in _pairs(reply[4]).items():
            name = open_value(self._sealer, sealed, "member", room)
            if not isinstance(name, str):
                continue
            state.members[pid] = MemberState(pid=pid, name=name, **fields.get(pid, {}))
        state.bans = {as_text(b) for b in reply[6]}
        for key, sealed in _pairs(reply[7]).items():
            report = open_record(self._sealer, sealed, "report", room)
            if report is not None:
                state.reports[key] = report
        state.reports = dict(sorted(state.reports.items(), key=lambda kv: kv[1].get("ts", 0)))
        state.log = [e for b in reply[8] if (e := open_record(self._sealer, b, "log", room))]
        for mid, value in _pairs(reply[9]).items():
            sealed = _HELD_TS.sub(b"", value, count=1)
            if not sealed:
                continue  # the text-free index (history not in Redis): the text is elsewhere
            held = open_record(self._sealer, sealed, "held", room)
            if held is not None:
                state.held[mid] = held
        state.held = dict(sorted(state.held.items(), key=lambda kv: kv[1].get("ts", 0)))
        for token, sealed in _pairs(reply[10]).items():
            entry = open_record(self._sealer, sealed, "key", room)
            if entry is not None:
                state.keys[token] = entry
        return state


def open_value(sealer: Sealer, blob: bytes, kind: str, room: str) -> Any:
    """A sealed value (a member's name), or None when it cannot be opened."""
    try:
        return unpack_value(sealer.open(as_bytes(blob), context(kind, room)))
    except (SealError, ValueError):
        return None


def _packed(values: Any) -> dict[str, bytes]:
    return {name: pack_value(value) for name, value in values.items()}


def _pairs(flat: list[Any]) -> dict[str, bytes]:
    """A flat HGETALL reply as a dict of text keys to byte values."""
    return {as_text(flat[i]): as_bytes(flat[i + 1]) for i in range(0, len(flat), 2)}
