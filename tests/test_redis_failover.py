"""Losing a worker: its members resume on another worker and miss nothing; the others see
``left`` only for those who do not come back within the grace. Also ``--workers N``."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from tests.client import Client, create_room
from tests.conftest import running
from tests.process import ServerProcess
from tests.redis_server import RedisServer, redis_server
from tests.timing import MS, WAIT
from tests.workers import worker_settings

__all__ = ["redis_server"]  # fixture, imported for pytest

pytestmark = pytest.mark.redis
GRACE = 3.0


def worker_process(url: str, prefix: str, log: Path, *extra: str) -> ServerProcess:
    """``python -m chat serve`` on a private Redis, as a real process on a free port."""
    return ServerProcess(
        "--redis-url", url, "--redis-prefix", prefix, "--resume-grace", str(GRACE),
        "--rate", "100", "--burst", "100", *extra, output=log,
    )  # fmt: skip


async def test_worker_killed_members_resume_elsewhere(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """SIGKILL a worker: a member who resumes on the other misses nothing and causes no
    ``left``; one who does not come back is announced ``left`` after the grace."""
    prefix = "t" + secrets.token_hex(4)
    settings = worker_settings(redis_server.url, prefix, resume_grace=GRACE)
    async with (
        running(settings) as b,
        worker_process(redis_server.url, prefix, tmp_path / "a.log") as a,
    ):
        a_ws = a.ws
        room = await create_room(a.http)
        carol = await b.client()
        await carol.join(room["room"], name="Carol")
        alice = await Client.open(a_ws)
        welcome = await alice.join(room["room"], name="Alice")
        dave = await Client.open(a_ws)
        await dave.join(room["room"], name="Dave")
        assert (await carol.request({"t": "say", "text": "before"}))["t"] == "ack"
        seen = (await alice.next("msg", text="before"))["seq"]

        a.kill()  # SIGKILL: no graceful shutdown, nothing said to anyone
        missed = []
        for text in ("missed-1", "missed-2"):
            ack = await carol.request({"t": "say", "text": text})
            assert ack["t"] == "ack"
            missed.append(text)

        back = await b.client()
        again = await back.join(room["room"], resume=welcome["resume"], since=seen)
        assert again["t"] == "welcome"
        assert again["you"]["pid"] == welcome["you"]["pid"]
        assert [m["text"] for m in again["history"]] == missed

        # Dave never comes back: the sweep on B announces him once the grace is over.
        async with asyncio.timeout(GRACE + 4 * WAIT):
            left = await carol.next("left", timeout=GRACE + 4 * WAIT)
        assert left["pid"] == dave.welcome["you"]["pid"]
        assert all(m["t"] != "left" for m in await carol.quiet(1000 * MS))
        members = (await (await b.client()).join(room["room"], name="Eve"))["members"]
        assert {m["name"] for m in members} == {"Carol", "Alice", "Eve"}
        await back.close()
        await carol.close()


async def test_serve_with_several_workers(redis_server: RedisServer, tmp_path: Path) -> None:
    """``hearth serve --workers 2 --redis-url ...`` starts, is ready, and chats."""
    prefix = "t" + secrets.token_hex(4)
    log = tmp_path / "w.log"
    async with worker_process(redis_server.url, prefix, log, "--workers", "2") as server:
        room = await create_room(server.http)
        clients = [await Client.open(server.ws) for _ in range(4)]
        for i, client in enumerate(clients):
            assert (await client.join(room["room"], name=f"P{i}"))["t"] == "welcome"
        ack = await clients[0].request({"t": "say", "text": "to all"})
        assert ack["t"] == "ack"
        for client in clients:
            assert (await client.next("msg", text="to all"))["seq"] == ack["seq"]
            await client.close()


async def test_sigterm_then_restart_lets_members_resume(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """SIGTERM closes members with 1012; the restarted server on the same Redis resumes them."""
    args = ("--redis-url", redis_server.url, "--redis-prefix", "t" + secrets.token_hex(4),
            "--resume-grace", "30")  # fmt: skip
    first = ServerProcess(*args, output=tmp_path / "first.log").start()
    try:
        room = await create_room(first.http)
        alice, bob = await Client.open(first.ws), await Client.open(first.ws)
        welcome_a = await alice.join(room["room"], name="Alice")
        welcome_b = await bob.join(room["room"], name="Bob")
        said = await alice.request({"t": "say", "text": "before the restart"})
        stopping = asyncio.get_running_loop().run_in_executor(None, first.terminate)
        assert await asyncio.gather(alice.closed(), bob.closed()) == [1012, 1012]
        await stopping
    finally:
        first.kill()
    second = ServerProcess(*args, port=first.port, output=tmp_path / "second.log").start()
    try:
        alice = await Client.open(second.ws)
        again = await alice.join(room["room"], resume=welcome_a["resume"], since=0)
        assert again["you"] == welcome_a["you"]
        assert [m["mid"] for m in again["history"]] == [said["mid"]]
        bob = await Client.open(second.ws)
        assert (await bob.join(room["room"], resume=welcome_b["resume"]))["you"]["name"] == "Bob"
        await bob.request({"t": "say", "text": "after the restart"})
        assert (await alice.next("msg"))["text"] == "after the restart"
        assert [m for m in await alice.quiet(300 * MS) if m["t"] in {"left", "joined"}] == []
    finally:
        second.kill()
