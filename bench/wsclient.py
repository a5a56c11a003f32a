"""A lean WebSocket client connection for the load generator.

It drives websockets' sans-I/O ``ClientProtocol`` from a plain ``asyncio.Protocol``
instead of using websockets' asyncio client. The asyncio client wakes a task and
resolves futures for every received message; here a frame is handed to a callback
straight from ``data_received``, which is what keeps one generator process cheap
enough to drive a thousand members without becoming the bottleneck.

Once the connection is open, complete unfragmented data frames (the bulk of the
traffic) are cut out of the byte stream here, which halves the cost per delivery;
every other frame (ping, pong, close, fragments, anything malformed) is handed whole
to the sans-I/O protocol, whose parser therefore always sits on a frame boundary.
Handshake, masking, ping/pong and the closing handshake stay websockets' job.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import cast

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

OnMessage = Callable[["Connection", "bytes | bytearray | memoryview"], None]

# Welcome messages list every member; in a 1,000-member room they reach tens of KiB.
_MAX_SIZE = 16 * 2**20


class Connection(asyncio.Protocol):
    """One client connection; ``opened`` resolves after the handshake, ``closed`` at the end."""

    def __init__(self, uri: str, subprotocol: str, on_message: OnMessage, index: int) -> None:
        loop = asyncio.get_running_loop()
        self.index = index
        self.ws = ClientProtocol(
            parse_uri(uri), subprotocols=[Subprotocol(subprotocol)], max_size=_MAX_SIZE
        )
        self.on_message = on_message
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self._fragments: list[bytes | bytearray | memoryview] = []
        self.closing = False  # set when the generator itself starts the close
        self._fast = False  # cutting data frames ourselves (see the module docstring)
        self._buf = b""

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence the cast.
        self.transport = cast(asyncio.Transport, transport)
        # No Origin header: Hearth accepts non-browser clients without one (protocol §2).
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        if self._fast:
            self._cut_frames(self._buf + data if self._buf else data)
            return
        self.ws.receive_data(data)
        self._dispatch()
        # Switch only when websockets holds no partial frame, so no byte is split
        # between the two parsers.
        self._fast = self.ws.state is State.OPEN and not self.ws.reader.buffer

    def _cut_frames(self, buf: bytes) -> None:
        # RFC 6455 §5.2 base framing, server to client: never masked.
        pos, end = 0, len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if end - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            stop = pos + head + length
            if stop > end:
                break
            # FIN set, no RSV bits, opcode text (1) or binary (2), mask bit clear.
            if b0 in (0x81, 0x82) and not b1 & 0x80:
                self.on_message(self, buf[pos + head : stop])
            else:
                self.ws.receive_data(buf[pos:stop])
                self._dispatch()
            pos = stop
        self._buf = buf[pos:]

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._dispatch()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    # API used by the generator

    def send(self, data: bytes) -> None:
        """Send one binary frame (one client message)."""
        self.ws.send_binary(data)
        self._flush()

    def close(self) -> None:
        """Start the closing handshake with 1000."""
        self.closing = True
        if self.transport is None or self.transport.is_closing():
            return
        # InvalidState: the server started closing first; the protocol finishes that.
        with contextlib.suppress(InvalidState):
            self.ws.send_close(1000)
        self._flush()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    @property
    def close_code(self) -> int | None:
        """The close code the server sent, if any."""
        rcvd = self.ws.close_rcvd
        return int(rcvd.code) if rcvd is not None else None

    # internals

    def _dispatch(self) -> None:
        for event in self.ws.events_received():
            if isinstance(event, Response):
                if self.ws.handshake_exc is not None:
                    self.opened.set_exception(self.ws.handshake_exc)
                elif not self.opened.done():
                    self.opened.set_result(None)
            elif isinstance(event, Frame):
                self._frame(event)
        self._flush()

    def _frame(self, frame: Frame) -> None:
        if frame.opcode in (Opcode.BINARY, Opcode.TEXT, Opcode.CONT):
            if frame.fin and not self._fragments:
                self.on_message(self, frame.data)
            elif frame.fin:
                self._fragments.append(frame.data)
                data, self._fragments = b"".join(self._fragments), []
                self.on_message(self, data)
            else:
                self._fragments.append(frame.data)
        # Pings are answered and closes acknowledged by the sans-I/O protocol itself.

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for data in self.ws.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()
        if self.ws.close_expected():
            transport.close()
