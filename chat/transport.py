"""uvicorn's websockets-sansio protocol, plus a synchronous frame write and a close timeout.

ASGI gives an application one way to send a frame: ``await send(message)``. When a room's
message goes to a thousand members, that is a thousand coroutines run through the ASGI
layers, each only to reach ``transport.write``; the bench profile showed it as the largest
cost per delivery after the write system call itself. This subclass offers the application,
as the ASGI scope extension :data:`WRITE_EXTENSION`, a plain function that writes a data frame
at once when the connection can take it, and says when it cannot (the transport is paused by
backpressure, or the connection is closing); the application then falls back to ASGI send,
which waits for the transport. The frame goes through the connection's own websockets
``ServerProtocol``, as websockets' ``broadcast()`` does: ``send_binary()`` or ``send_text()``,
then ``data_to_send()``, then ``transport.write``. So the protocol's state and extensions
(permessage-deflate, if a deployment turns it on) apply to these frames as to uvicorn's.
Everything else, from the handshake to the close, is uvicorn's (but a refused handshake
counts as a complete one: see :meth:`HearthWebSocketProtocol.send`).

A close timeout, after websockets' ``close_timeout``: once a connection starts closing, its
TCP connection is aborted if it is not gone within :data:`DEFAULT_CLOSE_TIMEOUT` seconds (the
application sets another through its lifespan state, key :data:`CLOSE_TIMEOUT_STATE`). Without
it, a peer that stops reading can keep a connection forever: a close frame queued behind a
paused transport is never written, and ``transport.close()`` waits for a write buffer that
never drains. The clock starts when the application says it is closing (the extension's
``closing``), when websockets' protocol expects the TCP connection to close after incoming
data (``close_expected()``: the peer's close, a protocol error), at uvicorn's keep-alive
timeout, and at server shutdown; whatever the application's reader and writer are waiting
for, the abort ends the connection and both see the disconnect.

It also keeps each connection smaller. uvicorn gives every connection an ``asyncio.Queue``
for received events and an ``asyncio.Event`` for writability: 3.3 KiB and 0.9 KiB, mostly in
the five deques they allocate up front, a fifth of what an idle member costs in all. A
connection has one reader and one writer at a time, so :class:`Inbox` and :class:`Flag` do the
same jobs with a list and a future made only while someone waits.

Run with ``uvicorn --ws chat.transport:HearthWebSocketProtocol``; ``hearth serve`` does.
Under any other server the extension is absent and the application uses ASGI send alone.

What this relies on in uvicorn's ``WebSocketsSansIOProtocol`` (uvicorn >= 0.52.1, the first
release whose sans-I/O protocol has backpressure and a close timer; pyproject.toml pins the
range and CI runs the transport tests on both ends of it):

- the constructor's keyword arguments ``config``, ``server_state``, ``app_state`` (how uvicorn
  builds every ``--ws`` class), and ``app_state`` being the lifespan state;
- ``conn``, the connection's websockets ``ServerProtocol``: frames are written through its
  public sans-I/O API, and its ``state`` says whether the connection is open;
- ``transport``, the asyncio transport uvicorn was given (``is_closing()``, ``write``,
  ``abort()``, ``get_extra_info("socket")`` are asyncio's own API);
- ``scope``, which ``handle_connect`` builds: the extension is added to it there, before the
  application's task first runs;
- ``queue`` and ``writable``, replaced by :class:`Inbox` and :class:`Flag`: uvicorn calls only
  ``put_nowait``/``get``/``empty`` on the one and ``is_set``/``set``/``clear``/``wait`` on the
  other (``pause_writing``/``resume_writing``, asyncio's flow-control callbacks, are
  overridden here to drive ``writable`` themselves, so the direct write's backpressure does
  not depend on uvicorn's bodies for them);
- ``read_paused``, uvicorn's flag for a paused transport, which
  ``send_receive_event_to_app`` (extended here) reads before it pauses reading and
  ``receive`` reads before it resumes it;
- ``request`` and ``response``, the handshake's, which uvicorn reads only in
  ``handle_connect`` and while ``send`` accepts: they are dropped once the accept is out
  (and so is the copy websockets' own parser keeps: :func:`forget_handshake_request`);
- the methods extended by calling ``super()`` first: ``handle_connect``, ``data_received``,
  ``keepalive_timeout``, ``shutdown``, ``connection_lost``, and ``send``, which then sets
  ``handshake_complete`` once a refused handshake's answer is complete.

tests/test_transport.py checks each of these against the installed uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from typing import Any, Generic, Literal, TypeVar

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.http11 import Request
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

WRITE_EXTENSION = "hearth.write"
PROTOCOL_PATH = "chat.transport:HearthWebSocketProtocol"
CLOSE_TIMEOUT_STATE = "hearth.close_timeout"
DEFAULT_CLOSE_TIMEOUT = 5.0
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s
# Received messages a connection may have waiting for the application before its reading
# pauses (uvicorn pauses at one); each is at most --max-message-bytes.
READ_AHEAD = 8

log = logging.getLogger("hearth.transport")
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

    def qsize(self) -> int:
        return len(self._items)

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


class _LastFrame:
    """The frame a connection's ``ServerProtocol`` last made in ``write_now``, kept for the
    next connection that writes the same payload.

    A room's message reaches its members in one flush, one after the other, and each of them
    passes the same bytes: the very object the hub encoded once when a member got only that
    message, or an equal batch when it got several. Asking each member's protocol to frame
    them again costs a Frame, its checks, a BytesIO and a copy per member: three times the
    whole direct write in bench/framing.py. With no extension negotiated, the next member's
    protocol would make exactly these bytes (a server frame is unmasked), so they are written
    again. Comparing payloads costs an identity check, or a memcmp for an equal batch.
    """

    __slots__ = ("binary", "frame", "payload")

    def __init__(self) -> None:
        self.payload: bytes | None = None
        self.binary = False
        self.frame = b""


_last_frame = _LastFrame()


def forget_handshake_request(conn: ServerProtocol) -> None:
    """Let go of the handshake request that websockets' parser keeps for the connection's life.

    ``ServerProtocol.parse`` is a generator that reads the request into a local, then goes on
    as the frame parser (``yield from Protocol.parse()``): the request, every header in it,
    stays referenced from its frame as long as the connection is open. That was 2.2 KiB of an
    idle member (tracemalloc, the idle bench: ``Headers`` and the header strings).

    When the frame parser waits at the top of its loop for the next frame (``at_eof``, nothing
    buffered), its state is all in ``conn`` and its reader; a fresh ``Protocol.parse`` started
    there is the same parser without the request. websockets swaps parsers the same way itself
    (``discard()`` after a close). Anywhere else (a frame half read), nothing is changed.
    """
    handshake = conn.parser
    frames = getattr(handshake, "gi_yieldfrom", None)
    waiting = getattr(frames, "gi_yieldfrom", None)
    if (
        getattr(frames, "gi_code", None) is not Protocol.parse.__code__
        or getattr(waiting, "gi_code", None) is not StreamReader.at_eof.__code__
        or conn.reader.buffer
    ):
        return
    parser = Protocol.parse(conn)
    next(parser)  # to the same wait for the next frame
    conn.parser = parser
    handshake.close()


class HearthWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's protocol with a lighter queue and flag, a close timeout, and the
    ``hearth.write`` extension: ``scope["extensions"]["hearth.write"] = {"write": write_now,
    "closing": closing}``."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config=config, server_state=server_state, app_state=app_state, _loop=_loop)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        # Without permessage-deflate a server frame is a function of its opcode and payload,
        # so every connection makes the same bytes (see _LastFrame); with it allowed, that
        # holds only if the client offered no extension (handle_connect).
        self._frames_alike = not config.ws_per_message_deflate
        self._close_timeout = float(app_state.get(CLOSE_TIMEOUT_STATE, DEFAULT_CLOSE_TIMEOUT))
        # None: no close under way; a handle: the abort is due; False: the connection is gone.
        self._abort_timer: asyncio.TimerHandle | Literal[False] | None = None

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The scope exists only once the upgrade was accepted (a refused one has none), and
        # the application's task has not run yet, so it sees the extension from the start.
        scope = getattr(self, "scope", None)
        if scope is not None:
            if "Sec-WebSocket-Extensions" not in event.headers:
                self._frames_alike = True
            scope["extensions"][WRITE_EXTENSION] = {
                "write": self.write_now,
                "closing": self.closing,
            }

    async def send(self, message: Any) -> None:
        await super().send(message)
        # A refused handshake (403, 429, 503) is a complete answer, as uvicorn already treats
        # the plain 403 of websocket.close; without this it logs "ASGI callable returned
        # without completing handshake" at error level for every refusal, an error line per
        # connection attempt under a flood.
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            self.handshake_complete = True
        elif message["type"] == "websocket.accept" and self.handshake_complete:
            # uvicorn keeps the handshake's request and response, headers and all, for the
            # connection's whole life; nothing reads them once the accept has gone out. That
            # is 1.9 KiB of the 19 an idle member cost (issue 13: the idle bench, 5,000
            # connections, 19.26 -> 17.33 KiB; tracemalloc showed where).
            del self.request, self.response
            forget_handshake_request(self.conn)

    def send_receive_event_to_app(self) -> None:
        """uvicorn's, but reading pauses only once :data:`READ_AHEAD` messages wait.

        uvicorn pauses the transport after every message it queues and resumes it when the
        application has taken them all: two changes to the event loop's poller (system calls,
        batched through io_uring by libuv) for every message a member sends, the one kind of
        system call Hearth made per message that the baseline does not (issue 13's strace).
        What one read of the socket holds is parsed and queued either way; the pause only
        stops the next read, so a sender that floods is still held back, a few messages later.
        """
        paused = self.read_paused
        self.read_paused = True  # uvicorn's body pauses only when this is False
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = paused
        if not paused and self.queue.qsize() >= READ_AHEAD:
            self.read_paused = True
            self.transport.pause_reading()

    def write_now(self, payload: bytes, binary: bool) -> bool:
        """Write one data frame now (a binary one, or a text one of UTF-8) if the connection
        can take it.

        Returns:
            True if the frame was handed to the transport; False if the caller must use ASGI
            send instead, which waits while the transport is paused and reports a closed
            connection.
        """
        conn = self.conn
        # Not OPEN: a close was sent or received (uvicorn's close_sent implies it); a closing
        # transport: the peer is gone or going; not writable: the transport is paused.
        if (
            conn.state is not State.OPEN
            or not self.writable.is_set()
            or self.transport.is_closing()
        ):
            return False
        last = _last_frame
        if last.payload == payload and last.binary is binary and self._frames_alike:
            self.transport.write(last.frame)
            return True
        if binary:
            conn.send_binary(payload)
        else:
            conn.send_text(payload)
        writes = conn.data_to_send()
        if len(writes) == 1:
            frame = writes[0]
            if self._frames_alike:
                last.payload, last.binary, last.frame = payload, binary, frame
        else:  # something else was pending: it goes first, and this is no frame to reuse
            frame = b"".join(writes)
        self.transport.write(frame)
        return True

    def closing(self) -> None:
        """The application has decided to close (its close frame may be queued behind a
        stalled socket): abort the TCP connection unless it is gone within the close
        timeout."""
        self._close_soon()

    # --- asyncio's flow control -------------------------------------------------------------

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # --- the close timeout ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # websockets' sans-I/O contract: after receive_data(), close_expected() says whether
        # to schedule the end of the TCP connection (the peer's close, a protocol error).
        if self.conn.close_expected():
            self._close_soon()

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()  # a 1011 close and transport.close(): both may stall
        self._close_soon()

    def shutdown(self) -> None:
        super().shutdown()  # a 1012 close and transport.close()
        self._close_soon()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._abort_timer:
            self._abort_timer.cancel()
        self._abort_timer = False
        super().connection_lost(exc)

    def _close_soon(self) -> None:
        if self._abort_timer is None:
            self._abort_timer = asyncio.get_running_loop().call_later(
                self._close_timeout, self._abort
            )

    def _abort(self) -> None:
        log.debug("a closing connection timed out: aborted")
        # transport.abort() drops what asyncio still holds, but a plain close of the socket
        # leaves the kernel's send buffer (megabytes, for a peer that stopped reading) to be
        # delivered as an orphan: linger 0 makes the close a reset that frees it at once.
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        self.transport.abort()
