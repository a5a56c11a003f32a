"""Prometheus metrics: aggregate figures only, never a room id, name or text."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONNECTIONS = Gauge("hearth_connections", "Open WebSocket connections on this worker.")
ROOMS = Gauge("hearth_rooms", "Rooms with members on this worker.")
MESSAGES = Counter("hearth_messages", "Room messages relayed to this worker's members.")
ERRORS = Counter("hearth_errors", "Error answers sent to clients, by code.", ["code"])
CLOSES = Counter("hearth_closes", "Connections closed by the server, by close code.", ["code"])
BUS_DROPPED = Counter("hearth_bus_dropped", "Broker envelopes dropped, by reason.", ["reason"])
REFUSED = Counter(
    "hearth_handshakes_refused", "WebSocket handshakes refused, by reason.", ["reason"]
)
REDIS_ERRORS = Counter(
    "hearth_redis_errors", "Redis commands that failed, by kind (OOM, BUSY, ...).", ["kind"]
)
FLAGS = Counter(
    "hearth_flags", "Messages flagged to facilitators, by kind (crisis); no text.", ["kind"]
)
