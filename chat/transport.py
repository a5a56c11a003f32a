"""uvicorn's websockets-sansio protocol, plus a synchronous frame write for fan-out.

ASGI gives an application one way to send a frame: ``await send(message)``. When a room's
message goes to a thousand members, that is a thousand coroutines run through the ASGI
layers, each only to reach ``transport.write``; the bench profile showed it as the largest
cost per delivery after the write system call itself. This subclass offers the application,
as the ASGI scope extension :data:`WRITE_EXTENSION`, a plain function that writes a data frame
at once when the connection can take it, and says when it cannot (the transport is paused by
backpressure, or the connection is closing); the application then falls back to ASGI send,
which waits for the transport. Everything else, from the handshake to the close, is uvicorn's.

Run with ``uvicorn --ws chat.transport:HearthWebSocketProtocol``; ``hearth serve`` does.
Under any other server the extension is absent and the application uses ASGI send alone.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request

WRITE_EXTENSION = "hearth.write"
PROTOCOL_PATH = "chat.transport:HearthWebSocketProtocol"


class HearthWebSocketProtocol(WebSocketsSansIOProtocol):
    """Adds ``scope["extensions"]["hearth.write"] = {"write": write_now}`` to each connection."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The scope exists only once the upgrade was accepted (a refused one has none), and
        # the application's task has not run yet, so it sees the extension from the start.
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][WRITE_EXTENSION] = {"write": self.write_now}

    def write_now(self, frame: bytes | str) -> bool:
        """Write one data frame now (bytes: binary, str: text) if the connection can take it.

        Returns:
            True if the frame was handed to the transport; False if the caller must use ASGI
            send instead, which waits while the transport is paused and reports a closed
            connection.
        """
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or not self.writable.is_set()
        ):
            return False
        try:
            if isinstance(frame, bytes):
                self.conn.send_binary(frame)
            else:
                self.conn.send_text(frame.encode())
        except InvalidState:  # the peer's close arrived: ASGI send reports it
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True
