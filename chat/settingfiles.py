"""The operator's JSON files that settings name: ``--crisis-resources`` and ``--safety-words``.

Each reader takes the path given on the command line (or in its ``HEARTH_*`` twin) and raises
:class:`ValueError` with a message fit for one line; :mod:`chat.settings` prefixes the option.
Stdlib only, apart from :mod:`chat.languages` for language tags.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chat.languages import canonical_tag

MAX_PHRASES = 2_000
MAX_PHRASE = 200
# The keys of the single-object crisis-resources form; any other key makes it per language.
_RESOURCE_KEYS = frozenset({"text", "links"})


@dataclass(frozen=True, slots=True)
class CrisisResources:
    """What the help flare answers: operator-configured text and links (protocol §6), for
    every language, or per language (§15).

    The single-object form of the file fills ``text`` and ``links``, which serve every
    language; the per-language form fills ``by_lang``, and a room whose language it does not
    name gets the default language's entry (else the empty ``text`` and ``links``).
    """

    text: str = ""
    links: tuple[tuple[str, str], ...] = ()
    by_lang: tuple[tuple[str, CrisisResources], ...] = ()

    def as_message_fields(self) -> dict[str, Any]:
        """The every-language answer: ``text`` and ``links`` of a ``resources`` message."""
        return {"text": self.text, "links": [{"title": t, "url": u} for t, u in self.links]}

    def answer(self, lang: str, default_lang: str) -> dict[str, Any]:
        """The ``resources`` fields for a room in ``lang``: its own, else the default's."""
        found = dict(self.by_lang)
        for tag in (lang, lang.split("-")[0], default_lang, default_lang.split("-")[0]):
            if tag in found:
                return found[tag].as_message_fields()
        return self.as_message_fields()


def _json_object(path: str, shape: str) -> dict[str, Any]:
    """The JSON object in the file at ``path``; ``shape`` describes it in the error."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold an object {shape}")
    return data


def crisis_resources(path: str) -> CrisisResources:
    """Read the crisis-resources JSON file: ``{"text": str, "links": [{"title","url"}]}`` for
    every language, or ``{"<lang>": {"text", "links"}, ...}`` per language (protocol §15)."""
    data = _json_object(path, '{"text", "links"} or {"<lang>": {"text", "links"}}')
    if not data or data.keys() & _RESOURCE_KEYS:
        # A file that mixes the forms would lose its language entries without a word: the
        # operator believes a room in that language is answered in it, and it is not.
        extra = sorted(data.keys() - _RESOURCE_KEYS)
        if extra:
            raise ValueError(
                f"{path}: {extra[0]!r} beside 'text'/'links'; either one object for every "
                'language or {"<lang>": {"text", "links"}, ...}, not both'
            )
        return _resources(data, path)
    by_lang = []
    for raw, value in data.items():
        tag = canonical_tag(raw)
        if tag is None:
            raise ValueError(f"{path}: {raw!r} is neither 'text', 'links' nor a language tag")
        by_lang.append((tag, _resources(value, f"{path}: {tag}")))
    return CrisisResources(by_lang=tuple(by_lang))


def _resources(data: Any, where: str) -> CrisisResources:
    if not isinstance(data, dict) or not isinstance(data.get("text", ""), str):
        raise ValueError(f"{where} must be an object with a string 'text'")
    links = data.get("links", [])
    if not isinstance(links, list) or not all(
        isinstance(link, dict)
        and isinstance(link.get("title"), str)
        and isinstance(link.get("url"), str)
        for link in links
    ):
        raise ValueError(f"{where}: 'links' must be a list of {{'title', 'url'}} strings")
    return CrisisResources(
        text=data.get("text", ""), links=tuple((link["title"], link["url"]) for link in links)
    )


def safety_words(path: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Read the ``--safety-words`` file ``{"<lang>": {"crisis": [phrase, ...]}}`` (§14)."""
    data = _json_object(path, '{"<lang>": {"crisis": [...]}}')
    out: list[tuple[str, tuple[str, ...]]] = []
    for raw_lang, words in data.items():
        lang = canonical_tag(raw_lang)
        if lang is None:
            raise ValueError(f"{path}: {raw_lang!r} is not a language tag")
        phrases = words.get("crisis") if isinstance(words, dict) else None
        if not isinstance(phrases, list) or not all(
            isinstance(p, str) and p.strip() and len(p) <= MAX_PHRASE for p in phrases
        ):
            raise ValueError(
                f"{path}: {lang}.crisis must be a list of phrases of 1 to {MAX_PHRASE} characters"
            )
        if len(phrases) > MAX_PHRASES:
            raise ValueError(f"{path}: {lang}.crisis holds more than {MAX_PHRASES} phrases")
        out.append((lang, tuple(phrases)))
    return tuple(out)
