"""Fixtures: a real uvicorn server on a free port, running ``create_app(Settings(...))``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.exceptions import InvalidStatus

from chat.app import create_app
from chat.cli import uvicorn_options
from chat.settings import Settings
from tests.client import JSON, MSGPACK, Client, create_room
from tests.ports import Listening, free_port
from tests.timing import WAIT, wait_until


@dataclass
class Server(Listening):
    """A running server in the test's event loop, and ways to talk to it."""

    settings: Settings
    uvicorn: uvicorn.Server

    @property
    def port(self) -> int:  # type: ignore[override]
        return self.settings.port

    async def room(self, **body: Any) -> dict[str, Any]:
        return await create_room(self.http, **body)

    async def hosted(self, name: str = "Guide", **body: Any) -> tuple[dict[str, Any], Client]:
        """A new room and its facilitator, joined with the room's key as ``name``."""
        room = await self.room(**body)
        host = await self.client()
        await host.join(room["room"], key=room["facilitator_key"], name=name)
        return room, host

    async def member(self, room: str, name: str, **client: Any) -> Client:
        """A client that has joined ``room`` as ``name`` (its welcome in ``.welcome``)."""
        joined = await self.client(**client)
        welcome = await joined.join(room, name=name)
        assert welcome["t"] == "welcome", welcome
        return joined

    async def client(self, encoding: str | None = MSGPACK, **kwargs: Any) -> Client:
        """A client; ``source="127.0.0.2"`` binds it to another loopback address."""
        return await Client.open(self.ws, encoding, **kwargs)

    async def admitted(self, encoding: str | None = MSGPACK, **kwargs: Any) -> Client:
        """A client as soon as the handshake is admitted again (a refused one is retried until
        a place frees up, within :data:`~tests.timing.WAIT`)."""

        async def attempt() -> Client | None:
            try:
                return await self.client(encoding, **kwargs)
            except InvalidStatus:
                return None

        return await wait_until(attempt, what="a handshake admitted")

    async def status(self, path: str) -> int:
        """The status code of GET ``path``."""
        async with httpx.AsyncClient(base_url=self.http) as http:
            return (await http.get(path)).status_code

    @asynccontextmanager
    async def closing(self, count: int = 1) -> AsyncIterator[None]:
        """The block closes or cuts ``count`` connections; when it ends, this server has
        finished with them (each departure recorded: the connection gauge went down)."""
        before = await self.metric("hearth_connections")

        async def finished() -> bool:
            return await self.metric("hearth_connections") <= before - count

        yield
        await wait_until(finished, what="the server finished with the closed connections")

    async def metric(self, name: str) -> float:
        """One sample of GET /metrics (for example ``hearth_rooms``). Metrics are the
        process's: with several servers in one test they add up."""
        async with httpx.AsyncClient(base_url=self.http) as http:
            text = (await http.get("/metrics")).text
        return float(next(x for x in text.splitlines() if x.startswith(f"{name} ")).split()[1])


def uvicorn_config(app: Any, settings: Settings, ws: str | None = None) -> uvicorn.Config:
    """What ``hearth serve`` passes to uvicorn; ``ws`` names another WebSocket protocol."""
    options = uvicorn_options(settings)
    if ws is not None:
        options["ws"] = ws
    return uvicorn.Config(app, **options)


async def start_uvicorn(server: uvicorn.Server) -> asyncio.Task[None]:
    """Run ``server`` in this loop; return once it listens (stop: ``should_exit = True``)."""
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())

    def listening() -> bool:
        if task.done():
            task.result()  # it failed to start: raise why
        return bool(server.started)

    await wait_until(listening, 2 * WAIT, "uvicorn listening")
    return task


@asynccontextmanager
async def running(settings: Settings, ws: str | None = None) -> AsyncIterator[Server]:
    """Start a real server for ``settings`` and stop it afterwards."""
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings, ws))
    task = await start_uvicorn(server)
    try:
        yield Server(settings, server)
    finally:
        server.should_exit = True
        async with asyncio.timeout(3 * WAIT):
            await task


ServerFactory = Callable[..., Any]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``pytest -n`` (pytest-xdist, ``--dist loadgroup``) the browser tests run one after
    another on one worker: Chromium is CPU-bound and one instance per worker would starve a
    2-core machine, while the other workers take the server tests, which mostly wait."""
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.xdist_group("browser"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--core-broker",
        choices=("memory", "redis", "cluster", "sentinel"),
        default="memory",
        help="run the server tests on the embedded broker, or on a private Redis, Redis "
        "Cluster (three primaries) or Sentinel set (a primary, a replica, three sentinels)",
    )


@pytest.fixture(scope="session")
def core_redis(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The settings that point every server of the run at its ``--core-broker``: nothing for
    the embedded one, else a private Redis, Cluster or Sentinel set for the whole run."""
    from tests import redis_server

    broker = request.config.getoption("--core-broker")
    if broker == "redis":
        with redis_server.running_redis() as redis:
            yield {"redis_url": redis.url}
    elif broker == "cluster":
        with redis_server.running_cluster() as cluster:
            yield cluster.settings()
    elif broker == "sentinel":
        with redis_server.running_sentinels(password="core-secret") as sentinels:
            yield sentinels.settings()
    else:
        yield {}


@pytest.fixture
async def start_server(core_redis: dict[str, Any]) -> AsyncIterator[Callable[..., Any]]:
    """Start servers with setting overrides: ``await start_server(rate=100)``.

    ``ws`` names a uvicorn WebSocket protocol other than ``hearth serve``'s.
    """
    stack: list[Any] = []

    async def start(ws: str | None = None, **overrides: Any) -> Server:
        values: dict[str, Any] = {"port": free_port(), "rate": 200.0, "burst": 200}
        if core_redis:  # a fresh key prefix keeps servers apart
            values.update(core_redis, redis_prefix=f"t{free_port()}")
        values.update(overrides)
        context = running(Settings(**values), ws)
        stack.append(context)
        return await context.__aenter__()

    yield start
    for context in reversed(stack):
        await context.__aexit__(None, None, None)


@pytest.fixture
async def server(start_server: Callable[..., Any]) -> Server:
    """A server with default settings (but generous rate limits)."""
    result: Server = await start_server()
    return result


@pytest.fixture(params=[MSGPACK, JSON])
def encoding(request: pytest.FixtureRequest) -> str:
    """Run a test once per encoding."""
    return str(request.param)
