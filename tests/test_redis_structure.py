"""Protocol §13 on two workers sharing a private Redis: the round's order, the pause, the
capacity and the end timer are the same for every member on every worker, and the end comes
on time even when the worker that would have fired it was killed.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from tests.client import Client, create_room
from tests.redis_server import RedisServer, redis_server
from tests.test_lobby import ms
from tests.test_schedule import LATE, until_closed
from tests.timing import WAIT
from tests.workers import at, workers

__all__ = ["redis_server"]  # a fixture, imported for pytest

pytestmark = pytest.mark.redis


async def rounds_seen(client: Client, count: int) -> list[dict[str, Any]]:
    return [await client.next("round") for _ in range(count)]


async def test_one_round_order_for_hands_raised_on_both_workers(redis_server: RedisServer):
    """Hands raised at once on both workers make one queue that every member sees in the same
    order, event after event; done on either worker passes the turn on for all."""
    async with workers(redis_server.url) as (a, b):
        room = await a.room()
        host = await a.client()
        await host.join(room["room"], key=room["facilitator_key"])
        people = [await (a if i % 2 else b).client(**at(i + 2)) for i in range(6)]
        for i, person in enumerate(people):
            await person.join(room["room"], name=f"P{i}")
        assert (await host.request({"t": "round", "mode": "queue"}))["t"] == "ack"
        await asyncio.gather(*(p.send({"t": "hand", "id": 7}) for p in people))
        everyone = [host, *people]
        seen = [await rounds_seen(c, 7) for c in everyone]  # the start, then six hands
        assert all(s == seen[0] for s in seen)
        last = seen[0][-1]
        order = [last["speaker"], *last["queue"]]
        assert sorted(order) == sorted(p.pid for p in people)
        by_pid = {p.pid: p for p in people}
        for position, pid in enumerate(order):
            assert (await by_pid[pid].request({"t": "done"}))["t"] == "ack"
            following = order[position + 1 :]
            for client in everyone:
                got = await client.next("round")
                assert got["speaker"] == (following[0] if following else None)
                assert got["queue"] == following[1:]


async def test_a_strict_round_binds_on_the_other_worker(redis_server: RedisServer):
    """A strict round decided on A refuses the say of a participant on B whose turn it is
    not, and lets B's speaker talk."""
    async with workers(redis_server.url) as (a, b):
        room = await a.room()
        host = await a.client()
        await host.join(room["room"], key=room["facilitator_key"])
        one, two = await b.client(**at(11)), await b.client(**at(12))
        await one.join(room["room"])
        await two.join(room["room"])
        await host.request({"t": "round", "mode": "order", "order": [one.pid, two.pid],
                            "strict": True})  # fmt: skip
        await two.next("round")
        assert (await two.request({"t": "say", "text": "me?"}))["code"] == "not_your_turn"
        assert (await one.request({"t": "say", "text": "my turn"}))["t"] == "ack"


async def test_the_staffed_pause_follows_facilitators_on_every_worker(redis_server: RedisServer):
    """A facilitator arriving on A unpauses a staffed room for a participant on B; leaving
    pauses it again there; a facilitator's pause on B binds on A."""
    async with workers(redis_server.url) as (a, b):
        room = await a.room(settings={"staffed": "required"})
        person = await b.client(**at(21))
        welcome = await person.join(room["room"])
        assert welcome["room"]["paused"] is True
        assert (await person.request({"t": "help"}))["t"] == "resources"
        host = await a.client()
        welcome = await host.join(room["room"], key=room["facilitator_key"])
        assert [f["pid"] for f in welcome["flares"]] == [person.pid]
        assert (await person.next("room"))["paused"] is False
        assert (await person.request({"t": "say", "text": "hello"}))["t"] == "ack"
        assert (await host.request({"t": "leave"}))["t"] == "ack"
        assert (await person.next("room"))["paused"] is True
        assert (await person.request({"t": "say", "text": "x"}))["code"] == "paused"
        other = await b.client()
        await other.join(room["room"], key=room["facilitator_key"])
        assert (await person.next("room"))["paused"] is False
        assert (await other.request({"t": "pause"}))["t"] == "ack"
        participant_a = await a.client(**at(22))
        welcome = await participant_a.join(room["room"])
        assert welcome["room"]["paused"] is True
        assert (await participant_a.request({"t": "say", "text": "y"}))["code"] == "paused"


async def test_capacity_holds_across_workers(redis_server: RedisServer):
    """Joins racing on both workers for the last seats: exactly ``capacity`` get in, the rest
    get room_full and close 4006."""
    async with workers(redis_server.url) as (a, b):
        room = await a.room(settings={"capacity": 3})
        clients = [await (a if i % 2 else b).client(**at(30 + i)) for i in range(8)]
        answers = await asyncio.gather(*(c.join(room["room"]) for c in clients))
        kinds = sorted(answer.get("code", answer["t"]) for answer in answers)
        assert kinds == ["room_full"] * 5 + ["welcome"] * 3
        for client, answer in zip(clients, answers, strict=True):
            if answer["t"] == "error":
                assert await client.closed() == 4006


async def test_the_end_fires_once_for_members_on_both_workers(redis_server: RedisServer):
    """Both workers hold members; the room gets one ``ending`` and one ``closed`` each, on
    time, wherever the clock that fired was."""
    async with workers(redis_server.url) as (a, b):
        ends = ms(2.5)
        room = await a.room(settings={"ends_at": ends})
        host = await a.client()
        await host.join(room["room"], key=room["facilitator_key"])
        people = [await b.client(**at(41)), await a.client(**at(42))]
        for person in people:
            await person.join(room["room"])
        heard = await asyncio.gather(*(until_closed(c) for c in (host, *people)))
        for messages, code, when in heard:
            assert [m["t"] for m in messages].count("ending") == 1
            assert [m["t"] for m in messages].count("closed") == 1
            assert code == 4010 and ends <= when <= ends + LATE * 1000


async def test_the_room_ends_on_time_when_the_worker_holding_its_timer_is_killed(
    redis_server: RedisServer, tmp_path: Path
):
    """Worker A (a real process) and worker B both hold members and the end; A is killed
    (SIGKILL) shortly before ends_at; B still closes the room on time, and it is gone."""
    from tests.conftest import running
    from tests.process import ServerProcess
    from tests.workers import worker_settings

    prefix = "t" + secrets.token_hex(4)
    first = ServerProcess("--redis-url", redis_server.url, "--redis-prefix", prefix,
                          "--resume-grace", "30", output=tmp_path / "a.log").start()  # fmt: skip
    try:
        async with running(worker_settings(redis_server.url, prefix, resume_grace=30)) as b:
            ends = ms(4.0)
            room = await create_room(first.http, settings={"ends_at": ends})
            host = await Client.open(first.ws)
            await host.join(room["room"], key=room["facilitator_key"])
            on_a = await Client.open(first.ws, local_addr=("127.0.4.51", 0))
            await on_a.join(room["room"])
            on_b = [await b.client(**at(52 + i)) for i in range(2)]
            for person in on_b:
                await person.join(room["room"])
            for person in on_b:
                assert (await person.next("ending", timeout=WAIT))["at"] == ends
            await asyncio.sleep(max(0.0, (ends - 1500) / 1000 - time.time()))
            first.kill()  # no shutdown, no goodbye: its clock and timers die with it
            heard = await asyncio.gather(*(until_closed(c) for c in on_b))
            for messages, code, when in heard:
                assert messages[-1] == {"t": "closed"} and code == 4010
                assert ends <= when <= ends + LATE * 1000
            from tests.client import http_client

            async with http_client(b.http) as http:
                assert (await http.get(f"/api/rooms/{room['room']}")).status_code == 404
    finally:
        first.kill()
