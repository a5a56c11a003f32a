"""The workloads of the benchmark issue, and the timing profiles (default and quick)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.spec import Phase

P99_LIMIT_MS = 100.0


@dataclass(frozen=True)
class Workload:
    """A room layout and an offered load; ``kind`` is "load", "capacity" or "idle"."""

    key: str
    title: str
    kind: str
    rooms: int
    members: int
    senders: int
    rate: float = 0.0
    slow: int = 0  # extra members per room that stop reading once joined
    pad: int = 0  # characters added to each text, so a stalled reader's buffers fill


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
)


def select(only: set[str] | None, profile: Profile) -> list[Workload]:
    """The workloads to run, in order; ``only`` holds keys such as A, B, C, capacity, idle."""
    every = [A, B, C, S, CAPACITY] + [idle(n) for n in profile.idle_sizes]
    if not only:
        return every
    return [w for w in every if w.key in only or (w.kind == "idle" and "idle" in only)]
