"""Who ignores whom in a room, as the hub needs it at delivery (protocol §14).

Each member's ``ignores`` is part of the room's state. Delivery asks the other way round —
"who ignores this sender?" — once per event, so a replica keeps that index, rebuilt only when
an entry changed someone's list (or the replica was reloaded). A room where nobody ignores
anyone costs one dictionary lookup per ``msg`` or ``typing``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chat.ops import MemberDrop, MemberSet, Op, Reset
from chat.roomstate import RoomState

IGNORABLE = frozenset({"msg", "typing"})  # what an ignorer never gets from the ignored


def sender_of(event: dict[str, Any], exclude: str | None) -> str | None:
    """The member an ignorable event comes from (``typing`` in an anonymous room names nobody:
    its delivery excludes the sender, which is how we know)."""
    if event.get("t") not in IGNORABLE:
        return None
    pid = event.get("pid")
    return pid if isinstance(pid, str) else exclude


class IgnoreIndex:
    """target pid -> the pids that ignore it, for one replica."""

    __slots__ = ("_by_target", "_stale", "_state")

    def __init__(self) -> None:
        self._by_target: dict[str, frozenset[str]] = {}
        self._state: RoomState | None = None
        self._stale = True

    def touched(self, ops: Iterable[Op]) -> None:
        """An entry was applied: its ops may have changed someone's list."""
        for op in ops:
            if isinstance(op, MemberDrop | Reset) or (
                isinstance(op, MemberSet) and "ignores" in op.fields
            ):
                self._stale = True
                return

    def ignorers(self, state: RoomState, sender: str) -> frozenset[str] | None:
        """Who ignores ``sender`` in ``state`` (None: nobody)."""
        if self._stale or self._state is not state:
            self._rebuild(state)
        return self._by_target.get(sender)

    def _rebuild(self, state: RoomState) -> None:
        by_target: dict[str, set[str]] = {}
        for member in state.members.values():
            for target in member.ignores:
                by_target.setdefault(target, set()).add(member.pid)
        self._by_target = {t: frozenset(p) for t, p in by_target.items()}
        self._state = state
        self._stale = False
