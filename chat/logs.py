"""Confidential logging: JSON lines that never hold message text, names, keys, tokens, reasons
or client addresses, at any level (protocol §11).

Our own loggers (``hearth.*``) log event names and aggregate ``extra`` fields only. Other
libraries' loggers are the risk, and no list of their messages stays complete: uvicorn logs
every handshake with the client's address, websockets logs every frame at debug level (the
first 75 bytes of it, so most of a facilitator key), asyncio logs the repr of a failed
callback's arguments. So a library's record is never formatted with its arguments: the line
carries the format template (code, not data) and the place that logged it. A library record
with no arguments may hold a string formatted beforehand, so only a short plain sentence
passes; anything else is withheld. Exceptions, ours included, show their type and stack, never
their message (a ``KeyError`` names its key); an ``OSError`` adds the system's words for its
error number, which hold no data. Python warnings, uncaught exceptions and
"unraisable" ones are routed through the same formatter.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
import traceback
from types import TracebackType
from typing import Any

OURS = "hearth"
# Per-connection chatter: one line per socket is noise at 10,000 sockets.
_NOISE = frozenset(
    {
        "connection open",
        "connection closed",
        '%s - "WebSocket %s" [accepted]',
        '%s - "WebSocket %s" 403',
        '%s - "WebSocket %s" %d',
    }
)
_PLAIN_SENTENCE = re.compile(r"[A-Za-z][A-Za-z .,:;-]{0,119}")
_WARNING_CATEGORY = re.compile(r": ([A-Za-z]*Warning): ")
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}
_MAX_CHAIN = 8


def event_text(record: logging.LogRecord) -> str:
    """What a record may say: ours formatted; a library's template, or a withheld marker."""
    if record.name == OURS or record.name.startswith(OURS + "."):
        return record.getMessage()
    if record.name == "py.warnings":
        category = _WARNING_CATEGORY.search(str(record.msg))  # the whole warning, formatted
        return f"python warning: {category.group(1) if category else 'Warning'}"
    if not isinstance(record.msg, str):
        return f"({_kind(record.msg)}, withheld)"
    if record.args:
        return record.msg  # a template from the library's code; its arguments are not shown
    first = record.msg.strip().split("\n", 1)[0]
    if _PLAIN_SENTENCE.fullmatch(first) and "\n" not in record.msg.strip():
        return first
    return "(a message formatted beforehand, withheld)"


def exception_text(
    exc_info: tuple[type[BaseException], BaseException, TracebackType | None],
) -> str:
    """Types and stack frames of an exception and its causes, without any message."""
    lines: list[str] = []
    seen: set[int] = set()
    exc: BaseException | None = exc_info[1]
    while exc is not None and id(exc) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(id(exc))
        lines.append("Traceback (most recent call last):\n")
        lines.extend(traceback.StackSummary.extract(traceback.walk_tb(exc.__traceback__)).format())
        lines.append(_type_line(exc))
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if exc is not None:
            lines.append("-- while or after handling --\n")
    return "".join(lines).rstrip("\n")


def _system_words(value: object) -> str | None:
    """For an ``OSError``, the system's own words for its error number: an operator whose
    worker cannot bind its port reads "Address already in use". They come from
    ``os.strerror``, never from the exception's text: uvicorn's spells out the address."""
    errno = value.errno if isinstance(value, OSError) else None
    return os.strerror(errno) if isinstance(errno, int) else None


def _kind(value: object) -> str:
    """What an object logged in place of a message is (uvicorn logs a failed bind so)."""
    words = _system_words(value)
    kind = f"a {type(value).__name__}"
    return f"{kind}: {words}" if words else kind


def _type_line(exc: BaseException) -> str:
    kind = type(exc)
    words = _system_words(exc)
    said = f"{words}; message withheld" if words else "message withheld"
    line = f"{kind.__module__}.{kind.__qualname__} ({said})\n"
    if isinstance(exc, BaseExceptionGroup):
        inner = ", ".join(sorted({type(e).__qualname__ for e in exc.exceptions}))
        line += f"  holding: {inner}\n"
    return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, where (for libraries), extras."""

    def format(self, record: logging.LogRecord) -> str:
        ours = record.name == OURS or record.name.startswith(OURS + ".")
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": event_text(record),
        }
        if not ours:
            entry["where"] = f"{record.module}:{record.lineno}"
        else:
            for key, value in vars(record).items():
                if key not in _STANDARD:
                    entry[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            entry["exc"] = exception_text(record.exc_info)
        return json.dumps(entry, default=str)


class DropNoise(logging.Filter):
    """Drops uvicorn's one-line-per-connection records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return str(record.msg) not in _NOISE


def configure(level: str = "info") -> None:
    """Route every logger (ours and every library's) through one JSON handler on stderr,
    and uncaught, unraisable and warning output with them."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(DropNoise())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.captureWarnings(True)
    crash = logging.getLogger(f"{OURS}.crash")

    def uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        crash.critical("uncaught exception", exc_info=(kind, value, tb))

    def uncaught_in_thread(args: Any) -> None:
        crash.error(
            "uncaught exception in a thread",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    def unraisable(info: Any) -> None:
        # info.object's repr and info.err_msg may quote data: neither is shown.
        if info.exc_value is not None:
            exc_info = (info.exc_type, info.exc_value, info.exc_traceback)
            crash.warning("unraisable exception", exc_info=exc_info)

    sys.excepthook = uncaught
    threading.excepthook = uncaught_in_thread
    sys.unraisablehook = unraisable
