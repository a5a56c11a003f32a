"""Every kind of error reply Redis gives, against a real redis-server and two real workers
(protocol §8, §11): OOM, BUSY, READONLY, LOADING, and NOSCRIPT.

While the condition lasts, a ``say`` is answered ``unavailable`` on a socket that stays open
(no 1011), ``POST /api/rooms`` answers 503 both through the per-address room rate (no
operator token, worker A) and through the room's creation itself (an operator token, worker
B), and a WebSocket handshake answers 503 (its per-address count is a Redis script too). Nothing
is logged at error level, and no log line holds the room's id or any text. Once the condition
clears, chat goes on on the same sockets. NOSCRIPT is mended, not reported: the next ``say``
simply succeeds.

Each condition is made on a private server and ended on purpose (``maxmemory`` back to 0,
``SCRIPT KILL``, ``REPLICAOF NO ONE``, ``key-load-delay`` back to 0), so that each test lasts a
few seconds whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
from websockets.exceptions import InvalidStatus

from chat.logs import JsonFormatter
from tests.client import Client, create_room
from tests.conftest import Server, running
from tests.redis_server import RedisServer, own_redis, started, wait_for
from tests.timing import WAIT, wait_until
from tests.workers import at, worker_settings

__all__ = ["own_redis"]  # fixture, imported for pytest

pytestmark = pytest.mark.redis

MARK = "Quokka5521"  # in the room's title and every message: never in a log line
TOKEN = "operator-" + secrets.token_hex(8)


@dataclass
class Scene:
    """Worker A (rooms open to all) and worker B (an operator token) on one Redis, a room,
    Alice on A and Bob on B, who have already talked, and Dana, connected to B but not yet
    joined."""

    a: Server
    b: Server
    room: str
    alice: Client
    bob: Client
    dana: Client


@contextlib.asynccontextmanager
async def scene(url: str, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Scene]:
    prefix = "hearth:t" + secrets.token_hex(4)
    caplog.set_level(logging.DEBUG)  # every line any level would write
    async with (
        running(worker_settings(url, prefix)) as a,
        running(worker_settings(url, prefix, operator_token=TOKEN)) as b,
    ):
        room = (await a.room(title=f"{MARK} title"))["room"]
        alice = await a.member(room, "Alice", **at(2))
        bob = await b.member(room, "Bob", **at(3))
        ack = await alice.request({"t": "say", "text": f"{MARK} before"})
        assert ack["t"] == "ack", ack
        assert (await bob.next("msg", seq=ack["seq"]))["text"] == f"{MARK} before"
        dana = await b.client(**at(6))
        found = Scene(a, b, room, alice, bob, dana)
        yield found
        for client in (alice, bob, dana):
            await client.close()
    logs_hold_nothing(caplog, found)


async def refused_everywhere(s: Scene) -> None:
    """A say, a join, both kinds of room creation and a handshake are refused as unavailable;
    the room's page answers from what Redis can still read, or 503."""
    answer = await s.alice.request({"t": "say", "text": f"{MARK} lost"})
    assert answer["t"] == "error" and answer["code"] == "unavailable", answer
    answer = await s.dana.join(s.room, name="Dana")
    assert answer["t"] == "error" and answer["code"] == "unavailable", answer
    async with httpx.AsyncClient(base_url=s.b.http) as http:
        info = await http.get(f"/api/rooms/{s.room}")
    assert info.status_code in (200, 503), info.status_code  # a read: OOM and READONLY allow it
    async with httpx.AsyncClient(base_url=s.a.http) as http:
        open_post = await http.post("/api/rooms", json={"title": f"{MARK} new"})
    headers = {"authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=s.b.http, headers=headers) as http:
        operator_post = await http.post("/api/rooms", json={"title": f"{MARK} new"})
    for refused in (open_post, operator_post):
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "unavailable"
    with pytest.raises(InvalidStatus) as handshake:
        await s.a.client(**at(4))
    assert handshake.value.response.status_code == 503
    assert handshake.value.response.headers["retry-after"] == "2"  # not the capacity refusal


async def works_again(s: Scene) -> None:
    """Chat goes on on the same sockets; rooms and handshakes are served again."""

    async def said() -> dict[str, Any] | None:
        # The worker may still be catching up with the store for a moment: a client retries
        # an unavailable say (§8), and so does this.
        answer = await s.alice.request({"t": "say", "text": f"{MARK} back"})
        if answer["t"] == "error":
            assert answer["code"] == "unavailable", answer
            return None
        return answer

    ack: dict[str, Any] = await wait_until(said, 3 * WAIT, "a say acked once it cleared")
    assert ack["t"] == "ack", ack
    got: list[dict[str, Any]] = []
    while not got or got[-1]["seq"] < ack["seq"]:
        got.append(await s.bob.next("msg"))
    texts = [m["text"] for m in got]
    assert texts[-1] == f"{MARK} back"
    assert f"{MARK} lost" not in texts  # refused means nothing was sent
    assert (await s.dana.join(s.room, name="Dana"))["t"] == "welcome"  # the same socket
    room = await create_room(s.a.http, source="127.0.0.5")
    carol = await s.a.client(**at(4))
    assert (await carol.join(room["room"], name="Carol"))["t"] == "welcome"
    await carol.close()


def logs_hold_nothing(caplog: pytest.LogCaptureFixture, s: Scene) -> None:
    """No line (as the production formatter writes it) holds the room id or a text, and
    nothing crashed: a session that failed logs an error and closes 1011."""
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    assert lines, "nothing was captured: the check below would prove nothing"
    for secret in (s.room, MARK):
        assert not [line for line in lines if secret in line]
    # Hearth's own loggers and the server's: in a shared test process the garbage collector
    # may report another test's unclosed client (asyncio, "Unclosed ClusterNode") meanwhile.
    failed = [
        r
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.split(".")[0] in {"hearth", "uvicorn"}
    ]
    assert not failed, [formatter.format(r) for r in failed]


def failed_with(caplog: pytest.LogCaptureFixture, kind: str) -> bool:
    """Whether a Redis command failed with ``kind`` (so the test made the condition it
    names, not some other failure)."""
    return any(getattr(record, "error", None) == kind for record in caplog.records)


def answers(server: RedisServer, prefix: str) -> Callable[[], bool]:
    """A check that the server answers PING with an error that starts with ``prefix``."""
    return lambda: server.cli("PING").startswith(f"-{prefix}")


async def test_out_of_memory(own_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """OOM: ``maxmemory`` below what Redis holds, with ``noeviction``."""
    async with scene(own_redis.url, caplog) as s:
        own_redis.ask("CONFIG", "SET", "maxmemory-policy", "noeviction")
        own_redis.ask("CONFIG", "SET", "maxmemory", "1")
        try:
            await refused_everywhere(s)
            assert failed_with(caplog, "OOM")
        finally:
            own_redis.ask("CONFIG", "SET", "maxmemory", "0")
        await works_again(s)


def busy_loop(server: RedisServer) -> str:
    """Run a Lua loop that never ends by itself; the error it ends with (SCRIPT KILL)."""
    with redis.Redis(port=server.port, socket_timeout=60 * WAIT) as client:
        try:
            client.eval("while true do end", 0)
        except redis.ResponseError as exc:
            return str(exc)
    return "it ended by itself"


async def test_busy(own_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """BUSY: a script that runs past ``busy-reply-threshold``, killed afterwards."""
    async with scene(own_redis.url, caplog) as s:
        own_redis.ask("CONFIG", "SET", "busy-reply-threshold", "100")
        loop = asyncio.ensure_future(asyncio.to_thread(busy_loop, own_redis))
        try:
            await asyncio.to_thread(wait_for, answers(own_redis, "BUSY"), "BUSY", WAIT)
            await refused_everywhere(s)
            assert failed_with(caplog, "BUSY")
        finally:
            own_redis.cli("SCRIPT", "KILL")
            assert "SCRIPT KILL" in await loop
        await works_again(s)


async def test_read_only(own_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """READONLY: the workers' Redis becomes a replica, as an old primary does after a
    failover (its replica promoted, it made a replica of it), then a primary again."""
    own_redis.ask("CONFIG", "SET", "repl-diskless-sync-delay", "0")  # the replica syncs now
    args = ["--replicaof", "127.0.0.1", str(own_redis.port), "--repl-diskless-sync-delay", "0"]
    with started(RedisServer(args=args)) as other:
        async with scene(own_redis.url, caplog) as s:

            def caught_up() -> bool:
                offset = own_redis.ask("INFO", "replication")["master_repl_offset"]
                link = other.ask("INFO", "replication")
                return bool(
                    link["master_link_status"] == "up" and link["slave_repl_offset"] == offset
                )

            await asyncio.to_thread(wait_for, caught_up, "the replica caught up", WAIT)
            other.ask("REPLICAOF", "NO", "ONE")
            own_redis.ask("REPLICAOF", "127.0.0.1", str(other.port))
            try:
                assert own_redis.ask("ROLE")[0] == "slave"
                await refused_everywhere(s)
                assert failed_with(caplog, "READONLY")
            finally:
                own_redis.ask("REPLICAOF", "NO", "ONE")
            await works_again(s)


def reload(server: RedisServer) -> None:
    """DEBUG RELOAD: save, empty, and load again (slowly: ``key-load-delay``)."""
    with redis.Redis(port=server.port, socket_timeout=60 * WAIT) as client:
        client.execute_command("DEBUG", "RELOAD")


async def test_loading(caplog: pytest.LogCaptureFixture) -> None:
    """LOADING: Redis loads its dataset again (DEBUG RELOAD), slowed down per key until the
    test has seen what it needs, then let finish."""
    args = [
        "--enable-debug-command", "local",
        # Serve other clients (with -LOADING) after every key, not every 2 MB.
        "--loading-process-events-interval-bytes", "1024",
    ]  # fmt: skip
    with started(RedisServer(args=args)) as server:
        async with scene(server.url, caplog) as s:
            server.ask("DEBUG", "POPULATE", 6000, "filler:", 1024)
            server.ask("CONFIG", "SET", "key-load-delay", "2000")  # µs a key: 12 s at most
            loading = asyncio.ensure_future(asyncio.to_thread(reload, server))
            try:
                await asyncio.to_thread(wait_for, answers(server, "LOADING"), "LOADING", WAIT)
                await refused_everywhere(s)
                assert failed_with(caplog, "LOADING")
            finally:
                server.cli("CONFIG", "SET", "key-load-delay", "0")  # served while loading
                await loading
            await works_again(s)


async def test_noscript_is_mended(own_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """NOSCRIPT: SCRIPT FLUSH mid-conversation. Nothing is refused: each script is loaded
    again where it was missing, and the request that met NOSCRIPT runs."""
    async with scene(own_redis.url, caplog) as s:

        def scripts() -> int:
            return int(own_redis.ask("INFO", "memory")["number_of_cached_scripts"])

        assert scripts() > 0
        assert own_redis.ask("SCRIPT", "FLUSH")
        assert scripts() == 0
        ack = await s.alice.request({"t": "say", "text": f"{MARK} after the flush"})
        assert ack["t"] == "ack", ack
        assert (await s.bob.next("msg", seq=ack["seq"]))["text"] == f"{MARK} after the flush"
        room = await create_room(s.a.http, source="127.0.0.5")  # the room rate's script
        headers = {"authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=s.b.http, headers=headers) as http:
            assert (await http.post("/api/rooms", json={})).status_code == 201
        carol = await s.a.client(**at(4))  # the connection count's script
        assert (await carol.join(room["room"], name="Carol"))["t"] == "welcome"
        await carol.close()
        assert scripts() > 0
        assert not [r for r in caplog.records if hasattr(r, "error")]  # no command failed
