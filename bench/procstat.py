"""CPU and memory figures for a process tree, read straight from Linux ``/proc``.

Reading ``/proc`` keeps the harness free of a psutil dependency and costs a few
microseconds per sample, so the generator can watch the server without perturbing it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    """CPU seconds (user + system) of a set of processes at one instant."""

    cpu_s: float
    wall_s: float


def tree(pids: list[int]) -> list[int]:
    """Return the given pids plus all their live descendants (uvicorn may fork workers)."""
    seen: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen or not os.path.exists(f"/proc/{pid}"):
            continue
        seen.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return seen


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds consumed by one process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0.0
    # The command name (field 2) may contain spaces; fields after the closing paren are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_bytes(pids: list[int]) -> int:
    """Current resident set size summed over the processes."""
    return sum(_status_kib(p, "VmRSS:") for p in pids) * 1024


def peak_rss_bytes(pids: list[int]) -> int:
    """Peak resident set size (VmHWM, since process start) summed over the processes."""
    return sum(_status_kib(p, "VmHWM:") for p in pids) * 1024


def system_busy_s() -> float:
    """CPU seconds spent busy by the whole machine since boot (all cores, from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICKS


def sample(pids: list[int], wall_s: float) -> Sample:
    """CPU seconds of the processes, stamped with the caller's monotonic wall clock."""
    return Sample(sum(cpu_seconds(p) for p in pids), wall_s)


def cpu_percent(start: Sample, end: Sample) -> float:
    """CPU use between two samples, in percent of one core."""
    wall = end.wall_s - start.wall_s
    return 100.0 * (end.cpu_s - start.cpu_s) / wall if wall > 0 else 0.0


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """CPU seconds of each process; one that has gone is left out rather than read as 0."""
    out: dict[int, float] = {}
    for pid in pids:
        if os.path.exists(f"/proc/{pid}"):
            out[pid] = cpu_seconds(pid)
    return out


def cpu_spent(start: dict[int, float], end: dict[int, float]) -> float:
    """CPU seconds used between two ``cpu_by_pid`` readings.

    Workload R stops a server on purpose: until the runner reaps it, the stopped process is a
    zombie whose ``/proc/<pid>/stat`` still holds its final CPU times, and if it has been reaped
    its reading falls back to the start's, so its work is undercounted, never negative.
    """
    return sum(max(0.0, end.get(pid, cpu) - cpu) for pid, cpu in start.items()) + sum(
        cpu for pid, cpu in end.items() if pid not in start
    )
