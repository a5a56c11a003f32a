"""The say-path micro-benchmark drives the real application: every say reaches every member.

``bench.saypath`` counts on the application accepting its rooms, joins and says through ASGI
alone; if any of them stopped working (a refused join, a say that no longer fans out), its
wait for the room's deliveries would time out and this test fail, rather than the
micro-benchmark report a figure for work that was never done.
"""

from __future__ import annotations

import argparse

import pytest

from bench.saypath import measure
from tests.redis_server import RedisServer, own_redis

__all__ = ["own_redis"]  # a fixture, imported for pytest


async def test_every_say_reaches_the_whole_room() -> None:
    args = argparse.Namespace(rooms=2, members=4, says=16, gap_ms=0.0, redis_url=None)
    per_say = await measure(args)
    assert 0 < per_say < 1.0


@pytest.mark.redis
async def test_every_say_reaches_the_whole_room_through_redis(
    own_redis: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(rooms=2, members=4, says=16, gap_ms=0.0, redis_url=own_redis.url)
    per_say = await measure(args)
    assert 0 < per_say < 1.0
    # Every say was committed by the script, once.
    assert "commit script 1.00 calls per say" in capsys.readouterr().out
