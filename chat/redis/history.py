"""Where message history goes with Redis: Redis memory, or each worker's memory (protocol §7).

History (and the room's stream, which carries message text too) goes to Redis memory when
Redis does not write to disk, or the operator allowed it; otherwise it stays in each worker's
memory, so that message text never reaches a disk. :func:`place_history` decides once.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from chat.redis.records import as_text, unavailable

log = logging.getLogger("hearth.redis")


async def redis_persists(client: Redis) -> bool:
    """Whether Redis writes its data to disk (RDB snapshots or AOF), per ``CONFIG GET``.

    A refused ``CONFIG`` (an ACL user without it, a renamed command) counts as persisting: we
    cannot tell, so message text stays out of it (protocol §7).

    Raises:
        Unavailable: Redis cannot be reached.
    """
    async with unavailable():
        try:
            save = await client.config_get("save")
            aof = await client.config_get("appendonly")
        except ResponseError:
            return True
    save_value = as_text(next(iter(save.values()), ""))
    aof_value = as_text(next(iter(aof.values()), "no"))
    return bool(save_value.strip()) or aof_value == "yes"


async def place_history(client: Redis, *, allow_persistent: bool) -> bool:
    """Decide where history goes, and say so once in the log.

    Returns:
        True when history (and the stream) is kept in Redis.

    Raises:
        Unavailable: Redis cannot be reached yet.
    """
    persists = await redis_persists(client)
    if persists and allow_persistent:
        log.warning(
            "redis writes to disk and --allow-persistent-redis is set: "
            "message history is kept in redis and may reach its disk"
        )
    elif persists:
        log.warning(
            "redis writes to disk (RDB or AOF): message history is kept in worker "
            "memory only, so a resume on another worker cannot replay missed messages"
        )
    else:
        log.info("message history is kept in redis memory (redis does not persist)")
    return not persists or allow_persistent
