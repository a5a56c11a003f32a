"""Choosing the backend for a worker: embedded, or Redis when configured.

This is also where a worker says, once at start, where message history is kept (Redis memory
or worker memory, protocol §7) and whether what it puts in Redis is encrypted.
"""

from __future__ import annotations

from chat.backend.base import Backend
from chat.backend.memory import MemoryBackend
from chat.settings import Settings


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
    from chat.redis.backend import build_redis_backend

    return await build_redis_backend(settings)
