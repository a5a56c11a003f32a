"""Choosing the backend for a worker: embedded, or Redis when configured.

This is also where a worker says, once at start, where message history is kept (Redis memory
or worker memory, protocol §7) and whether what it puts in Redis is encrypted.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from chat.backend.base import Backend
from chat.backend.memory import MemoryBackend
from chat.settings import Settings

if TYPE_CHECKING:
    from chat.redis.backend import RedisBackend

log = logging.getLogger("hearth.redis")


async def build_backend(settings: Settings) -> Backend:
    """The backend this worker uses: Redis when the settings name one (one server, a Sentinel
    set or a Cluster, protocol §16), else the embedded one.

    Never fails because Redis is down: the worker then starts not ready (``/readyz`` 503).
    """
    if not settings.uses_redis:
        return MemoryBackend(
            history_messages=settings.history_messages,
            history_seconds=settings.history_seconds,
            room_idle=settings.room_idle,
            room_unused=settings.room_unused,
            max_rooms=settings.max_rooms,
        )
    return _redis_backend(settings)


def _redis_backend(settings: Settings) -> RedisBackend:
    """The Redis backend for ``settings``; says whether what goes to Redis is encrypted.
    (Imported here, not at the top: a worker without Redis never loads redis-py's modules.)"""
    from chat.buscrypt import Sealer
    from chat.redis.backend import RedisBackend
    from chat.redis.client import RedisSpace
    from chat.redis.topology import command_client

    sealer = Sealer(settings.bus_key, settings.bus_key_old)
    space = RedisSpace(command_client(settings), settings.redis_prefix, sealer, settings.room_idle)
    if sealer.encrypting:
        log.info("bus encrypted: names and text in redis are sealed with AES-GCM")
    else:
        log.warning("bus in clear: no --bus-key, so redis sees names and message text")
    return RedisBackend(
        space,
        history_messages=settings.history_messages,
        history_seconds=settings.history_seconds,
        allow_persistent=settings.allow_persistent_redis,
        linger=settings.resume_grace,
        room_unused=settings.room_unused,
        max_rooms=settings.max_rooms,
    )
