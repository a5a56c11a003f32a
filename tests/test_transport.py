"""chat.transport: the direct write, the close timeout, the uvicorn surface it relies on, and
the server without it (plain ASGI send throughout)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import inspect
import json
import re
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.uri import parse_uri

from chat.transport import (
    CLOSE_TIMEOUT_STATE,
    PROTOCOL_PATH,
    WRITE_EXTENSION,
    Flag,
    HearthWebSocketProtocol,
    Inbox,
)
from tests import test_talking as talking
from tests.client import MSGPACK
from tests.conftest import Server, start_uvicorn
from tests.ports import free_port
from tests.timing import MS, WAIT, wait_until

PLAIN = "websockets-sansio"  # uvicorn's own protocol: no direct write offered
CLOSE_TIMEOUT = 0.3  # the servers' setting here: what is tested, so not scaled (tests/timing.py)
SLACK = 1000 * MS  # how late after its due time an abort may still be seen

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(app: App, **options: Any) -> AsyncIterator[int]:
    """Run ``app`` on our protocol and yield its port; its lifespan state sets the close
    timeout to :data:`CLOSE_TIMEOUT`, as chat.app's does to the setting."""

    async def with_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        scope["state"][CLOSE_TIMEOUT_STATE] = CLOSE_TIMEOUT
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})

    port = free_port()
    config = uvicorn.Config(
        with_lifespan, port=port, ws=PROTOCOL_PATH, log_config=None, lifespan="on", **options
    )
    server = uvicorn.Server(config)
    task = await start_uvicorn(server)
    try:
        yield port
    finally:
        server.should_exit = True
        async with asyncio.timeout(WAIT * 3):
            await task


def stalled_socket(port: int) -> socket.socket:
    """A connected socket with a 4 KiB receive buffer, for a client that will stop reading."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


class SilentPeer:
    """A WebSocket client that reads nothing after the handshake: websockets' sans-I/O
    ``ClientProtocol`` on a socket with a 4 KiB receive buffer, so all the server can write
    to it is what the kernel buffers take, and nothing it sends is ever answered."""

    def __init__(self, port: int, path: str = "/", header: tuple[str, str] | None = None) -> None:
        self.sock = stalled_socket(port)
        self.sock.setblocking(False)
        self.protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"))
        self.header = header

    async def open(self) -> None:
        """The opening handshake; whatever the server sends after it stays unread."""
        loop = asyncio.get_running_loop()
        request = self.protocol.connect()
        if self.header is not None:
            request.headers[self.header[0]] = self.header[1]
        self.protocol.send_request(request)
        del request  # the client keeps no copy: what stays is the server's
        await self.flush()
        async with asyncio.timeout(WAIT):
            while not any(isinstance(e, Response) for e in self.protocol.events_received()):
                self.protocol.receive_data(await loop.sock_recv(self.sock, 4096))

    async def send_close(self) -> None:
        self.protocol.send_close(1000)
        await self.flush()

    async def ended(self) -> str:
        """Read to the end: ``"reset"`` if the server aborted the TCP connection, ``"eof"``
        if it closed it in order."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(WAIT):
                while await loop.sock_recv(self.sock, 65536):
                    pass
        except ConnectionResetError:
            return "reset"
        finally:
            self.sock.close()
        return "eof"

    async def flush(self) -> None:
        loop = asyncio.get_running_loop()
        for data in self.protocol.data_to_send():
            await loop.sock_sendall(self.sock, data)

    async def next_data(self) -> bytes:
        """Read (while it still reads) until the next data frame; its payload."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(WAIT):
            while True:
                for event in self.protocol.events_received():
                    if isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY):
                        return bytes(event.data)
                self.protocol.receive_data(await loop.sock_recv(self.sock, 4096))


# --- the direct write ------------------------------------------------------------------------


async def test_direct_write_sends_frames_until_the_close() -> None:
    """``write_now`` sends binary and text frames at once, and refuses after the close."""
    results: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        before = WRITE_EXTENSION in scope["extensions"]
        await send({"type": "websocket.accept"})
        write_now = scope["extensions"][WRITE_EXTENSION]["write"]
        text = "text ✓".encode()
        results.extend([before, write_now(b"\x01binary", True), write_now(text, False)])
        await send({"type": "websocket.close", "code": 1000})
        results.append(write_now(b"after the close", True))
        while (await receive())["type"] != "websocket.disconnect":
            pass

    async with serving(app) as port, connect(f"ws://127.0.0.1:{port}/") as ws:
        received = [await ws.recv(), await ws.recv()]
        try:
            extra = await ws.recv()
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1000
        else:
            raise AssertionError(f"a frame after the close: {extra!r}")
    assert received == [b"\x01binary", "text ✓"]
    assert results == [True, True, True, False]


@pytest.mark.parametrize("deflate_first", [True, False])
async def test_frames_of_every_length_reach_clients_with_and_without_deflate(
    deflate_first: bool,
) -> None:
    """Each length encoding (7-, 16-, 64-bit), text and binary, written to a client that
    negotiated permessage-deflate and to one that did not, in either order: both read every
    frame intact (a frame framed for one connection is never written to the other)."""
    sizes = [0, 125, 126, 65535, 65536, 70000]
    payloads = [b"x" * n for n in sizes] + [("é" * (n // 2)).encode() for n in sizes]
    accepted: asyncio.Queue[Any] = asyncio.Queue()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        accepted.put_nowait(scope["extensions"][WRITE_EXTENSION]["write"])
        while (await receive())["type"] != "websocket.disconnect":
            pass

    async with serving(app, ws_per_message_deflate=True) as port, asyncio.timeout(WAIT * 2):
        url = f"ws://127.0.0.1:{port}/"
        deflate = await connect(url, compression="deflate", max_size=None)
        clients = [(deflate, await accepted.get())]
        plain = await connect(url, compression=None, max_size=None)
        clients.append((plain, await accepted.get()))
        if not deflate_first:
            clients.reverse()
        assert deflate.response is not None and plain.response is not None
        assert "permessage-deflate" in deflate.response.headers.get("Sec-WebSocket-Extensions")
        assert "Sec-WebSocket-Extensions" not in plain.response.headers
        for index, payload in enumerate(payloads):
            binary = index < len(sizes)
            for _, write in clients:
                assert write(payload, binary)
        for ws, _ in clients:
            for index, payload in enumerate(payloads):
                expected: bytes | str = payload if index < len(sizes) else payload.decode()
                assert await ws.recv() == expected
            await ws.close()


async def test_without_the_direct_write_the_room_works(start_server: Any) -> None:
    """Under uvicorn's plain protocol, ASGI send carries everything, in order."""
    server = await start_server(ws=PLAIN)
    await talking.test_say_reaches_everyone_in_both_encodings(server)
    await talking.test_every_member_sees_one_seq_order(server)


async def test_without_the_direct_write_a_slow_member_is_closed(start_server: Any) -> None:
    """The 4008 path does not depend on the direct write either."""
    plain = functools.partial(start_server, ws=PLAIN)
    await talking.test_slow_member_is_closed_4008_and_the_room_goes_on(plain)


# --- the close timeout -----------------------------------------------------------------------


async def test_a_close_the_peer_never_answers_is_aborted_after_the_timeout() -> None:
    """The application closes; the peer neither reads nor answers the close frame: the TCP
    connection is aborted (a reset, not a FIN) after the close timeout, not after uvicorn's
    own 10 s."""
    ended = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        scope["extensions"][WRITE_EXTENSION]["closing"]()
        await send({"type": "websocket.close", "code": 1000})
        while (await receive())["type"] != "websocket.disconnect":
            pass
        ended.set()

    async with serving(app) as port:
        peer = SilentPeer(port)
        started = time.monotonic()
        await peer.open()
        async with asyncio.timeout(WAIT):
            await ended.wait()
        assert time.monotonic() - started < CLOSE_TIMEOUT + SLACK
        assert await peer.ended() == "reset"


@pytest.mark.parametrize("trigger", ["application", "keepalive", "peer close"])
async def test_a_connection_stuck_behind_a_paused_transport_is_aborted(trigger: str) -> None:
    """The peer stopped reading, the transport is paused and the application's writer waits
    on it; whatever starts the close (the application, uvicorn's keep-alive timeout, the
    peer's own close frame), the TCP connection is aborted after the close timeout, and the
    application's reader and writer both see the end."""
    ping = 0.2  # uvicorn's keep-alive interval and timeout here (a setting: not scaled)
    seen: dict[str, str] = {}
    paused, ended = asyncio.Event(), asyncio.Event()

    async def writer(send: Any) -> None:
        try:
            while True:
                await send({"type": "websocket.send", "bytes": b"x" * 65536})  # waits when paused
        except OSError as exc:  # uvicorn's ClientDisconnected
            seen["writer"] = type(exc).__name__

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        task = asyncio.create_task(writer(send))
        write_now = scope["extensions"][WRITE_EXTENSION]["write"]
        while write_now(b"y" * 65536, True):  # noqa: ASYNC110 - writes until paused
            await asyncio.sleep(0)
        if trigger == "application":
            scope["extensions"][WRITE_EXTENSION]["closing"]()
        paused.set()
        while (await receive())["type"] != "websocket.disconnect":
            pass
        seen["reader"] = "disconnect"
        async with asyncio.timeout(WAIT):
            await task
        ended.set()

    options = {"ws_ping_interval": ping, "ws_ping_timeout": ping} if trigger == "keepalive" else {}
    async with serving(app, **options) as port:
        peer = SilentPeer(port)
        await peer.open()
        async with asyncio.timeout(WAIT):
            await paused.wait()
        started = time.monotonic()
        if trigger == "peer close":
            await peer.send_close()
        async with asyncio.timeout(WAIT):
            await ended.wait()
        assert time.monotonic() - started < CLOSE_TIMEOUT + 2 * ping + SLACK
        assert seen == {"reader": "disconnect", "writer": "ClientDisconnected"}
        assert await peer.ended() == "reset"


async def hearth_metric(http: httpx.AsyncClient, name: str, **labels: str) -> float:
    """One sample of the server's /metrics (0 when absent)."""
    text = (await http.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def test_a_member_that_stops_reading_but_keeps_sending_is_dropped_every_time(
    start_server: Any,
) -> None:
    """Issue 11's stuck reader, 20 times in a row: a member with a 4 KiB receive buffer that
    reads nothing but sends a small frame every 50 ms, in a room where another
    member talks, is closed with 4008 and is gone (hearth_connections back down) within the
    close timeout; the talker is served throughout."""
    server = await start_server(queue_frames=16, close_timeout=CLOSE_TIMEOUT, rate=10_000.0)
    room = (await server.room())["room"]
    talker = await server.client(MSGPACK, max_queue=None)
    await talker.join(room)
    drain = asyncio.create_task(_drain(talker.ws))
    text = "🌿" * 1900  # 7.6 KB: some 400 fill the kernel's buffers (megabytes on loopback)
    async with httpx.AsyncClient(base_url=server.http) as http:
        baseline = await hearth_metric(http, "hearth_connections")
        for run in range(20):
            closes = await hearth_metric(http, "hearth_closes_total", code="4008")
            stuck = await server.client(
                MSGPACK, sock=stalled_socket(server.settings.port), ping_interval=None
            )
            await stuck.join(room)
            stuck.ws.transport.pause_reading()
            pinger = asyncio.create_task(_keep_sending(stuck.ws))
            async with asyncio.timeout(WAIT * 4):
                sent = 0
                while await hearth_metric(http, "hearth_closes_total", code="4008") == closes:
                    for _ in range(10):
                        await talker.send({"t": "say", "text": f"{run}.{sent} {text}"})
                        sent += 1
                    await asyncio.sleep(0.005)  # pace the talker: its echoes are read too
            closed_at = time.monotonic()

            async def gone() -> bool:
                return await hearth_metric(http, "hearth_connections") <= baseline

            await wait_until(gone, CLOSE_TIMEOUT + WAIT, "the stalled connection gone")
            gone_after = time.monotonic() - closed_at
            assert gone_after < CLOSE_TIMEOUT + SLACK, f"run {run}: gone after {gone_after:.2f} s"
            async with asyncio.timeout(WAIT):
                await pinger  # its sends fail once the connection is aborted
            stuck.ws.transport.resume_reading()
            async with asyncio.timeout(WAIT):
                await stuck.ws.wait_closed()
        drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drain
        answer = await talker.request({"t": "say", "text": "still served"})
        assert answer["t"] == "ack"


async def _drain(ws: Any) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await ws.recv()


async def _keep_sending(ws: Any) -> None:
    """A small frame every 50 ms until the connection is gone (uvicorn pauses reading after
    each one until the application has taken it)."""
    with contextlib.suppress(ConnectionClosed, OSError):
        while True:
            await ws.send(b"\x81\xa1t\xa6typing")  # msgpack {"t": "typing"}
            await asyncio.sleep(0.05)  # the client's own pace, not a wait


# --- what an open connection keeps ----------------------------------------------------------


async def test_an_open_connection_keeps_none_of_its_handshake_headers(server: Server) -> None:
    """Once the accept is out, no request header stays in server memory for the connection's
    life: not in websockets' parser (its handshake request), not in the ASGI scope. (Idle
    memory per member: 4 KiB of 17 went to them.)"""
    marker = secrets.token_hex(8)
    peer = SilentPeer(server.port, path="/ws", header=("X-Hearth-Test", marker))
    try:
        await peer.open()
        assert peer.protocol.state is State.OPEN  # accepted (101), not refused
        gc.collect()
        kept_requests = [
            o for o in gc.get_objects()
            if isinstance(o, Request) and o.headers.get("X-Hearth-Test") == marker
        ]  # fmt: skip
        pair = (b"x-hearth-test", marker.encode())
        kept_lists = [o for o in gc.get_objects() if isinstance(o, list) and pair in o]
        assert kept_requests == [] and kept_lists == []
        # Still a working connection: the parser that replaced the handshake's reads frames
        # (a request before any join is answered with an error, §9).
        peer.protocol.send_text(b'{"t": "say", "text": "hello"}')
        await peer.flush()
        answer = json.loads(await peer.next_data())
        assert answer["t"] == "error"
    finally:
        peer.sock.close()


# --- the uvicorn surface ---------------------------------------------------------------------


def test_uvicorn_still_offers_what_the_subclass_relies_on() -> None:
    """The attributes and methods the module docstring lists exist in the installed uvicorn,
    and uvicorn calls only the methods Inbox and Flag provide on ``queue`` and ``writable``."""
    parameters = inspect.signature(WebSocketsSansIOProtocol.__init__).parameters
    assert {"config", "server_state", "app_state"} <= set(parameters)
    for method in (
        "handle_connect", "data_received", "keepalive_timeout", "shutdown", "connection_lost",
        "send", "receive", "send_receive_event_to_app",
    ):  # fmt: skip
        assert callable(getattr(WebSocketsSansIOProtocol, method)), method
    source = inspect.getsource(WebSocketsSansIOProtocol)
    for name in ("conn", "transport", "scope", "handshake_complete"):
        assert re.search(rf"self\.{name} *[:=]", source), name
    assert set(re.findall(r"self\.queue\.(\w+)", source)) <= {"put_nowait", "get", "empty"}
    assert set(re.findall(r"self\.writable\.(\w+)", source)) <= {"is_set", "set", "clear", "wait"}
    assert issubclass(HearthWebSocketProtocol, WebSocketsSansIOProtocol)
    # Reading pauses after a received message only when read_paused is False, and resumes in
    # receive() when it is True and nothing waits: what READ_AHEAD's override relies on.
    queued = inspect.getsource(WebSocketsSansIOProtocol.send_receive_event_to_app)
    assert re.search(
        r"if not self\.read_paused:\s+self\.read_paused = True\s+"
        r"self\.transport\.pause_reading\(\)",
        queued,
    )
    resumed = inspect.getsource(WebSocketsSansIOProtocol.receive)
    assert "self.read_paused and self.queue.empty()" in resumed
    # The handshake's request and response are dropped after the accept: only these two
    # methods may touch them.
    for name, member in inspect.getmembers(WebSocketsSansIOProtocol, inspect.isfunction):
        if name not in {"handle_connect", "send"}:
            body = inspect.getsource(member)
            assert not re.search(r"self\.(request|response)\b", body), name


async def test_inbox_hands_items_over_in_order_and_survives_a_cancelled_get() -> None:
    """Inbox: a waiting get wakes on put; order is kept; a timed-out get loses nothing."""
    inbox: Inbox[int] = Inbox()
    getter = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not getter.done()
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    assert await getter == 1
    assert await inbox.get() == 2 and inbox.empty()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(10 * MS):  # a window: nothing to get yet
            await inbox.get()
    inbox.put_nowait(3)
    assert await inbox.get() == 3


async def test_flag_wakes_every_waiter_when_set() -> None:
    """Flag: wait passes while set; after clear, every waiter wakes on set; cancels tidy up."""
    flag = Flag()
    assert flag.is_set() and await flag.wait()
    flag.clear()
    waiters = [asyncio.ensure_future(flag.wait()) for _ in range(3)]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(10 * MS):  # a window: nothing to get yet
            await flag.wait()
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert flag.is_set() and not flag._waiters
