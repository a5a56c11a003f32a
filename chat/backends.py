"""Choosing the broker and room store for a worker: embedded, or Redis when configured.

This is also where a worker says, once at start, where message history is kept (Redis memory
or worker memory, protocol §7) and whether what it puts on the bus is encrypted.
"""

from __future__ import annotations

import logging

from chat.broker.base import Broker, BrokerUnavailable
from chat.broker.memory import MemoryBroker
from chat.broker.redis import RedisBroker
from chat.broker.redis_client import RedisSpace, connect
from chat.buscrypt import Sealer
from chat.settings import Settings
from chat.state.base import RoomStore
from chat.state.memory import MemoryRoomStore
from chat.state.redis import RedisRoomStore
from chat.state.redis_history import RedisHistory

log = logging.getLogger("hearth.backends")


async def build_backends(settings: Settings) -> tuple[Broker, RoomStore]:
    """The broker and store this worker uses; no ``redis_url`` means the embedded pair.

    Never fails because Redis is down: the worker then starts not ready (``/readyz`` 503).
    """
    if not settings.redis_url:
        broker = MemoryBroker()
        store = MemoryRoomStore(settings.history_messages, settings.history_seconds)
        return broker, store
    client = connect(settings.redis_url)
    sealer = Sealer(settings.bus_key, settings.bus_key_old)
    space = RedisSpace(client, settings.redis_prefix, sealer, settings.room_idle)
    history = RedisHistory(
        space,
        history_messages=settings.history_messages,
        history_seconds=settings.history_seconds,
        allow_persistent=settings.allow_persistent_redis,
    )
    redis_store = RedisRoomStore(space, history=history)
    redis_broker = RedisBroker(
        space,
        observe=history.observe,
        unobserve=history.unobserve,
        linger=settings.resume_grace,
        # One round trip per say: the publish script also writes the msg's history entry.
        history=history.record_on_publish(),
    )
    if sealer.encrypting:
        log.info("bus encrypted: names and text in redis are sealed with AES-GCM")
    else:
        log.warning("bus in clear: no --bus-key, so redis sees names and message text")
    try:
        await history.settle()  # logs where history goes
    except BrokerUnavailable:
        log.warning("redis unreachable: history placement is decided when redis comes up")
    return redis_broker, redis_store
