"""How the Redis room store meets Redis: lost connections, sealed records, and replies in bytes.

A lost or refused connection becomes ``BrokerUnavailable`` (:func:`unavailable`), which the
session answers as ``unavailable``. A record that holds names or text is sealed with its kind and
room bound in (:mod:`chat.buscrypt`) and opened by :func:`open_record`, which treats a forged or
unreadable one as absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chat import metrics
from chat.broker.base import BrokerUnavailable
from chat.broker.redis_client import COMMAND_TIMEOUT
from chat.buscrypt import Sealer, SealError, context
from chat.protocol import unpack_envelope


@contextlib.asynccontextmanager
async def unavailable() -> AsyncIterator[None]:
    """Bound a Redis exchange in time, and turn a lost, refused or hung connection into
    ``BrokerUnavailable`` (answered ``unavailable``).

    The bound is ours because the client has no socket timeout (see ``broker.redis.connect``).
    Other Redis errors (a script or type error, an ACL refusal) are bugs or misconfiguration
    and propagate as they are.
    """
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT):
            yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:  # TimeoutError too
        raise BrokerUnavailable("redis unavailable") from exc


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
