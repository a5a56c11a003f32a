"""Load generator: connects the members, sends on a schedule, measures every delivery.

Runs as its own process (``python -m bench.generator SPEC.json``), normally pinned to
its own core by the runner, and prints one JSON result on stdout. Progress goes to
stderr. Each sent text is ``"<sender>:<n>:<send monotonic ns>"`` (:func:`stamp`) where ``n`` is a
generator-wide message number, so a delivery is attributed in O(1) and its latency is
the receiver's clock minus the sender's clock in this same process.
"""

from __future__ import annotations

import asyncio
import functools
import json
import resource
import socket
import sys
import time
from array import array
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped,unused-ignore]
from websockets.exceptions import WebSocketException

from bench import ignoring, procstat
from bench.spec import GenSpec, Phase
from bench.wsclient import Connection

_SATURATED_PCT = 90.0
_IGNORE_ID = 1  # the request id on each member's one ``ignore`` (ids are per connection)


def _log(text: str) -> None:
    print(f"[generator] {text}", file=sys.stderr, flush=True)


def own_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# The send time goes into each text in base 36 with its ten digits written as capital
# letters: no digit at all. A run of seven digits (which plain base 36 holds about once in
# 20,000 texts) may be read as a phone number by the room's contact screening (protocol §14),
# and a say refused with check_first stopped a capacity ramp on lost deliveries.
_NO_DIGITS = str.maketrans("0123456789", "ABCDEFGHIJ")
_DIGITS = str.maketrans("ABCDEFGHIJ", "0123456789")


def stamp(value: int) -> str:
    """``value`` (a send time in ns) as text with no digit in it; :func:`unstamp` reads it."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while value:
        value, rest = divmod(value, 36)
        out = digits[rest] + out
    return (out or "0").translate(_NO_DIGITS)


def unstamp(text: str) -> int:
    """The value :func:`stamp` wrote.

    Raises:
        ValueError: ``text`` is not a stamp.
    """
    return int(text.translate(_DIGITS), 36)


def percentile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    if not sorted_ns:
        return float("nan")
    rank = max(0, min(len(sorted_ns) - 1, round(q / 100.0 * len(sorted_ns) + 0.5) - 1))
    return sorted_ns[rank] / 1e6


@dataclass
class PhaseResult:
    """Measured figures for one measurement window."""

    rate: float
    measure_s: float
    sent: int = 0
    expected: int = 0
    received: int = 0
    lost: int = 0
    duplicates: int = 0
    send_rate: float = 0.0
    deliveries_per_s: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    to_ignorers: int = 0  # msgs delivered to a member who ignores their sender: must be 0
    server_cpu_pct: float = 0.0
    redis_cpu_pct: float = 0.0
    server_cpu_s: float = 0.0  # CPU seconds in the window, for the cost per delivery
    redis_cpu_s: float = 0.0
    server_cpu_s_per_1k: float = 0.0  # server CPU seconds per 1,000 deliveries
    redis_cpu_s_per_1k: float = 0.0
    other_cpu_pct: float = 0.0  # everything else on the machine: a shared box drifts
    gen_cpu_pct: float = 0.0
    gen_saturated: bool = False
    server_peak_rss: int = 0
    server_rss: int = 0
    passed: bool = True


@dataclass
class Recorder:
    """Per-message bookkeeping, indexed by the generator-wide message number."""

    expected: array[int] = field(default_factory=lambda: array("i"))
    received: array[int] = field(default_factory=lambda: array("i"))
    window: array[int] = field(default_factory=lambda: array("i"))  # phase index, -1 outside
    latencies: list[list[int]] = field(default_factory=list)
    window_received: list[int] = field(default_factory=list)
    window_expected: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    welcomed: int = 0
    pids: dict[int, str] = field(default_factory=dict)  # connection index -> its welcome's pid
    # capacity-ignore: connection index of an ignorer -> position in Generator.conns of the
    # member it ignores (the "<sender>" of a text). Empty otherwise: one falsy test per msg.
    ignored_by: dict[int, int] = field(default_factory=dict)
    window_to_ignorers: list[int] = field(default_factory=list)

    def on_frame(self, conn: Connection, data: bytes | bytearray | memoryview) -> None:
        """Decode one server frame (a map, or an array of maps when batched: protocol §2)."""
        try:
            obj = msgpack.unpackb(data)
        except (ValueError, msgpack.UnpackException):
            self.errors["undecodable_frame"] += 1
            return
        if isinstance(obj, list):
            for item in obj:
                self._message(conn, item)
        else:
            self._message(conn, obj)

    def _message(self, conn: Connection, m: Any) -> None:
        if not isinstance(m, dict):
            self.errors["non_map_message"] += 1
            return
        t = m.get("t")
        if t == "msg":
            now = time.monotonic_ns()
            try:
                sender_s, n_s, ns_s = m["text"].split(":")
                n = int(n_s)
                sent_ns = unstamp(ns_s)
            except (KeyError, ValueError, AttributeError):
                return  # not one of ours (announcements and the like)
            ph = self.window[n]
            ignored = self.ignored_by.get(conn.index) if self.ignored_by else None
            if ignored is not None and sender_s.lstrip(".") == str(ignored):
                # The server must filter this one out (protocol §14): not a delivery, an error.
                self.errors["msg_to_ignorer"] += 1
                if ph >= 0:
                    self.window_to_ignorers[ph] += 1
                return
            self.received[n] += 1
            if ph >= 0:
                self.window_received[ph] += 1
                self.latencies[ph].append(now - sent_ns)
        elif t == "welcome":
            waiter = _welcome_waiters.pop(conn.index, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            self.welcomed += 1
            you = m.get("you")
            if isinstance(you, dict) and isinstance(you.get("pid"), str):
                self.pids[conn.index] = you["pid"]
        elif t == "ack" and m.get("id") == _IGNORE_ID:
            acked = _ack_waiters.pop(conn.index, None)
            if acked is not None and not acked.done():
                acked.set_result(None)
        elif t == "error":
            self.errors[f"error:{m.get('code')}"] += 1
            if m.get("id") == _IGNORE_ID:
                refused = _ack_waiters.pop(conn.index, None)
                if refused is not None and not refused.done():
                    refused.set_exception(IgnoreRefused(str(m.get("code"))))
            waiter = _welcome_waiters.pop(conn.index, None)
            if waiter is not None and not waiter.done():
                # An error before the welcome answers the join: fail now, not at the timeout.
                waiter.set_exception(JoinRefused(str(m.get("code"))))


_welcome_waiters: dict[int, asyncio.Future[None]] = {}
_ack_waiters: dict[int, asyncio.Future[None]] = {}  # capacity-ignore: each ignorer's ack


def _welcome_only(conn: Connection, data: bytes | bytearray | memoryview) -> None:
    """A stalled member's frames: only its welcome matters (to know it joined)."""
    waiter = _welcome_waiters.get(conn.index)
    if waiter is None or waiter.done():
        return
    try:
        obj = msgpack.unpackb(data)
    except (ValueError, msgpack.UnpackException):
        return
    if isinstance(obj, dict) and obj.get("t") in ("welcome", "error"):
        del _welcome_waiters[conn.index]
        waiter.set_result(None)


class JoinRefused(RuntimeError):
    """The server answered a join with an error (its code is the message)."""


class IgnoreRefused(RuntimeError):
    """The server answered an ``ignore`` with an error (its code is the message)."""


class Generator:
    """Owns the connections of one generator run."""

    def __init__(self, spec: GenSpec) -> None:
        self.spec = spec
        self.rec = Recorder()
        self.conns: list[Connection] = []
        self.room_of: list[int] = []
        self.senders: list[int] = []
        self.packer = msgpack.Packer()
        self.early_closes: Counter[str] = Counter()
        self.connect_errors: Counter[str] = Counter()
        self.stalled: list[Connection] = []
        self.pad = "." * spec.text_pad
        self.ignoring: dict[int, int] = {}  # ignorer -> ignored, as positions in self.conns
        self.ignore_errors: Counter[str] = Counter()

    def _watch(self) -> list[int]:
        return procstat.tree(self.spec.watch_pids)

    async def connect_all(self) -> None:
        """Open and join every member, a bounded number of handshakes at a time."""
        spec = self.spec
        sem = asyncio.Semaphore(spec.connect_concurrency)
        loop = asyncio.get_running_loop()
        plan: list[tuple[int, int]] = []  # (room, member-in-room)
        for j in range(spec.members_per_room):
            for r in range(len(spec.rooms)):
                plan.append((r, j))

        async def one(i: int, room: int, member: int) -> Connection | None:
            # Members of one room alternate between workers so that, with two workers,
            # every message has recipients on both and so crosses the broker.
            url = spec.urls[member % len(spec.urls)]
            host, port = url.split("//")[1].split("/")[0].split(":")
            conn: Connection | None = None
            async with sem:
                try:
                    _, opened = await asyncio.wait_for(
                        loop.create_connection(
                            lambda: Connection(url, spec.subprotocol, self.rec.on_frame, i),
                            host,
                            int(port),
                        ),
                        spec.join_timeout_s,
                    )
                    conn = opened
                    await asyncio.wait_for(opened.opened, spec.join_timeout_s)
                    waiter = loop.create_future()
                    _welcome_waiters[i] = waiter
                    opened.send(self.packer.pack({"t": "join", "room": spec.rooms[room]}))
                    await asyncio.wait_for(waiter, spec.join_timeout_s)
                    return opened
                except (OSError, TimeoutError, WebSocketException, JoinRefused) as exc:
                    self.connect_errors[type(exc).__name__ + (f": {exc}"[:80])] += 1
                    if conn is not None:
                        conn.abort()
                    return None

        t0 = time.monotonic()
        results = await asyncio.gather(*(one(i, r, j) for i, (r, j) in enumerate(plan)))
        for (r, j), conn in zip(plan, results, strict=True):
            if conn is None:
                continue
            self.conns.append(conn)
            self.room_of.append(r)
            if j < spec.senders_per_room:
                self.senders.append(len(self.conns) - 1)
        _log(
            f"{len(self.conns)}/{len(plan)} members joined in {time.monotonic() - t0:.1f}s"
            + (f"; failures: {dict(self.connect_errors)}" if self.connect_errors else "")
        )

    async def connect_stalled(self) -> None:
        """Join ``slow_per_room`` members to each room that then stop reading.

        Each gets a 4 KiB receive buffer, so the server's socket and transport buffers fill
        after a few frames and the server's own backpressure (queue, then 4008) takes over.
        They are not recipients: nothing they receive is counted.
        """
        spec = self.spec
        loop = asyncio.get_running_loop()
        index = 10_000_000  # apart from the members' indices in _welcome_waiters
        for room in spec.rooms:
            for k in range(spec.slow_per_room):
                url = spec.urls[k % len(spec.urls)]
                host, port = url.split("//")[1].split("/")[0].split(":")
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.setblocking(False)
                await loop.sock_connect(sock, (host, int(port)))
                index += 1
                _, conn = await loop.create_connection(
                    functools.partial(Connection, url, spec.subprotocol, _welcome_only, index),
                    sock=sock,
                )
                await asyncio.wait_for(conn.opened, spec.join_timeout_s)
                waiter = loop.create_future()
                _welcome_waiters[conn.index] = waiter
                conn.send(self.packer.pack({"t": "join", "room": room}))
                await asyncio.wait_for(waiter, spec.join_timeout_s)
                assert conn.transport is not None
                conn.transport.pause_reading()
                self.stalled.append(conn)
        if self.stalled:
            _log(f"{len(self.stalled)} members joined and stopped reading")

    async def stalled_outcome(self) -> dict[str, int]:
        """Read what the stalled members were sent at last: how the server ended them."""
        for conn in self.stalled:
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.resume_reading()
        pending = [c.closed for c in self.stalled if not c.closed.done()]
        if pending:
            await asyncio.wait(pending, timeout=3.0)
        outcome: Counter[str] = Counter()
        for conn in self.stalled:
            outcome[f"closed {conn.close_code}" if conn.closed.done() else "still open"] += 1
        return dict(outcome)

    async def ignore_some(self) -> None:
        """capacity-ignore: ``spec.ignoring`` of each room's members ignore another member
        (bench/ignoring.py says who), each waiting for its ``ack`` before any load is sent.
        Only acked ignores change what the recorder expects; a refusal is reported."""
        chosen = ignoring.plan(self.room_of, self.spec.ignoring)
        if not chosen:
            return
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[None]] = []
        for ignorer, target in chosen.items():
            conn = self.conns[ignorer]
            acked: asyncio.Future[None] = loop.create_future()
            _ack_waiters[conn.index] = acked
            pid = self.rec.pids.get(self.conns[target].index)
            conn.send(self.packer.pack({"t": "ignore", "pid": pid, "id": _IGNORE_ID}))
            waits.append(acked)
        timeout = self.spec.join_timeout_s
        results = await asyncio.gather(
            *(asyncio.wait_for(w, timeout) for w in waits), return_exceptions=True
        )
        for (ignorer, target), res in zip(chosen.items(), results, strict=True):
            if isinstance(res, BaseException):
                self.ignore_errors[type(res).__name__ + (f": {res}"[:80])] += 1
            else:
                self.ignoring[ignorer] = target
        self.rec.ignored_by = {self.conns[i].index: t for i, t in self.ignoring.items()}
        _log(
            f"{len(self.ignoring)}/{len(chosen)} members ignore another member"
            + (f"; failures: {dict(self.ignore_errors)}" if self.ignore_errors else "")
        )

    async def _send_for(self, rate: float, duration: float, window: int, owed: list[int]) -> int:
        """Send ``rate`` messages/s spread evenly over the senders for ``duration`` seconds;
        ``owed[c]`` is how many deliveries a message from connection ``c`` must make."""
        rec, conns, senders, pack = self.rec, self.conns, self.senders, self.packer.pack
        n_senders = len(senders)
        if n_senders == 0:
            raise RuntimeError("no sender could join; nothing to measure")
        t0 = time.monotonic()
        k = 0
        while True:
            elapsed = time.monotonic() - t0
            if elapsed >= duration:
                return k
            due = min(int(elapsed * rate) + 1, int(duration * rate))
            while k < due:
                ci = senders[k % n_senders]
                conn = conns[ci]
                n = len(rec.expected)
                rec.expected.append(owed[ci])
                rec.received.append(0)
                rec.window.append(window)
                text = f"{self.pad}{ci}:{n}:{stamp(time.monotonic_ns())}"
                if not conn.closed.done():
                    conn.send(pack({"t": "say", "text": text}))
                k += 1
            await asyncio.sleep(max(0.0, t0 + k / rate - time.monotonic()))

    async def _drain(self, ph: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.rec.window_received[ph] >= self.rec.window_expected[ph]:
                return
            await asyncio.sleep(0.05)

    async def run_phase(self, ph: int, phase: Phase) -> PhaseResult:
        """Warm up, measure, then drain one phase; return its figures."""
        rec = self.rec
        rec.latencies.append([])
        rec.window_received.append(0)
        rec.window_expected.append(0)
        rec.window_to_ignorers.append(0)
        # Every member of the sender's room, sender included, but those who ignore the sender.
        owed = ignoring.expected_per_sender(self.room_of, self.ignoring)
        await self._send_for(phase.rate, phase.warmup_s, -1, owed)
        first = len(rec.expected)
        watch = self._watch()
        srv0 = procstat.sample(watch, time.monotonic())
        red0 = procstat.sample(self.spec.redis_pids, time.monotonic())
        gen0 = (own_cpu_s(), time.monotonic())
        busy0 = procstat.system_busy_s()
        sent = await self._send_for(phase.rate, phase.measure_s, ph, owed)
        srv1 = procstat.sample(watch, time.monotonic())
        red1 = procstat.sample(self.spec.redis_pids, time.monotonic())
        gen1 = (own_cpu_s(), time.monotonic())
        busy1 = procstat.system_busy_s()
        rec.window_expected[ph] = sum(rec.expected[first : first + sent])
        await self._drain(ph, self.spec.drain_s)
        res = PhaseResult(rate=phase.rate, measure_s=phase.measure_s, sent=sent)
        res.expected = rec.window_expected[ph]
        received = rec.received[first : first + sent]
        res.received = sum(min(r, e) for r, e in zip(received, rec.expected[first:], strict=False))
        res.duplicates = sum(
            max(0, r - e) for r, e in zip(received, rec.expected[first:], strict=False)
        )
        res.lost = res.expected - res.received
        res.to_ignorers = rec.window_to_ignorers[ph]
        res.send_rate = sent / phase.measure_s
        res.deliveries_per_s = res.received / phase.measure_s
        lat = sorted(rec.latencies[ph])
        rec.latencies[ph] = []  # free memory; the figures are kept below
        res.p50_ms, res.p95_ms, res.p99_ms = (percentile(lat, q) for q in (50, 95, 99))
        res.max_ms = lat[-1] / 1e6 if lat else float("nan")
        res.server_cpu_pct = procstat.cpu_percent(srv0, srv1)
        res.redis_cpu_pct = procstat.cpu_percent(red0, red1)
        res.server_cpu_s = srv1.cpu_s - srv0.cpu_s
        res.redis_cpu_s = red1.cpu_s - red0.cpu_s
        if res.received:
            res.server_cpu_s_per_1k = 1000.0 * res.server_cpu_s / res.received
            res.redis_cpu_s_per_1k = 1000.0 * res.redis_cpu_s / res.received
        res.gen_cpu_pct = 100.0 * (gen1[0] - gen0[0]) / (gen1[1] - gen0[1])
        res.gen_saturated = res.gen_cpu_pct >= _SATURATED_PCT
        ours = res.server_cpu_pct + res.redis_cpu_pct + res.gen_cpu_pct
        res.other_cpu_pct = max(0.0, 100.0 * (busy1 - busy0) / (gen1[1] - gen0[1]) - ours)
        res.server_peak_rss = procstat.peak_rss_bytes(watch)
        res.server_rss = procstat.rss_bytes(watch)
        limit = self.spec.fail_p99_ms
        res.passed = res.lost == 0 and res.to_ignorers == 0 and res.sent > 0
        res.passed = res.passed and (limit is None or res.p99_ms <= limit)
        _log(
            f"phase {ph} rate={phase.rate:g}/s sent={sent} deliveries/s={res.deliveries_per_s:.0f} "
            f"p99={res.p99_ms:.1f}ms lost={res.lost} to_ignorers={res.to_ignorers} "
            f"server={res.server_cpu_pct:.0f}% "
            f"gen={res.gen_cpu_pct:.0f}%"
        )
        return res

    async def close_all(self) -> None:
        for conn in self.conns:
            if conn.closed.done() and not conn.closing:
                self.early_closes[str(conn.close_code)] += 1
        every = self.conns + self.stalled
        for conn in every:
            conn.close()
        pending = [c.closed for c in every if not c.closed.done()]
        if pending:
            await asyncio.wait(pending, timeout=3.0)
        for conn in every:
            if not conn.closed.done():
                conn.abort()


async def run(spec: GenSpec) -> dict[str, Any]:
    """Execute a spec and return the JSON-able result."""
    if spec.mode == "join":
        from bench.storms import JoinStorm  # imports this module: not at its top

        return await JoinStorm(spec).run()
    if spec.mode == "resume":
        from bench.resume_storm import ResumeStorm

        return await ResumeStorm(spec).run()
    gen = Generator(spec)
    watch = procstat.tree(spec.watch_pids)
    rss_before = procstat.rss_bytes(watch)
    cpu_start = own_cpu_s()
    out: dict[str, Any] = {"members": len(spec.rooms) * spec.members_per_room}
    try:
        await gen.connect_all()
        out["connected"] = len(gen.conns)
        if spec.mode == "load" and not gen.senders:
            out["phases"] = []  # nobody could join to send: reported by the runner
        elif spec.mode == "idle":
            await asyncio.sleep(spec.idle_hold_s)
            watch = procstat.tree(spec.watch_pids)
            rss_after = procstat.rss_bytes(watch)
            still_open = sum(1 for c in gen.conns if not c.closed.done())
            out.update(
                rss_before=rss_before,
                rss_after=rss_after,
                still_open=still_open,
                rss_per_conn=(rss_after - rss_before) / max(1, still_open),
                server_peak_rss=procstat.peak_rss_bytes(watch),
            )
        else:
            await gen.connect_stalled()
            if spec.ignoring > 0:
                await gen.ignore_some()
                out["ignoring"] = {
                    "fraction": spec.ignoring,
                    "ignorers": len(gen.ignoring),
                    "refused": dict(gen.ignore_errors),
                }
            phases: list[dict[str, Any]] = []
            for i, phase in enumerate(spec.phases):
                res = await gen.run_phase(i, phase)
                phases.append(asdict(res))
                if spec.fail_p99_ms is not None and not res.passed:
                    break
            out["phases"] = phases
            if gen.stalled:
                out["stalled_readers"] = await gen.stalled_outcome()
    finally:
        await gen.close_all()
    out["errors"] = dict(gen.rec.errors)
    out["connect_errors"] = dict(gen.connect_errors)
    out["early_closes"] = dict(gen.early_closes)
    out["gen_cpu_s_total"] = own_cpu_s() - cpu_start
    return out


def main() -> None:
    spec = GenSpec.from_json(Path(sys.argv[1]).read_text())
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(spec))
        result["event_loop"] = "asyncio"
    else:
        result = uvloop.run(run(spec))
        result["event_loop"] = "uvloop"
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
