"""Validation of room-creation requests (protocol §3); stdlib only, no I/O."""

from __future__ import annotations

import json
import time
from typing import Any

from chat.languages import Languages
from chat.protocol import is_unicode_text
from chat.roomstate import MAX_SLOW, SETTING_CHOICES

MAX_TITLE = 100
MAX_RULES = 4_000
MAX_CAPACITY = 1_000  # §13
MAX_TS = 2**53  # a ts beyond what JSON numbers hold exactly is not a time


class RoomRequestError(ValueError):
    """The request body is not a valid room request; the message says why."""


def parse_room_request(
    body: bytes, languages: Languages, default_lang: str, now_ms: int | None = None
) -> dict[str, Any]:
    """Parse ``{"title"?, "rules"?, "settings"?: {...}}`` into RoomState fields.

    Args:
        body: the request's body.
        languages: the languages the server knows; ``settings.lang`` must be one (§15).
        default_lang: the language of a room whose request names none.
        now_ms: the time to check ``opens_at`` and ``ends_at`` against (default: now).

    Raises:
        RoomRequestError: malformed JSON, a wrong type, or a value out of range.
    """
    if not body.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise RoomRequestError("The body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise RoomRequestError("The body must be a JSON object.")
    title = _text(data, "title", MAX_TITLE)
    rules = _text(data, "rules", MAX_RULES)
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise RoomRequestError("settings must be an object.")
    out: dict[str, Any] = {"title": title, "rules": rules}
    for name, allowed in SETTING_CHOICES.items():
        value = settings.get(name, allowed[0])
        if value not in allowed:
            raise RoomRequestError(f"settings.{name} must be one of {', '.join(allowed)}.")
        out[name] = value
    slow = settings.get("slow", 0)
    if type(slow) is not int or not 0 <= slow <= MAX_SLOW:
        raise RoomRequestError(f"settings.slow must be an integer from 0 to {MAX_SLOW}.")
    out["slow"] = slow
    lang = settings.get("lang", default_lang)
    out["lang"] = languages.known(lang) if isinstance(lang, str) else None
    if out["lang"] is None:
        raise RoomRequestError(f"settings.lang must be one of {', '.join(languages.tags)}.")
    out.update(_schedule(settings, int(time.time() * 1000) if now_ms is None else now_ms))
    return out


def _schedule(settings: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """§13's ``capacity``, ``opens_at`` and ``ends_at``. An ``opens_at`` already past has no
    effect: it is dropped."""
    out: dict[str, Any] = {}
    capacity = settings.get("capacity")
    if capacity is not None:
        if type(capacity) is not int or not 1 <= capacity <= MAX_CAPACITY:
            raise RoomRequestError(f"settings.capacity must be an integer, 1 to {MAX_CAPACITY}.")
        out["capacity"] = capacity
    times: dict[str, int] = {}
    for name in ("opens_at", "ends_at"):
        value = settings.get(name)
        if value is None:
            continue
        if type(value) is not int or not 0 < value < MAX_TS:
            raise RoomRequestError(f"settings.{name} must be a time in ms since the epoch.")
        times[name] = value
    ends_at, opens_at = times.get("ends_at"), times.get("opens_at")
    if ends_at is not None:
        if ends_at <= now_ms:
            raise RoomRequestError("settings.ends_at must be in the future.")
        if opens_at is not None and ends_at <= opens_at:
            raise RoomRequestError("settings.ends_at must come after settings.opens_at.")
        out["ends_at"] = ends_at
    if opens_at is not None and opens_at > now_ms:
        out["opens_at"] = opens_at
    return out


def _text(data: dict[str, Any], name: str, limit: int) -> str:
    value = data.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise RoomRequestError(f"{name} must be a string of at most {limit} characters.")
    if not is_unicode_text(value):
        raise RoomRequestError(f"{name} is not valid Unicode text.")
    return value.strip()
