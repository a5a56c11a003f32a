"""The printed table and the JSON metadata.

Absolute figures on a shared 2-core machine drift from run to run, so every Hearth
figure is printed next to its ratio to the baseline measured in the same run.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from typing import Any

from websockets.version import version as websockets_version

from bench.topology import ROOT

MIB = 2**20
_OTHER_NOTE_PCT = 15.0


def meta(
    stamp: str, profile: str, pinning: str, hearth_settings: list[str], raised: list[str]
) -> dict[str, Any]:
    """What a reader needs to judge the numbers: when, where, which code, which settings.

    ``raised`` holds the per-address limit options passed to Hearth (empty when its ``serve``
    has none): they are printed, since a reader must know which protections were opened.
    """
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    return {
        "timestamp": stamp,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "profile": profile,
        "commit": commit,
        "python": platform.python_version(),
        "websockets": websockets_version,
        "event_loop": loop,
        "cpus": os.cpu_count(),
        "pinning": pinning,
        "hearth_settings": " ".join(hearth_settings + raised),
        "per_address_limits": (
            "Per-address limits raised for the bench (all clients are 127.0.0.1): "
            + " ".join(raised)
            if raised
            else "Per-address limits: none to raise (this Hearth's serve has no "
            "--max-per-address or --room-create-rate)"
        ),
    }


def _fmt(v: float | None, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:,.{digits}f}" if digits else f"{v:,.0f}"


def _ratio(v: float | None, base: float | None) -> str:
    if v is None or base is None or base == 0 or math.isnan(v) or math.isnan(base):
        return ""
    return f" ({v / base:.2f}x)"


def _cell(
    row: dict[str, Any],
    base: dict[str, Any] | None,
    key: str,
    digits: int = 1,
    scale: float = 1.0,
) -> str:
    v = row.get(key)
    if v is None:
        return "-"
    b = base.get(key) if base else None
    return _fmt(v / scale, digits) + (_ratio(v, b) if row is not base else "")


def _phase_summary(row: dict[str, Any]) -> dict[str, Any] | None:
    """The figures shown for a row: its only phase, or capacity's highest passing step."""
    res = row.get("result")
    if row.get("status") != "ok" or not res:
        return None
    phases: list[dict[str, Any]] = res.get("phases") or []
    if row["kind"] == "load":
        return phases[0] if phases else None
    if row["kind"] in ("idle", "join", "resume"):
        return dict(res)
    passing = [p for p in phases if p["passed"]]
    best = dict(passing[-1]) if passing else {}
    failing = next((p for p in phases if not p["passed"]), None)
    best["stopped_by"] = _why(failing)
    best["gen_cpu_at_stop"] = (failing or (phases[-1] if phases else {})).get("gen_cpu_pct")
    return best


def _why(phase: dict[str, Any] | None) -> str:
    if phase is None:
        return "highest step passed"
    parts = [f"at {phase['rate']:g} msg/s:"]
    if phase["lost"]:
        parts.append(f"lost {phase['lost']:,}")
    if phase.get("to_ignorers"):
        parts.append(f"{phase['to_ignorers']:,} msgs to ignorers")
    parts.append(f"p99 {_fmt(phase['p99_ms'])} ms")
    if phase["gen_saturated"]:
        parts.append("(generator saturated)")
    return " ".join(parts)


def one_line(row: dict[str, Any]) -> str:
    """Progress line for stderr."""
    head = f"{row['topology']} / {row['workload']} / {row['target']}: {row['status']}"
    if row["status"] != "ok":
        return f"{head} ({row.get('reason', '')[:300]})"
    s = _phase_summary(row) or {}
    if row["kind"] == "idle":
        return f"{head}, {s.get('still_open')} open, {s.get('rss_per_conn', 0) / 1024:.1f} KiB/conn"
    if row["kind"] == "join":
        return (
            f"{head}, {s.get('connected')}/{s.get('members')} in {_fmt(s.get('storm_s'), 2)} s, "
            f"join p99 {_fmt(s.get('join_p99_ms'), 0)} ms, announced {_fmt(s.get('announced_s'))} s"
        )
    if row["kind"] == "resume":
        return (
            f"{head}, {s.get('back')}/{s.get('dropped')} back in {_fmt(s.get('last_back_s'), 2)} s,"
            f" lost {s.get('lost')}, duplicates {s.get('duplicates')}"
        )
    return (
        f"{head}, {s.get('deliveries_per_s', 0):,.0f} deliveries/s, "
        f"p99 {_fmt(s.get('p99_ms'))} ms, lost {s.get('lost')}"
    )


_LOAD_COLS = [  # (header, key, digits, scale)
    ("deliv/s", "deliveries_per_s", 0, 1.0),
    ("p50 ms", "p50_ms", 1, 1.0),
    ("p95 ms", "p95_ms", 1, 1.0),
    ("p99 ms", "p99_ms", 1, 1.0),
    ("max ms", "max_ms", 1, 1.0),
    ("lost", "lost", 0, 1.0),
    ("srv CPU%", "server_cpu_pct", 0, 1.0),
    ("redis CPU%", "redis_cpu_pct", 0, 1.0),
    ("peak RSS MiB", "server_peak_rss", 1, MIB),
    ("gen CPU%", "gen_cpu_pct", 0, 1.0),
]
_CAP_COLS = [("max msg/s", "rate", 0, 1.0), _LOAD_COLS[0], _LOAD_COLS[3], *_LOAD_COLS[6:8]]
_JOIN_COLS = [
    ("joined", "connected", 0, 1.0),
    ("all in s", "storm_s", 2, 1.0),
    ("join p50 ms", "join_p50_ms", 0, 1.0),
    ("join p99 ms", "join_p99_ms", 0, 1.0),
    ("srv CPU s", "server_cpu_s", 2, 1.0),
    ("redis CPU s", "redis_cpu_s", 2, 1.0),
    ("all announced s", "announced_s", 2, 1.0),
    ("srv CPU s to then", "server_cpu_s_announced", 2, 1.0),
    ("gen CPU%", "gen_cpu_pct", 0, 1.0),
]
_RESUME_COLS = [
    ("back", "back", 0, 1.0),
    ("all back s", "all_back_s", 2, 1.0),
    ("back p50 ms", "back_p50_ms", 0, 1.0),
    ("back p99 ms", "back_p99_ms", 0, 1.0),
    ("lost", "lost", 0, 1.0),
    ("dup", "duplicates", 0, 1.0),
    ("bad_resume", "resume_refused", 0, 1.0),
    ("srv CPU s", "server_cpu_s", 2, 1.0),
    ("redis CPU s", "redis_cpu_s", 2, 1.0),
    ("gen CPU%", "gen_cpu_pct", 0, 1.0),
]
_PER_DELIVERY_COLS = [
    ("deliv/s", "deliveries_per_s", 0, 1.0),
    ("srv CPU s per 1k deliv", "server_cpu_s_per_1k", 4, 1.0),
    ("redis CPU s per 1k deliv", "redis_cpu_s_per_1k", 4, 1.0),
    ("srv CPU%", "server_cpu_pct", 1, 1.0),
]
_COLS = {
    "load": _LOAD_COLS,
    "capacity": _CAP_COLS,
    "join": _JOIN_COLS,
    "resume": _RESUME_COLS,
    "per-delivery": _PER_DELIVERY_COLS,
}
_TITLES = {
    "join": "J: join storm (the baseline has no join protocol: its join is its hello)",
    "resume": "R: worker A stopped (SIGTERM, close 1012); every member resumes on worker B",
    "per-delivery": "C at fixed load (250 msg/s = 5,000 deliveries/s): cost per delivery",
}
_IDLE_COLS = [
    ("open", "still_open", 0, 1.0),
    ("RSS before MiB", "rss_before", 1, MIB),
    ("RSS after MiB", "rss_after", 1, MIB),
    ("KiB/conn", "rss_per_conn", 2, 1024.0),
]


def _grid(headers: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in lines)) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in lines]
    return "\n".join(out)


def _section(kind: str, rows: list[dict[str, Any]]) -> str:
    cols = _COLS.get(kind, _IDLE_COLS)
    if kind != "idle" and all(r["topology"] == "single" for r in rows):
        cols = [c for c in cols if not c[1].startswith("redis_cpu")]
    headers = ["workload", "target"] + [c[0] for c in cols]
    if kind == "capacity":
        headers += ["stopped by", "gen CPU% there"]
    lines: list[list[str]] = []
    base: dict[str, Any] | None = None
    for row in rows:
        s = _phase_summary(row)
        if row["target"] == "baseline":
            base = s
        line = [row["workload"], row.get("shown_as", row["target"])]
        if s is None and row["status"] == "n/a":
            line += ["n/a"] * (len(headers) - 2)
        elif s is None:
            line += [row["status"]] + [""] * (len(headers) - 3)
        else:
            line += [
                _cell(s, base if row["target"] != "baseline" else s, k, d, sc)
                for _, k, d, sc in cols
            ]
            if kind == "capacity":
                line += [s.get("stopped_by", ""), _fmt(s.get("gen_cpu_at_stop"), 0)]
        lines.append(line)
    return _grid(headers, lines)


def _storm_notes(name: str, kind: str, res: dict[str, Any]) -> list[str]:
    """What a reader of J and R must know to trust (or not) their row."""
    notes: list[str] = []
    if kind not in ("join", "resume"):
        return notes
    if res.get("gen_cpu_pct", 0) >= 90:
        notes.append(
            f"{name}: generator at {res['gen_cpu_pct']:.0f}% of its core: it bounds the storm"
        )
    if res.get("other_cpu_pct", 0) > _OTHER_NOTE_PCT:
        notes.append(f"{name}: other processes used {res['other_cpu_pct']:.0f}% CPU: noisy")
    if kind == "join" and "announced_members" in res and res.get("announced_s") is None:
        notes.append(
            f"{name}: after the deadline only {res['announced_members']}/{res['connected']} "
            "members had heard (welcome or joined) of everyone in the room"
        )
    if kind == "resume":
        if res.get("back") != res.get("dropped") or res.get("dropped") != res.get("connected"):
            notes.append(
                f"{name}: {res.get('dropped')} of {res.get('connected')} members were dropped "
                f"by worker A and {res.get('back')} came back on B"
            )
        for key, what in (
            ("members_with_losses", "members missed messages"),
            ("out_of_order", "deliveries out of seq order"),
            ("seq_gaps", "seqs nobody received and nobody had acked (in flight as A stopped?)"),
        ):
            if res.get(key):
                notes.append(f"{name}: {res[key]} {what}")
    return notes


def _notes(rows: list[dict[str, Any]]) -> list[str]:
    notes: list[str] = []
    for row in rows:
        name = f"{row['topology']}/{row['workload']}/{row['target']}"
        if row["status"] != "ok":
            notes.append(f"{name}: {row['status']}: {row.get('reason', '')[:400]}")
            continue
        res = row["result"]
        if row.get("reused_from"):
            continue  # the plain workload's baseline row, noted there already
        ign = res.get("ignoring")
        if ign and (ign.get("refused") or not ign.get("ignorers")):
            notes.append(
                f"{name}: {ign.get('ignorers')} members ignore someone; ignores refused: "
                f"{ign.get('refused')}"
            )
        if row.get("busy_before_pct", 0) > 25:
            notes.append(
                f"{name}: started while other processes used "
                f"{row['busy_before_pct']:.0f}% CPU (waited --settle seconds)"
            )
        notes += _storm_notes(name, row["kind"], res)
        for key in ("errors", "connect_errors", "early_closes", "stalled_readers", "closes"):
            if res.get(key):
                notes.append(f"{name}: {key.replace('_', ' ')}: {res[key]}")
        if res.get("connected", 0) < res.get("members", 0):
            notes.append(f"{name}: only {res['connected']}/{res['members']} members joined")
        for p in res.get("phases", []):
            if p["gen_saturated"]:
                notes.append(
                    f"{name}: generator saturated its core ({p['gen_cpu_pct']:.0f}%) "
                    f"at {p['rate']:g} msg/s: figures there are bounded by the generator"
                )
            if p["duplicates"]:
                notes.append(f"{name}: {p['duplicates']} duplicate deliveries at {p['rate']:g}/s")
            if p.get("other_cpu_pct", 0) > _OTHER_NOTE_PCT:
                notes.append(
                    f"{name}: other processes used {p['other_cpu_pct']:.0f}% CPU "
                    f"during the window at {p['rate']:g} msg/s: treat it as noisy"
                )
        log = row.get("server_log") or {}
        for event, count in (log.get("warnings") or {}).items():
            if "bus in clear" not in event:
                notes.append(f"{name}: server warned {count}x: {event}")
        if log.get("error_lines"):
            notes.append(
                f"{name}: server log: {log['tracebacks']} tracebacks, "
                f"{log['error_lines']} error lines, e.g. {log['samples'][:2]}"
            )
    return notes


def _with_redis_baseline(
    part: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Cluster rows after the two-worker, one-Redis baseline of the same workload: the
    baseline has no cluster mode, so the cluster figures carry their ratio to that one (the
    issue's "ratio to the two-worker baseline"), and the line says so."""
    out: list[dict[str, Any]] = []
    for row in part:
        if row["target"] == "baseline":
            continue  # "n/a" on a cluster
        base = next(
            (
                r
                for r in rows
                if r["topology"] == "redis"
                and r["target"] == "baseline"
                and r["workload"] == row["workload"]
            ),
            None,
        )
        if base is not None:
            out.append({**base, "shown_as": "baseline (redis)"})
        out.append(row)
    return out


def _ignoring_note(part: list[dict[str, Any]]) -> list[str]:
    """Under a capacity section holding a workload with ignores: what its baseline row is, and
    Hearth's capacity with ignores over its capacity without (issue 15: within 10%)."""
    notes: list[str] = []
    for row in part:
        if not row.get("ignoring") or row["target"] == "baseline":
            continue
        res = row.get("result") or {}
        ign = res.get("ignoring") or {}
        notes.append(
            f"{row['workload']}: {100 * row['ignoring']:g}% of each room's members "
            f"({ign.get('ignorers', '?')} in all) ignore another member first (Hearth only, "
            "protocol §14); a msg delivered to an ignorer fails the step. The baseline has no "
            f"ignore: its row is this run's plain {row['plain']} baseline, so Hearth's ratio "
            f"here is to that; compare it with Hearth's ratio on the {row['plain']} row."
        )
        plain = next(
            (r for r in part if r["workload"] == row["plain"] and r["target"] == row["target"]),
            None,
        )
        with_, without = _phase_summary(row), _phase_summary(plain) if plain else None
        if with_ and without and with_.get("rate") and without.get("rate"):
            notes.append(
                f"{row['workload']}: Hearth's capacity with ignores / without, same run: "
                f"{with_['rate']:,.0f} / {without['rate']:,.0f} msg/s = "
                f"{with_['rate'] / without['rate']:.2f}"
            )
    return notes


def table(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The whole printed report, one section per topology and workload kind."""
    out = [
        (
            f"Hearth benchmark {meta['timestamp']} (profile {meta['profile']}, "
            f"commit {meta['commit']}, {meta.get('elapsed_s', '?')} s)"
        ),
        (
            f"Python {meta['python']}, websockets {meta['websockets']}, {meta['event_loop']}; "
            f"{meta['cpus']} CPUs; {meta['pinning']}"
        ),
        f"Hearth settings: {meta['hearth_settings']}",
        meta.get("per_address_limits", ""),
        "Hearth figures carry their ratio to the baseline of the same run in parentheses.",
    ]
    if meta.get("scale", 1.0) != 1.0:
        out.append(f"J and R scaled down by --scale {meta['scale']:g}: not the issue's sizes.")
    titles = {
        "single": "One process (Hearth: embedded broker)",
        "redis": "Two processes sharing one Redis (members split across them)",
        "cluster": "Two processes on a three-primary Redis Cluster (sharded pub/sub)",
    }
    for topo in dict.fromkeys(r["topology"] for r in rows):
        out.append(f"\n== {titles.get(topo, topo)} ==")
        for kind in ("load", "per-delivery", "capacity", "join", "resume", "idle"):
            if kind == "per-delivery":
                part = [r for r in rows if r["topology"] == topo and r["workload"] == "C"]
            else:
                part = [r for r in rows if r["topology"] == topo and r["kind"] == kind]
            if topo == "cluster":
                part = _with_redis_baseline(part, rows)
            if part:
                out.append("")
                if kind in _TITLES:
                    out.append(_TITLES[kind])
                out.append(_section(kind, part))
                if kind == "capacity":
                    out += _ignoring_note(part)
    notes = _notes(rows)
    gen = [
        p["gen_cpu_pct"] for r in rows if r["status"] == "ok" for p in r["result"].get("phases", [])
    ]
    if gen:
        out.append(
            f"\nGenerator CPU over measurement windows: max {max(gen):.0f}% of its core, "
            f"median {sorted(gen)[len(gen) // 2]:.0f}%."
        )
    if notes:
        out.append("\nNotes:")
        out += [f"- {n}" for n in notes]
    return "\n".join(out)
