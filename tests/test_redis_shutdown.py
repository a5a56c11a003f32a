"""A worker on Redis stops cleanly on SIGTERM: nothing it still had under way is cut off by
the close of its Redis client and reported as a Redis failure, which an operator would
otherwise find in the log of every ordinary restart.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.client import Client, create_room
from tests.process import ServerProcess
from tests.redis_server import RedisServer, own_redis

__all__ = ["own_redis"]  # a fixture, imported for pytest

pytestmark = pytest.mark.redis


async def test_sigterm_with_a_heartbeat_under_way_logs_no_redis_failure(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    """The presence heartbeat's vouch is held inside Redis (CLIENT PAUSE WRITE) when the
    worker gets SIGTERM: the shutdown neither waits for it nor ends it as a logged failure.
    (The race that did log one needed a busy shutdown: thousands of members leaving while the
    heartbeat went through hundreds of rooms, as in the bench's idle runs; tests/test_tasks.py
    covers the mechanism that ends it.)"""
    worker = ServerProcess(
        "--redis-url", own_redis.url, "--resume-grace", "0.8", output=tmp_path / "worker.log"
    ).start()
    try:
        room = await create_room(worker.http)
        member = await Client.open(worker.ws)
        await member.join(room["room"])
        await member.send({"t": "leave"})
        await member.closed()
        # The worker holds the room a moment after its last member (chat.hub.RELEASE_AFTER),
        # and its heartbeat (every 0.2 s with this grace) vouches for it: hold that in Redis.
        own_redis.cli("CLIENT", "PAUSE", "1500", "WRITE")
        await asyncio.sleep(0.5)  # a vouch is sent meanwhile, and waits on the pause
        worker.terminate()
    finally:
        worker.kill()
    output = worker.output.read_text()
    assert "Application shutdown complete" in output  # it did stop gracefully
    assert "redis command failed" not in output
    assert "Traceback" not in output
