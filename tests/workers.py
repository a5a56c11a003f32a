"""Two Hearth workers on one Redis deployment, and the addresses their clients come from.

Every multi-worker test builds its pair here, on one Redis (a URL), a Sentinel set or a
Cluster (anything with ``settings()``, as in ``tests/redis_server.py``).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any, Protocol

from chat.settings import Settings
from tests.conftest import Server, running
from tests.ports import free_port
from tests.timing import WAIT, wait_until


class Topology(Protocol):
    """A Sentinel set or a Cluster: the Settings fields that point a worker at it."""

    def settings(self) -> dict[str, Any]: ...


Redis = str | Topology
"""Where the workers' Redis is: a ``redis://`` URL, or a Sentinel set or Cluster."""

# A failover takes seconds: members on a Sentinel set or a Cluster get a longer resume grace.
FAILOVER: dict[str, Any] = {"resume_grace": 5.0}


def at(n: int) -> dict[str, str]:
    """``client()`` arguments that connect from 127.0.0.``n``: per-address limits and bans
    (§11) then see each member apart (a removal bans the address it sees)."""
    return {"source": f"127.0.0.{n}"}


def worker_settings(redis: Redis, prefix: str, **overrides: Any) -> Settings:
    """One worker's settings: a port of its own, the pair's key prefix, a short resume grace,
    and a message rate no test reaches. (The join timeout stays at its default: a test that
    opens many connections before joining them would outlast a short one on a busy machine.)"""
    values: dict[str, Any] = dict(
        port=free_port(), redis_prefix=prefix, resume_grace=3.0, rate=100.0, burst=100
    )
    reach = {"redis_url": redis} if isinstance(redis, str) else {**FAILOVER, **redis.settings()}
    return Settings(**{**values, **reach, **overrides})


@contextlib.asynccontextmanager
async def workers(
    redis: Redis, redis_b: Redis | None = None, **overrides: Any
) -> AsyncIterator[tuple[Server, Server]]:
    """Workers A and B sharing a fresh key prefix; B on ``redis_b`` when given (another ACL
    user of the same Redis, say)."""
    # Inside the documented ACL's key pattern (hearth:*), and apart from other tests.
    prefix = "hearth:t" + secrets.token_hex(4)
    async with (
        running(worker_settings(redis, prefix, **overrides)) as a,
        running(worker_settings(redis_b or redis, prefix, **overrides)) as b,
    ):
        yield a, b


async def wait_ready(server: Server, status: int, timeout: float = 3 * WAIT) -> None:
    """Poll /readyz until it answers ``status``."""

    async def answers() -> bool:
        return await server.status("/readyz") == status

    await wait_until(answers, timeout, f"/readyz answers {status}")
