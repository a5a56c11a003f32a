"""Error codes, close codes and the exception tree (stdlib only).

Two channels stay separate (protocol §8):

* a recoverable error answers the client with ``{"t":"error","code":...}`` and the
  socket stays open;
* a session-ending error closes the socket with a :class:`CloseCode`.

Exception tree::

    HearthError                 base for everything we raise on purpose
    ├── RequestError            answered with an ``error`` message; the socket stays open
    │   └── ProtocolError       the frame itself was undecodable or malformed
    ├── SessionEnded            answered (optionally) with an ``error``, then the socket closes
    └── Unavailable             the shared state (Redis) cannot be reached or refused the
                                command right now; nothing was done (``unavailable``, HTTP 503)
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any


class CloseCode(IntEnum):
    """WebSocket close codes of protocol §8.

    A client may reconnect with ``resume`` after 1001, 1011, 1012 and 4008 (and after an
    abnormal 1006). Every other code is terminal: the client stops and explains.
    """

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL = 1011
    RESTART = 1012
    REMOVED = 4001
    FORBIDDEN = 4003
    NOT_FOUND = 4004
    LOCKED = 4005
    ROOM_FULL = 4006
    TOO_SLOW = 4008
    ROOM_CLOSED = 4010


class ErrorCode(StrEnum):
    """The stable ``code`` strings of the ``error`` message (protocol §8)."""

    BAD_FRAME = "bad_frame"
    BAD_REQUEST = "bad_request"
    UNKNOWN_TYPE = "unknown_type"
    NOT_JOINED = "not_joined"
    ALREADY_JOINED = "already_joined"
    BAD_RESUME = "bad_resume"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    MUTED = "muted"
    SLOW_MODE = "slow_mode"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    ROOM_LOCKED = "room_locked"
    BANNED = "banned"
    NAME_TAKEN = "name_taken"
    BAD_NAME = "bad_name"
    RULES_NOT_ACCEPTED = "rules_not_accepted"
    CHECK_FIRST = "check_first"  # §14: contact details under "nudge" (resend with confirm)
    NOT_ALLOWED = "not_allowed"  # §14: contact details under "block"
    # v1.1, §13
    PAUSED = "paused"
    ROOM_FULL = "room_full"
    NOT_YOUR_TURN = "not_your_turn"


class HearthError(Exception):
    """Base of every error Hearth raises on purpose."""


class RequestError(HearthError):
    """A request failed; the client gets an ``error`` message and the socket stays open.

    Args:
        code: the contract's error code.
        message: a short human sentence (never message text or names).
        extra: further fields of the error message, such as ``retry_after`` or ``until``.
    """

    def __init__(self, code: ErrorCode, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


class ProtocolError(RequestError):
    """A frame could not be decoded into a valid client message."""


class SessionEnded(HearthError):
    """The session must end with ``close_code``, after an optional ``error`` message, or
    after the request's ``ack`` (``ack=True``: the request succeeded, and ends the session)."""

    def __init__(
        self,
        close_code: CloseCode,
        error: RequestError | None = None,
        reason: str = "",
        *,
        ack: bool = False,
    ) -> None:
        super().__init__(reason or close_code.name)
        self.close_code = close_code
        self.error = error
        self.reason = reason
        self.ack = ack


class Unavailable(HearthError):
    """The backend (Redis) cannot be reached, or refused the command, right now.

    Nothing was done: a WebSocket request is answered ``unavailable``, an HTTP one 503
    (protocol §8, §11). Raised for every kind of Redis failure: a lost connection, a timeout,
    OOM, BUSY, READONLY, LOADING, NOSCRIPT that could not be mended, and so on.
    """
