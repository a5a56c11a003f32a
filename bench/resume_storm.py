"""Workload R, the resume storm: a worker restarts and all its members resume elsewhere.

Every member joins worker A (``urls[0]``) of two sharing Redis, and the rooms talk at a modest
rate (each ``say`` carries an ``id``, so its ``ack`` tells the ``seq`` it got). Then worker A
gets SIGTERM: it closes every connection with 1012 (service restart). Each member at once
reconnects to worker B (``urls[1]``) with ``join`` + ``resume`` (its token from the last
``welcome``) + ``since`` (the highest ``seq`` it has seen): protocol §7's contract is that
the ``welcome``'s ``history`` then holds everything it missed, and §12's that every acked
message reaches every member exactly once, in ``seq`` order. Talking goes on throughout, from
whichever senders are connected.

Counted by ``seq``, per member: the messages a member should have are those with a ``seq``
above the room's ``seq`` when it first joined that anyone in the room received or whose sender
got an ``ack``; a lost one is such a ``seq`` it never got, a duplicate one it got twice. A
``seq`` nobody received and nobody had acked (a say in flight when A went down) is not owed
to anyone; such gaps are counted apart. A member whose resume is refused (``bad_resume``)
joins afresh and is counted as refused: whatever it misses that way counts as lost.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack  # type: ignore[import-untyped,unused-ignore]
from websockets.exceptions import WebSocketException

from bench import procstat
from bench.generator import JoinRefused, own_cpu_s
from bench.spec import GenSpec
from bench.storms import close_every, decode, ms_summary, open_connection
from bench.wsclient import Connection


@dataclass(eq=False)
class Member:
    """One member's identity and what it has received, across its connections."""

    index: int
    room: int
    conn: Connection | None = None
    token: str | None = None
    floor: int = -1  # the room's seq at its first welcome; owed everything above it
    last: int = 0  # highest seq seen
    got: set[int] = field(default_factory=set)
    duplicates: int = 0
    out_of_order: int = 0
    waiter: asyncio.Future[None] | None = None
    down_at: float = math.nan
    back_at: float = math.nan
    drops: int = 0
    refused: int = 0  # resumes answered bad_resume
    connecting: bool = False


class ResumeStorm:
    """One run of workload R; ``run()`` returns its JSON-able figures."""

    def __init__(self, spec: GenSpec) -> None:
        self.spec = spec
        rooms = len(spec.rooms)
        self.members = [Member(i, i % rooms) for i in range(rooms * spec.members_per_room)]
        self.senders = [m for m in self.members if m.index // rooms < spec.senders_per_room]
        self.acked: list[set[int]] = [set() for _ in range(rooms)]
        self.errors: Counter[str] = Counter()
        self.connect_errors: Counter[str] = Counter()
        self.closes: Counter[str] = Counter()
        self.packer = msgpack.Packer()
        self.url = spec.urls[0]  # where a member (re)connects: A, then B once A is stopped
        self.stopping = False
        self.reconnects: set[asyncio.Task[bool]] = set()
        self.sem = asyncio.Semaphore(spec.connect_concurrency)
        self.sent = self.skipped = 0

    # receiving

    def on_frame(self, conn: Connection, data: bytes | bytearray | memoryview) -> None:
        m = self.members[conn.index]
        if conn is not m.conn:
            return  # a connection this member has already given up
        for item in decode(data, self.errors):
            t = item.get("t")
            if t == "msg":
                self._got(m, item.get("seq"))
            elif t == "ack":
                if isinstance(item.get("seq"), int):
                    self.acked[m.room].add(item["seq"])
            elif t == "welcome":
                for h in item.get("history") or ():
                    if isinstance(h, dict) and h.get("t", "msg") == "msg":
                        self._got(m, h.get("seq"))
                seq = int(item.get("seq", 0))
                if m.floor < 0:
                    m.floor = seq
                m.last = max(m.last, seq)
                m.token = item.get("resume") or m.token
                self._answer(m, None)
            elif t == "error":
                self.errors[f"error:{item.get('code')}"] += 1
                self._answer(m, JoinRefused(str(item.get("code"))))

    def _got(self, m: Member, seq: Any) -> None:
        if not isinstance(seq, int):
            return
        if seq in m.got:
            m.duplicates += 1
            return
        if seq < m.last:
            m.out_of_order += 1
        m.got.add(seq)
        m.last = max(m.last, seq)

    def _answer(self, m: Member, exc: Exception | None) -> None:
        waiter, m.waiter = m.waiter, None
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    # connecting

    async def _join(self, m: Member, conn: Connection, resume: bool) -> None:
        m.waiter = asyncio.get_running_loop().create_future()
        msg: dict[str, Any] = {"t": "join", "room": self.spec.rooms[m.room]}
        if resume and m.token is not None:
            msg |= {"resume": m.token, "since": m.last}
        conn.send(self.packer.pack(msg))
        await asyncio.wait_for(m.waiter, self.spec.join_timeout_s)

    async def _connect(self, m: Member, deadline: float) -> bool:
        """(Re)connect ``m`` to the current URL, resuming when it has a token; retry to the end."""
        m.connecting = True
        try:
            return await self._connect_loop(m, deadline)
        finally:
            m.connecting = False

    async def _connect_loop(self, m: Member, deadline: float) -> bool:
        while not self.stopping and time.monotonic() < deadline:
            conn: Connection | None = None
            try:
                async with self.sem:
                    conn = await open_connection(
                        self.url, self.spec.subprotocol, self.on_frame, m.index,
                        self.spec.join_timeout_s,
                    )  # fmt: skip
                    m.conn = conn
                    conn.closed.add_done_callback(functools.partial(self._lost, m, conn))
                    try:
                        await self._join(m, conn, resume=True)
                    except JoinRefused as exc:
                        if str(exc) != "bad_resume":
                            raise
                        m.refused += 1  # the connection stays open for a fresh join (§4)
                        await self._join(m, conn, resume=False)
                m.back_at = time.monotonic()
                return True
            except (OSError, TimeoutError, WebSocketException, JoinRefused) as exc:
                self.connect_errors[type(exc).__name__ + (f": {exc}"[:80])] += 1
                if conn is not None:
                    conn.abort()
                await asyncio.sleep(0.2)
        return False

    def _lost(self, m: Member, conn: Connection, _: object = None) -> None:
        """A member's connection ended: unless we are closing it, come back at once."""
        if self.stopping or conn is not m.conn:
            return
        self.closes[str(conn.close_code)] += 1
        if m.connecting:  # closed before its welcome: _connect tries again
            self._answer(m, ConnectionError(f"closed {conn.close_code} while joining"))
            return
        m.drops += 1
        m.down_at, m.back_at = time.monotonic(), math.nan
        task = asyncio.get_running_loop().create_task(
            self._connect(m, time.monotonic() + self.spec.storm_deadline_s)
        )
        self.reconnects.add(task)
        task.add_done_callback(self.reconnects.discard)

    # talking

    async def _talk(self, done: Callable[[], bool]) -> None:
        """Send ``talk_rate`` msgs/s over the senders until ``done()``; skip those not back."""
        rate, senders = self.spec.talk_rate, self.senders
        t0, k = time.monotonic(), 0
        while not done():
            now = time.monotonic()
            while k < int((now - t0) * rate) + 1:
                m = senders[k % len(senders)]
                k += 1
                if m.conn is None or m.conn.closed.done() or math.isnan(m.back_at):
                    self.skipped += 1
                    continue
                m.conn.send(self.packer.pack({"t": "say", "text": f"{m.index}:{k}", "id": k}))
                self.sent += 1
            await asyncio.sleep(max(0.001, t0 + k / rate - time.monotonic()))

    # the run

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        out: dict[str, Any] = {"members": len(self.members)}
        try:
            t0 = time.monotonic()
            setup_deadline = t0 + spec.join_timeout_s + len(self.members) / 20
            ok = await asyncio.gather(*(self._connect(m, setup_deadline) for m in self.members))
            out["connected"] = sum(ok)
            out["setup_s"] = time.monotonic() - t0
            _log(f"{sum(ok)}/{len(ok)} members joined worker A in {out['setup_s']:.1f}s")
            if not any(ok) or not self.senders:
                return out
            await self._talk(_after(spec.talk_before_s))
            out |= await self._storm()
            _log(f"back: {out['back']}/{out['dropped']}, last after {out['last_back_s']}s")
            await self._talk(_after(spec.talk_after_s))
            out |= await self._count()
        finally:
            self.stopping = True
            for task in list(self.reconnects):
                task.cancel()
            await close_every([m.conn for m in self.members if m.conn is not None])
        out["errors"] = dict(self.errors)
        out["connect_errors"] = dict(self.connect_errors)
        out["closes"] = dict(self.closes)
        return out

    async def _storm(self) -> dict[str, Any]:
        """SIGTERM worker A, talk on until everyone is back on B (bounded); the figures."""
        spec = self.spec
        watch = procstat.tree(spec.watch_pids)
        cpu0, red0 = procstat.cpu_by_pid(watch), procstat.cpu_by_pid(spec.redis_pids)
        gen0, busy0 = own_cpu_s(), procstat.system_busy_s()
        self.url = spec.urls[1]
        self.sem = asyncio.Semaphore(spec.storm_concurrency)  # the setup used a gentler one
        t0 = time.monotonic()
        os.kill(spec.kill_pid, signal.SIGTERM)
        watcher = asyncio.create_task(self._watch_back(t0 + spec.storm_deadline_s))
        await self._talk(watcher.done)
        await watcher
        t1 = time.monotonic()
        cpu1, red1 = procstat.cpu_by_pid(watch), procstat.cpu_by_pid(spec.redis_pids)
        gen1, busy1 = own_cpu_s(), procstat.system_busy_s()
        server_s, redis_s = procstat.cpu_spent(cpu0, cpu1), procstat.cpu_spent(red0, red1)
        moved = [m for m in self.members if m.drops]
        back = [m.back_at - t0 for m in moved if not math.isnan(m.back_at)]
        return {
            "dropped": len(moved),
            "back": len(back),
            "all_back_s": max(back) if len(back) == len(moved) and back else None,
            "last_back_s": max(back, default=None),
            **ms_summary("back", [m.back_at for m in moved], [t0] * len(moved)),
            "resume_refused": sum(m.refused for m in self.members),
            "server_cpu_s": server_s,
            "redis_cpu_s": redis_s,
            "gen_cpu_pct": 100.0 * (gen1 - gen0) / (t1 - t0),
            "other_cpu_pct": max(
                0.0, 100.0 * (busy1 - busy0 - server_s - redis_s - gen1 + gen0) / (t1 - t0)
            ),
            "storm_window_s": t1 - t0,
        }

    async def _watch_back(self, deadline: float) -> None:
        """Return once every member has dropped and come back, or at the deadline."""
        while time.monotonic() < deadline:
            if all(m.drops and not math.isnan(m.back_at) for m in self.members if m.floor >= 0):
                return
            await asyncio.sleep(0.02)

    async def _count(self) -> dict[str, Any]:
        """Drain (bounded), then count losses, duplicates and gaps by seq, per member."""
        rooms = range(len(self.spec.rooms))
        deadline = time.monotonic() + self.spec.drain_s
        while True:
            known = self._known()
            owed = [self._missing(m, known[m.room]) for m in self.members if m.floor >= 0]
            if not any(owed) or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        floors = [min((m.floor for m in self.members if m.room == r and m.floor >= 0), default=0)
                  for r in rooms]  # fmt: skip
        gaps = sum(
            len(set(range(floors[r] + 1, max(known[r], default=0) + 1)) - known[r]) for r in rooms
        )
        return {
            "sent": self.sent,
            "skipped_absent": self.skipped,
            "acked": sum(len(a) for a in self.acked),
            "lost": sum(owed),
            "members_with_losses": sum(1 for o in owed if o),
            "duplicates": sum(m.duplicates for m in self.members),
            "out_of_order": sum(m.out_of_order for m in self.members),
            "seq_gaps": gaps,
        }

    def _known(self) -> list[set[int]]:
        known = [set(a) for a in self.acked]
        for m in self.members:
            known[m.room] |= m.got
        return known

    @staticmethod
    def _missing(m: Member, known: set[int]) -> int:
        return sum(1 for s in known if s > m.floor and s not in m.got)


def _after(seconds: float) -> Callable[[], bool]:
    end = time.monotonic() + seconds
    return lambda: time.monotonic() >= end


def _log(text: str) -> None:
    print(f"[generator] R: {text}", file=sys.stderr, flush=True)
