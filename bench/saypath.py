"""Micro-benchmark of one ``say``, from its frame to its deliveries: ``python -m bench.saypath``.

Shape C's cost per delivery (bench.run) is the whole server's CPU over a loaded loopback; on
this kind of shared two-core machine it moves by a third from one run to the next, which
hides any one change to the application's path. This runs the same path without the
network: the real application (``chat.app.create_app``, its lifespan, its HTTP route to
create rooms), driven through ASGI in this process, with ``--rooms`` rooms of ``--members``
members joined over ``/ws``. Each member's connection offers the direct write
(:data:`chat.transport.WRITE_EXTENSION`), which here counts the frame and drops it. Members
speak in turn, as the bench's generator has them do: a ``say`` with no ``id`` and a short
text without digits, handed to the member's ASGI receive; the next one goes once the whole
room has been written the message.

What is measured is the application's own work per ``say``: decode, checks, screening,
commit, fan-out, encoding and the flush; not the WebSocket framing of what arrives, and no
system call of the members' sockets. It prints:

- the CPU time of this process per say;
- with ``--redis-url`` (a Redis of the run's own, never a shared one: the rooms are left in
  it), the backend is Redis as on a worker of a deployment, and it also prints what Redis
  spent per say (``INFO cpu``) and its commit script's time per call (``INFO commandstats``);
- with ``--gap-ms``, each say comes after that much idle time, as at an ordinary load (shape
  C gives each worker a say every few milliseconds): on a virtual machine a process's caches
  go cold while it waits, and that, not the instructions, is most of what a say costs there;
- with ``--callgrind``, the run goes under valgrind's callgrind twice (``--says`` and no
  says, hash seed fixed) and prints the difference in instructions per say: a figure that
  does not move with the machine's load, so that two checkouts can be compared
  (``PYTHONPATH=/path/to/checkout``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import msgpack  # type: ignore[import-untyped,unused-ignore]
from starlette.types import ASGIApp, Receive, Scope, Send

from bench.callgrind import instructions
from chat.app import create_app
from chat.settings import Settings
from chat.transport import WRITE_EXTENSION

ASGIMessage = MutableMapping[str, Any]
SETTLE_TIMEOUT = 10.0  # seconds a room's deliveries may take before the run is called failed


@dataclass
class Tally:
    """Frames written to one room's members, and a wake-up when a number of them is reached."""

    frames: int = 0
    target: int = 0
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    def count(self) -> None:
        self.frames += 1
        if self.frames >= self.target:
            self.reached.set()

    async def wait_for(self, frames: int) -> None:
        """Return once ``frames`` frames in all have been written to the room's members."""
        self.target = frames
        if self.frames >= frames:
            return
        self.reached.clear()
        async with asyncio.timeout(SETTLE_TIMEOUT):
            await self.reached.wait()


class Member:
    """One member's connection as the application sees it through ASGI."""

    def __init__(self, tally: Tally) -> None:
        self.inbox: asyncio.Queue[ASGIMessage] = asyncio.Queue()
        self.accepted = asyncio.Event()
        self.welcomed = asyncio.Event()  # its first frame: the answer to its join
        self.tally = tally
        self.task: asyncio.Task[None] | None = None

    async def receive(self) -> ASGIMessage:
        return await self.inbox.get()

    async def send(self, message: ASGIMessage) -> None:
        if message["type"] == "websocket.accept":
            self.accepted.set()
        elif message["type"] == "websocket.send":
            self._counted()

    def write(self, payload: bytes, binary: bool) -> bool:
        self._counted()
        return True

    def closing(self) -> None:
        pass

    def _counted(self) -> None:
        self.welcomed.set()
        self.tally.count()


async def _serve(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    await app(scope, receive, send)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[ASGIApp, dict[str, Any]]]:
    """The application with its lifespan started; yields it and the state its requests get."""
    app = create_app(settings)
    state: dict[str, Any] = {}
    events: asyncio.Queue[ASGIMessage] = asyncio.Queue()
    started = asyncio.Event()
    await events.put({"type": "lifespan.startup"})

    async def send(message: ASGIMessage) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()
        elif message["type"].endswith(".failed"):
            raise RuntimeError(message.get("message", "lifespan failed"))

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
    task = asyncio.create_task(_serve(app, scope, events.get, send))
    await started.wait()
    try:
        yield app, state
    finally:
        await events.put({"type": "lifespan.shutdown"})
        await task


def _scope(kind: str, path: str, state: dict[str, Any], address: str) -> dict[str, Any]:
    return {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http" if kind == "http" else "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": (address, 40000),
        "server": ("127.0.0.1", 8000),
        "state": dict(state),
    }


async def create_room(app: ASGIApp, state: dict[str, Any]) -> str:
    """A room, created by ``POST /api/rooms`` as an operator's tool would."""
    scope = _scope("http", "/api/rooms", state, "127.0.0.1")
    scope["method"] = "POST"
    scope["headers"].append((b"content-type", b"application/json"))
    body = json.dumps({"title": "bench"}).encode()
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[ASGIMessage] = []

    async def receive() -> ASGIMessage:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: ASGIMessage) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = sent[0]["status"]
    answer = b"".join(m.get("body", b"") for m in sent[1:])
    if status != 201:
        raise RuntimeError(f"POST /api/rooms answered {status}: {answer[:200]!r}")
    room: str = json.loads(answer)["room"]
    return room


async def join(
    app: ASGIApp, state: dict[str, Any], room: str, tally: Tally, address: str
) -> Member:
    """A member of ``room``, once its welcome has been written."""
    member = Member(tally)
    scope = _scope("websocket", "/ws", state, address)
    scope["subprotocols"] = ["hearth.v1.msgpack"]
    scope["extensions"] = {WRITE_EXTENSION: {"write": member.write, "closing": member.closing}}
    await member.inbox.put({"type": "websocket.connect"})
    member.task = asyncio.create_task(_serve(app, scope, member.receive, member.send))
    await member.accepted.wait()
    await member.inbox.put(
        {"type": "websocket.receive", "bytes": _pack({"t": "join", "room": room})}
    )
    async with asyncio.timeout(SETTLE_TIMEOUT):
        await member.welcomed.wait()
    return member


def _pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj)
    return data


def _word(value: int) -> str:
    """``value`` in letters: a text with seven digits in a row may be screened as a phone
    number (protocol §14) and refused, as in the bench (bench.generator.stamp)."""
    return "".join("abcdefghij"[int(d)] for d in str(value))


class RedisFigures:
    """Redis's own CPU and its commit script's time, read from ``INFO`` before and after."""

    def __init__(self, url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url)
        self._start = self._read()

    def _read(self) -> tuple[float, int, int]:
        cpu = self._client.info("cpu")
        script = self._client.info("commandstats").get("cmdstat_evalsha", {})
        used = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
        return used, int(script.get("calls", 0)), int(script.get("usec", 0))

    def since(self, says: int) -> str:
        cpu, calls, usec = self._read()
        cpu -= self._start[0]
        calls -= self._start[1]
        usec -= self._start[2]
        self._client.close()
        per_call = usec / calls if calls else 0.0
        return (
            f"redis: {cpu / says * 1e6:.1f} µs CPU per say; commit script "
            f"{calls / says:.2f} calls per say, {per_call:.1f} µs per call"
        )


async def measure(args: argparse.Namespace) -> float:
    """CPU seconds of this process per ``say`` over ``args.says`` says, after every member has
    spoken once; with a Redis, prints what Redis spent."""
    settings = Settings(
        rate=1000.0,
        burst=1000,
        max_per_address=100_000,
        room_create_rate=100_000,
        redis_url=args.redis_url,
    )
    async with running(settings) as (app, state):
        tallies = [Tally() for _ in range(args.rooms)]
        rooms = [await create_room(app, state) for _ in range(args.rooms)]
        members = [
            [await join(app, state, room, tally, f"127.0.{r}.{i + 1}") for i in range(args.members)]
            for r, (room, tally) in enumerate(zip(rooms, tallies, strict=True))
        ]
        await asyncio.sleep(0.2)  # the arrivals' announcements go out
        texts = [f"this is message number {_word(i)} of the saypath run" for i in range(1024)]

        async def speak(count: int) -> None:
            for i in range(count):
                r = i % args.rooms
                speaker = members[r][(i // args.rooms) % args.members]
                frame = _pack({"t": "say", "text": texts[i % len(texts)]})
                target = tallies[r].frames + args.members
                speaker.inbox.put_nowait({"type": "websocket.receive", "bytes": frame})
                await tallies[r].wait_for(target)
                if args.gap_ms:
                    await asyncio.sleep(args.gap_ms / 1000)

        await speak(args.rooms * args.members)
        figures = RedisFigures(settings.redis_url) if settings.redis_url else None
        started = time.process_time()
        await speak(args.says)
        elapsed = time.process_time() - started
        if figures is not None and args.says:
            print(figures.since(args.says))
        for member in (m for room in members for m in room):
            member.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.gather(*(m.task for room in members for m in room if m.task is not None))
    says: int = args.says
    return elapsed / max(says, 1)


def _callgrind(args: argparse.Namespace) -> None:
    totals = []
    for says in (args.says, 0):
        command = [sys.executable, "-m", "bench.saypath", "--rooms", str(args.rooms)]
        command += ["--members", str(args.members), "--says", str(says)]
        if args.redis_url:
            command += ["--redis-url", args.redis_url]
        totals.append(instructions(command))
    per_say = (totals[0] - totals[1]) / args.says
    print(f"saypath: {per_say:,.0f} instructions per say ({_label(args)})")


def _label(args: argparse.Namespace) -> str:
    backend = "Redis" if args.redis_url else "embedded"
    gap = f", {args.gap_ms:g} ms between says" if args.gap_ms else ""
    return f"{args.rooms} rooms of {args.members}, {backend}{gap}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.saypath", description=__doc__)
    parser.add_argument("--rooms", type=int, default=5)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--says", type=int, default=2000)
    parser.add_argument("--redis-url", help="a Redis of the run's own (default: embedded)")
    parser.add_argument("--gap-ms", type=float, default=0.0, help="idle time before each say")
    parser.add_argument("--callgrind", action="store_true")
    args = parser.parse_args()
    if args.callgrind:
        _callgrind(args)
        return
    try:
        import uvloop
    except ImportError:
        per_say = asyncio.run(measure(args))
    else:
        per_say = float(uvloop.run(measure(args)))
    print(f"saypath: {per_say * 1e6:.1f} µs CPU per say ({_label(args)})")


if __name__ == "__main__":
    main()
