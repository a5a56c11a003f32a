"""chat.transport: the direct write, the uvicorn surface it relies on, and the server without
it (plain ASGI send throughout)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from chat.transport import (
    PROTOCOL_PATH,
    WRITE_EXTENSION,
    Flag,
    HearthWebSocketProtocol,
    Inbox,
)
from tests import test_talking as talking
from tests.conftest import start_uvicorn
from tests.ports import free_port
from tests.timing import WAIT

PLAIN = "websockets-sansio"  # uvicorn's own protocol: no direct write offered

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(app: App, **options: Any) -> AsyncIterator[int]:
    """Run ``app`` on our protocol (lifespan off) and yield its port."""
    port = free_port()
    config = uvicorn.Config(
        app, port=port, ws=PROTOCOL_PATH, log_config=None, lifespan="off", **options
    )
    server = uvicorn.Server(config)
    task = await start_uvicorn(server)
    try:
        yield port
    finally:
        server.should_exit = True
        async with asyncio.timeout(WAIT * 3):
            await task


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


# --- the uvicorn surface ---------------------------------------------------------------------


def test_uvicorn_still_offers_what_the_subclass_relies_on() -> None:
    """The attributes and methods the module docstring lists exist in the installed uvicorn,
    and uvicorn calls only the methods Inbox and Flag provide on ``queue`` and ``writable``."""
    parameters = inspect.signature(WebSocketsSansIOProtocol.__init__).parameters
    assert {"config", "server_state", "app_state"} <= set(parameters)
    for method in (
        "handle_connect", "pause_writing", "resume_writing", "send", "receive",
    ):  # fmt: skip
        assert callable(getattr(WebSocketsSansIOProtocol, method)), method
    source = inspect.getsource(WebSocketsSansIOProtocol)
    for name in ("conn", "transport", "scope", "handshake_complete"):
        assert re.search(rf"self\.{name} *[:=]", source), name
    assert set(re.findall(r"self\.queue\.(\w+)", source)) <= {"put_nowait", "get", "empty"}
    assert set(re.findall(r"self\.writable\.(\w+)", source)) <= {"is_set", "set", "clear", "wait"}
    assert issubclass(HearthWebSocketProtocol, WebSocketsSansIOProtocol)


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
        async with asyncio.timeout(0.01):
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
        async with asyncio.timeout(0.01):
            await flag.wait()
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert flag.is_set() and not flag._waiters
