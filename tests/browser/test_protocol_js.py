"""static/js/protocol.js run in Chromium: batching, close-code policy, encoding."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

RECONNECT = [1001, 1006, 1011, 1012, 4008]
TERMINAL = [1000, 1008, 1009, 4001, 4003, 4004, 4005, 4010]


@pytest.fixture
def protocol(server, new_page):
    page = new_page()
    page.goto(server.http + "/")
    page.evaluate("async () => { window.protocol = await import('/static/js/protocol.js'); }")
    return page


def test_frames_may_hold_one_message_or_a_batch(protocol):
    """A server frame is one JSON object or a JSON array of them; junk yields nothing."""
    decoded = protocol.evaluate(
        """() => [
            protocol.decodeFrame('{"t":"msg","seq":1}'),
            protocol.decodeFrame('[{"t":"msg","seq":2},{"t":"typing","pid":"p"}]'),
            protocol.decodeFrame('not json'),
            protocol.decodeFrame('[1, null, {"no":"t"}, {"t":"ok"}]'),
            protocol.decodeFrame(new ArrayBuffer(4)),
        ]"""
    )
    assert decoded == [
        [{"t": "msg", "seq": 1}],
        [{"t": "msg", "seq": 2}, {"t": "typing", "pid": "p"}],
        [],
        [{"t": "ok"}],
        [],
    ]


def test_close_codes_split_into_reconnect_and_terminal(protocol):
    """1001, 1006, 1011, 1012 and 4008 reconnect; every terminal code gets its own sentence
    (a catalogue key; tests/test_languages.py checks that every language has it)."""
    policies = protocol.evaluate(
        "(codes) => codes.map((c) => protocol.closePolicy(c))", RECONNECT + TERMINAL
    )
    for code, policy in zip(RECONNECT + TERMINAL, policies, strict=True):
        assert policy["reconnect"] is (code in RECONNECT), code
        assert policy["explanation"]["key"].startswith("close."), code
    explanations = [p["explanation"]["key"] for p in policies[len(RECONNECT) :]]
    assert len(set(explanations)) == len(TERMINAL)  # a plain, distinct sentence for each
    unknown = protocol.evaluate("() => protocol.closePolicy(4999)")
    assert unknown == {
        "reconnect": False,
        "explanation": {"key": "close.other", "params": {"code": "4999"}},
    }


def test_request_ids_are_small_positive_integers(protocol):
    """Request ids are integers 1 ≤ id < 2^31 and differ from one request to the next."""
    ids = protocol.evaluate("() => [protocol.newId(), protocol.newId(), protocol.newId()]")
    assert len(set(ids)) == 3
    assert all(isinstance(i, int) and 0 < i < 2**31 for i in ids)
    assert protocol.evaluate("() => protocol.encode({t: 'say', text: 'hi'})") == (
        '{"t":"say","text":"hi"}'
    )
