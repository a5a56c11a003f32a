"""Validation of room-creation requests (protocol §3); stdlib only, no I/O."""

from __future__ import annotations

import json
from typing import Any

from chat.languages import Languages
from chat.protocol import is_unicode_text

MAX_TITLE = 100
MAX_RULES = 4_000
MAX_SLOW = 3_600
CHOICES = {
    "history": ("since_join", "recent"),
    "admission": ("open", "knock"),
    "typing": ("named", "anonymous", "off"),
    "review": ("off", "all"),  # §14 (the first is the default)
    "contact": ("nudge", "allow", "block"),
}


class RoomRequestError(ValueError):
    """The request body is not a valid room request; the message says why."""


def parse_room_request(body: bytes, languages: Languages, default_lang: str) -> dict[str, Any]:
    """Parse ``{"title"?, "rules"?, "settings"?: {...}}`` into RoomRecord fields.

    Args:
        body: the request body.
        languages: the languages the server knows; ``settings.lang`` must be one (§15).
        default_lang: the language of a room whose request names none.

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
    for name, allowed in CHOICES.items():
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
