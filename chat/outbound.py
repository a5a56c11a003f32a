"""One connection's way out: a bounded queue of encoded frames, batched, and the close.

The hub and the handlers only append frames (:meth:`Outbound.push`, :meth:`Outbound.reply`);
the worker's :class:`~chat.outbox.Outbox` flushes every connection that got any, once per
loop turn: everything queued leaves as one frame (an array when there are several, protocol
§2), written directly to the transport when the server offers that (:mod:`chat.transport`).
Only a connection whose transport is paused (the client reads slowly), one that is closing, or
one on a server without the direct write gets a writer task, which goes through ASGI send and
waits. A connection that falls ``limit`` frames behind is dropped with 4008 and the room goes
on without waiting for it (§10). (centrifuge's per-client ``writer.go`` is the model.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from starlette.types import Send

from chat import metrics
from chat.errors import CloseCode
from chat.outbox import Outbox
from chat.protocol import Encoding, batch

log = logging.getLogger("hearth.outbound")
BURST_FACTOR = 8  # what one loop turn (or a join's hold) may queue, in multiples of the limit

WriteNow = Callable[[bytes, bool], bool]
"""``write_now(payload, binary)`` writes a frame at once and returns True, or returns False:
use ASGI send (chat.transport)."""
Closing = Callable[[], None]
"""``closing()`` tells the server the connection is closing: it aborts the TCP connection if
the close does not get through within the close timeout (chat.transport)."""


class Outbound:
    """A connection's outgoing frames and its close.

    Args:
        send: the connection's ASGI send, after the handshake.
        encoding: the negotiated encoding (binary frames for MessagePack, text for JSON).
        limit: frames the connection may lag behind before it is dropped with 4008.
        outbox: the worker's outbox, which flushes once per loop turn.
        write_now: the server's direct write for this connection, if it offers one.
        closing: the server's close timeout for this connection, if it offers one.
    """

    # Thousands of these live at once: slots keep each one small.
    __slots__ = (
        "_binary",
        "_encoding",
        "_held",
        "_limit",
        "_outbox",
        "_queue",
        "_send",
        "_transport_closing",
        "_write_now",
        "_writer",
        "closing",
        "finished",
    )

    def __init__(
        self,
        send: Send,
        encoding: Encoding,
        limit: int,
        outbox: Outbox,
        write_now: WriteNow | None = None,
        closing: Closing | None = None,
    ) -> None:
        self._send = send
        self._encoding = encoding
        self._binary = encoding is Encoding.MSGPACK
        self._limit = limit
        self._outbox = outbox
        self._write_now = write_now
        self._transport_closing = closing
        self._queue: list[bytes] = []  # swapped out whole when flushed; cheaper idle than a deque
        self._held: list[bytes] | None = None
        # A task only while ASGI send must wait: an idle connection holds none, and fan-out
        # wakes none.
        self._writer: asyncio.Task[None] | None = None
        self.closing: tuple[CloseCode, str] | None = None
        self.finished = False  # the close went out, or the peer is gone: nothing more to send

    def push(self, frame: bytes) -> None:
        """A room event: held while the connection's answer to a join is being built.

        ``limit`` counts what waits on a connection that cannot take it: frames queued behind
        a writer (the transport is paused: the client reads slowly). Frames queued within one
        loop turn leave together at its end: a burst (a storm of arrivals, every one announced)
        is not slowness, so only a much larger bound applies to it, and to what is held.
        """
        if self.closing is not None:
            return
        held = self._held
        if held is not None:
            held.append(frame)
            if len(held) > self._limit * BURST_FACTOR:
                self._too_slow()
            return
        queue = self._queue
        if len(queue) >= (self._limit if self._writer is not None else self._limit * BURST_FACTOR):
            self._too_slow()
            return
        queue.append(frame)
        if len(queue) == 1:
            self._queued()

    def reply(self, frame: bytes) -> None:
        """A message for this connection alone (answers, errors): never held."""
        self._queue.append(frame)
        if len(self._queue) == 1:
            self._queued()

    def hold(self) -> None:
        if self._held is None:
            self._held = []

    def release(self) -> None:
        held, self._held = self._held or [], None
        for frame in held:
            self.push(frame)

    def close(self, code: CloseCode, reason: str = "") -> None:
        """Send what is queued (and held), then the close; the first close wins."""
        if self.closing is None:
            self.closing = (code, reason)
            metrics.CLOSES.labels(code=str(int(code))).inc()
            # The close may wait behind a stalled socket, and the reader on a silent peer:
            # the server aborts the connection if it is not gone within the close timeout.
            if self._transport_closing is not None:
                self._transport_closing()
        if self._held is not None:  # closing mid-welcome: what is held (say, removed) goes too
            held, self._held = self._held, None
            self._queue.extend(held)
        self._start_writer()

    async def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) for the writer to send the close."""
        writer = self._writer
        if self.closing is not None and writer is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.shield(writer)

    def stop(self) -> None:
        """The connection is over: send nothing more."""
        self.finished = True
        if self._writer is not None:
            self._writer.cancel()

    # --- sending -------------------------------------------------------------------------

    def _queued(self) -> None:
        """The queue just got its first frame: have it flushed this turn, unless a writer is
        running, which takes the queue after its current send."""
        if self.finished:
            self._queue = []
        elif self._writer is None:
            self._outbox.add(self)

    def flush(self) -> None:
        """Send what is queued, as one frame: directly if the transport takes it, else by the
        writer (chat.outbox.Flushable)."""
        if self._writer is not None or not self._queue:
            return
        frame = self._take_queue()
        write_now = self._write_now
        if write_now is None or not write_now(frame, self._binary):
            self._start_writer(frame)

    def _take_queue(self) -> bytes:
        """Everything queued, as one frame: one write per member per burst."""
        frames, self._queue = self._queue, []
        return frames[0] if len(frames) == 1 else batch(frames, self._encoding)

    def _start_writer(self, first: bytes | None = None) -> None:
        if self._writer is None and not self.finished:
            self._writer = asyncio.create_task(self._write(first))

    async def _write(self, first: bytes | None) -> None:
        """Send ``first`` and whatever is queued through ASGI send, which waits while the
        transport is paused; then the close, if one is due."""
        send = self._send
        frame = first
        try:
            while frame is not None or self._queue:
                if frame is None:
                    frame = self._take_queue()
                if self._binary:
                    await send({"type": "websocket.send", "bytes": frame})
                else:
                    await send({"type": "websocket.send", "text": frame.decode()})
                frame = None
            if self.closing is not None:
                code, reason = self.closing
                self.finished = True
                await send({"type": "websocket.close", "code": int(code), "reason": reason})
        except OSError:  # uvicorn's ClientDisconnected: the peer is gone; the reader sees it too
            self.finished = True
        except Exception:
            # A frame that could not go out (a bug): nothing more can be sent in order, so
            # close rather than leave the connection open and silent.
            log.exception("writer failed")
            self.finished = True
            self.closing = self.closing or (CloseCode.INTERNAL, "")
            with contextlib.suppress(OSError, RuntimeError):
                await send({"type": "websocket.close", "code": int(CloseCode.INTERNAL)})
        finally:
            self._writer = None

    def _too_slow(self) -> None:
        self._queue = []
        self._held = None
        self.close(CloseCode.TOO_SLOW, "could not keep up with the room")
