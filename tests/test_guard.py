"""Connections per address (protocol §11): one address cannot fill a worker or a deployment."""

from __future__ import annotations

import asyncio
import logging
import resource
import secrets
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from chat.openfiles import connections_within, files_needed
from chat.settings import Settings, SettingsError
from tests.client import Client
from tests.conftest import running
from tests.ports import free_port
from tests.process import ServerProcess
from tests.redis_server import RedisServer, redis_server
from tests.timing import MS

__all__ = ["redis_server"]  # a fixture, imported for pytest


async def refused_status(ws: str, source: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        await Client.open(ws, source=source)
    return refused.value.response.status_code


async def test_one_address_cannot_fill_the_server(server) -> None:
    """30 connections from one address; the 31st gets 429 while another address joins."""
    room = await server.room()
    held = [await server.client(source="127.0.0.2") for _ in range(30)]
    for client in held[:3]:
        assert (await client.join(room["room"]))["t"] == "welcome"
    assert await refused_status(server.ws, "127.0.0.2") == 429
    other = await server.client(source="127.0.0.3")
    assert (await other.join(room["room"]))["t"] == "welcome"
    await held.pop().close()  # a connection closed frees its place
    held.append(await server.admitted(source="127.0.0.2"))
    for client in [*held, other]:
        await client.close()


async def test_max_per_address_setting(start_server, caplog) -> None:
    """--max-per-address sets the number, and a refusal logs no error; a bad value is a
    one-line error."""
    server = await start_server(max_per_address=2)
    clients = [await server.client(source="127.0.0.2") for _ in range(2)]
    with caplog.at_level(logging.INFO):
        for _ in range(5):
            assert await refused_status(server.ws, "127.0.0.2") == 429
        await asyncio.sleep(100 * MS)  # a window to show: no warning follows a refusal later
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    for client in clients:
        await client.close()
    with pytest.raises(SettingsError, match="HEARTH_MAX_PER_ADDRESS"):
        Settings.from_env({"HEARTH_MAX_PER_ADDRESS": "0"})
    with pytest.raises(SettingsError, match="HEARTH_ROOM_CREATE_RATE"):
        Settings.from_env({"HEARTH_ROOM_CREATE_RATE": "many"})


@pytest.mark.redis
async def test_the_limit_holds_across_workers(redis_server: RedisServer) -> None:
    """On Redis, one address's connections to two workers add up to one limit."""
    prefix = "t" + secrets.token_hex(4)

    def worker() -> Settings:
        return Settings(port=free_port(), redis_url=redis_server.url, redis_prefix=prefix)

    async with running(worker()) as a, running(worker()) as b:
        held = [await Client.open(s.ws, source="127.0.0.2") for s in (a, b) * 15]
        assert await refused_status(a.ws, "127.0.0.2") == 429
        assert await refused_status(b.ws, "127.0.0.2") == 429
        other = await Client.open(b.ws, source="127.0.0.3")
        room = await a.room()
        assert (await other.join(room["room"]))["t"] == "welcome"
        for client in [*held, other]:
            await client.close()


def test_connection_cap_fits_the_open_file_limit() -> None:
    """The cap's descriptors fit the limit it was computed from, with the reserve."""
    for files in (256, 1024, 4096, 65536):
        cap = connections_within(files)
        assert files_needed(cap) <= files < files_needed(cap + 1)


def soft_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit")


def test_open_file_limit_is_raised_or_the_cap_lowered(tmp_path: Path) -> None:
    """At start the soft limit is raised to what --max-connections needs; when the hard limit
    is lower, the server says so and lowers its cap."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]  # a test may only lower it
    assert hard >= files_needed(500)
    raised = ServerProcess("--max-connections", "500", output=tmp_path / "raised.log")
    lowered = ServerProcess("--max-connections", "10000", output=tmp_path / "lowered.log")
    for server, limits in ((raised, f"256:{hard}"), (lowered, "256:512")):
        server.start(prefix=["prlimit", f"--nofile={limits}", "--"])
    try:
        assert raised.process is not None and lowered.process is not None
        assert soft_limit(raised.process.pid) == files_needed(500)
        assert soft_limit(lowered.process.pid) == 512
        said = lowered.output.read_text()
        assert "open-file limit is too low" in said
        assert f'"lowered_to": {connections_within(512)}' in said
    finally:
        raised.kill()
        lowered.kill()
