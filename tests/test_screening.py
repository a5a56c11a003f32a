"""Screening (protocol §14), pure: what must and must not count as crisis language or as
contact details. These lists are the ones the issue's closing note reports."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import pytest
from phonenumbers import PhoneNumberMatcher

from chat.protocol import Limits
from chat.screening import (
    BUILT_IN,
    BUILT_IN_CRISIS,
    MAX_PHONE_RUNS,
    PHONE_REGIONS,
    contact_kinds,
    crisis,
    crisis_list,
)
from tests.timing import scaled

CRISIS_MATCH = [
    "I want to kill myself",
    "i  want\tto   die",  # any run of white space
    "I WANT TO DIE",  # case
    "ＫＩＬＬ ＭＹＳＥＬＦ",  # NFKC: full-width letters
    "I don’t want to be alive anymore",  # typographic apostrophe
    "they'd all be better off without me.",  # punctuation ends a word
    "thinking of ending my life",
    "I feel suicidal tonight",
    "I've been harming myself again",
    "I am not safe tonight",  # issue 11's example, in safety-planning words
    "honestly im not safe right now",
]
CRISIS_NO_MATCH = [
    "I was killing myself laughing",  # an idiom
    "that skill myself",  # not a whole word
    "killmyself",  # not two words
    "I don't want to die",  # the opposite
    "I'm dying to know",
    "I could die of embarrassment",
    "I hurt myself at the gym",  # an injury, not self-harm
    "we talked about suicide prevention",  # talking about it is not a statement of intent
]


@pytest.mark.parametrize("text", CRISIS_MATCH)
def test_crisis_phrases_match(text: str) -> None:
    """The built-in English list matches whole words, any case, width or white space."""
    assert crisis(text, "en")


@pytest.mark.parametrize("text", CRISIS_NO_MATCH)
def test_everyday_idioms_do_not_match(text: str) -> None:
    """Idioms and partial words do not count."""
    assert not crisis(text, "en")


def test_lists_are_per_language_and_the_operator_replaces_them() -> None:
    """Each built-in list serves its own language; an operator list replaces the built-in for
    its language; a language without a list matches nothing."""
    assert not crisis("I want to kill myself", "es")
    assert not crisis("I want to kill myself", "fr") and crisis_list("fr") is None
    words = (("es", ("quiero morir",)), ("en", ("purple elephant",)))
    assert crisis("a veces QUIERO   morir", "es", words)
    assert not crisis("I want to kill myself", "en", words)
    assert crisis("the purple elephant", "en", words)
    assert len(BUILT_IN_CRISIS) < 40  # short enough to read and review


# The built-in Spanish and Arabic lists (issue 16): what must match, as people type it
# (without accents, hamza or vowel signs, with or without them), and what must not.
CRISIS_MATCH_ES = [
    "a veces quiero morir",
    "ME QUIERO MORIR",
    "ya no quiero vivir",  # the negation is the phrase
    "No, quiero morir.",  # a comma: "no" answers, it does not negate
    "estoy pensando en quitarme la vida",
    "ojala estuviera muerta",  # no accent
    "todos estarían mejor sin mí",
    "he vuelto a autolesionarme",
    "voy   a suicidarme",
]
CRISIS_NO_MATCH_ES = [
    "no quiero morir",  # the opposite
    "nunca quiero morir así",
    "me muero de risa",  # an idiom
    "me muero por saberlo",
    "me voy a matar estudiando",  # an idiom
    "mañana voy a cortarme el pelo",
    "hablamos de la prevención del suicidio",  # talking about it
    "quiero morirse",  # not a whole word of the list
]
CRISIS_MATCH_AR = [
    "أريد أن أموت",
    "اريد ان اموت",  # without hamza
    "أُرِيدُ أَنْ أَمُوتَ",  # with vowel signs
    "أريـــد أن أموت",  # stretched with kashida
    "احيانا بدي موت",
    "سأنتحر الليلة",
    "أفكر في الانتحار كثيرا",
    "أتمنى لو كنت ميته",  # ة typed as ه
    "لا أريد أن أعيش",
]
CRISIS_NO_MATCH_AR = [
    "لا أريد أن أموت",  # the opposite
    "لن أقتل نفسي",
    "صديقي انتحر العام الماضي",  # about someone else
    "تحدثنا عن الوقاية من الانتحار",  # talking about it
    "أريد أن أنام",
]


@pytest.mark.parametrize(
    ("lang", "text", "expected"),
    [("es", t, True) for t in CRISIS_MATCH_ES]
    + [("es", t, False) for t in CRISIS_NO_MATCH_ES]
    + [("ar", t, True) for t in CRISIS_MATCH_AR]
    + [("ar", t, False) for t in CRISIS_NO_MATCH_AR],
)
def test_spanish_and_arabic_built_in_lists(lang: str, text: str, expected: bool) -> None:
    """es and ar rooms are screened by default: first-person statements match, whatever the
    accents, hamza, vowel signs or kashida; idioms, talk about suicide and negations do not."""
    assert crisis(text, lang) is expected
    assert not crisis(text, "en")  # a list serves its own language only


def test_a_regional_tag_falls_back_to_its_language() -> None:
    """es-MX uses an es-MX list when the operator gives one, else the es one (operator's or
    built-in), as --crisis-resources falls back."""
    assert crisis_list("es-MX") == BUILT_IN["es"] and crisis("quiero morir", "es-MX")
    assert not crisis("no quiero morir", "es-MX")  # the negations are the language's
    words = (("es", ("tengo miedo de mí",)),)
    assert crisis("tengo miedo de mi", "es-MX", words)
    assert not crisis("quiero morir", "es-MX", words)
    words = (("es-MX", ("ya me cansé de todo",)),)
    assert crisis("ya me canse de todo", "es-MX", words) and crisis("quiero morir", "es", words)
    assert crisis_list("es-MX", (("es-MX", ()),)) == ()  # an empty list turns matching off
    assert all(len(phrases) < 40 for phrases in BUILT_IN.values())  # short enough to review


PHONE = [
    "call me on 07911 123456",
    "my number is +44 7911 123456",
    "text me (202) 555-0143",
    "0034 612 345 678",
    "home 0207 946 0000 / mobile 07700 900 123",
    "Call 0207 946 0000 / 07700 900 123",  # one run of 22 digits: still read
]
NOT_CONTACT = [
    "in 2024 I felt better",  # a year
    "between 1990 and 2010",
    "at 12:30 we meet",  # a time
    "I'd rate today 5/10",  # a score
    "it cost $1,234.56",  # a price
    "1234567 pesos",
    "on 2024-05-10 at 10:30",  # a date
    "my case number is 123456789",
    "room 101",
    "e.g. this, i.e. that",
    "version 3.50 of the leaflet",
    "pi is 3.14159265",
    "see you @5pm",
    "@Quiet thanks for that",  # addressing someone in the room
    "the signal is weak today",
    "I love it.It feels good",  # a missing space after a full stop is not a domain
    "Thanks all.Me too",
    "meet me @home",  # "@" for "at" before an everyday word
    "see you all @ the meeting, @least I hope so",
    "case 123456789, ref 1234567 and 7654321",  # a few ids, each read and let go
    "ref 12345678901234567890123456789012345678901234567890",  # one long plain number
    "scores 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16",
    "we met on 2024-05-10, 2024-05-17, 2024-05-24, 10/06/2024, 17.06.2024 and 6/24/24",
]


@pytest.mark.parametrize("text", PHONE)
def test_phone_numbers_are_found(text: str) -> None:
    """National and international formats."""
    assert contact_kinds(text, "en") == ["phone"]


def test_national_numbers_follow_the_room_language() -> None:
    """A Spanish mobile written the Spanish way counts in an es room."""
    assert contact_kinds("mi número es 612 345 678", "es") == ["phone"]


@pytest.mark.parametrize("text", NOT_CONTACT)
def test_numbers_and_words_that_are_not_contact_details(text: str) -> None:
    """Years, times, scores, prices, dates, ids and abbreviations are left alone."""
    assert contact_kinds(text, "en", names=["Quiet Heron"]) == []


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("email me: sam.o+x@gmail.com", ["email"]),
        ("see example.com/page", ["url"]),
        ("go to https://x.example/z", ["url"]),
        ("www.example.net", ["url"]),
        ("t.me/someone", ["url"]),
        ("@sam_o on insta", ["handle"]),
        ("my insta: sam.o", ["handle"]),
        ("my snap is coolcat22", ["handle"]),
        ("my discord name is cat#1234", ["handle"]),
        ("sam@example.org or +44 7911 123456, sam.example.com, @sam", None),
    ],
)
def test_email_web_and_handles(text: str, kinds: list[str] | None) -> None:
    """E-mail, web addresses and social handles, reported in the contract's order."""
    expected = kinds if kinds is not None else ["phone", "email", "url", "handle"]
    assert contact_kinds(text, "en") == expected


def test_known_false_positives_are_nudges() -> None:
    """Accepted, and documented in docs/protocol.md Part 2: an id that libphonenumber reads as
    a valid number is a phone number (a nudge asks the writer to check, nothing more)."""
    assert contact_kinds("ID 2024-123456", "en") == ["phone"]


MAX_TEXT = Limits().max_text
ADVERSARIAL = [
    "(12) 345/678 a ",  # eight digits a run, each costing the matcher a few ms per region
    "+1 2 3 4 5 6 7 a ",
    "+44 7911 12345, ",
    "(((1(((2(((3(((4(((5(((6(((7 a ",
    "1" + " " * 300 + "2",  # long gaps end a run: no run is long but for its digits
]


@contextmanager
def matcher_calls() -> Iterator[list[int]]:
    """Count libphonenumber matchers made inside the block (a profile hook, not a mock: the
    real library runs)."""
    code = PhoneNumberMatcher.__init__.__code__
    count = [0]

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is code:
            count[0] += 1

    sys.setprofile(hook)
    try:
        yield count
    finally:
        sys.setprofile(None)


@pytest.mark.parametrize("unit", ADVERSARIAL)
def test_digit_runs_cannot_stall_the_worker(unit: str) -> None:
    """A longest message made of digit runs costs a bounded number of matcher runs and a few
    milliseconds of CPU (before the bound: a quarter of a second and more, on the loop)."""
    text = (unit * (MAX_TEXT // len(unit) + 1))[:MAX_TEXT]
    contact_kinds("warm up 07911 123456", "en")  # the library loads its metadata once
    start = time.thread_time()
    contact_kinds(text, "en")
    spent = time.thread_time() - start
    assert spent < scaled(0.1), f"{spent * 1000:.0f} ms of CPU for one message"
    with matcher_calls() as calls:
        contact_kinds(text, "en")
    assert calls[0] <= MAX_PHONE_RUNS * len(PHONE_REGIONS["en"])


@pytest.mark.parametrize("unit", ["a.", "a-", "a+", "ab+", ".a"])
def test_long_runs_cost_the_address_patterns_little(unit: str) -> None:
    """The e-mail and web-address patterns start only where a run starts: a longest message of
    one run (with an "@" at its end) is read in a few milliseconds, not in its length squared
    (before: 30-50 ms)."""
    text = (unit * MAX_TEXT)[: MAX_TEXT - 2] + " @"
    start = time.thread_time()
    contact_kinds(text, "en")
    contact_kinds(text[:-2] + "@", "en")
    spent = time.thread_time() - start
    assert spent < scaled(0.03), f"{spent * 1000:.0f} ms of CPU for two messages"


@pytest.mark.parametrize(
    "text",
    [
        "(12) 345/678 and 1234567, then 2345678: call me on 07911 123456",  # read
        "(12) 345/678 a " * 60 + "call me on 07911 123456",  # more than are read
        "1" + " " * 300 + "2 call me on 07911 123456 " + "a" * 1000,
    ],
)
def test_a_real_number_among_decoys_is_found(text: str) -> None:
    """Decoys before a real number do not hide it."""
    assert contact_kinds(text[:MAX_TEXT], "en") == ["phone"]


def test_many_candidate_runs_count_as_a_phone_number() -> None:
    """More candidate runs than are read, or one too long to read, is taken as a number (Part 2
    says so)."""
    assert contact_kinds("1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20", "en") == ["phone"]
    ids = ", ".join(str(1_000_000 + 1111 * i) for i in range(MAX_PHONE_RUNS + 1))
    assert contact_kinds(f"ids {ids}", "en") == ["phone"]
    few = ", ".join(str(1_000_000 + 1111 * i) for i in range(MAX_PHONE_RUNS))
    assert contact_kinds(f"ids {few}", "en") == []
