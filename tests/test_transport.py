"""chat.transport's direct write, and the server without it (plain ASGI send throughout)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from chat.transport import PROTOCOL_PATH, WRITE_EXTENSION, Flag, Inbox, data_frame
from tests import test_talking as talking
from tests.conftest import start_uvicorn
from tests.ports import free_port

PLAIN = "websockets-sansio"  # uvicorn's own protocol: no direct write offered


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

    port = free_port()
    config = uvicorn.Config(app, port=port, ws=PROTOCOL_PATH, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    task = await start_uvicorn(server)
    try:
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            received = [await ws.recv(), await ws.recv()]
            try:
                extra = await ws.recv()
            except ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 1000
            else:
                raise AssertionError(f"a frame after the close: {extra!r}")
        assert received == [b"\x01binary", "text ✓"]
        assert results == [True, True, True, False]
    finally:
        server.should_exit = True
        await task


async def test_without_the_direct_write_the_room_works(start_server: Any) -> None:
    """Under uvicorn's plain protocol, ASGI send carries everything, in order."""
    server = await start_server(ws=PLAIN)
    await talking.test_say_reaches_everyone_in_both_encodings(server)
    await talking.test_every_member_sees_one_seq_order(server)


async def test_without_the_direct_write_a_slow_member_is_closed(start_server: Any) -> None:
    """The 4008 path does not depend on the direct write either."""
    plain = functools.partial(start_server, ws=PLAIN)
    await talking.test_slow_member_is_closed_4008_and_the_room_goes_on(plain)


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


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_data_frame_parses_as_websockets_reads_it(size: int, opcode: Opcode) -> None:
    """Each length encoding (7-bit, 16-bit, 64-bit) parses back to the same frame."""
    payload = (b"x" * size) if opcode is Opcode.BINARY else ("é" * (size // 2)).encode()
    reader = StreamReader()
    reader.feed_data(data_frame(opcode.value, payload))
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
    with pytest.raises(StopIteration) as parsed:
        next(parser)
    frame = parsed.value.value
    assert (frame.opcode, frame.fin, frame.rsv1) == (opcode, True, False)
    assert bytes(frame.data) == payload
