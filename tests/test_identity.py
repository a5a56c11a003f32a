"""Anonymous identity: names, pseudonyms, secrets and salted hashes."""

from __future__ import annotations

import pytest

from chat.errors import ErrorCode, RequestError
from chat.identity import (
    address_hash,
    hash_secret,
    name_key,
    new_room_id,
    new_secret,
    normalise_name,
    pseudonym,
    secret_matches,
)
from chat.languages import shipped_languages


def role_name_refused_to_participants_only(name: str) -> None:
    """A participant may not take ``name`` (bad_name); a facilitator may."""
    with pytest.raises(RequestError) as caught:
        normalise_name(name, participant=True)
    assert caught.value.code is ErrorCode.BAD_NAME
    assert normalise_name(name, participant=False)


def test_names_are_trimmed_and_normalised() -> None:
    """Names are trimmed, inner whitespace collapsed, and NFKC-normalised."""
    assert normalise_name("  Ada   Lovelace ", participant=True) == "Ada Lovelace"
    assert normalise_name("Ａｄａ", participant=True) == "Ada"  # full-width letters


@pytest.mark.parametrize(
    "name",
    ["", "   ", "x" * 25, "evil\u202eoverride", "zero\u200bwidth", "bell\x07", "line\u2028sep"],
)
def test_bad_names_are_refused(name: str) -> None:
    """Empty, too long, control, format and bidi-override characters answer bad_name."""
    with pytest.raises(RequestError) as caught:
        normalise_name(name, participant=True)
    assert caught.value.code is ErrorCode.BAD_NAME


@pytest.mark.parametrize("name", ["Facilitator", "the moderator", "ADMIN", "Mod", "SuperAdmin1"])
def test_role_names_are_refused_for_participants_only(name: str) -> None:
    """Names that impersonate a role are refused for participants, allowed for facilitators."""
    role_name_refused_to_participants_only(name)


# Issue 16: the role words of every shipped language, refused whatever the room's language
# (a name in any script can be chosen in any room), with accents, Arabic vowel signs and a
# kashida, or look-alike letters.
OTHER_LANGUAGES_ROLE_NAMES = [
    "Facilitador", "Facilitadora", "la facilitadora", "Moderador", "Moderadora", "Anfitrión",
    "Anfitrion", "ANFITRIONA", "Administradora", "Coordinadora 2", "F\u0430cilitador",
    "المشرف", "مشرفة", "الميسر", "المشرفة", "أنا المشرف", "المُشرِف", "المشـرف", "المنسقة",
]  # fmt: skip


@pytest.mark.parametrize("name", OTHER_LANGUAGES_ROLE_NAMES)
def test_role_words_of_every_language_are_refused(name: str) -> None:
    """Spanish and Arabic role words are refused for participants, allowed for facilitators."""
    role_name_refused_to_participants_only(name)


@pytest.mark.parametrize(
    "name", ["Sistemas", "Equipada", "Moderna", "Facil", "محمد", "مريم", "ميسرة", "Oficialmente"]
)
def test_names_near_other_languages_role_words_pass(name: str) -> None:
    """Role words count as whole words: a longer word or a given name that shares letters is
    a name ("Maysara" is not "the facilitator")."""
    assert normalise_name(name, participant=True) == name


def test_role_words_come_from_the_servers_languages() -> None:
    """The check uses the words it is given (the server's languages, with --lang-dir's)."""
    assert normalise_name("Animatrice", participant=True, reserved=frozenset()) == "Animatrice"
    with pytest.raises(RequestError):
        normalise_name("Animatrice", participant=True, reserved=frozenset({"animatrice"}))
    # The English words that count inside a longer word stay, whatever the lists say.
    with pytest.raises(RequestError):
        normalise_name("SuperAdmin1", participant=True, reserved=frozenset())


def test_ordinary_names_that_contain_short_role_words_pass() -> None:
    """'Modest' and 'Hostel' are not role names."""
    assert normalise_name("Modest Mouse", participant=True) == "Modest Mouse"
    assert normalise_name("Hostel", participant=True) == "Hostel"


@pytest.mark.parametrize("lang", ["en", "es", "ar"])
def test_pseudonyms_avoid_taken_names(lang: str) -> None:
    """A generated pseudonym is never one already taken, even past the words' combinations."""
    words = shipped_languages().words(lang, "en")
    taken: set[str] = set()
    for _ in range(words.size + 50):
        name, key = pseudonym(lambda wanted: wanted in taken, words)
        assert key == name_key(name) and key not in taken
        assert normalise_name(name, participant=True) == name
        taken.add(key)


def test_a_crowded_room_gets_a_numbered_pseudonym_after_a_few_tries() -> None:
    """Once the room holds most plain names, a newcomer does not try fifty of them: at most
    three, then a numbered one. While plain names are plentiful, every one is tried first."""
    words = shipped_languages().words("en", "en")
    plain = {name_key(words.name(i)) for i in range(words.size)}
    asked: list[str] = []

    def all_taken(wanted: str) -> bool:  # every plain name is taken, no numbered one
        asked.append(wanted)
        return wanted in plain

    name, _ = pseudonym(all_taken, words, crowd=words.size)
    assert name.split()[-1].isdigit() and len(asked) == 4  # three plain tries, one numbered
    asked.clear()
    name, _ = pseudonym(all_taken, words, crowd=words.size // 2)
    assert name.split()[-1].isdigit() and len(asked) == 51


def test_secrets_are_long_and_hashes_compare() -> None:
    """Room ids carry ≥ 80 bits, keys ≥ 128; only the hash is stored and it verifies."""
    assert len(new_room_id()) >= 16 and len(new_secret()) >= 22
    key = new_secret()
    stored = hash_secret(key)
    assert key not in stored
    assert secret_matches(key, stored)
    assert not secret_matches(key + "x", stored)


def test_address_hash_depends_on_room_salt() -> None:
    """The same address hashes differently in two rooms and never shows in clear."""
    one, two = address_hash(b"a" * 16, "10.0.0.1"), address_hash(b"b" * 16, "10.0.0.1")
    assert one != two and "10.0.0.1" not in one


def test_confusable_names_share_a_key() -> None:
    """Uniqueness compares UTS #39 skeletons after case folding: look-alikes are one name."""
    assert name_key("Sam") == name_key("S\u0430m") == name_key("SAM")  # Cyrillic а
    assert name_key("Sam") == name_key("Sarn")  # rn looks like m
    assert name_key("paypal") == name_key("\u0440\u0430ypal")  # Cyrillic р and а
    assert name_key("Sam") == name_key("Sam\ufe0f")  # a variation selector shows nothing
    assert name_key("Sam") == name_key("Sam\u3164")  # a trailing filler looks like nothing
    assert name_key("Sam") != name_key("Pam")
    assert name_key("ADMIN") == name_key("admin")  # case-insensitive first
    assert name_key("Ada Lovelace") != name_key("AdaLovelace")


@pytest.mark.parametrize(
    "name", ["F\u0430cilitator", "\u039cod", "the m\u043ederator", "ADM\u0399N", "Sup\u0435rAdmin"]
)
def test_look_alike_role_names_are_refused(name: str) -> None:
    """Role words are matched on skeletons: Cyrillic or Greek look-alikes are refused too."""
    role_name_refused_to_participants_only(name)


@pytest.mark.parametrize(
    "name",
    [
        "\u3164",  # HANGUL FILLER
        "\u3164\u3164 \u3164",
        "\u2800\u2800",  # BRAILLE PATTERN BLANK
        "\u115f\u1160",  # HANGUL CHOSEONG and JUNGSEONG FILLER
        "\uffa0",  # HALFWIDTH HANGUL FILLER
        "\u3000\u3000",  # IDEOGRAPHIC SPACE
        "\u034f",  # COMBINING GRAPHEME JOINER, default-ignorable
        "\ufe0f\u2800",
    ],
)
def test_blank_looking_names_are_refused(name: str) -> None:
    """A name with nothing visible once white space, default-ignorable and blank-looking
    characters are gone answers bad_name."""
    with pytest.raises(RequestError) as caught:
        normalise_name(name, participant=True)
    assert caught.value.code is ErrorCode.BAD_NAME


def test_names_with_some_visible_text_pass() -> None:
    """Fillers beside visible text do not make a name blank; emoji with selectors pass."""
    assert normalise_name("\u2800Sam", participant=True) == "\u2800Sam"
    assert normalise_name("\u2764\ufe0f", participant=True) == "\u2764\ufe0f"


async def test_look_alike_of_a_present_name_is_taken(server) -> None:
    """On a real server: "Sаm" (Cyrillic а) beside the facilitator "Sam" answers name_taken;
    look-alike role names and blank-looking names answer bad_name."""
    room = await server.room()
    sam = await server.client()
    assert (await sam.join(room["room"], key=room["facilitator_key"], name="Sam"))["t"] == "welcome"
    for name, code in (
        ("S\u0430m", "name_taken"),
        ("SAM", "name_taken"),
        ("F\u0430cilitator", "bad_name"),
        ("\u3164\u3164", "bad_name"),
        ("\u2800", "bad_name"),
    ):
        impostor = await server.client()
        answer = await impostor.join(room["room"], name=name)
        assert (answer["t"], answer.get("code")) == ("error", code), name
        await impostor.close()
    real = await server.client()
    assert (await real.join(room["room"], name="Samira"))["t"] == "welcome"
