"""Structured, confidential logging: JSON lines with no message text, names or addresses.

Our own log calls pass only event names and aggregate fields. uvicorn's loggers are the risk:
it logs every WebSocket handshake with the client's address on ``uvicorn.error`` (and
``--no-access-log`` does not stop it), so records that carry a client address are dropped.
"""

from __future__ import annotations

import json
import logging
import sys
import time

# uvicorn message templates whose arguments carry the client's address or the request path.
_ADDRESS_TEMPLATES = ('%s - "WebSocket %s"', '%s - "%s %s HTTP/%s" %d')
# Per-connection chatter: no address, but one line per socket is noise at 10,000 sockets.
_NOISE = frozenset({"connection open", "connection closed"})
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class DropClientAddresses(logging.Filter):
    """Drops uvicorn records that would print a client's address or a request path."""

    def filter(self, record: logging.LogRecord) -> bool:
        template = str(record.msg)
        if template in _NOISE:
            return False
        return not any(template.startswith(t) for t in _ADDRESS_TEMPLATES)


def configure(level: str = "info") -> None:
    """Route every logger (ours and uvicorn's) through one JSON handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(DropClientAddresses())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
