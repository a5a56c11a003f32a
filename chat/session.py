"""The life of one WebSocket connection: its phase, its reader, its member, its close.

A session moves through :class:`~chat.context.Phase` in one direction: ``JOINING`` (accepted,
no member yet), ``WAITING`` (at a knock room's door), ``PRESENT``, ``CLOSING`` (the close is
on its way), ``CLOSED``. The reader decodes each frame and dispatches it; the answer (an
``ack``, an ``error`` or the handler's own message) goes out with the request's ``id``. Frames
leave through the connection's :class:`~chat.outbound.Outbound`. The hub tells the session
when its member's state changed (an admission) or ended (removed, denied, the room
closed, taken over by a newer connection).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from starlette.types import Receive, Send

from chat import dispatch, joining, metrics
from chat.context import Answered, Phase, Services
from chat.errors import CloseCode, ErrorCode, ProtocolError, RequestError, SessionEnded, Unavailable
from chat.events import Ack, Error, Event
from chat.localroom import LocalRoom, RoomGone
from chat.ops import Refused
from chat.outbound import Closing, Outbound, WriteNow
from chat.protocol import Encoding, Frame, Message, decode, encode
from chat.ratelimit import TokenBucket
from chat.roomstate import MemberState

log = logging.getLogger("hearth.session")


class Session:
    """One connection, from accepted handshake to close.

    Args:
        receive: the connection's ASGI receive, after the handshake.
        send: the connection's ASGI send, after the handshake.
        services: the worker's services.
        encoding: the negotiated encoding.
        address: the client's network address, used only to derive a salted ban hash.
        write_now: the server's direct write for this connection, if it offers one.
        closing: the server's close timeout for this connection, if it offers one.
    """

    # Thousands of these live at once: slots keep each one small.
    __slots__ = (
        "_admitting",
        "_bucket",
        "_close_ack",
        "_follow",
        "_phase",
        "_resume",
        "address",
        "conn_id",
        "encoding",
        "join_id",
        "last_typing",
        "out",
        "pid",
        "receive",
        "room",
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
        closing: Closing | None = None,
    ) -> None:
        self.receive = receive
        self.services = services
        self.encoding = encoding
        self.address = address
        self.conn_id = secrets.token_hex(8)
        settings = services.settings
        self.out = Outbound(
            send, encoding, settings.queue_frames, services.outbox, write_now, closing
        )
        self._phase = Phase.JOINING
        self.room: LocalRoom | None = None
        self.pid = ""
        self.join_id: int | None = None
        self.last_typing = 0
        self._resume = ""
        self._bucket = TokenBucket(settings.rate, settings.burst, time.monotonic())
        self._close_ack: int | None = None
        self._follow: list[Message] = []  # what goes right after the current request's answer
        self._admitting: asyncio.Task[None] | None = None  # an admitted knocker's welcome

    @property
    def phase(self) -> Phase:
        if self.out.finished:
            return Phase.CLOSED
        if self.out.closing is not None:
            return Phase.CLOSING
        return self._phase

    @phase.setter
    def phase(self, value: Phase) -> None:
        self._phase = value

    # --- the hub's view (hub.Connection) --------------------------------------------------

    def send_frame(self, frame: bytes, seq: int) -> None:
        self.out.push(frame)

    def ended(self, code: CloseCode, reason: str) -> None:
        """The hub says the member's presence on this connection is over."""
        self._forget_member()
        if self._close_ack is not None and code is CloseCode.ROOM_CLOSED:
            self._answer(None, self._close_ack)
        self._close_ack = None
        self.end(code, reason)

    def ack_on_close(self, request_id: int | None) -> None:
        self._close_ack = request_id

    def changed(self, member: MemberState) -> None:
        room = self.room
        if self._phase is Phase.WAITING and not member.waiting and room is not None:
            # Admitted: the welcome is drafted now, as the connection starts to hear the room,
            # and what follows is held behind it while its history is read.
            self._phase = Phase.PRESENT
            self.out.hold()
            draft = joining.draft_welcome(
                self.services, room, member, self._resume, None, self.encoding
            )
            self._admitting = asyncio.ensure_future(self._admitted(draft))

    # --- the handlers' view (context.Caller) ----------------------------------------------

    def reply(self, message: Message) -> None:
        self.out.reply(encode(message, self.encoding))

    def follow(self, message: Message) -> None:
        self._follow.append(message)

    def end(self, code: CloseCode, reason: str = "") -> None:
        self.out.close(code, reason)

    def seat(self, room: LocalRoom, member: MemberState, resume: str, join_id: int | None) -> None:
        self.room, self.pid, self.join_id, self._resume = room, member.pid, join_id, resume
        self._phase = Phase.WAITING if member.waiting else Phase.PRESENT
        self.out.hold()
        self.services.hub.attach(room, self, member)

    def unseat(self) -> None:
        room = self.room
        if room is not None:
            self.services.hub.detach(room, self.pid, self)
        self._forget_member()
        self.out.release()

    def release(self) -> None:
        self.out.release()

    def _forget_member(self) -> None:
        self.room = None
        if self._phase in {Phase.WAITING, Phase.PRESENT}:
            self._phase = Phase.JOINING

    # --- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes; always leaves the hub tidy."""
        try:
            await self._read()
        except Exception:
            log.exception("session failed")
            self.end(CloseCode.INTERNAL)
        finally:
            try:
                await joining.went_away(self.services, self)
            except (Unavailable, Refused, RoomGone):
                log.warning("could not record a departure: backend unavailable")
            await self.out.drain(self.services.settings.close_timeout)
            self.out.stop()
            if self._admitting is not None:
                self._admitting.cancel()

    async def _read(self) -> None:
        join_deadline = time.monotonic() + self.services.settings.join_timeout
        receive = self.receive
        while True:
            if self._phase is Phase.JOINING and self.out.closing is None:
                remaining = join_deadline - time.monotonic()
                try:
                    async with asyncio.timeout(max(remaining, 0)):
                        message = await receive()
                except TimeoutError:
                    self._error(
                        RequestError(ErrorCode.NOT_JOINED, "No join arrived in time."), None
                    )
                    self.end(CloseCode.POLICY, "join timeout")
                    continue
            else:
                message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if self.out.closing is not None:
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
                refusal = self._rate_limited(wait, request_id)
                if refusal is not None:  # a say in crisis language still shows the resources
                    await dispatch.refused(self.services, self, msg, refusal)
                return
            answer = await dispatch.dispatch(self.services, self, msg)
            self._answer(answer, request_id)
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
            elif exc.ack:
                self._answer(None, request_id)
            self.end(exc.close_code, exc.reason)
        except (Unavailable, Refused):
            self._error(
                RequestError(
                    ErrorCode.UNAVAILABLE, "The service is briefly unavailable; nothing was sent."
                ),
                request_id,
            )
        except RoomGone:
            pass  # the room ended under the request: this connection is being closed (4010)
        finally:
            self._followed()

    def _followed(self) -> None:
        """Send what a handler queued to follow its answer (the answer has gone, or there is
        none to wait for)."""
        follow, self._follow = self._follow, []
        for message in follow:
            self.reply(message)

    def _answer(self, answer: Event | Answered | None, request_id: int | None) -> None:
        """The dispatcher's half of protocol §2: every request with an id is answered."""
        if isinstance(answer, Answered):
            return
        if answer is None:
            if request_id is None:
                return
            answer = Ack()
        message = answer.wire()
        if request_id is not None:
            message["id"] = request_id
        self.reply(message)
        self.out.release()  # what the join held back follows its answer

    def _rate_limited(self, wait: float, request_id: int | None) -> RequestError | None:
        """Refuse a frame over the connection's rate; the error sent (None: closed instead)."""
        if self._bucket.strikes > self.services.settings.flood_strikes:
            self.end(CloseCode.POLICY, "flooding")
            return None
        error = RequestError(
            ErrorCode.RATE_LIMITED, "You are sending too fast.", retry_after=int(wait * 1000) + 1
        )
        self._error(error, request_id)
        return error

    def _error(self, exc: RequestError, request_id: int | None) -> None:
        extra: dict[str, Any] = dict(exc.extra)
        extra.pop("id", None)
        metrics.ERRORS.labels(code=str(exc.code)).inc()
        message = Error(str(exc.code), exc.message, extra).wire()
        if request_id is not None:
            message["id"] = request_id
        self.reply(message)

    async def _admitted(self, draft: joining.Draft) -> None:
        """Send an admitted knocker's welcome: off the reader, as it reads the room's history
        (the only work a session does outside its reader)."""
        try:
            await joining.admitted(self.services, self, draft)
        except (RequestError, SessionEnded, Unavailable) as exc:
            log.warning("an admission's welcome failed", extra={"error": type(exc).__name__})
        except Exception:
            log.exception("an admission's welcome failed")
            self.end(CloseCode.INTERNAL)
