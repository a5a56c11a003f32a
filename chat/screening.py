"""What a participant's message is screened for (protocol §14): crisis language and contact
details. Pure: text in, findings out; no I/O, nothing kept, nothing logged.

**Crisis phrases** are matched on whole words, case-insensitively, after NFKC, any run of white
space matching any other (and the typographic apostrophes matching ``'``), with accents,
Arabic vowel signs and kashida ignored (people often type without them). The operator's
``--safety-words`` file names phrases per room language and replaces the built-in list
(:data:`BUILT_IN`) for the languages it names. A room in ``es-MX`` uses the ``es-MX`` list,
else the ``es`` one. The built-in lists are ours: short, conservative sets of first-person
statements of intent to die or to self-harm (English, Spanish, Arabic), written for Hearth and
read against everyday idioms ("killing myself laughing", "me muero de risa") so that they do
not match, and a statement negated by the word just before it ("no quiero morir", "لا أريد أن
أموت") does not count. They are not clinical instruments, the Spanish and Arabic ones still
await a native speaker's review, and an operator who has a validated list should replace them
(``docs/protocol.md`` Part 2).

**Contact details** are phone numbers (Google's libphonenumber through ``phonenumbers``, whose
matcher knows national and international formats and leaves out dates, times, prices and
ordinary numbers), e-mail addresses, web addresses and social handles.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping

import phonenumbers
from phonenumbers import Leniency, PhoneNumberMatcher

# --- crisis language ---------------------------------------------------------------------

BUILT_IN_CRISIS: tuple[str, ...] = (
    "kill myself",
    "end my life",
    "ending my life",
    "take my own life",
    "taking my own life",
    "i want to die",
    "i just want to die",
    "i wanna die",
    "i wish i was dead",
    "i wish i were dead",
    "better off dead",
    "better off without me",
    "no reason to live",
    "nothing to live for",
    "i don't want to be alive",
    "i do not want to be alive",
    "i feel suicidal",
    "i'm suicidal",
    "i am suicidal",
    "feeling suicidal",
    "harm myself",
    "harming myself",
    # Safety-planning words: "I am not safe (tonight)" is how people are taught to say it.
    "i am not safe",
    "i'm not safe",
    "im not safe",
)
# Spanish drops the pronoun, so "quiero morir" is also the tail of "no quiero morir": the
# negation just before a match is checked instead (NEGATIONS). Left out on purpose: "me muero
# de..." ("dying of laughter / to know"), bare "matarme" ("me voy a matar estudiando"),
# "cortarme" (a haircut), "hacerme daño" (an injury).
BUILT_IN_CRISIS_ES: tuple[str, ...] = (
    "quiero morir",
    "quiero morirme",
    "me quiero morir",
    "quiero matarme",
    "voy a matarme",
    "quiero suicidarme",
    "voy a suicidarme",
    "me voy a suicidar",
    "me quiero suicidar",
    "pienso en suicidarme",
    "quitarme la vida",
    "acabar con mi vida",
    "no quiero vivir",
    "no quiero seguir viviendo",
    "no tengo ganas de vivir",
    "no tengo razones para vivir",
    "estarían mejor sin mí",
    "estaría mejor muerto",
    "estaría mejor muerta",
    "ojalá estuviera muerto",
    "ojalá estuviera muerta",
    "me siento suicida",
    "tengo pensamientos suicidas",
    "quiero hacerme daño",
    "autolesionarme",
)
# Arabic as people type it in chat: Modern Standard forms, and the common Levantine (بدي) and
# Egyptian (عايز، هـ) ones; written without hamza or vowel signs, which matching ignores. Bare
# "انتحر" is left out: it is also "he died by suicide", said of someone else.
BUILT_IN_CRISIS_AR: tuple[str, ...] = (
    "أريد أن أموت",
    "بدي موت",
    "عايز اموت",
    "أتمنى أن أموت",
    "أتمنى لو كنت ميتا",
    "أتمنى لو كنت ميتة",
    "سأقتل نفسي",
    "أقتل نفسي",
    "سأنتحر",
    "أريد أن أنتحر",
    "بدي انتحر",
    "عايز انتحر",
    "أفكر في الانتحار",
    "أفكر بالانتحار",
    "أنهي حياتي",
    "لا أريد أن أعيش",
    "ما بدي عيش",
    "سيكونون أفضل بدوني",
    "أؤذي نفسي",
)
BUILT_IN: Mapping[str, tuple[str, ...]] = {
    "en": BUILT_IN_CRISIS,
    "es": BUILT_IN_CRISIS_ES,
    "ar": BUILT_IN_CRISIS_AR,
}
BUILT_IN_LANG = "en"  # the list of the contract (§14); the others are this server's
# A word that, just before a phrase, says the opposite (the phrase is not in the first person
# otherwise: English lists "i want to die", so "i don't want to die" never matches).
NEGATIONS: Mapping[str, frozenset[str]] = {
    "es": frozenset({"no", "nunca", "jamas"}),
    "ar": frozenset({"لا", "لن", "ما", "مش", "مو", "ماني"}),
}
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\uff07": "'"})
# Letters people type for one another in Arabic chat: ى for ي, ة for ه (as search engines do).
_ARABIC_VARIANTS = str.maketrans({"\u0649": "\u064a", "\u0629": "\u0647"})
_KASHIDA = "\u0640"


def fold(text: str) -> str:
    """The form phrases and messages are compared in: NFKC, case-folded, one apostrophe."""
    if text.isascii():
        return text.lower()  # ASCII is its own NFKC, its case folding is lower(), no ’ in it
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return folded.translate(_APOSTROPHES)


def _plain(text: str) -> str:
    # For crisis phrases only (fold() also files key labels, which must not change): without
    # accents, vowel signs or kashida, so that "ojala" is "ojalá" and "اريد" is "أُريد".
    folded = fold(text)
    if folded.isascii():
        return folded  # nothing to take off (the per-character walk below is most of the cost)
    decomposed = unicodedata.normalize("NFD", folded)
    kept = "".join(ch for ch in decomposed if ch != _KASHIDA and unicodedata.category(ch)[0] != "M")
    return unicodedata.normalize("NFC", kept).translate(_ARABIC_VARIANTS)


def _pattern(phrases: Iterable[str]) -> re.Pattern[str] | None:
    alternatives = sorted(
        {r"\s+".join(re.escape(word) for word in _plain(p).split()) for p in phrases if p.split()},
        key=len,
        reverse=True,
    )
    if not alternatives:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)")


def crisis_list(
    lang: str, operator: tuple[tuple[str, tuple[str, ...]], ...] = ()
) -> tuple[str, ...] | None:
    """The crisis phrases a room in ``lang`` is screened with, or None when it has no list.

    The operator's list for the tag, else the built-in one, else the same for the primary
    subtag (``es-MX`` → ``es``), as ``--crisis-resources`` falls back. An operator's empty
    list is a list: it turns matching off.
    """
    given = dict(operator)
    for tag in dict.fromkeys((lang, lang.split("-")[0])):
        phrases = given.get(tag, BUILT_IN.get(tag))
        if phrases is not None:
            return phrases
    return None


@functools.lru_cache(maxsize=64)
@functools.lru_cache(maxsize=64)
def _crisis_pattern(
    lang: str, operator: tuple[tuple[str, tuple[str, ...]], ...]
) -> re.Pattern[str] | None:
    # Built once per language and list, not per message.
    return _pattern(crisis_list(lang, operator) or ())


def crisis(text: str, lang: str, operator: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> bool:
    """Whether ``text`` holds a crisis phrase of the room language ``lang``.

    Args:
        text: the message.
        lang: the room's language tag.
        operator: the ``--safety-words`` phrases, ``((lang, (phrase, ...)), ...)``.
    """
    pattern = _crisis_pattern(lang, operator)
    if pattern is None:
        return False
    plain = _plain(text)
    negations = NEGATIONS.get(lang.split("-")[0], frozenset())
    for match in pattern.finditer(plain):
        before = plain[: match.start()]
        if not (negations and before[-1:].isspace() and before.split()[-1] in negations):
            return True
    return False


# --- contact details ---------------------------------------------------------------------

KINDS = ("phone", "email", "url", "handle")
MIN_PHONE_DIGITS = 7
# Where a number written without a country code is read as national (libphonenumber needs a
# region for those): the places a room's language is most spoken. International numbers
# (+44..., 0044...) are found whatever the list.
PHONE_REGIONS: Mapping[str, tuple[str, ...]] = {
    "en": ("US", "GB", "CA", "AU", "IE", "NZ", "IN", "ZA"),
    "es": ("ES", "MX", "AR", "CO", "CL", "PE", "US"),
    "ar": ("EG", "SA", "AE", "MA", "DZ", "IQ", "JO", "LB"),
}
_TLDS = (
    "com|org|net|edu|gov|info|biz|io|co|me|ly|gg|tv|app|dev|xyz|link|site|online|page|chat|"
    "social|uk|us|ca|au|ie|nz|de|fr|es|it|nl|mx|ar|cl|br|eg|sa|ae|ma|ru|onion"
)
# Each starts only where its run of characters starts, and a scheme is short: tried from
# every position of a long run, they would cost the square of its length (milliseconds per
# 2,000 characters, on the event loop).
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")
# Matched without regard to case, but a bare name's last part is read as written: "all.Me too"
# and "it.It feels" are a missing space after a full stop (the next sentence starts with a
# capital), not a domain; "EXAMPLE.COM" and "example.com" are domains.
_URL = re.compile(
    r"(?:\b[a-z][a-z0-9+.-]{0,30}://|\bwww\.)\S+"
    rf"|(?<![\w@.-])(?:[\w-]+\.)+(?P<tld>{_TLDS})(?![\w-])(?:/\S*)?",
    re.IGNORECASE,
)
# What every web address holds: a scheme, "www." or a dot before a known top-level domain.
# Looked for first, at dots only, so that ordinary prose does not pay for _URL's word-by-word
# attempts (a third of a millisecond per 2,000 characters).
_URL_HINT = re.compile(rf"://|www\.|\.(?=[a-z])(?:{_TLDS})(?![\w-])", re.IGNORECASE)
_HANDLE = re.compile(r"(?<![\w@./])@([^\W\d][\w.]{0,29})")
# "@" as shorthand for "at" before an everyday word ("meet me @home", "@least") is not a handle.
_AT_WORDS = frozenset({
    "home", "work", "school", "college", "uni", "church", "lunch", "dinner", "breakfast", "noon",
    "night", "midnight", "weekend", "the", "my", "your", "our", "their", "least", "last", "first",
    "once", "all",
})  # fmt: skip
# "snap: x" for any platform; "my snap is x" only for names that are not everyday words
# ("the signal is weak", "my line is busy").
_PLATFORM = re.compile(
    r"\b(?:(?:snapchat|snap|insta|instagram|ig|discord|telegram|kik|tiktok|twitter|whatsapp|"
    r"wechat|skype|facebook|fb|reddit|signal)\s*[:=]"
    r"|(?:snapchat|snap|insta|instagram|discord|telegram|kik|tiktok|whatsapp|wechat|skype)"
    r"(?:\s+(?:handle|name|username|id))?\s+is)"
    r"\s*@?[^\W_][\w.#-]{1,}"
)


def contact_kinds(text: str, lang: str = "en", names: Iterable[str] = ()) -> list[str]:
    """What ``text`` holds that looks like contact details, as kinds in :data:`KINDS` order.

    Args:
        text: the message.
        lang: the room's language (which national phone formats to read).
        names: the display names in the room: ``@Name`` addressed to someone present is
            a reply, not a handle.
    """
    folded = unicodedata.normalize("NFKC", text)
    found: set[str] = set()
    if "@" in folded:
        if _EMAIL.search(folded):
            found.add("email")
            folded = _EMAIL.sub(" ", folded)
        addressed = _AT_WORDS.union(*(_name_words(name) for name in names))
        if any(
            m.group(1).rstrip(".").casefold() not in addressed for m in _HANDLE.finditer(folded)
        ):
            found.add("handle")
    urls = []
    if _URL_HINT.search(folded):
        urls = [m for m in _URL.finditer(folded) if not _sentence_start(m.group("tld"))]
    if urls:
        found.add("url")
        for m in reversed(urls):
            folded = folded[: m.start()] + " " + folded[m.end() :]
    folded = folded.casefold()
    if _PLATFORM.search(folded):
        found.add("handle")
    if _has_phone(folded, lang):
        found.add("phone")
    return [kind for kind in KINDS if kind in found]


def _sentence_start(tld: str | None) -> bool:
    """``Me`` or ``It`` after a dot: a capitalised word, so a new sentence, not a domain."""
    return tld is not None and len(tld) > 1 and tld[0].isupper() and tld[1:].islower()


def _name_words(name: str) -> set[str]:
    """``Quiet Heron`` may be addressed as ``@Quiet``, ``@QuietHeron`` or ``@Quiet_Heron``."""
    words = name.casefold().split()
    return {*words[:1], "".join(words), "_".join(words)} if words else set()


# A run that could be written as a phone number: digits, with the separators people put
# between them (at most three in a row: "(202) 555-0143", "+44 (0) 7911"; a longer gap ends
# the run, so that no run is long but for its digits). libphonenumber's matcher is slow (pure
# Python, tried once per region, some milliseconds a run): it only reads a run with enough
# digits, not the whole message, so "born in 1990, it's 12:30" costs a regular expression, not
# eight matchers.
_NUMBER_RUN = re.compile(r"\+?\(?\d(?:[ \t().\-/]{0,3}\d)*")
MAX_PHONE_DIGITS = 17  # E.164's 15, with an international prefix such as 00
# The screening runs on the event loop, so its cost must be bounded whatever the text: a
# 2,000-character message of digit runs would otherwise take a quarter of a second of the
# worker's time. At most MAX_PHONE_RUNS candidate runs of at most MAX_RUN_CHARS characters
# (two numbers side by side, "0207 946 0000 / 07700 900 123") are read; a message with more
# candidates, or a longer run, is taken to hold a phone number: a nudge asks the writer to
# check, and a real number among decoys is never let through unread.
MAX_PHONE_RUNS = 4
MAX_RUN_CHARS = 40
# Dates are the commonest runs that are not numbers (libphonenumber leaves them out too): they
# are passed over unread, so that a message listing a few dates is not taken for a number.
_DATE = re.compile(r"\d{4}([-/.])\d{1,2}\1\d{1,2}|\d{1,2}([-/.])\d{1,2}\2(?:\d{4}|\d{2})")


_ENOUGH_DIGITS = re.compile(rf"\d(?:\D*\d){{{MIN_PHONE_DIGITS - 1}}}")


def _has_phone(text: str, lang: str) -> bool:
    if not _ENOUGH_DIGITS.search(text):
        return False  # the common case: too few digits in all to be a number
    read = 0
    for run in _NUMBER_RUN.finditer(text):
        candidate = run.group()
        digits = sum(ch.isdigit() for ch in candidate)
        if digits < MIN_PHONE_DIGITS or _DATE.fullmatch(candidate):
            continue
        if digits > MAX_PHONE_DIGITS and digits + candidate.startswith("+") == len(candidate):
            continue  # one long plain number (an id): no phone number hides between digits
        if read == MAX_PHONE_RUNS or len(candidate) > MAX_RUN_CHARS:
            return True
        read += 1
        if _phone_in(candidate, lang):
            return True
    return False


def _phone_in(candidate: str, lang: str) -> bool:
    # Not cached: a cache would keep what people typed beyond the room's bounds (§7).
    for region in PHONE_REGIONS.get(lang, PHONE_REGIONS["en"]):
        for match in PhoneNumberMatcher(candidate, region, leniency=Leniency.VALID):
            digits = sum(ch.isdigit() for ch in match.raw_string)
            if digits >= MIN_PHONE_DIGITS and phonenumbers.is_valid_number(match.number):
                return True
    return False
