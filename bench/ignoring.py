"""Who ignores whom in the capacity-ignore workload, and what each message is then owed.

Pure arithmetic (no sockets), so that tests/test_bench_ignoring.py can check it directly:
the recorder's expected deliveries must leave out the members who ignore a message's sender
(protocol §14: the server sends an ignorer none of that member's ``msg``), otherwise a server
that filters correctly would be reported as losing messages.
"""

from __future__ import annotations

import math


def ignorers_in(size: int, fraction: float) -> int:
    """How many of a room's ``size`` members ignore someone: ``fraction`` of them, rounded half
    up, at least one when ``fraction`` > 0, and at most half the room (an ignorer's target is
    never itself an ignorer, which keeps every count below simple to state)."""
    if fraction <= 0 or size < 2:
        return 0
    return min(size // 2, max(1, math.floor(fraction * size + 0.5)))


def plan(room_of: list[int], fraction: float) -> dict[int, int]:
    """ignorer -> the member it ignores, over connection indices (positions in ``room_of``).

    In each room, in join order, the last ``k`` members each ignore one of the first ``k``:
    the i-th from the end ignores the i-th. Every target is a different member, so a message
    from a target is owed to everyone in the room but one.
    """
    members: dict[int, list[int]] = {}
    for conn, room in enumerate(room_of):
        members.setdefault(room, []).append(conn)
    out: dict[int, int] = {}
    for conns in members.values():
        k = ignorers_in(len(conns), fraction)
        for i in range(k):
            out[conns[len(conns) - 1 - i]] = conns[i]
    return out


def expected_per_sender(room_of: list[int], ignoring: dict[int, int]) -> list[int]:
    """For each connection: how many deliveries a message it sends is owed (its room's members,
    sender included, minus those who ignore it)."""
    sizes: dict[int, int] = {}
    for room in room_of:
        sizes[room] = sizes.get(room, 0) + 1
    out = [sizes[room] for room in room_of]
    for target in ignoring.values():
        out[target] -= 1
    return out
