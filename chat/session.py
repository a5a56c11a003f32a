"""The life of one WebSocket connection: reader, outbound queue, writes, close codes.

The reader decodes each frame and runs its command. The hub and the commands only append to
the outbound queue; the worker's :class:`~chat.outbox.Outbox` flushes it once per loop turn,
everything that is ready as one frame (an array when there are several, protocol §2), written
directly to the transport when the server offers that (:mod:`chat.transport`). Only a
connection whose transport is paused (the client reads slowly), one that is closing, or one
on a server without the direct write gets a writer task, which goes through ASGI send and
waits. A member that falls ``queue_frames`` behind is closed with 4008 and the room goes on
without waiting for it (§10).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from starlette.types import Receive, Send

from chat import commands, joining, metrics
from chat.broker.base import BrokerUnavailable
from chat.context import Seat, Services, now_ms
from chat.errors import CloseCode, ErrorCode, ProtocolError, RequestError, SessionEnded
from chat.hub import Member
from chat.protocol import Encoding, Frame, Message, batch, decode, encode, error
from chat.ratelimit import TokenBucket

log = logging.getLogger("hearth.session")
CLOSE_WAIT = 5.0  # seconds the writer may take to flush a close behind a stalled socket

WriteNow = Callable[[bytes, bool], bool]
"""``write_now(payload, binary)`` writes a frame at once and returns True, or returns False:
use ASGI send (chat.transport)."""


class Session:
    """One connection, from accepted handshake to close.

    Args:
        receive: the connection's ASGI receive, after the handshake.
        send: the connection's ASGI send, after the handshake (one await layer fewer per
            frame than Starlette's WebSocket, on the fan-out path).
        services: the worker's services.
        encoding: the negotiated encoding.
        address: the client's network address, used only to derive a salted ban hash.
        write_now: the server's direct write for this connection, if it offers one.
    """

    # Thousands of these live at once: slots keep each one small.
    __slots__ = (
        "_bucket",
        "_closing",
        "_finished",
        "_held",
        "_mute_timer",
        "_queue",
        "_queue_limit",
        "_tasks",
        "_write_now",
        "_writer",
        "address",
        "conn_id",
        "departed",
        "encoding",
        "receive",
        "seat",
        "send",
        "services",
    )  # fmt: skip

    def __init__(
        self,
        receive: Receive,
        send: Send,
        services: Services,
        encoding: Encoding,
        address: str,
        write_now: WriteNow | None = None,
    ) -> None:
        self.receive = receive
        self.send = send
        self.services = services
        self.encoding = encoding
        self.address = address
        self.conn_id = secrets.token_hex(8)
        self.seat: Seat | None = None
        self.departed = False
        settings = services.settings
        self._bucket = TokenBucket(settings.rate, settings.burst, time.monotonic())
        self._queue_limit = settings.queue_frames
        self._queue: list[bytes] = []  # swapped out whole when flushed; cheaper idle than a deque
        self._held: list[tuple[bytes, int]] | None = None
        self._write_now = write_now
        # A task only while ASGI send must wait (see the module docstring): an idle connection
        # holds none, and fan-out wakes none.
        self._writer: asyncio.Task[None] | None = None
        self._finished = False  # the close went out, or the peer is gone: nothing more to send
        self._closing: tuple[CloseCode, str] | None = None
        self._mute_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] | None = None

    # --- the hub's view of this connection (hub.Member) ----------------------------------

    @property
    def pid(self) -> str:
        return self.seat.pid if self.seat else ""

    @property
    def role(self) -> str:
        return self.seat.role if self.seat else ""

    @property
    def member(self) -> Member:
        return self

    def send_frame(self, frame: bytes, seq: int) -> None:
        if self._closing is not None or (self.seat is not None and self.seat.waiting):
            return
        if self._held is not None:
            self._held.append((frame, seq))
            if len(self._held) > self._queue_limit:
                self._too_slow()
            return
        queue = self._queue
        if len(queue) >= self._queue_limit:
            self._too_slow()
            return
        queue.append(frame)
        if len(queue) == 1:
            self._queued()

    def control(self, event: Message) -> None:
        kind = event["t"]
        seat = self.seat
        if kind == "_takeover":
            if event.get("conn") != self.conn_id:
                self.departed = True  # the new connection holds the member now
                self.end(CloseCode.NORMAL, "resumed on another connection")
        elif kind == "removed":
            self.departed = True
            self.end(CloseCode.REMOVED, "removed by a facilitator")
        elif kind == "closed":
            if seat is not None and seat.waiting:  # its frame was not let through: send it now
                self.reply(event)
            self.departed = True
            self.end(CloseCode.ROOM_CLOSED, "the room was closed")
        elif kind == "denied":
            self.departed = True
            self.reply(event)  # a waiting member gets no room frames, so not this one either
            self.end(CloseCode.FORBIDDEN, "not admitted")
        elif kind == "_admit":
            self._spawn(joining.admitted(self.services, self))
        elif seat is not None and kind in {"muted", "unmuted"}:
            self._set_mute(seat, kind == "muted", event.get("until"))

    # --- the commands' view of this connection (context.Caller) --------------------------

    def reply(self, message: Message) -> None:
        self._queue.append(encode(message, self.encoding))
        if len(self._queue) == 1:
            self._queued()

    def end(self, code: CloseCode, reason: str = "") -> None:
        if self._closing is None:
            self._closing = (code, reason)
            metrics.CLOSES.labels(code=str(int(code))).inc()
        if self._held is not None:  # ending mid-welcome: what is held (say, removed) goes first
            held, self._held = self._held, None
            self._queue.extend(frame for frame, _ in held)
        self._start_writer()  # it sends what is queued, then the close

    def hold(self) -> None:
        if self._held is None:  # an admission holds before enter() does; keep what it held
            self._held = []

    def release(self, after_seq: int) -> None:
        held, self._held = self._held or [], None
        for frame, seq in held:
            if seq == 0 or seq > after_seq:
                self.send_frame(frame, seq)

    # --- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes; always leaves the hub tidy."""
        try:
            await self._read()
        except Exception:
            log.exception("session failed")
            self.end(CloseCode.INTERNAL)
        finally:
            await self._depart()
            writer = self._writer
            if self._closing is not None and writer is not None:
                try:
                    async with asyncio.timeout(CLOSE_WAIT):
                        await asyncio.shield(writer)
                except TimeoutError:
                    pass
            self._finished = True
            if self._writer is not None:
                self._writer.cancel()
            for task in list(self._tasks or ()):
                task.cancel()

    async def _depart(self) -> None:
        if self._mute_timer is not None:
            self._mute_timer.cancel()
        try:
            await joining.went_away(self.services, self)
        except BrokerUnavailable:
            log.warning("could not record a departure: broker unavailable")

    async def _read(self) -> None:
        join_deadline = time.monotonic() + self.services.settings.join_timeout
        receive = self.receive
        while True:
            if self.seat is None and self._closing is None:
                remaining = join_deadline - time.monotonic()
                try:
                    async with asyncio.timeout(max(remaining, 0)):
                        message = await receive()
                except TimeoutError:
                    self.reply(error(ErrorCode.NOT_JOINED, "No join arrived in time."))
                    self.end(CloseCode.POLICY, "join timeout")
                    join_deadline = float("inf")
                    continue
            else:
                message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if self._closing is not None:
                continue  # the close is on its way; what the client still sends is moot
            frame = message.get("bytes")
            await self._handle(frame if frame is not None else message.get("text", ""))
            # receive() does not suspend while frames are buffered: yield, so that one
            # busy sender cannot starve the writers (its own included) of the loop.
            await asyncio.sleep(0)

    async def _handle(self, frame: Frame) -> None:
        request_id: int | None = None
        # Every frame costs a token, undecodable ones included, so garbage floods too.
        wait = self._bucket.take(time.monotonic())
        try:
            msg = decode(frame, self.encoding, self.services.limits)
            request_id = msg.id
            if wait:
                self._rate_limited(wait, request_id)
                return
            await commands.dispatch(self.services, self, msg)
        except ProtocolError as exc:
            if wait:
                self._rate_limited(wait, exc.extra.get("id"))
                return
            self._error(exc, exc.extra.get("id"))
        except RequestError as exc:
            self._error(exc, request_id)
        except SessionEnded as exc:
            if exc.error is not None:
                self._error(exc.error, request_id)
            self.end(exc.close_code, exc.reason)
        except BrokerUnavailable:
            self._error(
                RequestError(
                    ErrorCode.UNAVAILABLE, "The service is briefly unavailable; nothing was sent."
                ),
                request_id,
            )

    def _rate_limited(self, wait: float, request_id: int | None) -> None:
        if self._bucket.strikes > self.services.settings.flood_strikes:
            self.end(CloseCode.POLICY, "flooding")
            return
        error = RequestError(
            ErrorCode.RATE_LIMITED, "You are sending too fast.", retry_after=int(wait * 1000) + 1
        )
        self._error(error, request_id)

    def _error(self, exc: RequestError, request_id: int | None) -> None:
        extra: dict[str, Any] = dict(exc.extra)
        extra.pop("id", None)
        metrics.ERRORS.labels(code=str(exc.code)).inc()
        self.reply(error(exc.code, exc.message, request_id, **extra))

    # --- sending ---------------------------------------------------------------------------

    def _queued(self) -> None:
        """The queue just got its first frame: have it flushed this turn, unless a writer is
        running, which takes the queue after its current send."""
        if self._finished:
            self._queue = []
        elif self._writer is None:
            self.services.outbox.add(self)

    def flush(self) -> None:
        """Send what is queued, as one frame: directly if the transport takes it, else by the
        writer (chat.outbox.Flushable)."""
        if self._writer is not None or not self._queue:
            return
        frame = self._take_queue()
        write_now = self._write_now
        if write_now is None or not write_now(frame, self.encoding is Encoding.MSGPACK):
            self._start_writer(frame)

    def _take_queue(self) -> bytes:
        """Everything queued, as one frame: one write per member per burst."""
        frames, self._queue = self._queue, []
        return frames[0] if len(frames) == 1 else batch(frames, self.encoding)

    def _start_writer(self, first: bytes | None = None) -> None:
        if self._writer is None and not self._finished:
            self._writer = asyncio.create_task(self._write(first))

    async def _write(self, first: bytes | None) -> None:
        """Send ``first`` and whatever is queued through ASGI send, which waits while the
        transport is paused; then the close, if one is due."""
        send = self.send
        binary = self.encoding is Encoding.MSGPACK
        frame = first
        try:
            while frame is not None or self._queue:
                if frame is None:
                    frame = self._take_queue()
                if binary:
                    await send({"type": "websocket.send", "bytes": frame})
                else:
                    await send({"type": "websocket.send", "text": frame.decode()})
                frame = None
            if self._closing is not None:
                code, reason = self._closing
                self._finished = True
                await send({"type": "websocket.close", "code": int(code), "reason": reason})
        except OSError:  # uvicorn's ClientDisconnected: the peer is gone; the reader sees it too
            self._finished = True
        except Exception:
            # A frame that could not go out (a bug): nothing more can be sent in order, so
            # close rather than leave the connection open and silent.
            log.exception("writer failed")
            self._finished = True
            self.end(CloseCode.INTERNAL)
            with contextlib.suppress(OSError, RuntimeError):
                await send({"type": "websocket.close", "code": int(CloseCode.INTERNAL)})
        finally:
            self._writer = None

    def _too_slow(self) -> None:
        self._queue = []
        self._held = None
        self.end(CloseCode.TOO_SLOW, "could not keep up with the room")

    def _set_mute(self, seat: Seat, muted: bool, until: int | None) -> None:
        seat.muted, seat.muted_until = muted, until if muted else None
        if self._mute_timer is not None:
            self._mute_timer.cancel()
            self._mute_timer = None
        if muted and until is not None:
            delay = max(0.0, (until - now_ms()) / 1000)
            self._mute_timer = asyncio.get_running_loop().call_later(
                delay, lambda: self._spawn(self._mute_expired(seat, until))
            )

    async def _mute_expired(self, seat: Seat, until: int) -> None:
        """A timed mute ran out: the connection holding the member tells the room."""
        store = self.services.store
        member = await store.get_member(seat.room.id, seat.pid)
        if member is None or not member.muted or member.muted_until != until:
            return
        member.muted, member.muted_until = False, None
        await store.save_member(seat.room.id, member)
        await self.services.hub.publish(seat.room.id, {"t": "unmuted", "pid": seat.pid})

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(self._guarded(work))
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, work: Any) -> None:
        try:
            await work
        except (RequestError, SessionEnded, BrokerUnavailable) as exc:
            log.warning("background step failed", extra={"error": type(exc).__name__})
        except Exception:
            log.exception("background step failed")
            self.end(CloseCode.INTERNAL)
