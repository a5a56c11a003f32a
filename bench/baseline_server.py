"""The baseline: a minimal room-broadcast server written directly on ``websockets``.

It speaks just enough of Hearth's wire protocol for the same generator to drive it:
``/ws`` with subprotocol ``hearth.v1.msgpack``, ``join`` answered by ``welcome``, and
``say`` relayed to the whole room (sender included) as a ``msg`` encoded once and
written with ``websockets.broadcast()``. There is no application logic: no names,
history, rate limits or moderation. Rooms exist as soon as someone joins one.

With ``--redis-url`` it is one of two such processes relaying through Redis pub/sub:
every ``say`` is published on the room's channel, and one reader per process
broadcasts what arrives to that process's members of the room.

Run: ``python -m bench.baseline_server --port P [--redis-url redis://127.0.0.1:R/0]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

import msgpack  # type: ignore[import-untyped,unused-ignore]
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

_CHANNEL = "benchroom:"


def _pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj)
    return data


class LocalRelay:
    """Single process: publishing is broadcasting to the room's members."""

    def __init__(self) -> None:
        self.rooms: dict[str, set[ServerConnection]] = {}

    async def start(self) -> None:
        pass

    async def add(self, room: str, ws: ServerConnection) -> None:
        self.rooms.setdefault(room, set()).add(ws)

    async def remove(self, room: str, ws: ServerConnection) -> None:
        members = self.rooms.get(room)
        if members is not None:
            members.discard(ws)
            if not members:
                del self.rooms[room]

    async def publish(self, room: str, data: bytes) -> None:
        broadcast(self.rooms.get(room, ()), data)


class RedisRelay(LocalRelay):
    """Many processes: one Redis channel per room, one pub/sub reader per process."""

    def __init__(self, url: str) -> None:
        super().__init__()
        # Imported here so the single-process baseline does not need redis installed.
        import redis.asyncio as aioredis

        self.redis = aioredis.from_url(url)
        self.pubsub = self.redis.pubsub()
        self.reader: asyncio.Task[None] | None = None
        self.writer: asyncio.Task[None] | None = None
        self.outbox: list[tuple[str, bytes]] = []
        self.wakeup = asyncio.Event()

    async def start(self) -> None:
        # redis-py's listen() returns as soon as nothing is subscribed, so hold one
        # subscription for the process's lifetime.
        await self.pubsub.subscribe(_CHANNEL + "-")
        self.reader = asyncio.create_task(self._read())
        self.writer = asyncio.create_task(self._write())

    async def _read(self) -> None:
        async for item in self.pubsub.listen():
            if item["type"] == "message":
                room = item["channel"][len(_CHANNEL) :].decode()
                broadcast(self.rooms.get(room, ()), item["data"])

    async def add(self, room: str, ws: ServerConnection) -> None:
        members = self.rooms.setdefault(room, set())
        first = not members
        members.add(ws)
        if first:
            # Subscribe before the member is welcomed so nothing said after it is missed.
            await self.pubsub.subscribe(_CHANNEL + room)

    async def remove(self, room: str, ws: ServerConnection) -> None:
        await super().remove(room, ws)
        if room not in self.rooms:
            await self.pubsub.unsubscribe(_CHANNEL + room)

    async def publish(self, room: str, data: bytes) -> None:
        # One writer pipelines whatever accumulated: a publish per handler would need a
        # pooled connection each, and redis-py's pool refuses past its limit under load.
        self.outbox.append((_CHANNEL + room, data))
        self.wakeup.set()

    async def _write(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            batch, self.outbox = self.outbox, []
            async with self.redis.pipeline(transaction=False) as pipe:
                for channel, data in batch:
                    pipe.publish(channel, data)
                await pipe.execute()


class Baseline:
    """Connection handler and the little state it needs."""

    def __init__(self, relay: LocalRelay) -> None:
        self.relay = relay
        self.ids = itertools.count(1)
        self.seqs: dict[str, int] = {}

    async def handle(self, ws: ServerConnection) -> None:
        try:
            join = msgpack.unpackb(await ws.recv())
            room = str(join["room"])
        except (ConnectionClosed, ValueError, KeyError, TypeError):
            return
        pid = f"b{next(self.ids)}"
        name = f"Bench {pid}"
        await self.relay.add(room, ws)
        try:
            await ws.send(self._welcome(room, pid, name))
            async for raw in ws:
                msg = msgpack.unpackb(raw)
                if isinstance(msg, dict) and msg.get("t") == "say":
                    await self.relay.publish(room, self._msg(room, pid, name, msg.get("text", "")))
        except ConnectionClosed:
            pass
        finally:
            await self.relay.remove(room, ws)

    def _welcome(self, room: str, pid: str, name: str) -> bytes:
        me = {"pid": pid, "name": name, "role": "participant"}
        return _pack({"t": "welcome", "room": {"id": room}, "you": me, "members": [me], "seq": 0})

    def _msg(self, room: str, pid: str, name: str, text: Any) -> bytes:
        seq = self.seqs.get(room, 0) + 1
        self.seqs[room] = seq
        return _pack(
            {
                "t": "msg",
                "mid": f"{pid}.{seq}",
                "seq": seq,
                "pid": pid,
                "name": name,
                "role": "participant",
                "text": text,
                "ts": int(time.time() * 1000),
            }
        )


def _http(connection: ServerConnection, request: Request) -> Response | None:
    if request.path in ("/healthz", "/readyz"):
        return connection.respond(HTTPStatus.OK, "ok\n")
    if request.path != "/ws":
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
    return None


async def serve_forever(host: str, port: int, redis_url: str | None) -> None:
    relay: LocalRelay = RedisRelay(redis_url) if redis_url else LocalRelay()
    await relay.start()
    app = Baseline(relay)
    protocols: Iterable[Subprotocol] = [Subprotocol("hearth.v1.msgpack")]
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
    # Frame limit as Hearth's default (protocol §9); compression is not offered by the
    # generator, so the library default does not matter. The listen backlog is uvicorn's
    # default (asyncio's is 100): in the join storm (J) a thousand handshakes arrive at once,
    # and a full accept queue would cost the baseline SYN retransmits Hearth does not pay.
    async with serve(
        app.handle,
        host,
        port,
        subprotocols=list(protocols),
        process_request=_http,
        max_size=16384,
        backlog=2048,
    ):
        with contextlib.suppress(asyncio.CancelledError):
            await stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve_forever(args.host, args.port, args.redis_url))
    else:
        # uvicorn picks uvloop when it is installed (loop="auto"); do the same so the
        # baseline and Hearth run on the same event loop.
        uvloop.run(serve_forever(args.host, args.port, args.redis_url))


if __name__ == "__main__":
    main()
