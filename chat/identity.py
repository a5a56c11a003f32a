"""Anonymous identity: ids and secrets, display names, pseudonyms, and hashes (stdlib only).

Nothing here links a participant across rooms: pids are random per sitting, and network
addresses are only ever kept as an HMAC keyed with a per-room salt.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata

from chat.errors import ErrorCode, RequestError

ROOM_ID_BYTES = 16  # 128 bits (the contract asks for at least 80)
KEY_BYTES = 24  # 192 bits (the contract asks for at least 128)
MAX_NAME = 24

RESERVED_WORDS = frozenset(
    {
        "facilitator",
        "moderator",
        "mod",
        "admin",
        "administrator",
        "host",
        "staff",
        "system",
        "hearth",
        "operator",
        "official",
        "support",
    }
)
_RESERVED_INSIDE = ("facilitator", "moderator", "admin")
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_WORDS = re.compile(r"[^\W_]+")

_ADJECTIVES = (
    "Quiet",
    "Gentle",
    "Calm",
    "Bright",
    "Kind",
    "Steady",
    "Warm",
    "Patient",
    "Brave",
    "Soft",
    "Hopeful",
    "Clear",
    "Easy",
    "Silver",
    "Golden",
    "Mellow",
    "Tender",
    "Sunny",
    "Still",
    "Open",
)
_CREATURES = (
    "Heron",
    "Otter",
    "Willow",
    "Sparrow",
    "Fern",
    "Badger",
    "Robin",
    "Maple",
    "Finch",
    "Cedar",
    "Lark",
    "Hare",
    "Pebble",
    "Wren",
    "Birch",
    "Dove",
    "River",
    "Moss",
    "Fox",
    "Meadow",
)


def new_room_id() -> str:
    return secrets.token_urlsafe(ROOM_ID_BYTES)


def new_secret() -> str:
    """A facilitator key or resume token."""
    return secrets.token_urlsafe(KEY_BYTES)


def new_pid() -> str:
    return secrets.token_urlsafe(9)


def new_mid() -> str:
    return secrets.token_urlsafe(12)


def new_salt() -> bytes:
    return secrets.token_bytes(16)


def hash_secret(secret: str) -> str:
    """Hash a high-entropy secret for storage (no stretching needed at 128+ random bits)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Compare a presented secret with a stored hash in constant time."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def address_hash(salt: bytes, address: str) -> str:
    """A room-salted hash of a network address: bans key on it; the clear address is dropped."""
    return hmac.new(salt, address.encode(), hashlib.sha256).hexdigest()


def name_key(name: str) -> str:
    """The form in which names are compared for uniqueness (case-insensitive)."""
    return name.casefold()


def normalise_name(raw: str, *, participant: bool, max_length: int = MAX_NAME) -> str:
    """Trim, NFKC-normalise and check a wished-for display name (protocol §4).

    Args:
        raw: the name as the client sent it.
        participant: whether role-impersonating names are refused.
        max_length: the longest name allowed, in code points.

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
    if participant and _impersonates_role(name):
        raise RequestError(ErrorCode.BAD_NAME, "That name is reserved for the room's roles.")
    return name


def _impersonates_role(name: str) -> bool:
    folded = name.casefold()
    if any(word in RESERVED_WORDS for word in _WORDS.findall(folded)):
        return True
    squashed = "".join(_WORDS.findall(folded))
    return any(word in squashed for word in _RESERVED_INSIDE)


def pseudonym(taken: set[str]) -> str:
    """A friendly random pseudonym ("Quiet Heron") not in ``taken`` (a set of name keys)."""
    for _ in range(50):
        name = f"{secrets.choice(_ADJECTIVES)} {secrets.choice(_CREATURES)}"
        if name_key(name) not in taken:
            return name
    while True:
        name = (
            f"{secrets.choice(_ADJECTIVES)} {secrets.choice(_CREATURES)} {secrets.randbelow(1000)}"
        )
        if name_key(name) not in taken:
            return name
