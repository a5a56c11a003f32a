"""How the Redis backend meets Redis: failures, sealed records, and replies in bytes.

Every Redis failure — a lost connection, a timeout, and every error reply (OOM, BUSY,
READONLY, LOADING, MASTERDOWN, NOSCRIPT that could not be mended, ...) — becomes
:class:`~chat.errors.Unavailable` (:func:`unavailable`), which a session answers
``unavailable`` and HTTP answers 503 (protocol §11). A record that holds names or text is
sealed with its kind and room bound in (:mod:`chat.buscrypt`) and opened by
:func:`open_record`, which treats a forged or unreadable one as absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterCrossSlotError,
    ClusterDownError,
    ExecAbortError,
    MasterDownError,
    MovedError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chat import metrics
from chat.buscrypt import Sealer, SealError, context
from chat.errors import Unavailable
from chat.luascript import FAILURES
from chat.protocol import unpack_envelope
from chat.redis.client import COMMAND_TIMEOUT

log = logging.getLogger("hearth.redis")


# redis-py strips the code off the error replies it has a class for ("OOM command not
# allowed..." becomes OutOfMemoryError("command not allowed...")): name those by their code
# again, as the metric's kinds are documented (docs/protocol.md Part 2). LOADING first: its
# class is a ConnectionError.
_REPLY_CODES: tuple[tuple[type[RedisError], str], ...] = (
    (OutOfMemoryError, "OOM"),
    (ReadOnlyError, "READONLY"),
    (BusyLoadingError, "LOADING"),
    (NoScriptError, "NOSCRIPT"),
    (MasterDownError, "MASTERDOWN"),
    (TryAgainError, "TRYAGAIN"),
    (ClusterDownError, "CLUSTERDOWN"),
    (ClusterCrossSlotError, "CROSSSLOT"),
    (MovedError, "MOVED"),
    (AskError, "ASK"),
    (ExecAbortError, "EXECABORT"),
    (NoPermissionError, "NOPERM"),
)


def error_kind(exc: BaseException) -> str:
    """A loggable name for a Redis failure: the reply's code (``OOM``, ``BUSY``...) or the
    exception's class — never the rest of the reply, which may quote a value."""
    for kind, code in _REPLY_CODES:
        if isinstance(exc, kind):
            return code
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
        return type(exc).__name__
    if not isinstance(exc, RedisError):  # the cluster client's own: no reply to quote
        return type(exc).__name__
    words = str(exc).split(maxsplit=1)
    first = words[0] if words else ""
    return first if first.isupper() and first.isalpha() and len(first) <= 16 else type(exc).__name__


@contextlib.asynccontextmanager
async def unavailable() -> AsyncIterator[None]:
    """Bound a Redis exchange in time, and turn every failure into ``Unavailable``.

    The bound is ours because the client has no socket timeout (see ``client.connect``).
    """
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT):
            yield
    except FAILURES as exc:
        raise failed(exc) from exc


def failed(exc: BaseException) -> Unavailable:
    """Count and log a Redis failure (by its kind only); the ``Unavailable`` to raise for it.
    For a caller whose exchange is bounded in time already (a batched script call)."""
    kind = error_kind(exc)
    metrics.REDIS_ERRORS.labels(kind=kind).inc()
    log.warning("redis command failed", extra={"error": kind})
    return Unavailable("redis unavailable")


def open_record(
    sealer: Sealer, blob: bytes | str, kind: str, room_id: str
) -> dict[str, Any] | None:
    """The record a sealed blob holds, or None when it is forged, foreign or malformed."""
    try:
        return unpack_envelope(sealer.open(as_bytes(blob), context(kind, room_id)))
    except SealError:
        # Forged, or sealed with a key this worker no longer has: treat as absent.
        metrics.BUS_DROPPED.labels(reason="auth").inc()
        return None
    except ValueError:
        metrics.BUS_DROPPED.labels(reason="malformed").inc()
        return None


def as_bytes(value: bytes | str) -> bytes:
    """A reply as bytes (the client does not decode responses: Redis hands back bytes)."""
    return value if isinstance(value, bytes) else value.encode()


def as_text(value: Any) -> str:
    """A reply as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def now_ms() -> int:
    """Wall-clock milliseconds, the unit of every timestamp kept in Redis."""
    return int(time.time() * 1000)
