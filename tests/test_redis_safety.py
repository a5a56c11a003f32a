"""Safety tools (protocol §14) across two workers sharing a private Redis, and what of them
reaches logs and Redis.

Every decision binds on every worker (§12): a hold made on one worker holds a participant on
the other, a release from the other posts there, an ignore made on one filters on the other,
a revoke closes a co-facilitator wherever it is. The confidentiality test runs a real server
process at ``--log-level debug`` with a bus key and watches both its output and Redis.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from chat.settings import bus_key
from tests.client import MSGPACK, Client, create_room
from tests.process import ServerProcess
from tests.redis_server import RedisServer, monitor, redis_server, running_redis
from tests.test_redis_confidential import KEY_HEX, all_values
from tests.timing import MS, wait_until
from tests.workers import at, workers

__all__ = ["redis_server"]  # fixture, imported for pytest

pytestmark = pytest.mark.redis


async def test_hold_and_release_across_workers(redis_server: RedisServer) -> None:
    """A hold decided on A holds the participant on B; the release from B (another
    facilitator) posts the message to members of both workers with a new seq."""
    async with workers(redis_server.url) as (a, b):
        room = await a.room()
        host = await a.client()
        await host.join(room["room"], key=room["facilitator_key"], name="Host")
        other_host = await b.client()
        await other_host.join(room["room"], key=room["facilitator_key"], name="Other")
        held = await b.client(**at(2))
        await held.join(room["room"], name="Held")
        listener = await a.client(**at(3))
        await listener.join(room["room"], name="Listener")
        assert (await host.request({"t": "hold", "pid": held.pid}))["t"] == "ack"
        await other_host.next("hold", pid=held.pid)
        ack = await held.request({"t": "say", "text": "please look first"})
        assert ack["t"] == "ack" and ack["held"] is True and "seq" not in ack
        assert (await host.next("held"))["mid"] == ack["mid"]
        assert (await other_host.next("held"))["mid"] == ack["mid"]
        assert [m for m in await listener.quiet() if m["t"] == "msg"] == []
        assert (await other_host.request({"t": "release", "mid": ack["mid"]}))["t"] == "ack"
        for client in (listener, held, host):
            msg = await client.next("msg", mid=ack["mid"])
            assert msg["text"] == "please look first" and msg["seq"] == 1
        assert (await held.next("reviewed"))["action"] == "release"
        assert [m for m in await listener.quiet() if m["t"] == "reviewed"] == []


async def test_ignore_made_on_one_worker_filters_on_the_other(redis_server: RedisServer) -> None:
    """An ignorer on B gets nothing from the ignored on A; a member on A still does; after a
    resume on A the ignore still holds."""
    async with workers(redis_server.url) as (a, b):
        room = await a.room(settings={"history": "recent"})
        loud = await a.client(**at(2))
        await loud.join(room["room"], name="Loud")
        ignorer = await b.client(**at(3))
        await ignorer.join(room["room"], name="Ignorer")
        witness = await a.client(**at(4))
        await witness.join(room["room"], name="Witness")
        assert (await ignorer.request({"t": "ignore", "pid": loud.pid}))["t"] == "ack"
        await loud.request({"t": "say", "text": "unheard"})
        await witness.request({"t": "say", "text": "heard"})
        assert (await witness.next("msg", text="unheard"))["pid"] == loud.pid
        got = [m["text"] for m in await ignorer.quiet(600 * MS) if m["t"] == "msg"]
        assert got == ["heard"]
        ignorer.ws.transport.abort()
        back = await a.client(**at(3))
        welcome = await back.join(room["room"], resume=ignorer.welcome["resume"], since=0)
        assert [m["text"] for m in welcome["history"]] == ["heard"]
        await loud.request({"t": "say", "text": "still unheard"})
        await witness.request({"t": "say", "text": "still heard"})
        assert [m["text"] for m in await back.quiet(600 * MS) if m["t"] == "msg"] == ["still heard"]


async def test_revoke_closes_a_co_facilitator_on_the_other_worker(
    redis_server: RedisServer,
) -> None:
    """A key invited on A, used on B, revoked from A: B's connection closes with 4003 and the
    key and the resume token are useless on either worker."""
    async with workers(redis_server.url) as (a, b):
        room = await a.room()
        host = await a.client()
        await host.join(room["room"], key=room["facilitator_key"], name="Host")
        invited = await host.request({"t": "invite", "label": "Night shift"})
        cohost = await b.client(**at(2))
        welcome = await cohost.join(room["room"], key=invited["key"], name="Cohost")
        assert welcome["you"]["role"] == "facilitator"
        assert (await host.request({"t": "revoke", "label": "Night shift"}))["t"] == "ack"
        assert await cohost.closed() == 4003
        for worker in (a, b):
            again = await worker.client(**at(3))
            assert (await again.join(room["room"], resume=welcome["resume"]))["code"] == (
                "bad_resume"
            )
            assert (await again.join(room["room"], key=invited["key"]))["code"] == "forbidden"


async def test_safety_text_never_reaches_logs_or_redis_in_clear(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A crisis-phrase marker, a held message, a warning reason, a mute reason, a content
    warning, a key label and a backchannel whisper: not in any log line at --log-level debug,
    and with a bus key neither in MONITOR nor in a dump of every key."""
    marker = "Quokka5521"
    words = tmp_path / "words.json"
    words.write_text(json.dumps({"en": {"crisis": [f"{marker} phrase"]}}))
    process = ServerProcess(
        "--log-level", "debug", "--redis-url", redis_server.url, "--redis-prefix", "hearth:conf",
        "--bus-key", KEY_HEX, "--safety-words", str(words), output=tmp_path / "server.log",
    )  # fmt: skip
    process.start()
    try:
        async with monitor(redis_server) as seen:
            room = await create_room(process.http)
            host = await Client.open(process.ws, MSGPACK)
            await host.join(room["room"], key=room["facilitator_key"], name="Host")
            person = await Client.open(process.ws, MSGPACK, source="127.0.0.2")
            await person.join(room["room"], name="Person")
            said = await person.request({"t": "say", "text": f"my {marker} phrase today"})
            assert (await host.next("flag"))["mid"] == said["mid"]
            await host.request({"t": "warn", "pid": person.pid, "reason": f"warn {marker}"})
            await host.request({"t": "cw", "mid": said["mid"], "cw": f"cw {marker}"})
            await person.request({"t": "say", "text": "x", "cw": f"cw2 {marker}"})
            await host.request({"t": "invite", "label": f"label {marker}"})
            await host.request({"t": "whisper", "to": "facilitators", "text": f"bc {marker}"})
            await host.request({"t": "hold", "pid": person.pid})
            held = await person.request({"t": "say", "text": f"held {marker}"})
            assert held["held"] is True
            mute = {"t": "mute", "pid": person.pid, "seconds": 60, "reason": f"mute {marker}"}
            assert (await host.request(mute))["t"] == "ack"
            assert (await person.next("muted"))["reason"] == f"mute {marker}"

            async def stored() -> dict[bytes, bytes] | None:
                values = await all_values(redis_server.url, "hearth:conf")
                return values if any(k.endswith(b":held") for k in values) else None

            values = await wait_until(stored, what="the held message in Redis")
            await person.close()
            await host.close()
        process.terminate()
    finally:
        process.kill()
    output = process.output.read_text()
    assert '"level": "debug"' in output
    assert marker not in output
    assert len(seen) > 1000
    assert marker.encode() not in seen
    assert not any(marker.encode() in v for v in values.values())
    assert bus_key(KEY_HEX)  # the key the server sealed with


async def test_one_release_wins_when_redis_persists() -> None:
    """With a Redis that writes to disk (held text in the workers' replicas only), Redis still
    keeps a text-free index of held mids: two facilitators on two workers releasing the same
    message at once post it once, and the other gets not_found (§12, §14)."""
    text = "held-marker-Okapi-4471"
    with running_redis(persistent=True) as server:
        async with workers(server.url) as (a, b):
            room = await a.room(settings={"review": "all"})
            host = await a.client()
            await host.join(room["room"], key=room["facilitator_key"], name="Host")
            other_host = await b.client()
            await other_host.join(room["room"], key=room["facilitator_key"], name="Other")
            person = await b.client(**at(2))
            await person.join(room["room"], name="Person")
            listener = await a.client(**at(3))
            await listener.join(room["room"], name="Listener")
            ack = await person.request({"t": "say", "text": text})
            assert ack["held"] is True
            for facilitator in (host, other_host):
                assert (await facilitator.next("held"))["mid"] == ack["mid"]
            values = await all_values(server.url, a.settings.redis_prefix)
            index = [v for k, v in values.items() if k.endswith(b":held")]
            assert len(index) == 1 and ack["mid"].encode() in index[0]
            assert not any(text.encode() in v for v in values.values())
            answers = await asyncio.gather(
                host.request({"t": "release", "mid": ack["mid"]}),
                other_host.request({"t": "release", "mid": ack["mid"]}),
            )
            assert sorted(m["t"] for m in answers) == ["ack", "error"]
            assert next(m for m in answers if m["t"] == "error")["code"] == "not_found"
            assert (await listener.next("msg", mid=ack["mid"]))["text"] == text
            later = [m for m in await listener.quiet(300 * MS) if m["t"] == "msg"]
            assert later == []
