"""The bench report: figures carry their ratio to the baseline, a cluster's to the two-worker
one (the baseline has no cluster mode)."""

from __future__ import annotations

from typing import Any

from bench.report import table

META: dict[str, Any] = {
    "timestamp": "t", "profile": "quick", "commit": "c", "python": "3", "websockets": "w",
    "event_loop": "uvloop", "cpus": 2, "pinning": "p", "hearth_settings": "s",
}  # fmt: skip


def row(topology: str, target: str, rate: float, status: str = "ok") -> dict[str, Any]:
    phase = {"rate": rate, "deliveries_per_s": rate, "p99_ms": 5.0, "passed": True,
             "lost": 0, "duplicates": 0, "gen_saturated": False, "gen_cpu_pct": 50.0}  # fmt: skip
    return {"topology": topology, "target": target, "workload": "capacity",
            "kind": "capacity", "status": status,
            "result": {"phases": [phase]} if status == "ok" else None}  # fmt: skip


def test_cluster_rows_carry_their_ratio_to_the_two_worker_baseline() -> None:
    rows = [
        row("redis", "baseline", 2000),
        row("redis", "hearth", 4000),
        row("cluster", "baseline", 0, status="n/a"),
        row("cluster", "hearth", 3000),
    ]
    cluster = table(META, rows).split("Redis Cluster")[1].split("Generator CPU")[0]
    assert "baseline (redis)" in cluster and "n/a" not in cluster
    assert "3,000 (1.50x)" in cluster
