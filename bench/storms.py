"""Workload J, the join storm: every member of a room joins at once (issue 13).

What an operator meets when a meeting starts, or when a worker restarts and its members come
back fresh: many handshakes and joins queued together. The storm opens up to
``storm_concurrency`` connections at a time (by default all 1,000 at once), each sending
``join`` as soon as its handshake completes, and measures, from the moment the first
connection is opened:

- the time until the last ``welcome`` (the headline figure),
- per join, the time from opening its TCP connection to its ``welcome`` (p50/p99: a member
  queued behind the others waits for them, which is what a person at the door sees), and the
  part of it after the ``join`` was sent,
- server and Redis CPU seconds over the storm,
- for Hearth, then, the time until every member has heard of every other (its ``welcome``
  lists those already in; ``joined`` announces the later ones), and the CPU used until then:
  the presence announcements are the storm's quadratic part, sent after the welcomes.

The baseline has no join protocol: its "join" is its hello (``join`` -> ``welcome``, nothing
else), so the ratio shows how much Hearth's joining costs over a bare room subscription.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from typing import Any

import msgpack  # type: ignore[import-untyped,unused-ignore]
from websockets.exceptions import WebSocketException

from bench import procstat
from bench.generator import JoinRefused, own_cpu_s, percentile
from bench.spec import GenSpec
from bench.wsclient import Connection, OnMessage


def host_port(url: str) -> tuple[str, int]:
    host, port = url.split("//")[1].split("/")[0].split(":")
    return host, int(port)


async def open_connection(
    url: str, subprotocol: str, on_message: OnMessage, index: int, timeout: float
) -> Connection:
    """Open one client connection and complete its WebSocket handshake (bounded)."""
    loop = asyncio.get_running_loop()
    host, port = host_port(url)
    _, conn = await asyncio.wait_for(
        loop.create_connection(lambda: Connection(url, subprotocol, on_message, index), host, port),
        timeout,
    )
    try:
        await asyncio.wait_for(conn.opened, timeout)
    except BaseException:
        conn.abort()
        raise
    return conn


async def close_every(conns: list[Connection]) -> None:
    """Close with 1000, wait up to 3 s for the handshakes, abort what is left."""
    for conn in conns:
        conn.close()
    pending = [c.closed for c in conns if not c.closed.done()]
    if pending:
        await asyncio.wait(pending, timeout=3.0)
    for conn in conns:
        if not conn.closed.done():
            conn.abort()


def decode(data: bytes | bytearray | memoryview, errors: Counter[str]) -> list[dict[str, Any]]:
    """The messages of one server frame: one map, or an array of maps (protocol §2)."""
    try:
        obj = msgpack.unpackb(data)
    except (ValueError, msgpack.UnpackException):
        errors["undecodable_frame"] += 1
        return []
    items = obj if isinstance(obj, list) else [obj]
    return [m for m in items if isinstance(m, dict)]


def first_type(data: bytes | bytearray | memoryview) -> Any:
    """The ``t`` of a frame's first message, read without decoding the rest (a welcome lists
    the whole room: decoding each as it came was most of this process's time in the storm)."""
    unpacker = msgpack.Unpacker()
    unpacker.feed(data)
    try:
        if data[0] in (0xDC, 0xDD) or data[0] & 0xF0 == 0x90:  # an array: its first message
            unpacker.read_array_header()
        for _ in range(unpacker.read_map_header()):
            if unpacker.unpack() == "t":
                return unpacker.unpack()
            unpacker.skip()
    except (ValueError, msgpack.UnpackException):
        return None
    return None


def ms_summary(prefix: str, ends: list[float], starts: list[float]) -> dict[str, float]:
    """p50, p99 and max of ``end - start`` (seconds; NaN: none), as ``<prefix>_p50_ms`` etc."""
    spans = (e - s for e, s in zip(ends, starts, strict=True))
    ns = sorted(int(d * 1e9) for d in spans if not math.isnan(d))
    return {
        f"{prefix}_p50_ms": percentile(ns, 50),
        f"{prefix}_p99_ms": percentile(ns, 99),
        f"{prefix}_max_ms": ns[-1] / 1e6 if ns else float("nan"),
    }


class JoinFailed(RuntimeError):
    """No welcome: the connection closed first (its code is said) or the join timed out."""


class JoinStorm:
    """One run of workload J; ``run()`` returns its JSON-able figures."""

    def __init__(self, spec: GenSpec) -> None:
        self.spec = spec
        n = len(spec.rooms) * spec.members_per_room
        self.n = n
        self.room_of = [i % len(spec.rooms) for i in range(n)]
        nan = float("nan")
        self.started, self.opened = [nan] * n, [nan] * n
        self.join_sent, self.welcomed = [nan] * n, [nan] * n
        self.conns: list[Connection] = []
        self.waiters: dict[int, asyncio.Future[None]] = {}
        self.errors: Counter[str] = Counter()
        self.connect_errors: Counter[str] = Counter()
        self.packer = msgpack.Packer()
        # Who has heard of whom: pids numbered as first seen, one bitmap per member.
        self.pid_no: dict[str, int] = {}
        self.heard = [bytearray(n) for _ in range(n)]
        self.heard_count = [0] * n
        # Set once the joins are over: how many each member must hear of, and who has.
        self.must_hear: list[int] | None = None
        self.complete = 0
        self.all_heard = asyncio.Event()
        self.all_heard_at = float("nan")  # arrival of the frame that completed the last member
        # Who-heard-whom is worked out after the joins, from what arrived meanwhile: (arrival
        # time, member, a frame that came after its welcome, or its welcome's member list).
        # Decoding and counting as frames came made this process the storm's bottleneck
        # (py-spy: three quarters of its time, half a million listed or announced members),
        # so that a welcome waited behind other members' announcements to be seen at all.
        self.later: list[tuple[float, int, bytes]] = []

    def on_frame(self, conn: Connection, data: bytes | bytearray | memoryview) -> None:
        i = conn.index
        now = time.monotonic()
        if i in self.waiters and first_type(data) == "welcome":
            self.welcomed[i] = now
            waiter = self.waiters.pop(i)
            if not waiter.done():
                waiter.set_result(None)
        elif i in self.waiters:  # not welcomed yet: an error, say
            for m in decode(data, self.errors):
                self._presence(i, m, now)
            return
        self.later.append((now, i, bytes(data)))  # the welcome's list, presence: counted later

    def _presence(self, i: int, m: dict[str, Any], now: float) -> None:
        t = m.get("t")
        if t == "joined":
            self._heard(i, m.get("member"), now)
        elif t == "welcome":
            for member in m.get("members") or ():
                self._heard(i, member, now)
        elif t == "error":
            self.errors[f"error:{m.get('code')}"] += 1
            waiter = self.waiters.pop(i, None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(JoinRefused(str(m.get("code"))))

    def _catch_up(self) -> None:
        """Count what arrived since the last call, as of when it arrived."""
        later, self.later = self.later, []
        for now, i, frame in later:
            for m in decode(frame, self.errors):
                self._presence(i, m, now)

    def _heard(self, i: int, member: Any, now: float) -> None:
        if not isinstance(member, dict):
            return
        j = self.pid_no.setdefault(str(member.get("pid")), len(self.pid_no))
        if j < self.n and not self.heard[i][j]:
            self.heard[i][j] = 1
            self.heard_count[i] += 1
            if self.must_hear is not None and self.heard_count[i] == self.must_hear[i]:
                self._one_more_complete(now)

    def _one_more_complete(self, now: float) -> None:
        self.complete += 1
        if self.complete >= len(self.conns) and not self.all_heard.is_set():
            self.all_heard_at = now
            self.all_heard.set()

    async def _one(self, i: int, sem: asyncio.Semaphore) -> None:
        spec = self.spec
        url = spec.urls[i % len(spec.urls)]  # alternate between workers, as everywhere
        loop = asyncio.get_running_loop()
        async with sem:
            self.started[i] = time.monotonic()
            conn: Connection | None = None
            try:
                conn = await open_connection(
                    url, spec.subprotocol, self.on_frame, i, spec.join_timeout_s
                )
                self.opened[i] = time.monotonic()
                waiter = loop.create_future()
                self.waiters[i] = waiter
                room = spec.rooms[self.room_of[i]]
                self.join_sent[i] = time.monotonic()
                conn.send(self.packer.pack({"t": "join", "room": room}))
                await asyncio.wait(
                    [waiter, conn.closed],
                    timeout=spec.join_timeout_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not waiter.done():
                    why = f"closed {conn.close_code}" if conn.closed.done() else "no welcome"
                    raise JoinFailed(why)
                waiter.result()
                self.conns.append(conn)
            except (OSError, TimeoutError, WebSocketException, JoinRefused, JoinFailed) as exc:
                stage = "handshake" if math.isnan(self.opened[i]) else "join"
                self.connect_errors[f"{stage}: {type(exc).__name__}: {exc}"[:100]] += 1
                self.welcomed[i] = float("nan")
                if conn is not None:
                    conn.abort()

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        redis = spec.redis_pids
        watch = procstat.tree(spec.watch_pids)
        rss0 = procstat.rss_bytes(watch)
        cpu0, red0 = procstat.cpu_by_pid(watch), procstat.cpu_by_pid(redis)
        gen0, busy0, t0 = own_cpu_s(), procstat.system_busy_s(), time.monotonic()
        sem = asyncio.Semaphore(spec.storm_concurrency)
        out: dict[str, Any] = {"members": self.n}
        try:
            await asyncio.gather(*(self._one(i, sem) for i in range(self.n)))
            t1 = time.monotonic()
            cpu1, red1, gen1 = procstat.cpu_by_pid(watch), procstat.cpu_by_pid(redis), own_cpu_s()
            busy1 = procstat.system_busy_s()
            last = max((w for w in self.welcomed if not math.isnan(w)), default=float("nan"))
            out |= {
                "connected": len(self.conns),
                "storm_s": last - t0,
                "server_cpu_s": procstat.cpu_spent(cpu0, cpu1),
                "redis_cpu_s": procstat.cpu_spent(red0, red1),
                "gen_cpu_pct": 100.0 * (gen1 - gen0) / (t1 - t0),
                "storm_concurrency": spec.storm_concurrency,
            }
            out["server_cpu_pct"] = 100.0 * out["server_cpu_s"] / (t1 - t0)
            ours = out["server_cpu_s"] + out["redis_cpu_s"] + gen1 - gen0
            out["other_cpu_pct"] = max(0.0, 100.0 * (busy1 - busy0 - ours) / (t1 - t0))
            out |= ms_summary("join", self.welcomed, self.started)
            out |= ms_summary("hello", self.welcomed, self.join_sent)
            out |= ms_summary("handshake", self.opened, self.started)
            if spec.expect_presence:
                out |= await self._announcements(t0, cpu0, red0, watch)
            out["server_peak_rss"] = procstat.peak_rss_bytes(watch)
            out["rss_per_member"] = (procstat.rss_bytes(watch) - rss0) / max(1, len(self.conns))
        finally:
            closed = Counter(f"closed {c.close_code}" for c in self.conns if c.closed.done())
            await close_every(self.conns)
        out["early_closes"] = dict(closed)  # members closed by the server once welcomed
        out["errors"] = dict(self.errors)
        out["connect_errors"] = dict(self.connect_errors)
        return out

    def _catch_up_until_all(self, must_hear: list[int]) -> None:
        """Replay what arrived during the joins with the counts known: a member is complete
        at the arrival of the frame that brought its last missing member."""
        self.must_hear = must_hear
        self._catch_up()

    async def _announcements(
        self, t0: float, cpu0: dict[int, float], red0: dict[int, float], watch: list[int]
    ) -> dict[str, Any]:
        """Wait (bounded) until every member has heard of every other member of its room."""
        joined = Counter(self.room_of[c.index] for c in self.conns)
        must_hear = [joined[r] for r in self.room_of]
        # Count what came before the joins were over as of its arrival: the member who
        # completed first is the one that reached its count first.
        self._catch_up_until_all(must_hear)
        if not self.conns:
            self.all_heard.set()
        deadline = time.monotonic() + self.spec.storm_deadline_s
        while not self.all_heard.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            self._catch_up()
        cpu, red = procstat.cpu_by_pid(watch), procstat.cpu_by_pid(self.spec.redis_pids)
        return {
            "announced_s": self.all_heard_at - t0 if self.all_heard.is_set() else None,
            "announced_members": self.complete,
            "server_cpu_s_announced": procstat.cpu_spent(cpu0, cpu),
            "redis_cpu_s_announced": procstat.cpu_spent(red0, red),
        }
