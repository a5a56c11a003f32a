"""Following the master a Sentinel set names, as soon as it names a new one.

After a crash the old master's connections break by themselves, and every new connection
asks the sentinels where the master is (redis-py's ``SentinelConnectionPool``). A master that
is demoted while it stays up (``SENTINEL FAILOVER``, a partition that heals) is the harder
case: until the sentinels reconfigure it — seconds later — it still accepts writes, which
its new master never sees; a worker that kept writing there would ack messages that are then
lost. So each worker listens for the sentinels' ``+switch-master`` announcement and, the
moment it comes, takes the new address (:meth:`MasterWatch.run`); the pool then hands out no
connection to any other server (:class:`MasterPool`), and the bus moves its subscriptions.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from redis.asyncio.connection import AbstractConnection, BlockingConnectionPool
from redis.asyncio.sentinel import SentinelConnectionPool

from chat.luascript import FAILURES

log = logging.getLogger("hearth.bus")

POLL = 1.0  # seconds a read waits before looking again (to notice cancellation promptly)
BACKOFF_CAP = 2.0  # as the link's (chat.redis.link): a new master is heard well within §12's 5 s
SWITCH = b"+switch-master"


class MasterPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (connections to whichever server the sentinels name master), made
    blocking — a burst waits its turn for a connection instead of failing — and strict: a
    connection that still talks to a server the sentinels no longer name master is
    reconnected (to the new one) before it is handed out."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        connection: AbstractConnection = await super().get_connection()  # type: ignore[no-untyped-call]
        wanted = self.master_address
        here = (getattr(connection, "host", None), getattr(connection, "port", None))
        if wanted is not None and connection.is_connected and here != tuple(wanted):
            try:
                await connection.disconnect()
                await connection.connect()  # type: ignore[no-untyped-call]
            except BaseException:
                await self.release(connection)
                raise
        return connection


class MasterWatch:
    """Listens to one sentinel at a time for ``+switch-master`` of our master.

    Args:
        pool: the master pool whose address to renew.
        switched: called once the new address is in the pool (the bus moves its link).
    """

    def __init__(self, pool: SentinelConnectionPool, switched: Callable[[], None]) -> None:
        self._pool = pool
        self._switched = switched

    async def run(self) -> None:
        """Until cancelled: subscribe on a sentinel, and on to the next when it fails."""
        sentinels = list(self._pool.sentinel_manager.sentinels)
        delay = 0.1
        while True:
            sentinel = random.choice(sentinels)
            conn: AbstractConnection = sentinel.connection_pool.make_connection()
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
                await conn.send_command("SUBSCRIBE", SWITCH)
                delay = 0.1
                while True:
                    reply = await conn.read_response(timeout=POLL, disconnect_on_error=False)
                    if reply is not None:
                        await self._on_reply(reply)
            except FAILURES as exc:
                log.debug("sentinel watch lost", extra={"error": type(exc).__name__})
            finally:
                await conn.disconnect(nowait=True)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, BACKOFF_CAP)

    async def _on_reply(self, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) < 3 or reply[0] != b"message":
            return
        words = bytes(reply[2]).split()
        if not words or words[0].decode(errors="replace") != self._pool.service_name:
            return
        log.warning("the sentinels named a new redis master; following it")
        # Renews the pool's address, and drops its idle connections to the old master.
        await self._pool.get_master_address()  # type: ignore[no-untyped-call]
        self._switched()
