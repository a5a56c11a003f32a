"""Where message history goes with Redis: Redis memory, or each worker's memory (protocol §7).

History (and the room's stream, which carries message text too) goes to Redis memory when
Redis does not write to disk, or the operator allowed it; otherwise it stays in each worker's
memory, so that message text never reaches a disk. :func:`place_history` decides at start;
after a failover the backend asks :func:`redis_persists` again, and moves history out of Redis
if the answer turned (chat.redis.backend).

"Redis" is every data node the worker can reach (protocol §16): a replica that persists
writes what its master sends it to disk just the same, so one persisting master or replica
of a Sentinel set, or one persisting node of a Cluster, makes the deployment persisting.
"""

from __future__ import annotations

import logging

from chat.luascript import Client
from chat.redis.records import unavailable
from chat.redis.topology import every_node_config

log = logging.getLogger("hearth.redis")


async def redis_persists(client: Client) -> bool:
    """Whether any data node this worker can reach writes to disk (RDB snapshots or AOF), per
    ``CONFIG GET`` on each.

    A refused ``CONFIG`` (an ACL user without it, a renamed command), or a listed replica or
    cluster node that does not answer, counts as persisting: we cannot tell, so message text
    stays out of it (protocol §7).

    Raises:
        Unavailable: Redis (the master, or every cluster node) cannot be reached.
    """
    async with unavailable():
        configs = await every_node_config(client, ("save", "appendonly"))
    return any(
        not config or config.get("save", "").strip() or config.get("appendonly") == "yes"
        for config in configs
    )


async def place_history(client: Client, *, allow_persistent: bool) -> bool:
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
