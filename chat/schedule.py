"""A room's clock (protocol §13, §11, §6): its opening, the five-minute notice, its end, knock
timeouts and timed mutes — kept by every worker that holds members of the room, fired exactly once.

No worker owns a room's timers: every worker that holds members of a room watches its times
(one task per worker, :func:`keep_time`, waking at the next thing due and at least every
:data:`TICK` seconds), and when one is due it commits it on a condition that only the first
commit meets — the opening requires ``opened`` to be false; the notice requires ``warned`` to
differ from ``ends_at``; the end requires ``ends_at`` to be unchanged (an ``extend`` that got
there first wins, and the close wins over a later ``extend``); a knock timeout requires the
knocker to be still waiting; a timed mute's end requires ``muted_until`` to be unchanged (an
unmute, or a new mute, that got there first wins). So each fires once per room even when
several workers race for it, and even when the worker that would have fired it died: any
other that holds members of the room does it. Knock timeouts and mute ends are watched by the
worker the member is connected to, whichever worker the facilitator's is: a mute that ran out
while its member was away ends when the member comes back (protocol Part 2). The hub wakes the
clock when an entry sets a timed mute (:attr:`chat.hub.Hub.timers_changed`), so a short one
ends on time rather than at the next tick. A room nobody holds has nobody to tell; the first
join after its end finds it ended (``chat.lobby.admission``) and the clock of the joiner's
worker closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from chat import lobby
from chat.context import Services, now_ms
from chat.envelope import Delivery
from chat.errors import Unavailable
from chat.events import Closed, Ending, Unmuted
from chat.localroom import LocalRoom, RoomGone
from chat.ops import MemberSet, Op, Refused, RoomClose, RoomSet
from chat.roomstate import RoomState

log = logging.getLogger("hearth.schedule")

TICK = 1.0  # seconds between looks at every room, at most
NOTICE_MS = 5 * 60 * 1000  # §13: the ``ending`` notice comes five minutes before the end
RETRY_MS = 300  # a commit that lost a race or failed is tried again this much later


class Clock:
    """One worker's view of what is due in the rooms it holds."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.busy: set[tuple[str, str]] = set()  # (room, what) being committed now
        self.resting: dict[tuple[str, str], int] = {}  # (room, what) -> not again before (ms)

    def tick(self, now: int) -> float:
        """Fire what is due; return the seconds until the next look."""
        wake = now + int(TICK * 1000)
        for room in list(self.services.hub.rooms.values()):
            state = room.state
            if state is None or room.closed or room.recovery is not None:
                continue
            for what, due in self.agenda(room, state):
                key = (room.id, what)
                due = max(due, self.resting.get(key, 0))
                if due > now:
                    wake = min(wake, due)
                elif key not in self.busy:
                    self.busy.add(key)
                    self.services.background(self._fire(room, what, key))
        return max(0.01, (wake - now) / 1000)

    def agenda(self, room: LocalRoom, state: RoomState) -> list[tuple[str, int]]:
        """What this worker watches in a room, and when each is due (ms)."""
        items: list[tuple[str, int]] = []
        if lobby.before_opening(state) and state.opens_at is not None:
            items.append(("open", state.opens_at))
        elif room.waiting and state.admission == "open":
            items.append(("let_in", 0))  # came in just as the room opened, or resumed since
        if state.ends_at is not None:
            if state.warned != state.ends_at:
                items.append(("notice", state.ends_at - NOTICE_MS))
            items.append(("end", state.ends_at))
        timeout = self.services.settings.knock_timeout
        for pid in room.waiting:  # knockers connected here (one worker holds each)
            member = state.members.get(pid)
            deadline = lobby.knock_deadline(state, member, timeout) if member else None
            if deadline is not None:
                items.append((f"deny:{pid}", deadline))
        for pid in room.present:  # timed mutes of members connected here
            member = state.members.get(pid)
            if member is not None and member.muted and member.muted_until is not None:
                items.append((f"unmute:{pid}", member.muted_until))
        return items

    async def _fire(self, room: LocalRoom, what: str, key: tuple[str, str]) -> None:
        try:
            await self._commit(room, what)
            self.resting.pop(key, None)
        except (Refused, Unavailable):
            # Another worker got there first (its entry is on its way here), or the store is
            # out of reach: look again shortly.
            self.resting[key] = now_ms() + RETRY_MS
        except RoomGone:
            pass
        except Exception:
            log.exception("a room's timer failed")
            self.resting[key] = now_ms() + RETRY_MS
        finally:
            self.busy.discard(key)
            if room.closed:
                for stale in [k for k in self.resting if k[0] == room.id]:
                    del self.resting[stale]

    async def _commit(self, room: LocalRoom, what: str) -> None:
        state = room.state
        if state is None or room.closed:
            return
        ops: list[Op]
        out: list[Delivery]
        now = now_ms()
        if what == "open":
            planned = lobby.opening(state, now)
            if planned is None:
                return
            ops, out = planned
        elif what == "let_in":
            waiting = [m for m in lobby.waiting_in_order(state) if m.pid in room.waiting]
            ops, out = lobby.let_in(state, waiting)
        elif what == "notice" and state.ends_at is not None:
            at = state.ends_at
            ops = [RoomSet({"warned": at}, {"warned": state.warned, "ends_at": at})]
            out = [Delivery(Ending(at))]
        elif what == "end" and state.ends_at is not None:
            # Exactly as if a facilitator had sent close (§13), on the condition that nobody
            # extended it meanwhile. Blind: when another worker closed it first, its entry
            # brings ``closed`` here; a refresh would close our members without telling them.
            ops = [RoomSet({}, {"ends_at": state.ends_at}), RoomClose()]
            closed = [Delivery(Closed(), waiting=True)]
            await self.services.hub.commit_blind(room.id, ops, closed)
            return
        elif what.startswith("deny:"):
            member = state.members.get(what.removeprefix("deny:"))
            if member is None or not member.waiting:
                return
            ops, out = lobby.turned_away(member)
        elif what.startswith("unmute:"):
            member = state.members.get(what.removeprefix("unmute:"))
            if member is None or not member.muted or member.muted_until is None:
                return
            fields = {"muted": False, "muted_until": None}
            ops = [MemberSet(member.pid, fields, {"muted_until": member.muted_until})]
            out = [Delivery(Unmuted(member.pid))]
        else:
            return
        if ops:
            await self.services.hub.commit(room, ops, out)


async def keep_time(services: Services) -> None:
    """Run one worker's clock until cancelled."""
    clock = Clock(services)
    woken = asyncio.Event()
    services.hub.timers_changed = woken.set
    try:
        while True:
            woken.clear()
            try:
                wait = clock.tick(now_ms())
            except Exception:
                log.exception("the room clock failed")
                wait = TICK
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await woken.wait()
    finally:
        services.hub.timers_changed = _nothing


def _nothing() -> None:
    pass
