"""Presence across workers: vouching for this worker's members, and sweeping up a dead worker's.

``joining.went_away`` keeps a disconnected member for the resume grace with a timer on the
worker where the socket closed. That timer dies with its worker, and a worker that is killed
never marks its members away at all. So, with a shared store (Redis), every worker:

* every :func:`period`, *vouches* for the members connected to it (a heartbeat: the store
  records "seen now" for each), which also keeps the room's keys from expiring;
* sweeps each room it has members in for members nobody has vouched for since more than the
  grace (plus one period of slack, so that a live worker's own timer goes first), removes them
  and tells the room ``left`` — the cross-worker counterpart of ``joining._grace_ended``.
  The store checks and removes each lapsed member in one step, so only one sweeping worker
  announces it, and a worker that dies mid-sweep leaves no half-removed member.

A member whose worker died therefore disappears from the room within the grace plus a period
or two, unless it resumes on another worker first (protocol §7). The embedded store has no
presence to share and is left alone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol, runtime_checkable

from chat.broker.base import BrokerUnavailable
from chat.context import Services, now_ms
from chat.settings import Settings
from chat.state.base import MemberRecord

log = logging.getLogger("hearth.presence")


@runtime_checkable
class PresenceStore(Protocol):
    """What a shared store offers for presence (``chat.state.redis.RedisRoomStore``)."""

    async def heartbeat(self, room_id: str, pids: list[str]) -> None: ...

    async def sweep_departed(self, room_id: str, cutoff_ms: int) -> list[MemberRecord]: ...


def period(settings: Settings) -> float:
    """Seconds between heartbeats: often enough for the grace, at most every 5 s."""
    return min(5.0, max(0.2, settings.resume_grace / 4))


async def keep_presence(services: Services) -> None:
    """Heartbeat and sweep, every :func:`period`, until cancelled. Returns at once for a store
    without shared presence."""
    store = services.store
    if not isinstance(store, PresenceStore):
        return
    every = period(services.settings)
    slack_ms = int((services.settings.resume_grace + every) * 1000)
    while True:
        await asyncio.sleep(every)
        try:
            await _beat(services, store, slack_ms)
        except BrokerUnavailable:
            log.debug("presence heartbeat skipped: redis unavailable")
        except Exception:
            log.exception("presence heartbeat failed")


async def _beat(services: Services, store: PresenceStore, slack_ms: int) -> None:
    for room_id, local in list(services.hub.rooms.items()):
        await store.heartbeat(room_id, list(local.members))
        for member in await store.sweep_departed(room_id, now_ms() - slack_ms):
            pending = services.departures.pop((room_id, member.pid), None)
            if pending is not None:
                pending.cancel()
            await services.hub.publish(
                room_id, {"t": "left", "pid": member.pid}, facilitators=member.waiting
            )
