"""uvicorn's websockets-sansio protocol, plus a synchronous frame write for fan-out.

ASGI gives an application one way to send a frame: ``await send(message)``. When a room's
message goes to a thousand members, that is a thousand coroutines run through the ASGI
layers, each only to reach ``transport.write``; the bench profile showed it as the largest
cost per delivery after the write system call itself. This subclass offers the application,
as the ASGI scope extension :data:`WRITE_EXTENSION`, a plain function that writes a data frame
at once when the connection can take it, and says when it cannot (the transport is paused by
backpressure, or the connection is closing); the application then falls back to ASGI send,
which waits for the transport. Everything else, from the handshake to the close, is uvicorn's
(but a refused handshake counts as a complete one: see :meth:`HearthWebSocketProtocol.send`).

It also keeps each connection smaller. uvicorn gives every connection an ``asyncio.Queue``
for received events and an ``asyncio.Event`` for writability: 3.3 KiB and 0.9 KiB, mostly in
the five deques they allocate up front, a fifth of what an idle member costs in all. A
connection has one reader and one writer at a time, so :class:`Inbox` and :class:`Flag` do the
same jobs with a list and a future made only while someone waits.

Run with ``uvicorn --ws chat.transport:HearthWebSocketProtocol``; ``hearth serve`` does.
Under any other server the extension is absent and the application uses ASGI send alone.
The subclass relies on attributes of uvicorn's protocol (``queue``, ``writable``, ``conn``,
``transport``, ``scope`` and the state flags), so pyproject.toml caps uvicorn's version and
tests/test_transport.py checks them.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any, Generic, TypeVar

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

WRITE_EXTENSION = "hearth.write"
PROTOCOL_PATH = "chat.transport:HearthWebSocketProtocol"
OPCODE_TEXT, OPCODE_BINARY = 0x1, 0x2

T = TypeVar("T")


class Inbox(Generic[T]):
    """The part of ``asyncio.Queue`` uvicorn uses, for a single consumer."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> T:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class Flag:
    """The part of ``asyncio.Event`` uvicorn uses; it starts set."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] = []

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


class HearthWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's protocol with a lighter queue and flag, and the ``hearth.write`` extension:
    ``scope["extensions"]["hearth.write"] = {"write": write_now}``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The scope exists only once the upgrade was accepted (a refused one has none), and
        # the application's task has not run yet, so it sees the extension from the start.
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][WRITE_EXTENSION] = {"write": self.write_now}

    async def send(self, message: Any) -> None:
        await super().send(message)
        # A refused handshake (403, 429, 503) is a complete answer, as uvicorn already treats
        # the plain 403 of websocket.close; without this it logs "ASGI callable returned
        # without completing handshake" at error level for every refusal, an error line per
        # connection attempt under a flood.
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            self.handshake_complete = True

    def write_now(self, payload: bytes, binary: bool) -> bool:
        """Write one data frame now (a binary one, or a text one of UTF-8) if the connection
        can take it.

        Returns:
            True if the frame was handed to the transport; False if the caller must use ASGI
            send instead, which waits while the transport is paused and reports a closed
            connection.
        """
        if (
            self.close_sent
            or self.disconnected
            or not self.writable.is_set()
            or self.conn.state is not State.OPEN  # also CLOSING once the peer's close arrived
        ):
            return False
        self.transport.write(data_frame(OPCODE_BINARY if binary else OPCODE_TEXT, payload))
        return True


def data_frame(opcode: int, payload: bytes) -> bytes:
    """A whole, unmasked data frame, as a server sends it (RFC 6455 §5.2).

    Framing here rather than through websockets' ``send_binary`` (a Frame object, checks, a
    BytesIO and a join per member) cut a tenth of the CPU of a fan-out in the bench profile.
    The frame is plain, also when permessage-deflate was negotiated: an uncompressed
    message (RSV1 clear) is valid there too (RFC 7692 §6), and ``hearth serve`` turns it off.
    """
    length = len(payload)
    if length < 126:
        head = bytes((0x80 | opcode, length))
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, length)
    return head + payload
