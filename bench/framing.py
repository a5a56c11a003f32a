"""Micro-benchmark of one fan-out write: ``python -m bench.framing [options]``.

It measures what :mod:`chat.transport` costs per delivered frame, apart from everything
else a room does: ``--members`` real :class:`~chat.transport.HearthWebSocketProtocol`
connections, opened by a real handshake on uvloop (what ``hearth serve`` runs), each get
the same ``--payload``-byte message ``--rounds`` times, and the timer runs only around the
loop over the members. Variants:

``write_now``
    the ``hearth.write`` extension of whatever ``chat`` is on ``sys.path`` (so the same
    script measures main and a branch: ``PYTHONPATH=/path/to/checkout``);
``hand-built``
    for reference, the header-plus-payload write that ``chat.transport`` did before it
    went through websockets' ``ServerProtocol`` (a copy, kept here only to compare);
``asgi-send``
    uvicorn's ASGI ``send``, one coroutine per member, which is what the session falls
    back to when the direct write is refused.

``--payloads`` says what the members are given: ``same``, one bytes object for all (a
room's message when each member got only that one in a turn); ``equal``, equal bytes in a
distinct object per member (when each got several and has its own batch of them); or
``distinct``, other bytes for each member (batches that differ: no connection can reuse the
frame another connection's protocol made, the worst case of ``write_now``).

``--transport null`` writes into a transport that discards the bytes (framing and
bookkeeping only); ``tcp`` writes to real loopback sockets, system call included, and
drains the clients' side between rounds outside the timer.

``--callgrind`` runs the chosen variant twice under valgrind's callgrind (``--rounds`` and
zero rounds, hash seed fixed) and prints the difference in instructions per frame: a
figure that does not move with the machine's load, unlike frames/s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import os
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
import uvloop
from uvicorn.server import ServerState
from websockets.protocol import State

from bench.callgrind import instructions
from chat.transport import PROTOCOL_PATH, HearthWebSocketProtocol

VARIANTS = ("write_now", "hand-built", "asgi-send")


class _App:
    """Accepts, then waits for the end (the connections only ever receive); ``all_open`` is
    set once ``expected`` connections were accepted."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.all_open = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        self.expected -= 1
        if self.expected == 0:
            self.all_open.set()
        while (await receive())["type"] != "websocket.disconnect":
            pass


def _handshake(host: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


class NullTransport(asyncio.Transport):
    """A transport that takes every write and sends nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def _config(app: _App) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        ws=PROTOCOL_PATH,
        ws_per_message_deflate=False,  # as hearth serve
        ws_ping_interval=None,
        log_config=None,
        lifespan="off",
    )
    config.load()
    return config


Opened = tuple[list[HearthWebSocketProtocol], Callable[[], None], Callable[[], None]]


async def _open_null(members: int) -> Opened:
    app = _App(members)
    config, state = _config(app), ServerState()
    protocols = []
    for _ in range(members):
        protocol = HearthWebSocketProtocol(config=config, server_state=state, app_state={})
        protocol.connection_made(NullTransport())
        protocol.data_received(_handshake("bench"))
        protocols.append(protocol)
    await asyncio.wait_for(app.all_open.wait(), 60)

    def close() -> None:
        for protocol in protocols:
            protocol.connection_lost(None)

    return protocols, lambda: None, close


async def _open_tcp(members: int) -> Opened:
    app = _App(members)
    config, state = _config(app), ServerState()
    protocols: list[HearthWebSocketProtocol] = []

    def factory() -> HearthWebSocketProtocol:
        protocol = HearthWebSocketProtocol(config=config, server_state=state, app_state={})
        protocols.append(protocol)
        return protocol

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0, backlog=members)
    port = server.sockets[0].getsockname()[1]
    clients = []
    for _ in range(members):
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, _handshake(f"127.0.0.1:{port}"))
        clients.append(sock)
    await asyncio.wait_for(app.all_open.wait(), 60)

    def drain() -> None:
        for sock in clients:
            with contextlib.suppress(BlockingIOError):
                while sock.recv(1 << 16):
                    pass

    def close() -> None:
        server.close()
        for sock in clients:
            sock.close()

    await asyncio.sleep(0.05)
    drain()  # the handshake responses
    return protocols, drain, close


def _hand_built(protocol: HearthWebSocketProtocol, payload: bytes) -> None:
    """The former chat.transport write: checks, a header made here, the payload."""
    if (
        protocol.close_sent
        or protocol.disconnected
        or not protocol.writable.is_set()
        or protocol.conn.state is not State.OPEN
    ):
        raise RuntimeError("not writable")
    length = len(payload)
    if length < 126:
        head = bytes((0x82, length))
    elif length < 65536:
        head = struct.pack("!BBH", 0x82, 126, length)
    else:
        head = struct.pack("!BBQ", 0x82, 127, length)
    protocol.transport.write(head + payload)


async def _measure(args: argparse.Namespace) -> float:
    variant, rounds = args.variant, args.rounds
    opener: Callable[[int], Awaitable[Opened]] = (
        _open_tcp if args.transport == "tcp" else _open_null
    )
    protocols, drain, close = await opener(args.members)
    payload = os.urandom(args.payload)
    make: Callable[[], bytes] = {
        "same": lambda: payload,
        "equal": lambda: bytes(bytearray(payload)),
        "distinct": lambda: os.urandom(args.payload),
    }[args.payloads]
    payloads = [make() for _ in protocols]
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)  # as chat.app.tune_garbage_collector
    elapsed = 0.0
    if variant == "write_now":
        writes = [p.write_now for p in protocols]  # what the extension hands the app
        for _ in range(rounds):
            start = time.perf_counter()
            for write, data in zip(writes, payloads, strict=True):
                if not write(data, True):
                    raise RuntimeError("the direct write was refused")
            elapsed += time.perf_counter() - start
            drain()
    elif variant == "hand-built":
        for _ in range(rounds):
            start = time.perf_counter()
            for protocol, data in zip(protocols, payloads, strict=True):
                _hand_built(protocol, data)
            elapsed += time.perf_counter() - start
            drain()
    else:
        messages = [{"type": "websocket.send", "bytes": data} for data in payloads]
        for _ in range(rounds):
            start = time.perf_counter()
            for protocol, message in zip(protocols, messages, strict=True):
                await protocol.send(message)
            elapsed += time.perf_counter() - start
            drain()
    close()
    tasks = protocols[0].tasks if protocols else set()  # uvicorn's running applications
    for _ in range(500):  # let them see the disconnect and return
        if not tasks:
            break
        await asyncio.sleep(0.01)
    return elapsed


def _callgrind(args: argparse.Namespace) -> None:
    """Instructions per frame: (Ir with --rounds) - (Ir with 0 rounds), per frame."""
    totals = []
    for rounds in (args.rounds, 0):
        command = [
            sys.executable, "-m", "bench.framing", "--variant", args.variant,
            "--members", str(args.members), "--payload", str(args.payload),
            "--rounds", str(rounds), "--transport", args.transport, "--repeat", "1",
            "--payloads", args.payloads,
        ]  # fmt: skip
        totals.append(instructions(command))
    frames = args.rounds * args.members
    per_frame = (totals[0] - totals[1]) / frames
    print(f"{_label(args)}: {per_frame:,.0f} instructions per frame")


def _label(args: argparse.Namespace) -> str:
    return (
        f"{args.variant} ({args.transport}, {args.members} members x {args.payload} B, "
        f"{args.payloads} payloads)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.framing", description=__doc__)
    parser.add_argument("--variant", choices=VARIANTS, default="write_now")
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--payload", type=int, default=200, help="bytes per message")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--transport", choices=("null", "tcp"), default="null")
    parser.add_argument("--payloads", choices=("same", "equal", "distinct"), default="same")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best is reported")
    parser.add_argument("--callgrind", action="store_true")
    args = parser.parse_args()
    if args.callgrind:
        _callgrind(args)
        return
    best = float("inf")
    for _ in range(args.repeat):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            elapsed = runner.run(_measure(args))
        best = min(best, elapsed)
    if args.rounds:
        frames = args.members * args.rounds
        print(f"{_label(args)}: {frames / best:,.0f} frames/s, {best / frames * 1e9:,.0f} ns/frame")


if __name__ == "__main__":
    main()
