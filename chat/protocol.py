"""The wire: client messages in, server messages out, for both encodings (protocol v1).

This module is the one place that knows the wire shapes. It does no I/O and imports no
asyncio: bytes or text come in, typed messages go out; dicts come in, frames go out.

Client → server: the typed messages of :mod:`chat.requests` (the table of types, fields and
answers is there), decoded and validated here: every field's type, range and length.

Server → client: the typed messages of :mod:`chat.events`, encoded here. A server frame holds
one message or an array of messages (§2); :func:`batch` builds the array.

Limits: frame payload ≤ ``max_frame`` bytes (enforced by uvicorn, close 1009), text ≤
``max_text`` code points after NFKC, names 1..24 code points (checked in ``identity``).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

import msgpack

from chat.errors import ErrorCode, ProtocolError
from chat.requests import MESSAGE_TYPES, ClientMessage
from chat.roomstate import MAX_SLOW, SETTING_CHOICES

MAX_ID = 2**31
MAX_TOKEN = 128  # room ids, pids, mids, keys and resume tokens are short ASCII strings
MAX_SECONDS = 30 * 24 * 3600
MAX_EXTEND = 120  # minutes one extend may add (§13)
MAX_ORDER = 1000  # pids in a round's order: the most participants a room may have (§13)
ROUND_MODES = ("queue", "order")

Frame = bytes | str
"""A received frame: bytes (binary, MessagePack) or str (text, JSON)."""


class Encoding(Enum):
    """A wire encoding, named by its WebSocket subprotocol."""

    MSGPACK = "hearth.v1.msgpack"
    JSON = "hearth.v1.json"

    @classmethod
    def negotiate(cls, offered: list[str]) -> Encoding | None:
        """The first offered subprotocol we support, in the client's order (§2)."""
        for name in offered:
            for encoding in cls:
                if encoding.value == name:
                    return encoding
        return None


# Which fields are required, and which carry free text checked against max_text.
_REQUIRED = {"room", "text", "mid", "pid", "to", "label"}
_REQUIRED_BY_TYPE = {
    "slow": {"seconds"},
    "cw": {"cw"},
    "extend": {"minutes"},  # §13
    "round": {"mode"},
    "away": {"on"},
}
# §14: short fields with limits of their own (code points after NFKC): (least, most).
_SHORT_TEXT = {"cw": (1, 60), "label": (1, 40)}
_SHORT_TEXT_BY_TYPE = {
    "cw": {"cw": (0, 60)},  # "" removes a content warning
    "warn": {"reason": (0, 200)},
    "mute": {"reason": (0, 200)},
}
# The ``settings`` message's fields: the same words as at room creation (one table).
_CHOICES = {name: SETTING_CHOICES[name] for name in ("review", "contact")}
_BOOLEANS = {"agree", "confirm", "strict", "down", "on"}  # strict, down, on: §13
_TEXT_FIELDS = {"text", "reason"}
_TOKEN_FIELDS = {"room", "key", "resume", "mid", "pid", "to"}
_INT_RANGES = {"since": (0, 2**53), "seconds": (1, MAX_SECONDS), "minutes": (1, MAX_EXTEND)}
_INT_RANGES_BY_TYPE = {"slow": {"seconds": (0, MAX_SLOW)}}


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits of protocol §2 (defaults; the operator may change them)."""

    max_frame: int = 16_384
    max_text: int = 2_000
    max_name: int = 24


def is_unicode_text(text: str) -> bool:
    """Whether ``text`` can be encoded as UTF-8.

    JSON's ``\\ud800`` escapes decode to lone surrogates, which no encoder will write back
    out: one of them in a stored report or name would break every later welcome.
    """
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_length(text: str) -> int:
    """Length in code points after NFKC normalisation (§2); ASCII is its own NFKC."""
    if text.isascii():
        return len(text)
    return len(unicodedata.normalize("NFKC", text))


def decode(frame: Frame, encoding: Encoding, limits: Limits) -> ClientMessage:
    """Turn one untrusted client frame into a typed, validated message.

    Args:
        frame: the frame payload: ``bytes`` for a binary frame, ``str`` for a text frame.
        encoding: the encoding negotiated for this connection.
        limits: the field limits in force.

    Raises:
        ProtocolError: ``bad_frame`` (undecodable, wrong frame kind), ``unknown_type``,
            ``bad_request`` (missing, mistyped or out-of-range field) or ``too_large``.
    """
    raw = _load(frame, encoding)
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.BAD_FRAME, "A message must be a map.")
    request_id = _request_id(raw.get("id"))
    kind = raw.get("t")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "Field t must be a string.", id=request_id)
    cls = MESSAGE_TYPES.get(kind)
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "Unknown message type.", id=request_id)
    values: dict[str, Any] = {"id": request_id}
    for name in _request_fields(cls):
        values[name] = _field(kind, name, raw.get(name), limits, request_id)
    return cls(**values)


_REQUEST_FIELDS: dict[type[ClientMessage], tuple[str, ...]] = {}


def _request_fields(cls: type[ClientMessage]) -> tuple[str, ...]:
    """A request type's fields but ``id``, once per type (``dataclasses.fields`` per frame
    showed in issue 13's profile)."""
    names = _REQUEST_FIELDS.get(cls)
    if names is None:
        names = _REQUEST_FIELDS[cls] = tuple(f.name for f in fields(cls) if f.name != "id")
    return names


def _load(frame: Frame, encoding: Encoding) -> Any:
    try:
        if encoding is Encoding.MSGPACK:
            if not isinstance(frame, bytes):
                raise ProtocolError(ErrorCode.BAD_FRAME, "Expected a binary frame.")
            return msgpack.unpackb(frame, raw=False, strict_map_key=True)
        if not isinstance(frame, str):
            raise ProtocolError(ErrorCode.BAD_FRAME, "Expected a text frame.")
        return json.loads(frame)
    except (ValueError, TypeError, RecursionError) as exc:
        # msgpack's ExtraData, FormatError, StackError and UnicodeDecodeError, and
        # json's JSONDecodeError, all derive from ValueError.
        raise ProtocolError(ErrorCode.BAD_FRAME, "The frame could not be decoded.") from exc


def _request_id(value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not 0 <= value < MAX_ID:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "Field id must be an integer in [0, 2^31).")
    return value


def _field(kind: str, name: str, value: Any, limits: Limits, request_id: int | None) -> Any:
    def bad(message: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> ProtocolError:
        return ProtocolError(code, message, id=request_id)

    required = name in _REQUIRED or name in _REQUIRED_BY_TYPE.get(kind, ())
    if value is None:
        if required:
            raise bad(f"Field {name} is required.")
        return None
    if name in _BOOLEANS:
        if type(value) is not bool:
            raise bad(f"Field {name} must be a boolean.")
        return value
    if name == "order":
        return _order(value, bad)
    if name in _INT_RANGES:
        low, high = _INT_RANGES_BY_TYPE.get(kind, {}).get(name, _INT_RANGES[name])
        if type(value) is not int or not low <= value <= high:
            raise bad(f"Field {name} must be an integer in [{low}, {high}].")
        return value
    if not isinstance(value, str):
        raise bad(f"Field {name} must be a string.")
    if not is_unicode_text(value):
        raise bad(f"Field {name} is not valid Unicode text.")
    short = _SHORT_TEXT_BY_TYPE.get(kind, {}).get(name) or _SHORT_TEXT.get(name)
    if short is not None:
        # §13-§14: a field over its stated limit is bad_request (not too_large).
        least, most = short
        length = text_length(value)
        if not least <= length <= most or (length and not value.strip()):
            raise bad(f"Field {name} must be {least} to {most} characters.")
        return value
    if name in _CHOICES:
        if value not in _CHOICES[name]:
            raise bad(f"Field {name} must be one of {', '.join(_CHOICES[name])}.")
        return value
    if name in _TOKEN_FIELDS:
        if not value or len(value) > MAX_TOKEN:
            raise bad(f"Field {name} must be 1 to {MAX_TOKEN} characters.")
        return value
    if name in _TEXT_FIELDS:
        if text_length(value) > limits.max_text:
            raise bad(f"Field {name} is over {limits.max_text} characters.", ErrorCode.TOO_LARGE)
        if name == "text" and not value.strip():
            raise bad("Field text must not be empty.")
        return value
    if name == "name":
        if len(value) > limits.max_name * 4:  # normalised and checked fully in identity
            raise bad("Field name is too long.")
        return value
    if name == "mode":
        if value not in ROUND_MODES:
            raise bad("Field mode must be queue or order.")
        return value
    raise bad(f"Field {name} is not understood.")  # pragma: no cover - table is complete


def _order(value: Any, bad: Any) -> list[str] | str:
    """A round's ``order``: ``"random"`` or a list of pids (1..MAX_ORDER of them)."""
    if value == "random":
        return "random"
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= MAX_ORDER
        or not all(isinstance(p, str) and 0 < len(p) <= MAX_TOKEN for p in value)
    ):
        raise bad(f'Field order must be "random" or a list of 1 to {MAX_ORDER} pids.')
    return list(value)


# --- server messages ---------------------------------------------------------------------

Message = dict[str, Any]


class EncodedArray:
    """An array already encoded, item by item, for one encoding: :func:`encode` puts it into
    a map as it is, and :meth:`plus` makes one with an item more without encoding the rest
    again. Each array reads as it was made: one grown from it later does not change it.

    A room keeps its welcome's member list this way (``LocalRoom.listing``): in a join storm
    every welcome lists the room so far, and building and encoding each member afresh for
    each joiner was a fifth of the server's time (issue 13).
    """

    __slots__ = ("_buffer", "_length", "count", "encoding")

    def __init__(self, encoding: Encoding, items: Sequence[bytes] = ()) -> None:
        self.encoding = encoding
        self.count = len(items)
        # MessagePack: the items one after another; JSON: with commas between them. Arrays
        # grown one from another share the buffer, each reading its own first _length bytes,
        # so that a storm's thousand joins append rather than copy the room a thousand times.
        self._buffer = bytearray((b"" if encoding is Encoding.MSGPACK else b",").join(items))
        self._length = len(self._buffer)

    def plus(self, item: bytes) -> EncodedArray:
        """This array with one more item at its end."""
        buffer = self._buffer
        if len(buffer) != self._length:  # an array was grown from this one already
            buffer = buffer[: self._length]
        if self.count and self.encoding is Encoding.JSON:
            buffer += b","
        buffer += item
        longer = EncodedArray(self.encoding)
        longer._buffer, longer._length, longer.count = buffer, len(buffer), self.count + 1
        return longer

    def encoded(self) -> bytes:
        if self.encoding is Encoding.MSGPACK:
            head, tail = _array_header(self.count), b""
        else:
            head, tail = b"[", b"]"
        # One copy of the body; the views are released at once, so that the buffer can grow.
        with memoryview(self._buffer) as whole, whole[: self._length] as body:
            return b"".join((head, body, tail))


def encode(message: Message | list[Message], encoding: Encoding) -> bytes:
    """Encode one server message (or an array of them) as one frame's payload.

    JSON comes out UTF-8 encoded too: a fan-out frame is encoded once, down to its bytes,
    for every recipient (the text/binary frame type follows the member's encoding). A map's
    :class:`EncodedArray` values go in as the bytes they already are.
    """
    if type(message) is dict and EncodedArray in map(type, message.values()):  # C-speed look
        spliced = [key for key, value in message.items() if type(value) is EncodedArray]
        return _encode_spliced(message, spliced, encoding)
    if encoding is Encoding.MSGPACK:
        packed: bytes = msgpack.packb(message, use_bin_type=True)
        return packed
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()


def _encode_spliced(message: Message, spliced: list[str], encoding: Encoding) -> bytes:
    """``message`` with its :class:`EncodedArray` values (named by ``spliced``) appended
    as bytes: a map is its entries in any order, so the rest is encoded as usual and the
    spliced entries follow it (MessagePack: with the map's count raised to match)."""
    rest = {key: value for key, value in message.items() if key not in spliced}
    tail: list[tuple[bytes, bytes]] = []
    for key in spliced:
        value: EncodedArray = message[key]
        if value.encoding is not encoding:
            raise ValueError("an encoded array spliced into a message of another encoding")
        tail.append((_encoded_key(key, encoding), value.encoded()))
    if encoding is Encoding.MSGPACK:
        packed = encode(rest, encoding)
        body = packed[1:] if packed[0] & 0xF0 == 0x80 else packed[3:]  # fixmap, or map16
        count = len(rest) + len(spliced)
        header = bytes((0x80 | count,)) if count < 16 else b"\xde" + count.to_bytes(2, "big")
        return header + body + b"".join(key + value for key, value in tail)
    text = encode(rest, encoding)[:-1]  # "{...": the closing brace goes after the tail
    entries = b",".join(key + b":" + value for key, value in tail)
    return text + (b"," if rest else b"") + entries + b"}"


def _encoded_key(key: str, encoding: Encoding) -> bytes:
    if encoding is Encoding.MSGPACK:
        packed: bytes = msgpack.packb(key, use_bin_type=True)
        return packed
    return json.dumps(key, ensure_ascii=False).encode()


def batch(frames: list[bytes], encoding: Encoding) -> bytes:
    """Join already encoded single-message frames into one array frame (§2).

    Concatenation is enough: a MessagePack array is a header followed by its elements, and a
    JSON array is its elements between brackets.
    """
    if encoding is Encoding.MSGPACK:
        return _array_header(len(frames)) + b"".join(frames)
    return b"[" + b",".join(frames) + b"]"


def _array_header(count: int) -> bytes:
    """A MessagePack array's header for ``count`` items."""
    if count < 16:
        return bytes((0x90 | count,))
    if count < 2**16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


# --- the bus between workers -------------------------------------------------------------


def pack_envelope(envelope: Message) -> bytes:
    """Serialise a bus envelope (a map of plain values) to bytes."""
    packed: bytes = msgpack.packb(envelope, use_bin_type=True)
    return packed


def unpack_envelope(data: bytes) -> Message:
    """Parse a bus envelope.

    Raises:
        ValueError: the bytes are not a MessagePack map.
    """
    try:
        value = msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError) as exc:
        raise ValueError("not a Hearth envelope") from exc
    if not isinstance(value, dict):
        raise ValueError("not a Hearth envelope")
    return value


def pack_value(value: Any, *, for_lua: bool = False) -> bytes:
    """Serialise a plain value for the store.

    ``for_lua``: bytes are written as MessagePack *str*, not *bin*: Redis's Lua ``cmsgpack``
    cannot read the bin types (a store script reads what this packs).
    """
    packed: bytes = msgpack.packb(value, use_bin_type=not for_lua)
    return packed


def unpack_value(data: bytes) -> Any:
    """Parse what :func:`pack_value` (or Lua's ``cmsgpack.pack``) wrote.

    Raises:
        ValueError: not MessagePack.
    """
    try:
        return msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError) as exc:
        raise ValueError("not a stored value") from exc
