"""The capacity-ignore workload's arithmetic: who ignores whom, what each message is owed,
that the recorder counts a msg reaching an ignorer as an error and not as a delivery, that
the workload is opt-in, and how the report compares it with the plain baseline."""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped,unused-ignore]

from bench.generator import Recorder
from bench.ignoring import expected_per_sender, ignorers_in, plan
from bench.report import table
from bench.run import plain_baseline
from bench.workloads import CAPACITY, CAPACITY_IGNORE, QUICK, select
from bench.wsclient import Connection
from tests.test_bench_report import META


def test_ten_percent_of_a_room_ignores_rounded_half_up_and_never_more_than_half() -> None:
    assert ignorers_in(20, 0.1) == 2
    assert ignorers_in(25, 0.1) == 3  # 2.5 rounds up
    assert ignorers_in(5, 0.1) == 1  # at least one when asked for some
    assert ignorers_in(3, 0.9) == 1  # an ignorer's target is never an ignorer
    assert ignorers_in(1, 0.5) == 0 and ignorers_in(20, 0.0) == 0


def test_the_last_members_of_each_room_ignore_the_first_ones() -> None:
    # Two rooms of 20, joined interleaved as the generator does (room 0, room 1, room 0, ...).
    room_of = [i % 2 for i in range(40)]
    chosen = plan(room_of, 0.1)
    assert chosen == {38: 0, 36: 2, 39: 1, 37: 3}
    assert all(room_of[a] == room_of[b] and a != b for a, b in chosen.items())
    assert not set(chosen) & set(chosen.values())


def test_a_message_is_owed_to_its_room_less_those_who_ignore_its_sender() -> None:
    room_of = [i % 2 for i in range(40)]
    owed = expected_per_sender(room_of, plan(room_of, 0.1))
    # Members 0..3 are each ignored by one member of their room; everyone else reaches all 20.
    assert owed[:4] == [19, 19, 19, 19]
    assert owed[4:] == [20] * 36
    # With everyone sending in turn, 10% ignoring removes 4 of 800 deliveries per round.
    assert sum(owed) == 40 * 20 - 4
    # Rooms of unequal size (members who failed to join) and no ignores: the room's size.
    assert expected_per_sender([0, 0, 0, 1, 1], {}) == [3, 3, 3, 2, 2]
    assert expected_per_sender([0, 0, 0, 1, 1], {2: 0}) == [2, 3, 3, 2, 2]


async def test_a_msg_to_an_ignorer_is_an_error_and_not_a_delivery() -> None:
    url = "ws://127.0.0.1:9/ws"
    ignorer, other = (
        Connection(url, "x", lambda c, d: None, 7),
        Connection(url, "x", lambda c, d: None, 8),
    )
    rec = Recorder()
    rec.latencies.append([])
    rec.window_received.append(0)
    rec.window_to_ignorers.append(0)
    rec.expected.append(1)  # message 0, from connection 3, inside window 0
    rec.received.append(0)
    rec.window.append(0)
    rec.ignored_by = {ignorer.index: 3}  # connection 7 ignores the sender at position 3

    def frame(text: str) -> bytes:
        packed: bytes = msgpack.packb({"t": "msg", "pid": "p", "text": text})
        return packed

    rec.on_frame(ignorer, frame("3:0:1"))
    rec.on_frame(other, frame("3:0:1"))
    assert list(rec.received) == [1] and rec.window_received == [1]
    assert rec.errors["msg_to_ignorer"] == 1 and rec.window_to_ignorers == [1]
    # A sender the ignorer does not ignore (position 30, not 3) reaches it as usual.
    rec.expected.append(1)
    rec.received.append(0)
    rec.window.append(0)
    rec.on_frame(ignorer, frame("30:1:1"))
    assert list(rec.received) == [1, 1] and rec.errors["msg_to_ignorer"] == 1


def test_capacity_ignore_is_opt_in() -> None:
    assert CAPACITY_IGNORE not in select(None, QUICK)
    assert [w.key for w in select({"capacity-ignore"}, QUICK)] == ["capacity-ignore"]
    assert CAPACITY_IGNORE.ignoring == 0.1 and CAPACITY_IGNORE.plain == CAPACITY.key


def capacity_row(workload: str, target: str, rate: float, **extra: Any) -> dict[str, Any]:
    phase = {"rate": rate, "deliveries_per_s": rate * 20, "p99_ms": 5.0, "passed": True,
             "lost": 0, "duplicates": 0, "gen_saturated": False, "gen_cpu_pct": 50.0}  # fmt: skip
    return {"topology": "single", "target": target, "workload": workload, "kind": "capacity",
            "status": "ok", "result": {"phases": [phase]}, **extra}  # fmt: skip


def test_the_ignore_row_compares_with_the_plain_baseline_of_the_same_run() -> None:
    base = capacity_row("capacity", "baseline", 2000)
    rows = [base, capacity_row("capacity", "hearth", 4000)]
    reused = plain_baseline(CAPACITY_IGNORE, "single", rows)
    assert reused is not None and reused["result"] is base["result"]
    assert reused["workload"] == "capacity-ignore" and reused["reused_from"] == "capacity"
    assert plain_baseline(CAPACITY_IGNORE, "redis", rows) is None  # measured there instead
    ign = {"ignoring": 0.1, "plain": "capacity"}
    rows += [
        reused | {"shown_as": "baseline (no ignore: its capacity run)"} | ign,
        capacity_row("capacity-ignore", "hearth", 3000) | ign,
    ]
    out = table(META, rows)
    assert "baseline (no ignore: its capacity run)" in out
    assert "3,000 (1.50x)" in out  # Hearth with ignores over the plain baseline
    assert "with ignores / without, same run: 3,000 / 4,000 msg/s = 0.75" in out
    assert "its row is this run's plain capacity baseline" in out
