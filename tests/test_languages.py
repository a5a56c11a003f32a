"""Languages: the shipped catalogues are complete, the word lists gentle, --lang-dir checked."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from chat.app import _say_what_languages_lack
from chat.identity import normalise_name
from chat.languages import (
    MAX_PSEUDONYM,
    SHIPPED,
    canonical_tag,
    check_messages,
    direction,
    load_languages,
    placeholders,
    shipped_languages,
)
from chat.settings import Settings, SettingsError

SHIPPED_TAGS = ("en", "es", "ar")
ENGLISH = shipped_languages().get("en")
assert ENGLISH is not None
REFERENCE = dict(ENGLISH.messages)

# Words that have no place in a support group's made-up names: illness, death, harm, danger,
# drink and drugs, and common insults (compared as whole words, case-folded; Arabic also
# without its article "ال"). A small net under the human review, not a replacement for it.
DENIED = {
    "dead", "death", "die", "kill", "killer", "suicide", "blood", "knife", "gun", "weapon",
    "drunk", "wine", "beer", "crazy", "mad", "psycho", "insane", "sick", "ill", "patient",
    "lonely", "sad", "grave", "ghost", "poison", "easy", "fat", "stupid", "pig", "cow", "snake",
    "muerte", "muerto", "matar", "suicidio", "sangre", "cuchillo", "arma", "borracho", "vino",
    "loco", "loca", "enfermo", "enferma", "paciente", "triste", "tumba", "veneno", "gorda",
    "gordo", "ballena", "tortuga", "cerdo", "vaca", "serpiente", "tonto", "tonta",
    "موت", "ميت", "قتل", "قاتل", "انتحار", "دم", "سكين", "سلاح", "خمر", "سكران", "مجنون",
    "مجنونة", "مريض", "مريضة", "حزين", "حزينة", "وحيد", "وحيدة", "قبر", "سم", "ثعبان", "غزال",
    "غزالة", "بقرة", "خنزير", "غبي",
}  # fmt: skip


def page_file(tag: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SHIPPED / tag / "page.json").read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("tag", SHIPPED_TAGS)
def test_shipped_catalogues_have_every_key(tag: str) -> None:
    """Each shipped language translates every sentence of the page: no key is missing."""
    messages = page_file(tag)["messages"]
    assert set(messages) == set(REFERENCE), set(REFERENCE) ^ set(messages)
    lang = shipped_languages().get(tag)
    assert lang is not None and lang.missing == 0 and lang.names is not None


@pytest.mark.parametrize("tag", SHIPPED_TAGS)
def test_shipped_catalogues_keep_every_placeholder(tag: str) -> None:
    """No translation loses or invents a {placeholder}; plurals give at least 'other'."""
    assert check_messages(page_file(tag)["messages"], REFERENCE) == []


@pytest.mark.parametrize("tag", ["es", "ar"])
def test_shipped_catalogues_are_translated(tag: str) -> None:
    """Beyond names and formats, the sentences differ from English (nothing left untouched)."""
    messages = page_file(tag)["messages"]
    same = [
        key
        for key, text in messages.items()
        if text == REFERENCE[key] and re.sub(r"\{\w+\}|[\W\d]", "", json.dumps(text))
    ]
    assert same == []


def test_direction_and_names_of_the_shipped_languages() -> None:
    """Arabic is right to left, English and Spanish left to right; each names itself."""
    listing = {entry["tag"]: entry for entry in shipped_languages().listing()}
    assert listing["ar"] == {"tag": "ar", "name": "العربية", "dir": "rtl"}
    assert listing["es"] == {"tag": "es", "name": "Español", "dir": "ltr"}
    assert listing["en"]["dir"] == "ltr"
    assert [direction(t) for t in ("he", "fa", "ur", "az-Arab", "ar-Latn", "fr")] == [
        "rtl", "rtl", "rtl", "rtl", "ltr", "ltr",
    ]  # fmt: skip


def test_tags_are_canonicalised() -> None:
    """Tags compare in BCP 47's canonical case; anything else is not a tag."""
    assert [canonical_tag(t) for t in ("ES", "pt-br", "zh-hant-tw", "sr-Latn")] == [
        "es", "pt-BR", "zh-Hant-TW", "sr-Latn",
    ]  # fmt: skip
    for bad in ("", "e", "en_US", "english", "en-", "../en", "en us"):
        assert canonical_tag(bad) is None


def test_check_messages_finds_lost_and_unknown_placeholders() -> None:
    """A lost placeholder, an invented one, an unknown key or a bad plural is a problem."""
    assert check_messages({"notice.joined": "joined."}, REFERENCE)
    assert check_messages({"notice.joined": "{nmae} joined."}, REFERENCE)
    assert check_messages({"notice.joinde": "{name} joined."}, REFERENCE)
    assert check_messages({"fac.slow_seconds": {"one": "{count} s"}}, REFERENCE)
    assert check_messages({"fac.slow_seconds": "{count} s"}, REFERENCE)
    assert check_messages({"notice.joined": {"other": "{name}"}}, REFERENCE)
    assert check_messages({"fac.slow_seconds": {"few": "{count}", "other": "{count}",
                                                 "lots": "{count}"}}, REFERENCE)  # fmt: skip
    # A plural form other than 'other' may say the number in words.
    ok = {"fac.slow_seconds": {"one": "a second", "other": "{count} seconds"}}
    assert check_messages(ok, REFERENCE) == []
    assert placeholders(REFERENCE["retention.text"]) == {"messages", "minutes"}


def _words(text: str) -> set[str]:
    words = set(re.findall(r"\w+", text.casefold()))
    return words | {w[2:] for w in words if w.startswith("ال")}


@pytest.mark.parametrize("tag", SHIPPED_TAGS)
def test_word_lists_are_gentle_unique_and_valid_names(tag: str) -> None:
    """Pseudonym words: non-empty, unique, none on the deny-list; every name a valid one."""
    data = json.loads((SHIPPED / tag / "names.json").read_text(encoding="utf-8"))
    nouns_seen: set[str] = set()
    for group in data["groups"]:
        for kind in ("adjectives", "nouns"):
            words = group[kind]
            assert words and all(isinstance(w, str) and w.strip() == w and w for w in words)
            assert len(set(words)) == len(words), f"{tag} {kind} repeat a word"
            denied = {w for w in words if _words(w) & DENIED}
            assert not denied, f"{tag} {kind}: {denied}"
        assert not nouns_seen & set(group["nouns"]), "a noun in two groups makes twin names"
        nouns_seen |= set(group["nouns"])
    words = shipped_languages().words(tag, "en")
    names = {words.name(i) for i in range(words.size)}
    assert len(names) == words.size >= 300
    for name in names:
        assert len(name) <= MAX_PSEUDONYM
        assert normalise_name(name, participant=True) == name  # no role word, nothing invisible


def _write(root: Path, tag: str, name: str, data: Any) -> None:
    (root / tag).mkdir(parents=True, exist_ok=True)
    (root / tag / name).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


FRENCH_NAMES = {
    "pattern": "{noun} {adjective}",
    "groups": [{"adjectives": ["Calme", "Douce"], "nouns": ["Loutre", "Colombe"]}],
}


def test_lang_dir_adds_a_language_and_corrects_a_sentence(tmp_path: Path) -> None:
    """--lang-dir adds French (completed from English) and corrects one Spanish sentence."""
    _write(tmp_path, "fr", "page.json", {
        "language": {"name": "Français"},
        "messages": {"notice.joined": "{name} est arrivé·e.", "status.open": "Connecté"},
    })  # fmt: skip
    _write(tmp_path, "fr", "names.json", FRENCH_NAMES)
    _write(tmp_path, "ES", "page.json", {"messages": {"status.open": "En línea"}})
    languages = load_languages(tmp_path)
    assert languages.tags == ("ar", "en", "es", "fr")
    french = languages.get("fr")
    assert french is not None and french.name == "Français" and french.dir == "ltr"
    assert french.messages["notice.joined"] == "{name} est arrivé·e."
    assert french.messages["composer.send"] == "Send"  # completed from English
    assert french.missing == len(REFERENCE) - 2
    assert languages.words("fr", "en").name(0) == "Loutre Calme"
    spanish = languages.get("es")
    assert spanish is not None and spanish.name == "Español" and spanish.missing == 0
    assert spanish.messages["status.open"] == "En línea"
    assert spanish.messages["composer.send"] == "Enviar"  # the rest stays shipped
    assert languages.words("es", "en") == shipped_languages().words("es", "en")


def test_role_words_are_each_languages_and_an_operator_adds_to_them(tmp_path: Path) -> None:
    """names.json "reserved": every shipped language has some; the server checks them all
    together; an operator's file adds words (alone, or beside its pseudonym words) and cannot
    take a shipped one away."""
    shipped = shipped_languages()
    for tag in ("en", "es", "ar"):
        lang = shipped.get(tag)
        assert lang is not None and lang.reserved and lang.reserved <= shipped.reserved
    assert {"facilitator", "facilitadora", "anfitrión", "المشرف", "الميسر"} <= shipped.reserved
    _write(tmp_path, "es", "names.json", {"reserved": ["Dinamizadora"]})
    _write(tmp_path, "fr", "names.json", {**FRENCH_NAMES, "reserved": ["animatrice"]})
    languages = load_languages(tmp_path)
    assert {"dinamizadora", "animatrice"} | shipped.reserved == languages.reserved
    assert languages.words("es", "en") == shipped.words("es", "en")  # role words alone
    assert languages.words("fr", "en").name(0) == "Loutre Calme"


def test_a_language_with_no_crisis_phrases_is_named_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The shipped languages all have crisis phrases; an operator's language without a
    --safety-words entry is named in a warning at start (its rooms would get no flag)."""
    _write(tmp_path, "fr", "names.json", FRENCH_NAMES)

    def warned(settings: Settings) -> set[str]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="hearth"):
            _say_what_languages_lack(settings)
        return {
            getattr(r, "lang", "") for r in caplog.records if "no crisis phrases" in r.getMessage()
        }

    assert warned(Settings(lang_dir=load_languages(tmp_path))) == {"fr"}
    words = (("fr", ("je veux mourir",)),)
    assert warned(Settings(lang_dir=load_languages(tmp_path), safety_words=words)) == set()


def test_a_language_without_words_uses_the_default_languages(tmp_path: Path) -> None:
    """Pseudonyms for a language with no names.json come from the default language."""
    _write(tmp_path, "he", "page.json", {"messages": {"status.open": "מחובר"}})
    languages = load_languages(tmp_path)
    assert languages.get("he") is not None and languages.get("he").dir == "rtl"  # type: ignore[union-attr]
    assert languages.words("he", "es") == shipped_languages().words("es", "en")


@pytest.mark.parametrize(
    ("tag", "name", "content", "complaint"),
    [
        ("fr", "page.json", "{not json", "not valid JSON"),
        ("fr", "page.json", {"messages": {"notice.joinde": "x"}}, "not a sentence"),
        ("fr", "page.json", {"messages": {"notice.joined": "arrivé"}}, "{name}"),
        ("fr", "page.json", {"messages": []}, "must hold"),
        ("fr", "page.json", {"language": {"dir": "up"}, "messages": {}}, "ltr or rtl"),
        ("french", "page.json", {"messages": {}}, "language tag"),
        ("fr", "names.json", {"pattern": "{noun}", "groups": []}, "pattern"),
        ("fr", "names.json", {**FRENCH_NAMES, "groups": [{"adjectives": [], "nouns": ["A"]}]},
         "non-empty"),
        ("fr", "names.json", {**FRENCH_NAMES, "groups": [{"adjectives": ["A", "A"],
                                                          "nouns": ["B"]}]}, "twice"),
        ("fr", "names.json", {**FRENCH_NAMES, "groups": [{"adjectives": ["Extraordinairement"],
                                                          "nouns": ["Magnifique"]}]}, "over 20"),
        ("fr", "names.json", {**FRENCH_NAMES, "reserved": "animateur"}, "list of words"),
        ("fr", "names.json", {**FRENCH_NAMES, "reserved": ["chef de salle"]}, "one word"),
        ("fr", "names.json", {**FRENCH_NAMES, "reserved": ["l'animateur"]}, "one word"),
        ("fr", "names.json", {**FRENCH_NAMES, "reserved": ["Animateur", "animateur"]}, "twice"),
        ("fr", "names.json", {**FRENCH_NAMES, "reserved": ["anima\u200bteur"]}, "not a word"),
    ],
)  # fmt: skip
def test_lang_dir_mistakes_stop_the_server_with_one_line(
    tmp_path: Path, tag: str, name: str, content: Any, complaint: str
) -> None:
    """A broken catalogue or word list is refused at start, naming the option and the file."""
    (tmp_path / tag).mkdir()
    text = content if isinstance(content, str) else json.dumps(content)
    (tmp_path / tag / name).write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"HEARTH_LANG_DIR": str(tmp_path)})
    message = str(caught.value)
    assert message.startswith("HEARTH_LANG_DIR: ") and complaint in message
    assert str(tmp_path / tag) in message and "\n" not in message


def test_lang_dir_must_be_a_directory(tmp_path: Path) -> None:
    """A --lang-dir that is not a directory is a one-line error."""
    with pytest.raises(SettingsError, match="is not a directory"):
        Settings.from_env({"HEARTH_LANG_DIR": str(tmp_path / "nowhere")})


STATIC = SHIPPED.parent / "static"


def keys_the_page_uses() -> set[str]:
    """Every catalogue key static/ names: data-i18n attributes, and key literals in scripts."""
    namespaces = {key.split(".")[0] for key in REFERENCE}
    used: set[str] = set()
    for page in STATIC.glob("*.html"):
        text = page.read_text(encoding="utf-8")
        used |= set(re.findall(r'data-i18n="([^"]+)"', text))
        for spec in re.findall(r"data-i18n-attrs='([^']+)'", text):
            for value in json.loads(spec).values():
                used.add(value if isinstance(value, str) else value[0])
    for script in (STATIC / "js").glob("*.js"):
        for literal in re.findall(r'"([a-z_]+(?:\.[a-z0-9_]+)+)"', script.read_text("utf-8")):
            if literal.split(".")[0] in namespaces:
                used.add(literal)
    return used


def test_every_key_the_page_uses_is_in_the_catalogues() -> None:
    """No sentence of the page is missing from English (and so from every shipped language)."""
    used = keys_the_page_uses()
    assert len(used) > 150
    assert used - set(REFERENCE) == set()


def test_every_sentence_in_the_catalogues_is_used() -> None:
    """No dead sentences for translators to translate."""
    assert set(REFERENCE) - keys_the_page_uses() == set()


def test_no_sentence_is_left_in_the_scripts() -> None:
    """Scripts build no English sentences of their own: text reaches the page via i18n."""
    sentence = re.compile(r"""(?:text:|textContent =|notice\(|announce\()\s*[`"'][A-Z][a-z]+ """)
    for script in (STATIC / "js").glob("*.js"):
        found = sentence.findall(script.read_text(encoding="utf-8"))
        assert found == [], f"{script.name}: {found}"
