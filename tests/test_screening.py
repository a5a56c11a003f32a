"""Screening (protocol §14), pure: what must and must not count as crisis language or as
contact details. These lists are the ones the issue's closing note reports."""

from __future__ import annotations

import pytest

from chat.screening import BUILT_IN_CRISIS, contact_kinds, crisis

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
    """Built-in English serves en only; an operator list replaces the built-in for its
    language; a language without a list matches nothing."""
    assert not crisis("I want to kill myself", "es")
    words = (("es", ("quiero morir",)), ("en", ("purple elephant",)))
    assert crisis("a veces QUIERO   morir", "es", words)
    assert not crisis("I want to kill myself", "en", words)
    assert crisis("the purple elephant", "en", words)
    assert len(BUILT_IN_CRISIS) < 40  # short enough to read and review


PHONE = [
    "call me on 07911 123456",
    "my number is +44 7911 123456",
    "text me (202) 555-0143",
    "0034 612 345 678",
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
