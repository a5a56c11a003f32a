"""The AES-GCM sealing of what Hearth puts in Redis (chat.buscrypt)."""

from __future__ import annotations

import pytest

from chat.buscrypt import Sealer, SealError, context

KEY = bytes(range(32))


def test_sealing_binds_room_and_kind() -> None:
    """A sealed blob opens only with its key, room and kind; tampering is detected."""
    sealer = Sealer(KEY)
    blob = sealer.seal(b"secret", context("msg", "r1"))
    assert b"secret" not in blob
    assert sealer.open(blob, context("msg", "r1")) == b"secret"
    for wrong in (context("msg", "r2"), context("member", "r1")):
        with pytest.raises(SealError):
            sealer.open(blob, wrong)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(SealError):
        sealer.open(tampered, context("msg", "r1"))


def test_sealing_modes_and_rotation() -> None:
    """Clear blobs are refused with a key, sealed ones without; the old key still opens."""
    clear, old, rotated = Sealer(None), Sealer(KEY), Sealer(bytes(32), KEY)
    ctx = context("bus", "r")
    with pytest.raises(SealError):
        old.open(clear.seal(b"x", ctx), ctx)
    with pytest.raises(SealError):
        clear.open(old.seal(b"x", ctx), ctx)
    assert rotated.open(old.seal(b"x", ctx), ctx) == b"x"
    with pytest.raises(SealError):
        old.open(rotated.seal(b"x", ctx), ctx)
