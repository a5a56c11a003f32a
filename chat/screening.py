"""What a participant's message is screened for (protocol §14): crisis language and contact
details. Pure: text in, findings out; no I/O, nothing kept, nothing logged.

**Crisis phrases** are matched on whole words, case-insensitively, after NFKC, any run of white
space matching any other (and the typographic apostrophes matching ``'``). The operator's
``--safety-words`` file names phrases per room language and replaces :data:`BUILT_IN_CRISIS`
for the languages it names; the built-in English list serves ``en`` rooms otherwise. That list
is ours: a short, conservative set of first-person statements of intent to die or to self-harm,
written for Hearth and read against everyday idioms ("killing myself laughing", "dying to
know", "I could die of embarrassment") so that they do not match — it is not a clinical
instrument, and an operator who has one should replace it (``docs/protocol.md`` Part 2).

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
)
BUILT_IN_LANG = "en"
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\uff07": "'"})


def fold(text: str) -> str:
    """The form phrases and messages are compared in: NFKC, case-folded, one apostrophe."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return folded.translate(_APOSTROPHES)


def _pattern(phrases: Iterable[str]) -> re.Pattern[str] | None:
    alternatives = sorted(
        {r"\s+".join(re.escape(word) for word in fold(p).split()) for p in phrases if p.split()},
        key=len,
        reverse=True,
    )
    if not alternatives:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)")


@functools.lru_cache(maxsize=64)
def _crisis_pattern(
    lang: str, operator: tuple[tuple[str, tuple[str, ...]], ...]
) -> re.Pattern[str] | None:
    phrases = dict(operator).get(lang)
    if phrases is None:
        phrases = BUILT_IN_CRISIS if lang == BUILT_IN_LANG else ()
    return _pattern(phrases)


def crisis(text: str, lang: str, operator: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> bool:
    """Whether ``text`` holds a crisis phrase of the room language ``lang``.

    Args:
        text: the message.
        lang: the room's language tag.
        operator: the ``--safety-words`` phrases, ``((lang, (phrase, ...)), ...)``.
    """
    pattern = _crisis_pattern(lang, operator)
    return pattern is not None and pattern.search(fold(text)) is not None


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
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")
# Matched without regard to case, but a bare name's last part is read as written: "all.Me too"
# and "it.It feels" are a missing space after a full stop (the next sentence starts with a
# capital), not a domain; "EXAMPLE.COM" and "example.com" are domains.
_URL = re.compile(
    r"(?:\b[a-z][a-z0-9+.-]*://|\bwww\.)\S+"
    rf"|(?<![\w@.-])(?:[\w-]+\.)+(?P<tld>{_TLDS})(?![\w-])(?:/\S*)?",
    re.IGNORECASE,
)
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
# The candidate runs read per message. The screening runs on the event loop, so its cost must
# be bounded whatever the text: a 2,000-character message of digit runs would otherwise take
# a quarter of a second of the worker's time. A message with more candidates than this is
# taken to hold a phone number (a nudge asks the writer to check; a real number among many
# decoys is not let through unread).
MAX_PHONE_RUNS = 4


def _has_phone(text: str, lang: str) -> bool:
    if sum(ch.isdigit() for ch in text) < MIN_PHONE_DIGITS:
        return False  # the common case: no number long enough to be one
    read = 0
    for run in _NUMBER_RUN.finditer(text):
        digits = sum(ch.isdigit() for ch in run.group())
        if MIN_PHONE_DIGITS <= digits <= MAX_PHONE_DIGITS:
            if read == MAX_PHONE_RUNS:
                return True
            read += 1
            if _phone_in(run.group(), lang):
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
