"""The sans-I/O codec: bytes in, typed messages out; messages in, frames out. No event loop."""

from __future__ import annotations

import contextlib
import json

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.errors import ErrorCode, ProtocolError
from chat.protocol import (
    EncodedArray,
    Encoding,
    Limits,
    batch,
    decode,
    encode,
    text_length,
)
from chat.requests import MESSAGE_TYPES, Join, Mute, Say, Slow

LIMITS = Limits()


def as_frame(message: object, encoding: Encoding) -> bytes | str:
    if encoding is Encoding.MSGPACK:
        return msgpack.packb(message)
    return json.dumps(message)


def code_of(frame: bytes | str, encoding: Encoding = Encoding.JSON) -> ErrorCode:
    with pytest.raises(ProtocolError) as caught:
        decode(frame, encoding, LIMITS)
    return caught.value.code


@pytest.mark.parametrize("encoding", list(Encoding))
def test_round_trip_of_every_type(encoding: Encoding) -> None:
    """Every client message type decodes from both encodings with its fields."""
    samples = {
        "join": {"room": "r1", "name": "Ada", "key": "k", "resume": "x", "since": 3, "agree": True},
        "say": {"text": "hi"},
        "typing": {},
        "leave": {},
        "report": {"mid": "m1", "reason": "unkind"},
        "whisper": {"to": "p1", "text": "psst"},
        "help": {},
        "mute": {"pid": "p1", "seconds": 60},
        "unmute": {"pid": "p1"},
        "remove": {"pid": "p1", "reason": "r"},
        "delete": {"mid": "m1"},
        "lock": {},
        "unlock": {},
        "slow": {"seconds": 0},
        "announce": {"text": "welcome"},
        "close": {},
        "admit": {"pid": "p1"},
        "deny": {"pid": "p1"},
        # §14
        "warn": {"pid": "p1", "reason": "r"},
        "hold": {"pid": "p1"},
        "unhold": {"pid": "p1"},
        "release": {"mid": "m1"},
        "discard": {"mid": "m1"},
        "resolve": {"mid": "m1"},
        "help_seen": {"pid": "p1"},
        "ignore": {"pid": "p1"},
        "unignore": {"pid": "p1"},
        "cw": {"mid": "m1", "cw": ""},
        "invite": {"label": "Sam's key"},
        "revoke": {"label": "Sam's key"},
        "settings": {"review": "all", "contact": "block"},
        # §13
        "pause": {},
        "unpause": {},
        "extend": {"minutes": 120},
        "round": {"mode": "order", "order": ["p1", "p2"], "strict": True},
        "hand": {"down": True},
        "done": {},
        "next": {},
        "end_round": {},
        "away": {"on": False},
    }
    assert set(samples) == set(MESSAGE_TYPES)
    for kind, body in samples.items():
        message = decode(as_frame({"t": kind, "id": 7, **body}, encoding), encoding, LIMITS)
        assert type(message).t == kind
        assert message.id == 7
        for name, value in body.items():
            assert getattr(message, name) == value


def test_decoded_join_is_typed() -> None:
    """A join decodes into the Join dataclass with absent fields as None."""
    assert decode('{"t":"join","room":"abc"}', Encoding.JSON, LIMITS) == Join(room="abc")


@pytest.mark.parametrize(
    ("frame", "encoding"),
    [
        (b"\xc1", Encoding.MSGPACK),  # never-used msgpack byte
        (b"\x92\x01", Encoding.MSGPACK),  # truncated array
        (msgpack.packb({"t": "say"}) + b"\x00", Encoding.MSGPACK),  # extra data
        ("{not json", Encoding.JSON),
        ("[" * 5000 + "]" * 5000, Encoding.JSON),  # deep nesting
        ("hello", Encoding.MSGPACK),  # text frame on the msgpack encoding
        (b'{"t":"say"}', Encoding.JSON),  # binary frame on the json encoding
        ('"just a string"', Encoding.JSON),
        ("[1, 2]", Encoding.JSON),
        (msgpack.packb({1: 2}), Encoding.MSGPACK),  # non-string keys
    ],
)
def test_undecodable_frames_are_bad_frame(frame: bytes | str, encoding: Encoding) -> None:
    """Undecodable frames, wrong frame kinds and non-map values answer bad_frame."""
    assert code_of(frame, encoding) is ErrorCode.BAD_FRAME


@pytest.mark.parametrize(
    "message",
    [
        {"t": "say", "text": "x", "id": True},
        {"t": "say", "text": "x", "id": 1.0},
        {"t": "say", "text": "x", "id": "1"},
        {"t": "say", "text": "x", "id": -1},
        {"t": "say", "text": "x", "id": 2**31},
        {"t": 5},
        {"t": "say"},
        {"t": "say", "text": 5},
        {"t": "say", "text": "   "},
        {"t": "join"},
        {"t": "join", "room": ""},
        {"t": "join", "room": "r", "agree": "yes"},
        {"t": "join", "room": "r", "since": -1},
        {"t": "join", "room": "r", "since": 1.5},
        {"t": "join", "room": "r", "name": 5},
        {"t": "join", "room": "x" * 500},
        {"t": "mute"},
        {"t": "mute", "pid": "p", "seconds": "5"},
        {"t": "mute", "pid": "p", "seconds": 0},
        {"t": "mute", "pid": "p", "seconds": True},
        {"t": "slow"},
        {"t": "slow", "seconds": -1},
        {"t": "slow", "seconds": 99999},
        {"t": "whisper", "to": "p"},
        {"t": "report"},
        {"t": "delete", "mid": None},
        # §13
        {"t": "extend"},
        {"t": "extend", "minutes": 0},
        {"t": "extend", "minutes": 121},
        {"t": "extend", "minutes": True},
        {"t": "round"},
        {"t": "round", "mode": "circle"},
        {"t": "round", "mode": "order", "order": []},
        {"t": "round", "mode": "order", "order": "shuffle"},
        {"t": "round", "mode": "order", "order": ["p", 5]},
        {"t": "round", "mode": "order", "order": ["p"] * 1001},
        {"t": "round", "mode": "order", "order": ["x" * 500]},
        {"t": "round", "mode": "queue", "strict": 1},
        {"t": "hand", "down": "yes"},
        {"t": "away"},
        {"t": "away", "on": 1},
    ],
)
def test_bad_fields_are_bad_request(message: dict[str, object]) -> None:
    """A missing, mistyped or out-of-range field answers bad_request."""
    assert code_of(json.dumps(message)) is ErrorCode.BAD_REQUEST


def test_unknown_type() -> None:
    """An unknown ``t`` answers unknown_type and keeps the request id."""
    with pytest.raises(ProtocolError) as caught:
        decode('{"t":"dance","id":4}', Encoding.JSON, LIMITS)
    assert caught.value.code is ErrorCode.UNKNOWN_TYPE
    assert caught.value.extra["id"] == 4


def test_text_limit_counts_code_points_after_nfkc() -> None:
    """Text over the limit is too_large; the count is code points after NFKC."""
    limits = Limits(max_text=10)
    assert decode('{"t":"say","text":"' + "é" * 10 + '"}', Encoding.JSON, limits) == Say(
        text="é" * 10
    )
    assert text_length("ﬁ") == 2  # the ligature normalises to two letters
    with pytest.raises(ProtocolError) as caught:
        decode(json.dumps({"t": "say", "text": "a" * 11}), Encoding.JSON, limits)
    assert caught.value.code is ErrorCode.TOO_LARGE


def test_slow_allows_zero_but_mute_does_not() -> None:
    """``slow`` takes 0 (off); a mute of 0 seconds is meaningless (bad_request), and a mute
    without seconds is open-ended."""
    assert decode('{"t":"slow","seconds":0}', Encoding.JSON, LIMITS) == Slow(seconds=0)
    assert code_of('{"t":"mute","pid":"p","seconds":0}') is ErrorCode.BAD_REQUEST
    assert decode('{"t":"mute","pid":"p"}', Encoding.JSON, LIMITS) == Mute(pid="p")


@pytest.mark.parametrize("encoding", list(Encoding))
@pytest.mark.parametrize("count", [1, 2, 15, 16, 300, 70000])
def test_batch_is_a_valid_array(encoding: Encoding, count: int) -> None:
    """Joined frames decode as one array of the original messages, at every header size."""
    frames = [encode({"t": "msg", "seq": i}, encoding) for i in range(count)]
    joined = batch(frames, encoding)
    assert isinstance(joined, bytes)
    decoded = msgpack.unpackb(joined) if encoding is Encoding.MSGPACK else json.loads(joined)
    assert decoded == [{"t": "msg", "seq": i} for i in range(count)]


def test_negotiation_follows_the_clients_order() -> None:
    """The first offered subprotocol we support wins (§2)."""
    assert Encoding.negotiate(["x", "hearth.v1.json", "hearth.v1.msgpack"]) is Encoding.JSON
    assert Encoding.negotiate(["hearth.v1.msgpack", "hearth.v1.json"]) is Encoding.MSGPACK
    assert Encoding.negotiate(["chat"]) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_escape_as_anything_but_protocol_errors(data: bytes) -> None:
    """Random bytes either decode to a message or raise ProtocolError, nothing else."""
    for encoding, frame in ((Encoding.MSGPACK, data), (Encoding.JSON, data.decode("latin-1"))):
        with contextlib.suppress(ProtocolError):
            decode(frame, encoding, LIMITS)


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from([*MESSAGE_TYPES, "nope"]),
    st.dictionaries(
        st.sampled_from(["id", "room", "text", "pid", "mid", "seconds", "since", "agree", "to"]),
        _values,
    ),
)
def test_random_maps_are_validated(kind: str, body: dict[str, object]) -> None:
    """Random maps with real type names either validate or raise a ProtocolError."""
    for encoding in Encoding:
        try:
            message = decode(as_frame({"t": kind, **body}, encoding), encoding, LIMITS)
        except ProtocolError as exc:
            assert exc.code in {
                ErrorCode.BAD_REQUEST,
                ErrorCode.UNKNOWN_TYPE,
                ErrorCode.TOO_LARGE,
                ErrorCode.BAD_FRAME,
            }
        else:
            assert type(message).t == kind


@pytest.mark.parametrize(
    "frame",
    [
        '{"t":"say","text":"\\ud800"}',
        '{"t":"report","mid":"m","reason":"ok \\udc00"}',
        '{"t":"join","room":"r","name":"\\ud83d"}',
        '{"t":"whisper","to":"\\udfff","text":"x"}',
    ],
)
def test_lone_surrogates_are_bad_request(frame: str) -> None:
    """JSON escapes that decode to lone surrogates (not encodable text) answer bad_request."""
    assert code_of(frame) is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("encoding", list(Encoding))
@pytest.mark.parametrize("members", [0, 1, 15, 16, 70_000])
@pytest.mark.parametrize("other_keys", [0, 1, 20])
def test_an_encoded_array_reads_back_as_the_list_it_stands_for(
    encoding: Encoding, members: int, other_keys: int
) -> None:
    """A welcome's member list kept encoded (issue 13), whether built at once or grown one
    item at a time, decodes as the plain list would: at MessagePack's size boundaries
    (fixarray/array16/array32, fixmap/map16) and in JSON. A longer one leaves the first as
    it was: a welcome drafted with it must not change."""
    listed = [{"pid": f"p{i}", "name": f"Ñame {i}", "role": "participant"} for i in range(members)]
    items = [encode(item, encoding) for item in listed]
    grown = EncodedArray(encoding, items[:1])
    for item in items[1:]:
        grown = grown.plus(item)
    arrays = [EncodedArray(encoding, items), grown]
    others = {f"k{i}": [i, "x"] for i in range(other_keys)}
    for array in arrays:
        frame = encode({"t": "welcome", **others, "members": array}, encoding)
        read = msgpack.unpackb(frame) if encoding is Encoding.MSGPACK else json.loads(frame)
        assert read == {"t": "welcome", **others, "members": listed}
    empty = EncodedArray(encoding)
    assert encode({"members": empty}, encoding) == encode({"members": []}, encoding)
    one = empty.plus(encode({"a": 1}, encoding))
    two = one.plus(encode({"b": 2}, encoding))
    other_two = one.plus(encode({"c": 3}, encoding))  # one grown twice: each reads its own
    assert encode({"members": empty}, encoding) == encode({"members": []}, encoding)
    assert encode({"m": one}, encoding) == encode({"m": [{"a": 1}]}, encoding)
    assert encode({"m": two}, encoding) == encode({"m": [{"a": 1}, {"b": 2}]}, encoding)
    assert encode({"m": other_two}, encoding) == encode({"m": [{"a": 1}, {"c": 3}]}, encoding)
    other = Encoding.JSON if encoding is Encoding.MSGPACK else Encoding.MSGPACK
    with pytest.raises(ValueError):
        encode({"members": one}, other)
