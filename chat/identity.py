"""Anonymous identity: ids and secrets, display names, pseudonyms, and hashes.

Nothing here links a participant across rooms: pids are random per sitting, and network
addresses are only ever kept as an HMAC keyed with a per-room salt.

Names are compared by what a reader sees (protocol §11): two names are the same name when
their UTS #39 confusable skeletons, taken after case folding, are equal ("Sаm" with a Cyrillic
а is "Sam"), and a participant's name may not hold a role word's skeleton as a word. The
skeletons come from ICU's ``SpoofChecker`` (through PyICU), the Unicode Consortium's own
implementation of UTS #39 and its confusables data, rather than from a table of our own. The
role words are each language's (``lang/<tag>/names.json``), all of them in every room.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import unicodedata
from collections.abc import Callable
from functools import cache

import icu

from chat.address import limit_key
from chat.errors import ErrorCode, RequestError
from chat.languages import NameWords, shipped_languages

ROOM_ID_BYTES = 16  # 128 bits (the contract asks for at least 80)
KEY_BYTES = 24  # 192 bits (the contract asks for at least 128)
MAX_NAME = 24

# The role words themselves are per language, in lang/<tag>/names.json ("reserved"), and are
# checked as whole words. These English ones are refused even inside a longer word
# ("SuperAdmin1"): they are long or distinctive enough that no ordinary name holds them.
_RESERVED_INSIDE = ("facilitator", "moderator", "admin")
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Characters that show as blank space but are not white space. No Unicode property says
# "looks blank": the Hangul fillers (also default-ignorable, yet as wide as a letter) and the
# blank Braille pattern are the ones seen in impersonation.
_BLANK_LOOKING = frozenset("\u115f\u1160\u2800\u3164\uffa0")
_SPOOF = icu.SpoofChecker()
_IGNORABLE = icu.UProperty.DEFAULT_IGNORABLE_CODE_POINT


def new_room_id() -> str:
    return secrets.token_urlsafe(ROOM_ID_BYTES)


def new_secret() -> str:
    """A facilitator key or resume token."""
    return secrets.token_urlsafe(KEY_BYTES)


def new_pid() -> str:
    return secrets.token_urlsafe(9)


MID_BYTES = 12


class _RandomPool:
    """Random bytes from the OS, drawn a few kilobytes at a time.

    A message id is made for every ``say``, and a pseudonym drawn for every nameless join;
    ``secrets`` asks the kernel each time, a system call per message or draw that showed in
    issue 13's profiles. The pool's bytes are
    the same ``os.urandom`` bytes, each handed out once; a forked child starts a pool of its
    own, so two workers never share ids.
    """

    __slots__ = ("_at", "_bytes")

    SIZE = 4096

    def __init__(self) -> None:
        self._bytes = b""
        self._at = 0

    def take(self, count: int) -> bytes:
        at = self._at
        if at + count > len(self._bytes):
            self._bytes, at = os.urandom(self.SIZE), 0
        self._at = at + count
        return self._bytes[at : at + count]

    def forget(self) -> None:
        self._bytes, self._at = b"", 0


_POOL = _RandomPool()
os.register_at_fork(after_in_child=_POOL.forget)


def _randbelow(n: int) -> int:
    """A uniform random integer in [0, n) from the pool (n < 2**32): a pseudonym is drawn for
    every nameless join, several times in a full room, and ``secrets.randbelow`` asks the
    kernel for each draw (issue 13's join-storm profile: 4.6%)."""
    limit = (1 << 32) // n * n  # draws at or above it would favour the low values
    while True:
        value = int.from_bytes(_POOL.take(4), "big")
        if value < limit:
            return value % n


def new_mid() -> str:
    """A message id: 96 random bits, URL-safe base64 (as ``secrets.token_urlsafe(12)``)."""
    return base64.urlsafe_b64encode(_POOL.take(MID_BYTES)).decode("ascii")


def new_salt() -> bytes:
    return secrets.token_bytes(16)


def hash_secret(secret: str) -> str:
    """Hash a high-entropy secret for storage (no stretching needed at 128+ random bits)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Compare a presented secret with a stored hash in constant time."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def address_hash(salt: bytes, address: str) -> str:
    """What a removal bans: the room-salted hash of a network address (of its /64 for IPv6,
    which one person holds whole), never the address in clear (§6, §11)."""
    return hmac.new(salt, limit_key(address).encode(), hashlib.sha256).hexdigest()


def skeleton(text: str) -> str:
    """The UTS #39 confusable skeleton of ``text``: equal skeletons look alike."""
    return str(_SPOOF.getSkeleton(0, text))


def visible(name: str) -> str:
    """``name`` as a reader sees it: blank-looking characters and white space as one space,
    default-ignorable characters gone, no space at either end."""
    shown = []
    for ch in name:
        if ch in _BLANK_LOOKING or ch.isspace():
            shown.append(" ")
        elif not icu.Char.hasBinaryProperty(ch, _IGNORABLE):
            shown.append(ch)
    return " ".join("".join(shown).split())


def name_key(name: str) -> str:
    """The form in which names are compared for uniqueness: the confusable skeleton of the
    case-folded visible name (UTS #39 after case folding), so "Sam", "SAM" and "Sаm"
    (Cyrillic а) are one name."""
    return skeleton(visible(name).casefold())


def _look_alike_forms(name: str) -> set[str]:
    # name_key, and the skeleton of the folded skeleton: a capital that looks like a Latin
    # capital only as a capital (Greek Μ and Latin M) folds to a small letter that does not
    # (μ and m), so role words are looked for in both forms. Each also without its marks:
    # "Anfitrion" reads as "Anfitrión", and Arabic vowel signs or a kashida stretching a word
    # ("المُشـرِف") leave the word a reader sees unchanged.
    shown = visible(name)
    forms: set[str] = set()
    for text in (shown, _bare(shown)):
        forms.update((name_key(text), skeleton(skeleton(text).casefold())))
    return forms


_KASHIDA = "\u0640"  # ARABIC TATWEEL: stretches a word, is a letter to Unicode, means nothing


def _bare(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    kept = (
        ch
        for ch in decomposed
        if ch != _KASHIDA and unicodedata.category(ch) not in ("Mn", "Mc", "Me")
    )
    return unicodedata.normalize("NFC", "".join(kept))


@cache
def _role_skeletons(reserved: frozenset[str]) -> frozenset[str]:
    # Cached per word set (one per server): ICU's skeletons are not free, and every join asks.
    return frozenset(name_key(form) for word in reserved for form in (word, _bare(word)))


_ROLE_INSIDE_SKELETONS = tuple(name_key(word) for word in _RESERVED_INSIDE)


def name_token(salt: bytes, name: str) -> str:
    """The key under which a name is held unique in a room: a hash of :func:`name_key` keyed
    with the room's secret salt, so that the store's name index shows no names and cannot be
    matched against a list of likely ones."""
    return key_token(salt, name_key(name))


def key_token(salt: bytes, key: str) -> str:
    """:func:`name_token` of a name whose :func:`name_key` is ``key``."""
    return hashlib.sha256(salt + key.encode()).hexdigest()


def normalise_name(
    raw: str,
    *,
    participant: bool,
    max_length: int = MAX_NAME,
    reserved: frozenset[str] | None = None,
) -> str:
    """Trim, NFKC-normalise and check a wished-for display name (protocol §4).

    Args:
        raw: the name as the client sent it.
        participant: whether role-impersonating names are refused.
        max_length: the longest name allowed, in code points.
        reserved: the role words of every language the server has (``Languages.reserved``);
            None: the shipped languages' words.

    Raises:
        RequestError: ``bad_name`` with a sentence saying what is wrong.
    """
    name = unicodedata.normalize("NFKC", raw).strip()
    if any(unicodedata.category(ch) in _REFUSED_CATEGORIES for ch in name):
        raise RequestError(
            ErrorCode.BAD_NAME, "A name cannot hold control or invisible characters."
        )
    name = " ".join(name.split())  # runs of inner spaces become one
    if not 1 <= len(name) <= max_length:
        raise RequestError(ErrorCode.BAD_NAME, f"A name has 1 to {max_length} characters.")
    if not visible(name):
        raise RequestError(ErrorCode.BAD_NAME, "A name needs at least one visible character.")
    roles = shipped_languages().reserved if reserved is None else reserved
    if participant and _impersonates_role(name, _role_skeletons(roles)):
        raise RequestError(ErrorCode.BAD_NAME, "That name is reserved for the room's roles.")
    return name


def _impersonates_role(name: str, roles: frozenset[str]) -> bool:
    # On skeletons, so that "Fаcilitator" (Cyrillic а) is the role word it looks like.
    for form in _look_alike_forms(name):
        words = _words(form)
        if any(word in roles for word in words):
            return True
        squashed = "".join(words)
        if any(word in squashed for word in _ROLE_INSIDE_SKELETONS):
            return True
    return False


def _words(text: str) -> list[str]:
    # Runs of letters and digits, with the combining marks among them: a skeleton spells some
    # letters with a mark (Arabic ش is س and U+06DB), and a mark must not cut a word in two.
    words: list[str] = []
    current = ""
    for ch in text:
        if ch.isalnum() or unicodedata.category(ch)[0] == "M":
            current += ch
        elif current:
            words.append(current)
            current = ""
    return [*words, current] if current else words


def pseudonym(taken: Callable[[str], bool], words: NameWords, crowd: int = 0) -> tuple[str, str]:
    """A friendly random pseudonym that ``taken`` says is free.

    Args:
        taken: whether a name key (:func:`name_key`) is taken in the room; a lookup, so that
            a room of a thousand does not compare every name for every newcomer.
        words: the room language's words (``Languages.words``): "Quiet Heron", "Garza Serena".
        crowd: how many names the room holds. Once they are most of what the words make
            (English makes 400), a plain name is rarely free: a numbered one is drawn after
            a few tries rather than fifty. In a join storm of a thousand, the fifty tries of
            every late joiner were 32,000 draws and a tenth of the server's time.

    Returns:
        The name and its name key.
    """
    for _ in range(50 if crowd < words.size * 3 // 4 else 3):
        name = words.name(_randbelow(words.size))
        key = _word_name_key(name)
        if not taken(key):
            return name, key
    while True:
        name = f"{words.name(_randbelow(words.size))} {_randbelow(1000)}"
        key = name_key(name)
        if not taken(key):
            return name, key


@cache
def _word_name_key(name: str) -> str:
    # The name key of a name made from the word lists, computed once per process: in a room
    # of a thousand, a newcomer's first picks are often taken, and each key is an ICU
    # skeleton (the join storm's profile had name keys at a tenth of the server's time). The
    # names are the word lists' combinations, the same for everyone: nothing personal is kept.
    return name_key(name)
