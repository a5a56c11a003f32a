"""The workloads of the benchmark issue, and the timing profiles (default and quick)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from bench.spec import Phase

P99_LIMIT_MS = 100.0


@dataclass(frozen=True)
class Workload:
    """A room layout and an offered load.

    ``kind`` is "load", "capacity", "idle", "join" (J: a join storm) or "resume" (R: a worker
    restarts and its members resume on the other one; Redis topology only).
    """

    key: str
    title: str
    kind: str
    rooms: int
    members: int
    senders: int
    rate: float = 0.0
    slow: int = 0  # extra members per room that stop reading once joined
    pad: int = 0  # characters added to each text, so a stalled reader's buffers fill
    ignoring: float = 0.0  # fraction of each room's members that ignore another (Hearth only)
    plain: str = ""  # the workload without ignores, whose baseline row this one's compares to


A = Workload("A", "1 room x 100, 10 senders, 50 msg/s", "load", 1, 100, 10, 50)
B = Workload("B", "1 room x 1,000, 5 senders, 10 msg/s", "load", 1, 1000, 5, 10)
C = Workload("C", "50 rooms x 20, all send, 250 msg/s", "load", 50, 20, 20, 250)
# A room with members that stop reading: the others' latency must not move (issue: "a slow
# member never raises the others' p99"). 2,000-character texts at 300 msg/s fill a stalled
# reader's socket buffers (megabytes on loopback) within seconds, so the server's own
# backpressure is what is measured.
S = Workload(
    "S", "1 room x 100 + 10 that stop reading, 300 msg/s of 2,000 chars", "load",
    1, 100, 10, 300, slow=10, pad=1960,
)  # fmt: skip
CAPACITY = Workload(
    "capacity",
    "shape C, rate stepped up to p99 > 100 ms or loss",
    "capacity",
    50,
    20,
    20,
)
# Issue 15's figure "with 10% of members ignoring someone": capacity again, but 2 of each
# room's 20 members ignore another member first (protocol §14), so the server filters every
# fan-out of those members' messages. The baseline has no ignore: its row for this workload is
# the plain capacity run's, and Hearth's ratio is to that. Opt-in (--only capacity-ignore).
CAPACITY_IGNORE = replace(
    CAPACITY,
    key="capacity-ignore",
    title="shape C, 10% of members ignore another member, stepped as capacity",
    ignoring=0.1,
    plain="capacity",
)
OPT_IN = [CAPACITY_IGNORE]  # run only when named in --only


# Issue 13's storms. J: everyone joins one room at once; its "rate" is unused. R: the rooms
# talk at a modest 100 msg/s in all (0.4 msg/s a room, 2,000 deliveries/s) from 2 senders a
# room, before, during and after the restart. --scale shrinks both for development.
J = Workload("J", "1,000 join one room at once", "join", 1, 1000, 0)
R = Workload(
    "R", "250 rooms x 20 on worker A; A restarts, all resume on B", "resume", 250, 20, 2, 100
)


def scaled(wl: Workload, scale: float) -> Workload:
    """J with fewer members, R with fewer rooms (and a rate to match): for development runs."""
    if scale == 1.0:
        return wl
    if wl.kind == "join":
        members = max(2, round(wl.members * scale))
        return replace(wl, members=members, title=f"{members:,} join one room at once (scaled)")
    if wl.kind == "resume":
        rooms = max(1, round(wl.rooms * scale))
        title = f"{rooms:,} rooms x {wl.members} on worker A; A restarts, all resume on B (scaled)"
        return replace(wl, rooms=rooms, rate=max(1.0, wl.rate * rooms / wl.rooms), title=title)
    return wl


def idle(connections: int) -> Workload:
    """``connections`` members in rooms of 10, nobody talking."""
    return Workload(
        f"idle-{connections}",
        f"{connections:,} idle connections, rooms of 10",
        "idle",
        connections // 10,
        10,
        0,
    )


@dataclass(frozen=True)
class Profile:
    """How long each part runs; the default fits in ~15 minutes, quick in ~3."""

    name: str
    warmup_s: float
    measure_s: float
    drain_s: float
    capacity_rates: tuple[float, ...]
    capacity_warmup_s: float
    capacity_measure_s: float
    idle_sizes: tuple[int, ...]
    idle_hold_s: float
    talk_before_s: float  # R: talking before worker A is stopped
    talk_after_s: float  # R: talking once everyone is back
    storm_deadline_s: float  # J: announcements; R: everyone back

    def phases(self, wl: Workload) -> list[Phase]:
        if wl.kind == "capacity":
            return [
                Phase(r, self.capacity_warmup_s, self.capacity_measure_s)
                for r in self.capacity_rates
            ]
        if wl.kind == "load":
            return [Phase(wl.rate, self.warmup_s, self.measure_s)]
        return []


DEFAULT = Profile(
    name="default",
    warmup_s=3,
    measure_s=10,
    drain_s=3,
    capacity_rates=(250, 500, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000),
    capacity_warmup_s=2,
    capacity_measure_s=5,
    idle_sizes=(5000, 10000),
    idle_hold_s=3,
    talk_before_s=3,
    talk_after_s=3,
    storm_deadline_s=60,
)
QUICK = Profile(
    name="quick",
    warmup_s=1,
    measure_s=3,
    drain_s=2,
    capacity_rates=(250, 1000, 2000, 4000, 8000),
    capacity_warmup_s=1,
    capacity_measure_s=2,
    idle_sizes=(5000,),
    idle_hold_s=2,
    talk_before_s=2,
    talk_after_s=2,
    storm_deadline_s=30,
)


def select(only: set[str] | None, profile: Profile, scale: float = 1.0) -> list[Workload]:
    """The workloads to run, in order; ``only`` holds keys such as A, B, C, J, R, idle, and
    the opt-in ones (capacity-ignore), which a run without ``only`` leaves out."""
    storms = [scaled(J, scale), scaled(R, scale)]
    every = [A, B, C, S, CAPACITY, *OPT_IN, *storms] + [idle(n) for n in profile.idle_sizes]
    if not only:
        return [w for w in every if w not in OPT_IN]
    return [w for w in every if w.key in only or (w.kind == "idle" and "idle" in only)]
