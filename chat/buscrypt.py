"""Sealing what Hearth puts in Redis: AES-GCM envelopes with a key id, for the bus and the store.

With a bus key (``--bus-key``), every envelope a worker publishes and every record it stores in
Redis that holds names or text is sealed: encrypted and authenticated with AES-256-GCM under a
random 96-bit nonce, with the room id and the kind of record bound as associated data, so a
sealed message cannot be replayed into another room or passed off as another kind of record.
``MONITOR``, a dump or a stolen backup then shows no names and no text.

A sealed blob is ``key id (1 byte) | nonce (12 bytes) | ciphertext and tag``. The key id is
derived from the key itself, so that during a rotation (``--bus-key`` new, ``--bus-key-old``
the previous one) a worker knows which key to try first. Without a key a blob is ``0x00 |
data``: the bus is in clear, and the server says so at start.

A worker that has a key refuses clear blobs, and a worker without one refuses sealed blobs:
either would otherwise let whoever can write to Redis inject messages. Uses ``cryptography``;
imports nothing from ``chat``.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CLEAR = 0
NONCE_BYTES = 12
KEY_BYTES = 32


class SealError(ValueError):
    """A blob failed authentication, used an unknown key, or is in the wrong mode."""


def key_id(key: bytes) -> int:
    """The one-byte id of a key (1-255; 0 marks a clear blob)."""
    digest = hashlib.sha256(b"hearth bus key id\x00" + key).digest()
    return digest[0] or 1


class Sealer:
    """Seals and opens blobs with the current key, and opens with the previous one too.

    Args:
        key: the current 32-byte key, or None for a bus in clear.
        old: a previous key still accepted for opening, during a rotation.

    Raises:
        ValueError: a key is not 32 bytes, or ``old`` is given without ``key``.
    """

    def __init__(self, key: bytes | None, old: bytes | None = None) -> None:
        if old is not None and key is None:
            raise ValueError("a previous bus key needs a current one")
        for k in (key, old):
            if k is not None and len(k) != KEY_BYTES:
                raise ValueError("a bus key is 32 bytes")
        self._current: tuple[int, AESGCM] | None = (
            (key_id(key), AESGCM(key)) if key is not None else None
        )
        self._openers: list[tuple[int, AESGCM]] = [
            (key_id(k), AESGCM(k)) for k in (key, old) if k is not None
        ]

    @property
    def encrypting(self) -> bool:
        """Whether blobs are sealed (a bus key is set)."""
        return self._current is not None

    def seal(self, data: bytes, context: bytes) -> bytes:
        """Seal ``data`` for ``context`` (the kind of record and its room).

        Args:
            data: the plaintext.
            context: associated data; :meth:`open` must be given the same.
        """
        if self._current is None:
            return bytes((CLEAR,)) + data
        kid, aead = self._current
        nonce = os.urandom(NONCE_BYTES)
        return bytes((kid,)) + nonce + aead.encrypt(nonce, data, context)

    def open(self, blob: bytes, context: bytes) -> bytes:
        """Open a blob that :meth:`seal` made.

        Args:
            blob: the sealed (or clear) blob.
            context: the associated data it was sealed with.

        Raises:
            SealError: wrong mode, unknown key id, or failed authentication.
        """
        if not blob:
            raise SealError("empty blob")
        kid = blob[0]
        if kid == CLEAR:
            if self._current is not None:
                raise SealError("a clear blob where sealed ones are required")
            return blob[1:]
        if self._current is None:
            raise SealError("a sealed blob, and no bus key to open it")
        nonce, sealed = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        # Two keys may share an id byte (1 in 255): try every key with that id.
        for candidate, aead in self._openers:
            if candidate != kid:
                continue
            try:
                return aead.decrypt(nonce, sealed, context)
            except InvalidTag:
                continue
        raise SealError("authentication failed")


def context(kind: str, room: str) -> bytes:
    """The associated data for a record of ``kind`` (``bus``, ``msg``, ``member``...) in a room."""
    return kind.encode() + b"\x00" + room.encode()
