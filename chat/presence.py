"""Presence across workers: vouching for this worker's members, and sweeping up a dead worker's.

``joining.went_away`` keeps a disconnected member for the resume grace with a timer on the
worker where the socket closed. That timer dies with its worker, and a worker that is killed
never marks its members away at all. So, with a shared backend (Redis), every worker:

* every :func:`period`, *vouches* for the members connected to it (a heartbeat: the store
  records "seen now" for each), which also keeps the room's keys from expiring;
* sweeps each room it has members in for members nobody has vouched for since more than the
  grace (plus one period of slack, so that a live worker's own timer goes first), and drops
  each with a commit that holds only if still nobody has vouched for it — so only one
  sweeping worker announces it, and a member that resumed meanwhile stays.

A member whose worker died therefore disappears from the room within the grace plus a period
or two, unless it resumes on another worker first (protocol §7). The embedded backend has no
presence to share and is left alone.
"""

from __future__ import annotations

import asyncio
import logging

from chat.context import Services, now_ms
from chat.envelope import Delivery
from chat.errors import Unavailable
from chat.events import Left
from chat.ops import MemberDrop, Refused
from chat.review import forget_old
from chat.settings import Settings

log = logging.getLogger("hearth.presence")


def period(settings: Settings) -> float:
    """Seconds between heartbeats: often enough for the grace, at most every 5 s."""
    return min(5.0, max(0.2, settings.resume_grace / 4))


async def keep_presence(services: Services) -> None:
    """Heartbeat and sweep, every :func:`period`, until cancelled. Returns at once for a
    backend without shared presence."""
    if not services.hub.backend.shared:
        return
    every = period(services.settings)
    slack_ms = int((services.settings.resume_grace + every) * 1000)
    while True:
        await asyncio.sleep(every)
        try:
            await _beat(services, slack_ms)
        except Unavailable:
            log.debug("presence heartbeat skipped: backend unavailable")
        except Exception:
            log.exception("presence heartbeat failed")


async def _beat(services: Services, slack_ms: int) -> None:
    hub = services.hub
    for room in list(hub.rooms.values()):
        if room.state is None or room.closed:
            continue
        cutoff = now_ms() - slack_ms
        forget_old(services, [room], cutoff + slack_ms)  # as the heartbeat does in Redis (§14)
        for pid in await hub.backend.vouch(room.id, room.here(), cutoff):
            member = room.state.members.get(pid) if room.state else None
            waiting = member.waiting if member is not None else False
            pending = services.departures.pop((room.id, pid), None)
            if pending is not None:
                pending.cancel()
            drop = MemberDrop(pid, "expired", lapsed_before=cutoff)
            left = Delivery(Left(pid), exclude=pid, facilitators=waiting)
            try:
                await hub.commit_blind(room.id, [drop], [left])
            except Refused:
                continue  # vouched for meanwhile, or another worker swept it first
