"""Benchmark runner: ``python -m bench.run [--quick] [--only A,B,C,S,capacity,J,R,idle]``.

``--only capacity-ignore`` adds an opt-in workload (never in a run without ``--only``).

For each topology (one process; two processes sharing one Redis) and each workload, it
starts the baseline and then Hearth afresh, drives each with the same generator process,
and finally prints one table (Hearth as ratios to the baseline) and writes the JSON to
``bench/results/<timestamp>.json``. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from bench import procstat, report, topology
from bench.spec import GenSpec
from bench.workloads import DEFAULT, P99_LIMIT_MS, QUICK, Profile, Workload, select

RESULTS = Path(__file__).resolve().parent / "results"


class GeneratorFailed(RuntimeError):
    """The generator crashed or overran its time budget."""


def _log(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def _spec(wl: Workload, dep: topology.Deployment, rooms: list[str], prof: Profile) -> GenSpec:
    if wl.kind in ("join", "resume"):
        return GenSpec(
            urls=dep.urls,
            rooms=rooms,
            members_per_room=wl.members,
            senders_per_room=wl.senders,
            mode=wl.kind,
            drain_s=prof.drain_s,
            watch_pids=dep.server_pids,
            redis_pids=dep.redis_pids,
            expect_presence=dep.target == "hearth",
            storm_deadline_s=prof.storm_deadline_s,
            kill_pid=dep.server_pids[0] if wl.kind == "resume" else 0,
            talk_rate=wl.rate,
            talk_before_s=prof.talk_before_s,
            talk_after_s=prof.talk_after_s,
        )
    return GenSpec(
        urls=dep.urls,
        rooms=rooms,
        members_per_room=wl.members,
        senders_per_room=wl.senders,
        slow_per_room=wl.slow,
        text_pad=wl.pad,
        phases=prof.phases(wl),
        mode="idle" if wl.kind == "idle" else "load",
        drain_s=prof.drain_s,
        idle_hold_s=prof.idle_hold_s,
        watch_pids=dep.server_pids,
        redis_pids=dep.redis_pids,
        fail_p99_ms=P99_LIMIT_MS if wl.kind == "capacity" else None,
        # The baseline has no ignore: it is driven as the plain workload (see plain_baseline).
        ignoring=wl.ignoring if dep.target == "hearth" else 0.0,
    )


def run_generator(spec: GenSpec, pinning: topology.Pinning, log: Path) -> dict[str, Any]:
    """Run one generator process on its own core and return its JSON result."""
    path = log.with_suffix(".spec.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec.to_json())
    members = len(spec.rooms) * spec.members_per_room
    budget = 60 + members / 200 + spec.idle_hold_s
    budget += sum(p.warmup_s + p.measure_s + spec.drain_s for p in spec.phases)
    if spec.mode in ("join", "resume"):
        budget += members / 20 + 2 * spec.join_timeout_s + spec.storm_deadline_s
        budget += spec.talk_before_s + spec.talk_after_s + spec.drain_s
    proc = topology.spawn(
        [topology.PYTHON, "-m", "bench.generator", str(path)],
        pinning.generator,
        log,
        stdout_pipe=True,
    )
    try:
        out, _ = proc.communicate(timeout=budget)
    except subprocess.TimeoutExpired as exc:
        raise GeneratorFailed(f"generator overran {budget:.0f}s") from exc
    finally:
        topology.stop(proc)
    if proc.returncode != 0 or not out.strip():
        raise GeneratorFailed(f"generator exited {proc.returncode}: {topology.tail(log)}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def _log_issues(logs: list[Path]) -> dict[str, Any]:
    """Count tracebacks and error lines the servers logged during the run."""
    issues: dict[str, Any] = {"tracebacks": 0, "error_lines": 0, "warnings": {}, "samples": []}
    for log in logs:
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if '"level": "warning"' in line or " WARNING " in line:
                # Hearth logs JSON lines; group its warnings by event to keep the JSON small.
                event = line.split('"event": ', 1)[-1][:120]
                issues["warnings"][event] = issues["warnings"].get(event, 0) + 1
            bad = "Traceback" in line or "ERROR" in line or "Exception" in line
            issues["tracebacks"] += "Traceback" in line
            issues["error_lines"] += bad
            if bad and len(issues["samples"]) < 5:
                issues["samples"].append(line.strip()[:200])
    return issues


def _check_seated(row: dict[str, Any], topo: str, down: dict[tuple[str, str], str]) -> None:
    """A run where some members could not join measures something else: say so."""
    res = row["result"]
    if res.get("connected", 0) >= res.get("members", 0) or row["kind"] in ("join", "resume"):
        return  # in a storm, members that could not join are a finding: noted, not fatal
    errors = str(res.get("connect_errors"))
    why = f"only {res.get('connected')}/{res.get('members')} members joined: {errors}"
    if topo == "redis" and "JoinRefused: not_found" in errors:
        # Rooms created on the first worker are unknown on the second: multi-worker state
        # is not shared yet, so this topology cannot be measured for this target.
        why = "rooms are not shared between workers (join on worker 2 -> not_found); " + why
        down[(row["target"], topo)] = why
        row |= {"status": "not available", "reason": why}
    else:
        row |= {"status": "failed", "reason": why}


def settle(max_wait_s: float, busy_pct: float = 25.0) -> float:
    """Wait (bounded) for the machine to be quiet before deploying; return the busy % seen.

    Nothing of ours runs between workloads, so CPU used now is a neighbour's, and a
    neighbour that is busy during a window distorts latency more than anything measured.
    """
    deadline = time.monotonic() + max_wait_s
    while True:
        before = procstat.system_busy_s()
        time.sleep(1.0)
        busy = 100.0 * (procstat.system_busy_s() - before)
        if busy < busy_pct or time.monotonic() >= deadline:
            return busy
        _log(f"machine busy ({busy:.0f}% CPU used by other processes); waiting")


def run_one(wl: Workload, target: str, topo: str, ctx: dict[str, Any]) -> dict[str, Any]:
    """Deploy, drive and tear down one target for one workload; never raises for the target."""
    tag = f"{topo}-{wl.key}-{target}"
    row: dict[str, Any] = {
        "topology": topo,
        "workload": wl.key,
        "title": wl.title,
        "kind": wl.kind,
        "target": target,
    }
    down: dict[tuple[str, str], str] = ctx["unavailable"]
    if (target, topo) in down:
        return row | {"status": "not available", "reason": down[(target, topo)]}
    if wl.kind == "resume" and target == "baseline":
        return row | {"status": "n/a", "reason": "the baseline has no resume"}
    log_dir: Path = ctx["log_dir"]
    row["busy_before_pct"] = round(settle(ctx["settle_s"]), 1)
    try:
        with topology.deployed(target, topo, ctx["pinning"], log_dir, tag) as dep:
            rooms = topology.create_rooms(dep, wl.rooms)
            spec = _spec(wl, dep, rooms, ctx["profile"])
            row["result"] = run_generator(spec, ctx["pinning"], log_dir / f"{tag}-generator.log")
            row["status"] = "ok"
        _check_seated(row, topo, down)
    except topology.Unavailable as exc:
        down[(target, topo)] = str(exc)
        row |= {"status": "not available", "reason": str(exc)}
    except GeneratorFailed as exc:
        row |= {"status": "failed", "reason": str(exc)}
    row["server_log"] = _log_issues(sorted(log_dir.glob(f"{tag}-server-*.log")))
    return row


def plain_baseline(wl: Workload, topo: str, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The baseline row of a workload with ignores (capacity-ignore) is its plain workload's:
    the baseline has no ignore. Reuse this run's measured plain baseline row when there is
    one, rather than measure the same thing twice; None: measure it (run_one drives the
    baseline without ignores)."""
    for row in rows:
        key = (row["topology"], row["workload"], row["target"], row.get("status"))
        if key == (topo, wl.plain, "baseline", "ok"):
            return {**row, "workload": wl.key, "title": wl.title, "reused_from": wl.plain}
    return None


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="~3-minute smoke run")
    parser.add_argument(
        "--only",
        default="",
        help="comma list of A,B,C,S,capacity,J,R,idle; opt-in: capacity-ignore",
    )
    parser.add_argument("--targets", default="baseline,hearth")
    parser.add_argument("--topologies", default="single,redis")
    parser.add_argument(
        "--settle",
        type=float,
        default=20.0,
        help="seconds to wait at most, before each run, for other processes to go quiet",
    )
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/<ts>.json)")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="shrink J (members) and R (rooms) by this factor, for development (e.g. 0.05)",
    )
    return parser.parse_args()


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> None:
    args = _parse()
    signal.signal(signal.SIGTERM, _on_term)
    topology.raise_fd_limit()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    profile = QUICK if args.quick else DEFAULT
    pinning = topology.Pinning.detect()
    ctx: dict[str, Any] = {
        "profile": profile,
        "pinning": pinning,
        "unavailable": {},
        "log_dir": RESULTS / f"{stamp}-logs",
        "settle_s": args.settle,
    }
    only = {w.strip() for w in args.only.split(",") if w.strip()} or None
    targets = [t for t in args.targets.split(",") if t]
    topologies = [t for t in args.topologies.split(",") if t]
    raised = topology.per_address_limits()
    meta = report.meta(stamp, profile.name, pinning.describe(), topology.HEARTH_SETTINGS, raised)
    meta["scale"] = args.scale
    _log(f"profile {profile.name}; {meta['pinning']}")
    _log(meta["per_address_limits"])
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for topo in topologies:
            for wl in select(only, profile, args.scale):
                if wl.kind == "resume" and topo == "single":
                    continue  # a restart with resume elsewhere needs a second worker
                for target in targets:
                    _log(f"{topo} / {wl.key} / {target} ...")
                    plain = wl.ignoring > 0 and target == "baseline"
                    reused = plain_baseline(wl, topo, rows) if plain else None
                    row = reused or run_one(wl, target, topo, ctx)
                    if plain:
                        row["shown_as"] = f"baseline (no ignore: its {wl.plain} run)"
                    if wl.ignoring:
                        row |= {"ignoring": wl.ignoring, "plain": wl.plain}
                    rows.append(row)
                    _log(report.one_line(row))
    except KeyboardInterrupt:
        _log("interrupted; stopping children and writing what was measured")
    finally:
        topology.stop_all()
        meta["elapsed_s"] = round(time.monotonic() - started, 1)
        out = args.out or RESULTS / f"{stamp}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        print(report.table(meta, rows))
        print(f"\nJSON: {out}\nServer and generator logs: {ctx['log_dir']}")


if __name__ == "__main__":
    main()
