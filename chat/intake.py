"""Reading a request body under a size limit and a deadline (protocol §11); stdlib only.

Starlette's ``request.body()`` reads whatever arrives, however large and however slowly: a
300 MB ``POST`` took a worker from 51 to 637 MB before its size was checked, and a body
trickled a byte every two seconds held its connection open for good. Here a
``Content-Length`` over the limit is refused before a byte is read, a chunked body is read
only up to the limit, and the whole body must arrive before a deadline. The answers that
follow these refusals carry ``Connection: close``, so the server drops the rest of the body
with the connection instead of reading it.

Works on the raw ASGI ``receive`` so that it needs nothing from Starlette.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

JSON_TYPE = "application/json"
MAX_BODY = 16_384  # protocol §11: a room request's body


class BodyRefused(Exception):
    """The request is refused; ``status`` is the HTTP answer (400, 408, 413, 415, 429), and
    ``retry_after`` the seconds a 429 asks the client to wait."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class ClientGone(Exception):
    """The client disconnected before its body was complete; there is no one to answer."""


def require_json(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """§11: the media type must be ``application/json``; parameters such as charset are fine.

    Raises:
        BodyRefused: 415 otherwise (a missing header included).
    """
    value = header(headers, b"content-type")
    media_type = (value or "").split(";", 1)[0].strip().lower()
    if media_type != JSON_TYPE:
        raise BodyRefused(415, "The body must be JSON (Content-Type: application/json).")


def declared_length(headers: Iterable[tuple[bytes, bytes]], limit: int) -> int | None:
    """The ``Content-Length``, checked against ``limit`` before anything is read.

    Returns:
        The length, or None when the header is absent (a chunked body).

    Raises:
        BodyRefused: 413 over the limit; 400 when the header is not a number.
    """
    value = header(headers, b"content-length")
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit():  # no sign, no spaces inside, no underscores: only digits
        raise BodyRefused(400, "Content-Length is not a number.")
    length = int(value)
    if length > limit:
        raise BodyRefused(413, "The request is too large.")
    return length


async def read_body(receive: Receive, limit: int, deadline: float) -> bytes:
    """Read a whole body of at most ``limit`` bytes before the loop time ``deadline``.

    Raises:
        BodyRefused: 413 once more than ``limit`` bytes arrived; 408 at the deadline.
        ClientGone: the client went away.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout_at(deadline):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise BodyRefused(413, "The request is too large.")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise BodyRefused(408, "The request body did not arrive in time.") from None


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first header called ``name`` (lower-case), decoded."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None
