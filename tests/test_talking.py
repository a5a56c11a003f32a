"""Talking (protocol §5) and bad input (§8): every error keeps the room going."""

from __future__ import annotations

import asyncio
import json
import socket

import msgpack
import pytest

from tests.client import JSON, MSGPACK
from tests.timing import MS, WAIT


async def joined(server, room_id: str, *encodings: str):
    clients = []
    for encoding in encodings:
        client = await server.client(encoding)
        await client.join(room_id)
        clients.append(client)
    return clients


async def test_say_reaches_everyone_in_both_encodings(server) -> None:
    """A say is acked and reaches every member, sender included, in either encoding."""
    room = await server.room()
    a, b, c = await joined(server, room["room"], MSGPACK, JSON, MSGPACK)
    ack = await b.request({"t": "say", "text": "héllo 👋", "id": 41})
    assert ack == {"t": "ack", "id": 41, "mid": ack["mid"], "seq": 1}
    for client in (a, b, c):
        msg = await client.next("msg")
        assert msg["text"] == "héllo 👋" and msg["mid"] == ack["mid"] and msg["seq"] == 1
        assert msg["pid"] == b.pid and msg["role"] == "participant" and msg["name"]
        assert isinstance(msg["ts"], int)


async def test_every_member_sees_one_seq_order(server) -> None:
    """Concurrent senders: every member sees the same strictly increasing seq order."""
    room = await server.room()
    clients = await joined(server, room["room"], MSGPACK, JSON, MSGPACK, JSON)
    per_sender = 10
    await asyncio.gather(
        *(
            c.send({"t": "say", "text": f"{i}-{n}"})
            for n in range(per_sender)
            for i, c in enumerate(clients)
        )
    )
    orders = []
    for client in clients:
        seen = [(await client.next("msg"))["seq"] for _ in range(per_sender * len(clients))]
        orders.append(seen)
    assert orders[0] == list(range(1, per_sender * len(clients) + 1))
    assert all(order == orders[0] for order in orders)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("named", "pid"), ("anonymous", None), ("off", "nothing")],
)
async def test_typing_modes(server, mode: str, expected: str | None) -> None:
    """typing shows who (named), only that someone (anonymous), or nothing (off)."""
    room = await server.room(settings={"typing": mode})
    a, b = await joined(server, room["room"], MSGPACK, JSON)
    await a.send({"t": "typing"})
    got = [m for m in await b.quiet(400 * MS) if m["t"] == "typing"]
    if expected == "nothing":
        assert got == []
    elif expected == "pid":
        assert got == [{"t": "typing", "pid": a.pid}]
    else:
        assert got == [{"t": "typing"}]
    assert [m for m in await a.quiet(100 * MS) if m["t"] == "typing"] == []


async def test_typing_is_throttled_to_one_per_three_seconds(server) -> None:
    """Extra typing events within 3 s are dropped silently."""
    room = await server.room()
    a, b = await joined(server, room["room"], MSGPACK, MSGPACK)
    for _ in range(5):
        await a.send({"t": "typing"})
    assert len([m for m in await b.quiet(400 * MS) if m["t"] == "typing"]) == 1
    assert [m for m in await a.quiet(100 * MS) if m["t"] == "error"] == []


async def test_leave_tells_the_room_and_closes_1000(server) -> None:
    """leave: the others get ``left``; the server closes with 1000."""
    room = await server.room()
    a, b = await joined(server, room["room"], MSGPACK, JSON)
    await b.send({"t": "leave"})
    assert await b.closed() == 1000
    assert (await a.next("left")) == {"t": "left", "pid": b.pid}


async def test_bad_input_gets_errors_and_the_conversation_goes_on(server) -> None:
    """bad_frame, bad_request and unknown_type leave the socket and the room working."""
    room = await server.room()
    a, b = await joined(server, room["room"], MSGPACK, JSON)
    await a.send_raw(b"\xc1\xc1")
    assert (await a.next("error"))["code"] == "bad_frame"
    await a.send_raw("a text frame on the msgpack encoding")
    assert (await a.next("error"))["code"] == "bad_frame"
    await b.send_raw(b"\x00binary on json")
    assert (await b.next("error"))["code"] == "bad_frame"
    assert (await a.request({"t": "say"}))["code"] == "bad_request"
    await a.send({"t": "say", "text": "x", "id": True})
    assert (await a.next("error"))["code"] == "bad_request"
    answer = await a.request({"t": "dance", "id": 9})
    assert answer == {"t": "error", "id": 9, "code": "unknown_type", "message": answer["message"]}
    await a.send({"t": "say", "text": "x", "id": 1.5})
    assert (await a.next("error"))["code"] == "bad_request"
    assert (await b.request({"t": "say", "text": "still here"}))["t"] == "ack"
    assert (await a.next("msg"))["text"] == "still here"


async def test_text_over_the_limit_is_too_large(start_server) -> None:
    """Text over --max-text answers too_large and the socket stays open."""
    server = await start_server(max_text=10)
    room = await server.room()
    (a,) = await joined(server, room["room"], JSON)
    assert (await a.request({"t": "say", "text": "x" * 11}))["code"] == "too_large"
    assert (await a.request({"t": "say", "text": "x" * 10}))["t"] == "ack"


async def test_frame_over_the_limit_closes_1009(start_server) -> None:
    """A frame over --max-frame closes the connection with 1009; others carry on."""
    server = await start_server(max_frame=1024)
    room = await server.room()
    a, b = await joined(server, room["room"], MSGPACK, MSGPACK)
    await a.send_raw(msgpack.packb({"t": "say", "text": "x" * 2000}))
    assert await a.closed() == 1009
    assert (await b.request({"t": "say", "text": "fine"}))["t"] == "ack"


async def test_rate_limit_answers_retry_after(start_server) -> None:
    """Beyond the burst, messages answer rate_limited with retry_after in ms."""
    server = await start_server(rate=1.0, burst=3)
    room = await server.room()
    (a,) = await joined(server, room["room"], JSON)  # the join took one token
    answers = [await a.request({"t": "say", "text": f"n{n}"}) for n in range(3)]
    assert [x["t"] for x in answers] == ["ack", "ack", "error"]
    assert answers[2]["code"] == "rate_limited" and answers[2]["retry_after"] > 0


async def test_every_room_message_draws_on_the_members_bucket_across_a_resume(
    start_server,
) -> None:
    """Rate follows the member (§11) for say, whisper, report and help alike: a resume on a new
    connection (whose own flood bucket is full) refills nothing."""
    server = await start_server(rate=0.05, burst=5)  # one token every 20 s
    room, host = await server.hosted()
    mids = [(await host.request({"t": "say", "text": f"note {n}"}))["mid"] for n in range(2)]
    first = await server.client()
    welcome = await first.join(room["room"], name="Sam")
    for request in (
        {"t": "whisper", "to": host.pid, "text": "hi"},
        {"t": "report", "mid": mids[0]},
        {"t": "say", "text": "one"},
        {"t": "say", "text": "two"},
    ):
        assert (await first.request(request))["t"] == "ack", request
    await first.close()  # four of the member's five tokens spent, and all of the connection's

    back = await server.client()
    assert (await back.join(room["room"], resume=welcome["resume"]))["t"] == "welcome"
    assert (await back.request({"t": "help"}))["t"] == "resources"  # the last token
    for request in (
        {"t": "whisper", "to": host.pid, "text": "again"},
        {"t": "report", "mid": mids[1]},
        {"t": "say", "text": "three"},
    ):
        answer = await back.request(request)
        assert answer["t"] == "error" and answer["code"] == "rate_limited", request
        assert 1_000 < answer["retry_after"] <= 20_001
    assert (await host.request({"t": "say", "text": "others are not slowed"}))["t"] == "ack"


async def test_slow_mode_holds_across_a_resume(server) -> None:
    """Slow mode counts from the member's last say, whichever connection it came from."""
    room, host = await server.hosted()
    assert (await host.request({"t": "slow", "seconds": 30}))["t"] == "ack"
    first = await server.client()
    welcome = await first.join(room["room"], name="Sam")
    assert (await first.request({"t": "say", "text": "first"}))["t"] == "ack"
    await first.close()
    back = await server.client()
    assert (await back.join(room["room"], resume=welcome["resume"]))["t"] == "welcome"
    answer = await back.request({"t": "say", "text": "second"})
    assert answer["t"] == "error" and answer["code"] == "slow_mode"
    assert 20_000 < answer["retry_after"] <= 30_001


async def test_reports_are_deduplicated_and_capped_per_member(server) -> None:
    """§11: a second report of one message by one member is acked and changes nothing; the
    eleventh open report is rate_limited for a minute; another member may still report."""
    room, host = await server.hosted()
    author = await server.member(room["room"], "Author")
    mids = [(await author.request({"t": "say", "text": f"m{n}"}))["mid"] for n in range(11)]
    reporter = await server.member(room["room"], "Reporter")
    other = await server.member(room["room"], "Other")
    first = {"t": "report", "mid": mids[0], "reason": "first"}
    assert (await reporter.request(first))["t"] == "ack"
    again = {"t": "report", "mid": mids[0], "reason": "second"}
    assert (await reporter.request(again))["t"] == "ack"
    for mid in mids[1:10]:
        assert (await reporter.request({"t": "report", "mid": mid}))["t"] == "ack"
    answer = await reporter.request({"t": "report", "mid": mids[10]})
    assert answer["t"] == "error" and answer["code"] == "rate_limited"
    assert answer["retry_after"] == 60_000
    assert (await other.request({"t": "report", "mid": mids[10]}))["t"] == "ack"
    reports = [await host.next("report") for _ in range(11)]
    assert [(r["mid"], r["by"]) for r in reports] == [
        *((mid, reporter.pid) for mid in mids[:10]),
        (mids[10], other.pid),
    ]
    assert reports[0]["reason"] == "first"
    assert [m for m in await host.quiet() if m["t"] == "report"] == []


async def test_sustained_flooding_closes_1008(start_server) -> None:
    """A client that keeps flooding after rate_limited is closed with 1008."""
    server = await start_server(rate=1.0, burst=2, flood_strikes=5)
    room = await server.room()
    a, b = await joined(server, room["room"], MSGPACK, MSGPACK)
    for n in range(20):
        await a.send({"t": "say", "text": f"flood {n}"})
    assert await a.closed() == 1008
    assert (await b.request({"t": "say", "text": "calm"}))["t"] == "ack"


async def test_slow_member_is_closed_4008_and_the_room_goes_on(start_server) -> None:
    """A member that stops reading is closed with 4008; the others keep receiving."""
    # This member reads again only once the flood is over, and must then find its 4008: a
    # close timeout longer than the flood keeps the server from aborting it first (the abort
    # has its own tests in test_transport.py).
    server = await start_server(queue_frames=64, rate=10_000.0, burst=10_000, close_timeout=120)
    room = await server.room()
    sock = socket.create_connection(("127.0.0.1", server.settings.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # fill up quickly
    slow = await server.client(MSGPACK, sock=sock, max_queue=1)
    await slow.send({"t": "join", "room": room["room"]})
    slow.ws.transport.pause_reading()  # stop reading: buffers fill, then the server's queue
    fast, sender = await server.client(max_queue=None), await server.client(max_queue=None)
    await fast.join(room["room"])
    await sender.join(room["room"])
    text = "🌿" * 1900  # 4 bytes each: enough volume to outgrow every kernel buffer
    total = 2000
    for n in range(total):
        await sender.send({"t": "say", "text": f"{n} {text}"})
        if n % 10 == 0:
            await asyncio.sleep(0.002)  # pace the sender so that readers keep up
    seen = 0
    while seen < total:
        seen = int((await fast.next("msg"))["text"].split()[0]) + 1
    slow.ws.transport.resume_reading()
    assert await slow.closed(timeout=2 * WAIT) == 4008


def contract_answer(field: str, value: object) -> str:
    """What protocol §2/§5 answer a say whose ``field`` holds ``value``: ``ack`` or a code."""
    if field in {"room", "pid"}:  # not fields of a say: ignored
        return "ack"
    if field == "text":
        return "ack" if isinstance(value, str) else "bad_request"
    if field == "id":  # an integer (not a bool), or null as if absent
        return "ack" if value is None or type(value) is int else "bad_request"
    return "unknown_type" if isinstance(value, str) else "bad_request"  # field "t"


async def test_wrong_json_types_do_not_crash(server) -> None:
    """JSON values of every type in every field get the contract's answer (an error, or an ack
    where the value is valid or the field ignored), and the connection goes on."""
    room = await server.room()
    (a,) = await joined(server, room["room"], JSON)
    for value in (None, 1, 1.5, "s", [], {}, True):
        for field in ("text", "room", "pid", "id", "t"):
            await a.send_raw(json.dumps({"t": "say", "text": "ok", field: value}))
            while (answer := await a.recv())["t"] == "msg":
                pass  # a valid say's own msg comes before its ack
            got = answer["t"] if answer["t"] == "ack" else answer["code"]
            assert got == contract_answer(field, value), (field, value, answer)
    assert (await a.request({"t": "say", "text": "alive"}))["t"] == "ack"


async def test_unanswered_pings_close_the_connection(start_server) -> None:
    """A peer that stops answering keep-alive pings is closed after the ping timeout."""
    server = await start_server(ping_interval=0.2, ping_timeout=0.3)
    room = await server.room()
    silent, other = await server.client(), await server.client()
    await silent.join(room["room"])
    await other.join(room["room"])
    async with server.closing():  # until the server gave up on it
        silent.ws.transport.pause_reading()  # pings go unread, so no pong comes back
    silent.ws.transport.resume_reading()
    assert await silent.closed() == 1011  # uvicorn fails the connection: keepalive timeout
    assert (await other.request({"t": "say", "text": "still here"}))["t"] == "ack"


async def test_unencodable_text_cannot_poison_the_room(server) -> None:
    """A lone surrogate in a report reason is refused; facilitators still get their welcome."""
    room = await server.room()
    (a,) = await joined(server, room["room"], JSON)
    ack = await a.request({"t": "say", "text": "fine"})
    await a.send_raw('{"t":"report","mid":"' + ack["mid"] + '","reason":"\\udc00","id":7}')
    answer = await a.next("error")
    assert (answer["code"], answer["id"]) == ("bad_request", 7)
    for encoding in (MSGPACK, JSON):
        facilitator = await server.client(encoding)
        welcome = await facilitator.join(room["room"], key=room["facilitator_key"])
        assert welcome["t"] == "welcome" and welcome["reports"] == []
    assert (await a.request({"t": "say", "text": "still talking"}))["t"] == "ack"
