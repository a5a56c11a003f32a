"""One connection's way out (chat.outbound) on its own: batching, hold and release, the 4008
limit and its burst factor, and the close's drain. A real Outbound and a real Outbox; the
peer is a fake ASGI send that records what it is given and can stall like a paused transport.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from chat.errors import CloseCode
from chat.outbound import BURST_FACTOR, Outbound
from chat.outbox import Outbox
from chat.protocol import Encoding, encode
from tests.timing import MS, wait_until

LIMIT = 4


class Peer:
    """An ASGI send that records every message, and stalls while ``open`` is clear."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.calls = 0  # sends begun, the stalled one included
        self.open = asyncio.Event()
        self.open.set()

    async def send(self, message: dict[str, Any]) -> None:
        self.calls += 1
        await self.open.wait()
        self.sent.append(message)

    def frames(self) -> list[list[dict[str, Any]]]:
        """Each websocket.send as the list of messages it carried (an array or one)."""
        out = []
        for message in self.sent:
            if message["type"] == "websocket.send":
                got = json.loads(message["text"])
                out.append(got if isinstance(got, list) else [got])
        return out

    def closes(self) -> list[int]:
        return [m["code"] for m in self.sent if m["type"] == "websocket.close"]


def frame(n: int) -> bytes:
    return encode({"t": "msg", "n": n}, Encoding.JSON)


def numbers(frames: list[list[dict[str, Any]]]) -> list[int]:
    return [m["n"] for batch in frames for m in batch]


def outbound(peer: Peer, limit: int = LIMIT, **direct: Any) -> Outbound:
    return Outbound(peer.send, Encoding.JSON, limit, Outbox(), **direct)


async def test_frames_of_one_turn_leave_as_one_array_in_order() -> None:
    peer = Peer()
    out = outbound(peer)
    for n in range(3):
        out.push(frame(n))
    out.reply(frame(3))
    await wait_until(peer.frames, what="the batch")
    assert peer.frames() == [[{"t": "msg", "n": n} for n in range(4)]]
    out.push(frame(4))  # a later turn: a frame of its own
    await wait_until(lambda: len(peer.frames()) == 2, what="the second frame")
    assert peer.frames()[1] == [{"t": "msg", "n": 4}]


async def test_the_direct_write_takes_the_batch_and_asgi_send_is_the_fallback() -> None:
    peer = Peer()
    written: list[tuple[bytes, bool]] = []
    accept = True

    def write_now(payload: bytes, binary: bool) -> bool:
        if accept:
            written.append((payload, binary))
        return accept

    out = outbound(peer, write_now=write_now)
    out.push(frame(0))
    out.push(frame(1))
    await wait_until(lambda: written, what="the direct write")
    assert [json.loads(payload) for payload, _ in written] == [
        [{"t": "msg", "n": 0}, {"t": "msg", "n": 1}]
    ]
    assert written[0][1] is False  # JSON goes as text
    accept = False  # the transport is paused: the writer task goes through ASGI send
    out.push(frame(2))
    await wait_until(peer.frames, what="the fallback send")
    assert peer.frames() == [[{"t": "msg", "n": 2}]] and len(written) == 1


async def test_a_hold_keeps_room_events_back_until_release_but_not_replies() -> None:
    peer = Peer()
    out = outbound(peer)
    out.hold()
    out.push(frame(0))
    out.push(frame(1))
    out.reply(frame(100))  # the answer to the join goes out at once
    await wait_until(peer.frames, what="the reply")
    await asyncio.sleep(20 * MS)  # a window to show: the held events stay back
    assert numbers(peer.frames()) == [100]
    out.release()
    out.push(frame(2))
    await wait_until(lambda: numbers(peer.frames()) == [100, 0, 1, 2], what="held, then new")


async def test_a_connection_that_falls_limit_frames_behind_a_stalled_writer_gets_4008() -> None:
    peer = Peer()
    out = outbound(peer)
    peer.open.clear()  # the client stops reading: the writer's send waits
    out.push(frame(0))
    await wait_until(lambda: peer.calls == 1, what="a writer stuck in send")
    for n in range(1, LIMIT + 1):
        out.push(frame(n))
    assert out.closing is None  # exactly the limit behind: still served
    out.push(frame(LIMIT + 1))
    assert out.closing == (CloseCode.TOO_SLOW, "could not keep up with the room")
    peer.open.set()
    await wait_until(peer.closes, what="the close")
    assert peer.closes() == [4008]
    # Only the frame already in send went out: what lagged was dropped, not sent late.
    assert numbers(peer.frames()) == [0]


async def test_one_turn_may_queue_the_burst_factor_times_the_limit_not_more() -> None:
    peer = Peer()
    burst = LIMIT * BURST_FACTOR
    calm = outbound(peer)
    for n in range(burst):  # a storm of arrivals within one turn is not slowness
        calm.push(frame(n))
    assert calm.closing is None
    await wait_until(lambda: numbers(peer.frames()) == list(range(burst)), what="the burst")

    flooded = outbound(Peer())
    for n in range(burst + 1):
        flooded.push(frame(n))
    assert flooded.closing is not None and flooded.closing[0] is CloseCode.TOO_SLOW

    held = outbound(Peer())
    held.hold()
    for n in range(burst):
        held.push(frame(n))
    assert held.closing is None
    held.push(frame(burst))
    assert held.closing is not None and held.closing[0] is CloseCode.TOO_SLOW


async def test_close_sends_what_is_queued_and_held_then_the_close_and_the_first_close_wins() -> (
    None
):
    peer = Peer()
    out = outbound(peer)
    out.hold()
    out.push(frame(0))
    out.reply(frame(1))
    out.close(CloseCode.REMOVED, "removed by a facilitator")
    out.close(CloseCode.NORMAL, "left")
    out.push(frame(2))  # after the close: dropped
    await out.drain(1.0)
    assert sorted(numbers(peer.frames())) == [0, 1]
    assert peer.closes() == [int(CloseCode.REMOVED)]
    assert out.finished


async def test_drain_waits_for_a_stalled_close_only_as_long_as_it_is_told() -> None:
    peer = Peer()
    out = outbound(peer)
    peer.open.clear()
    out.close(CloseCode.NORMAL)
    began = time.monotonic()
    await out.drain(50 * MS)
    assert 45 * MS <= time.monotonic() - began < 1.0
    assert peer.closes() == []
    out.stop()  # the connection is over: the stalled writer is cancelled, nothing more goes
    peer.open.set()
    await asyncio.sleep(20 * MS)  # a window to show: the cancelled writer sends nothing
    assert peer.sent == [] and out.finished
