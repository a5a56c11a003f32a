"""The languages a server knows: page catalogues and pseudonym words, read once at start.

A language is a directory named by its tag (``es``, ``pt-BR``) holding ``page.json`` (the
sentences of the browser page) and ``names.json`` (the words generated pseudonyms are made of,
and the language's role words, which no participant may take as a name).
The shipped languages live in ``lang/`` at the top of the repository; an operator's
``--lang-dir`` has the same layout and adds languages or corrects shipped ones, sentence by
sentence, without touching code (docs/languages.md). Stdlib only.

English is the reference: every key of the English catalogue is a sentence the page may show.
A catalogue that lacks a key is completed from English (and the server says so at start); a
key English does not have, or a translation that loses one of English's ``{placeholders}``,
is refused at start, because it would show the wrong words to someone in a support group.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

SHIPPED = Path(__file__).resolve().parent.parent / "lang"
REFERENCE = "en"
PAGE_FILE = "page.json"
NAMES_FILE = "names.json"
MAX_PSEUDONYM = 20  # room for a " 123" suffix within the 24-character name limit

PLURAL_CATEGORIES = ("zero", "one", "two", "few", "many", "other")
# Languages written right to left, by primary subtag, and the scripts that are (protocol §15
# names Arabic, Hebrew, Persian and Urdu; the others are here so that an operator's catalogue
# for them needs no "dir").
RTL_LANGUAGES = frozenset({"ar", "he", "fa", "ur", "yi", "ps", "sd", "ug", "ckb", "dv", "syr"})
RTL_SCRIPTS = frozenset({"Arab", "Hebr", "Thaa", "Syrc", "Nkoo", "Adlm", "Rohg"})

_TAG = re.compile(r"^([A-Za-z]{2,3})(?:-([A-Za-z]{4}))?(?:-([A-Za-z]{2}|[0-9]{3}))?$")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_ONE_WORD = re.compile(r"[^\W_]+")  # what identity.normalise_name reads as a word

Text = str | Mapping[str, str]  # a sentence, or its plural forms by CLDR category


def canonical_tag(raw: str) -> str | None:
    """``raw`` in the canonical case of BCP 47 (``pt-br`` → ``pt-BR``), or None if it is not
    a plain language[-Script][-REGION] tag."""
    match = _TAG.match(raw.strip()) if isinstance(raw, str) else None
    if match is None:
        return None
    language, script, region = match.groups()
    parts = [language.lower()]
    if script:
        parts.append(script.title())
    if region:
        parts.append(region.upper())
    return "-".join(parts)


def direction(tag: str) -> str:
    """``"rtl"`` or ``"ltr"`` for a canonical tag, from its script or else its language."""
    match = _TAG.match(tag)
    if match is None:
        return "ltr"
    language, script, _ = match.groups()
    if script:
        return "rtl" if script in RTL_SCRIPTS else "ltr"
    return "rtl" if language in RTL_LANGUAGES else "ltr"


@dataclass(frozen=True, slots=True)
class NameWords:
    """A language's pseudonym words: an adjective and a noun from one group, in ``pattern``.

    Groups exist for grammatical agreement: Spanish and Arabic adjectives follow the noun's
    gender, so feminine nouns and the feminine adjectives form one group.
    """

    pattern: str
    groups: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]

    @property
    def size(self) -> int:
        """How many different names the words make."""
        return sum(len(adjectives) * len(nouns) for adjectives, nouns in self.groups)

    def name(self, index: int) -> str:
        """The ``index``-th name (0 ≤ index < size): every combination equally likely."""
        for adjectives, nouns in self.groups:
            count = len(adjectives) * len(nouns)
            if index < count:
                adjective, noun = (
                    adjectives[index % len(adjectives)],
                    nouns[index // len(adjectives)],
                )
                return self.pattern.replace("{adjective}", adjective).replace("{noun}", noun)
            index -= count
        raise IndexError("no such name")

    def longest(self) -> int:
        filler = len(self.pattern) - len("{adjective}") - len("{noun}")
        return filler + max(
            max(map(len, adjectives)) + max(map(len, nouns)) for adjectives, nouns in self.groups
        )


@dataclass(frozen=True, slots=True)
class Language:
    """One language as the server serves it: its page sentences are complete."""

    tag: str
    name: str  # its own name for itself: "Español", "العربية"
    dir: str
    messages: Mapping[str, Text]
    names: NameWords | None  # None: pseudonyms come from the default language's words
    missing: int = 0  # sentences completed from English
    reserved: frozenset[str] = frozenset()  # role words in this language ("Facilitadora")

    def catalogue(self) -> dict[str, Any]:
        """What ``GET /api/languages/{tag}`` answers."""
        return {
            "tag": self.tag,
            "name": self.name,
            "dir": self.dir,
            "messages": dict(self.messages),
        }


@dataclass(frozen=True, slots=True)
class Languages:
    """Every language the server knows (shipped, plus ``--lang-dir``), by canonical tag."""

    by_tag: Mapping[str, Language] = field(default_factory=dict)
    source: str = ""  # the --lang-dir it was read from, for messages
    # Every language's role words together: a name in any script can be chosen in any room,
    # so a Spanish role word is refused in an English room too (identity.normalise_name).
    reserved: frozenset[str] = frozenset()

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(sorted(self.by_tag))

    def known(self, raw: str) -> str | None:
        """The canonical tag of ``raw`` when the server knows that language, else None."""
        tag = canonical_tag(raw)
        return tag if tag in self.by_tag else None

    def get(self, tag: str) -> Language | None:
        return self.by_tag.get(tag)

    def listing(self) -> list[dict[str, str]]:
        """Tag, own name and direction of each language, for the page's language choices."""
        return [
            {"tag": lang.tag, "name": lang.name, "dir": lang.dir}
            for lang in sorted(self.by_tag.values(), key=lambda lang: lang.tag)
        ]

    def words(self, tag: str, default: str) -> NameWords:
        """Pseudonym words for a room in ``tag``: its own, else the default language's,
        else English's."""
        for candidate in (tag, default, REFERENCE):
            lang = self.by_tag.get(candidate)
            if lang is not None and lang.names is not None:
                return lang.names
        raise LookupError("no language has pseudonym words")


def load_languages(extra: str | Path | None = None) -> Languages:
    """The shipped languages, with ``extra`` (an operator's ``--lang-dir``) over them.

    Raises:
        ValueError: a directory or file that cannot be used; the message names it.
    """
    shipped = _read_dir(SHIPPED)
    added = _read_dir(Path(extra)) if extra is not None else {}
    english = shipped[REFERENCE].page if REFERENCE in shipped else None
    if english is None:
        raise ValueError(f"{SHIPPED / REFERENCE / PAGE_FILE} is missing")
    reference = english.messages
    by_tag: dict[str, Language] = {}
    for tag in sorted(shipped.keys() | added.keys()):
        layers = [d for d in (shipped.get(tag), added.get(tag)) if d is not None]
        messages: dict[str, Text] = {}
        name, lang_dir, words = tag, direction(tag), None
        reserved: set[str] = set()
        for layer in layers:
            if layer.page is not None:
                problems = check_messages(layer.page.messages, reference)
                if problems:
                    raise ValueError(f"{layer.path / PAGE_FILE}: {problems[0]}")
                messages.update(layer.page.messages)
                name = layer.page.name or name
                lang_dir = layer.page.dir or lang_dir
            words = layer.names or words
            # Added to, never replaced: an operator's names.json may bring its own pseudonym
            # words but cannot free a shipped role word for participants to take.
            reserved.update(layer.reserved)
        missing = sum(1 for key in reference if key not in messages)
        by_tag[tag] = Language(
            tag=tag,
            name=name,
            dir=lang_dir,
            messages=MappingProxyType({**reference, **messages}),
            names=words,
            missing=missing,
            reserved=frozenset(reserved),
        )
    return Languages(
        by_tag=MappingProxyType(by_tag),
        source=str(extra or ""),
        reserved=frozenset(word for lang in by_tag.values() for word in lang.reserved),
    )


@cache
def shipped_languages() -> Languages:
    """The languages in the repository's ``lang/``, read once."""
    return load_languages()


def check_messages(messages: Mapping[str, Text], reference: Mapping[str, Text]) -> list[str]:
    """What is wrong with a catalogue's sentences, measured against English (empty: nothing).

    Every key must be one English has, of the same kind (sentence or plural forms), with
    English's placeholders: all of them, and no others. A plural form may leave out
    ``{count}`` (Arabic says "one message" without the digit) except in ``other``.
    """
    problems: list[str] = []
    for key, text in messages.items():
        if key not in reference:
            problems.append(f"{key!r} is not a sentence of the page (a typo?)")
            continue
        wanted = placeholders(reference[key])
        if isinstance(reference[key], str):
            if not isinstance(text, str):
                problems.append(f"{key!r} must be a string")
            elif placeholders(text) != wanted:
                problems.append(f"{key!r} must use exactly {_braces(wanted)}")
            continue
        if not isinstance(text, Mapping) or "other" not in text:
            problems.append(f"{key!r} must be plural forms with at least 'other'")
            continue
        for category, form in text.items():
            if category not in PLURAL_CATEGORIES or not isinstance(form, str):
                problems.append(f"{key!r}: {category!r} is not a plural category with a string")
                continue
            needed = wanted if category == "other" else wanted - {"count"}
            used = placeholders(form)
            if not needed <= used <= wanted:
                problems.append(f"{key!r} ({category}) must use {_braces(needed)}")
    return problems


def placeholders(text: Text) -> set[str]:
    """The ``{names}`` a sentence (or all its plural forms together) uses."""
    forms = [text] if isinstance(text, str) else list(text.values())
    return {name for form in forms if isinstance(form, str) for name in _PLACEHOLDER.findall(form)}


def _braces(names: set[str]) -> str:
    return ", ".join("{" + n + "}" for n in sorted(names)) or "no placeholders"


@dataclass(frozen=True, slots=True)
class _Page:
    name: str
    dir: str
    messages: dict[str, Text]


@dataclass(frozen=True, slots=True)
class _Dir:
    path: Path
    page: _Page | None
    names: NameWords | None
    reserved: tuple[str, ...] = ()


def _read_dir(root: Path) -> dict[str, _Dir]:
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory")
    found: dict[str, _Dir] = {}
    for path in sorted(root.iterdir()):
        if not path.is_dir() or path.name.startswith("."):
            continue
        tag = canonical_tag(path.name)
        if tag is None:
            raise ValueError(
                f"{path}: the folder's name must be a language tag such as es or pt-BR"
            )
        if tag in found:
            raise ValueError(f"{path}: {tag} is there twice")
        page = _read_page(path / PAGE_FILE) if (path / PAGE_FILE).exists() else None
        names, reserved = (
            _read_names(path / NAMES_FILE) if (path / NAMES_FILE).exists() else (None, ())
        )
        if page is None and names is None and not reserved:
            raise ValueError(f"{path} holds neither {PAGE_FILE} nor {NAMES_FILE}")
        found[tag] = _Dir(path, page, names, reserved)
    return found


def _json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def _read_page(path: Path) -> _Page:
    data = _json_object(path)
    meta = data.get("language", {})
    messages = data.get("messages")
    if not isinstance(meta, dict) or not isinstance(messages, dict):
        raise ValueError(f"{path} must hold {{'language': {{...}}, 'messages': {{...}}}}")
    name, lang_dir = meta.get("name", ""), meta.get("dir", "")
    if not isinstance(name, str) or lang_dir not in ("", "ltr", "rtl"):
        raise ValueError(f"{path}: 'language' has a string 'name' and a 'dir' of ltr or rtl")
    return _Page(name=name.strip(), dir=lang_dir, messages=messages)


def _read_names(path: Path) -> tuple[NameWords | None, tuple[str, ...]]:
    """The pseudonym words (None when the file gives only role words) and the role words."""
    data = _json_object(path)
    reserved = _reserved_list(data.get("reserved", []), f"{path}: 'reserved'")
    pattern, groups = data.get("pattern"), data.get("groups")
    if pattern is None and groups is None and reserved:
        return None, reserved  # role words only: the pseudonym words stay as they were
    if not isinstance(pattern, str) or sorted(_PLACEHOLDER.findall(pattern)) != [
        "adjective",
        "noun",
    ]:
        raise ValueError(f"{path}: 'pattern' must hold {{adjective}} and {{noun}} once each")
    if not isinstance(groups, list) or not groups:
        raise ValueError(f"{path}: 'groups' must be a non-empty list")
    parsed = []
    for number, group in enumerate(groups, 1):
        if not isinstance(group, dict):
            raise ValueError(f"{path}: group {number} must be an object")
        parsed.append(
            (
                _word_list(group.get("adjectives"), f"{path}: group {number} 'adjectives'"),
                _word_list(group.get("nouns"), f"{path}: group {number} 'nouns'"),
            )
        )
    words = NameWords(pattern=pattern, groups=tuple(parsed))
    if words.longest() > MAX_PSEUDONYM:
        raise ValueError(f"{path}: a name would be over {MAX_PSEUDONYM} characters")
    return words, reserved


def _reserved_list(value: Any, where: str) -> tuple[str, ...]:
    # Each entry is one word as normalise_name splits a name into words: a phrase or a word
    # with a hyphen or an apostrophe could never match, and would look like protection.
    if not isinstance(value, list):
        raise ValueError(f"{where} must be a list of words")
    words = []
    for word in value:
        if not isinstance(word, str) or any(unicodedata.category(ch)[0] == "C" for ch in word):
            raise ValueError(f"{where}: {word!r} is not a word")
        folded = unicodedata.normalize("NFKC", word).casefold()
        if _ONE_WORD.fullmatch(_without_marks(folded)) is None:
            raise ValueError(f"{where}: {word!r} must be one word (no spaces or punctuation)")
        words.append(folded)
    if len(set(words)) != len(words):
        raise ValueError(f"{where} lists a word twice")
    return tuple(words)


def _without_marks(text: str) -> str:
    # Accents and Arabic vowel signs (combining marks) join a word rather than split it.
    return "".join(ch for ch in text if unicodedata.category(ch) not in ("Mn", "Mc", "Me"))


def _word_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where} must be a non-empty list of words")
    words = []
    for word in value:
        if not isinstance(word, str) or word != word.strip() or not word:
            raise ValueError(f"{where}: {word!r} is not a word")
        if any(unicodedata.category(ch)[0] == "C" for ch in word):
            raise ValueError(f"{where}: {word!r} holds invisible characters")
        words.append(unicodedata.normalize("NFKC", word))
    if len(set(words)) != len(words):
        raise ValueError(f"{where} lists a word twice")
    return tuple(words)
