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
    with pytest.raises(RequestError):
        normalise_name(name, participant=True)
    assert normalise_name(name, participant=False)


def test_ordinary_names_that_contain_short_role_words_pass() -> None:
    """'Modest' and 'Hostel' are not role names."""
    assert normalise_name("Modest Mouse", participant=True) == "Modest Mouse"


def test_pseudonyms_avoid_taken_names() -> None:
    """A generated pseudonym is never one already taken (compared case-insensitively)."""
    taken: set[str] = set()
    for _ in range(300):
        name = pseudonym(taken)
        assert name_key(name) not in taken
        taken.add(name_key(name))


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
