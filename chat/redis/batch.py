"""Coalescing one Lua script's calls into pipelines, one pipeline in flight at a time.

Under load, many sessions publish at once. Sent one by one, each call is a write syscall and
a reply parse of its own (redis-py's ``send_packed_command`` per command). :class:`ScriptBatch`
queues the calls and sends what has queued as one non-transactional pipeline: one write,
one connection, the replies read in order. While a pipeline waits for its replies, new calls
queue for the next one, so batches grow with the load by themselves; an idle worker's call
goes out at the end of its loop turn, as before. (One pipeline per loop turn, several in
flight, spent a quarter of a worker's CPU in write syscalls at the bench's capacity load.)
Each caller still gets its own result, or its own error, and only once Redis has answered,
so an ``ack`` still means the publish went out.

Calls go out in the order they were made, one batch after the other, so Redis runs them in
that order. In a Redis Cluster a batch is one pipeline per node (:mod:`chat.luascript`):
a room's calls all go to the node that holds its slot, still in order, and a node that is
down fails only the calls for the rooms it holds. A node that does not know the script
(a restart, a ``SCRIPT FLUSH``, a failover) answers ``NOSCRIPT`` without running anything;
the batch then loads it on that node and runs the refused calls once more.
"""

from __future__ import annotations

import asyncio
from typing import Any

from chat.luascript import Client, Script

Call = tuple[list[str], list[Any], "asyncio.Future[Any]"]


class ScriptBatch:
    """Runs one Lua script for many callers, one batch in flight at a time.

    Args:
        client: the command client (one Redis, a Sentinel master, or a Cluster).
        script: the Lua source.
        timeout: seconds a batch may take before every call in it fails (TimeoutError).
    """

    def __init__(self, client: Client, script: str, *, timeout: float) -> None:
        self._client = client
        self._timeout = timeout
        self._script = Script(script)
        self._pending: list[Call] = []
        self._sender: asyncio.Task[None] | None = None

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        """Run the script with ``keys`` and ``args`` in this turn's pipeline; its reply.

        Raises:
            RedisError: the script failed, or the batch could not be sent (every call in it
                fails the same way: none of them is known to have run).
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((keys, args, future))
        if self._sender is None:
            # Its first step runs after the other callers of this turn have queued theirs.
            self._sender = asyncio.create_task(self._send_all(), name="hearth-redis-batch")
        # A caller that goes away (its session closed) cancels only its own future; its call
        # may still run, as a command already written would.
        return await future

    async def aclose(self) -> None:
        """Wait for the calls already made."""
        if self._sender is not None:
            await asyncio.wait([self._sender])

    async def _send_all(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._run(batch)
        finally:
            self._sender = None
            for _, _, future in self._pending:  # only when cancelled: nothing will send them
                future.cancel()
            self._pending = []

    async def _run(self, batch: list[Call]) -> None:
        try:
            results = await self._script.pipelined(
                self._client, [(keys, args) for keys, args, _ in batch], timeout=self._timeout
            )
        except asyncio.CancelledError:
            for _, _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # handed to every caller of the batch, who handles it
            results = [exc] * len(batch)
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
