"""A Lua script run by its SHA1 on whichever Redis holds its keys, loaded where it is missing.

Redis answers ``NOSCRIPT`` (running nothing) when it does not know a script: after a restart,
a ``SCRIPT FLUSH``, a failover to a replica that never saw it, or — in a Redis Cluster — on any
node other than the one it was loaded on. :class:`Script` then loads it *on the node that
refused it* and runs the refused calls once more. redis-py's own ``Script`` would load it on
every primary of a cluster at once, which fails whenever one of them is down, and its cluster
pipeline does not load scripts at all.

:meth:`Script.pipelined` sends many calls as pipelines, one per node in a cluster, so that a
node that is down fails only the calls of the rooms it holds. Both the Redis backend
(:mod:`chat.redis`) and the per-address limits (:mod:`chat.limiter`) use it, which is why it
sits below both.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError

Client = Redis | RedisCluster
Call = tuple[Sequence[Any], Sequence[Any]]  # (keys, args)

# Everything a Redis exchange can fail with: redis-py's errors, its cluster client's own
# (which do not derive from RedisError: "cannot be connected", a slot no node covers), and
# socket errors and timeouts (TimeoutError is an OSError).
FAILURES: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError)


class Script:
    """One Lua script.

    Args:
        source: the Lua source.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # what SCRIPT LOAD answers

    async def __call__(self, client: Client, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run the script once; its reply.

        Raises:
            RedisError: the script failed, or Redis could not be reached.
        """
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.load(client, [keys])
            return await client.evalsha(self.sha, len(keys), *keys, *args)

    async def load(self, client: Client, keyed: Sequence[Sequence[Any]]) -> None:
        """Load the script on the node(s) that hold these calls' keys."""
        if not isinstance(client, RedisCluster):
            await client.script_load(self.source)
            return
        nodes = {_node_name(client, keys): keys[0] for keys in keyed if keys}
        for key in nodes.values():
            node = client.get_node_from_key(key)
            if node is not None:
                await client.execute_command("SCRIPT LOAD", self.source, target_nodes=node)

    async def pipelined(
        self, client: Client, calls: Sequence[Call], *, timeout: float
    ) -> list[Any]:
        """Run many calls in pipelines (one per node in a cluster), in order per node.

        Returns:
            One item per call: its reply, or the exception it failed with (a whole pipeline
            that failed gives its exception to each of its calls: none is known to have run).
        """
        parts = by_node(client, [keys[0] if keys else None for keys, _ in calls])
        if len(parts) == 1:
            return await self._guarded(client, calls, timeout)
        outcomes = await asyncio.gather(
            *(self._guarded(client, [calls[i] for i in part], timeout) for part in parts)
        )
        results: list[Any] = [None] * len(calls)
        for part, outcome in zip(parts, outcomes, strict=True):
            for index, result in zip(part, outcome, strict=True):
                results[index] = result
        return results

    async def _guarded(self, client: Client, calls: Sequence[Call], timeout: float) -> list[Any]:
        try:
            return await self._pipeline(client, calls, timeout)
        except FAILURES as exc:
            return [exc] * len(calls)

    async def _pipeline(self, client: Client, calls: Sequence[Call], timeout: float) -> list[Any]:
        async with asyncio.timeout(timeout):
            results = await self._send(client, calls)
            refused = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if refused:
                await self.load(client, [calls[i][0] for i in refused])
                again = await self._send(client, [calls[i] for i in refused])
                for i, result in zip(refused, again, strict=True):
                    results[i] = result
        return results

    async def _send(self, client: Client, calls: Sequence[Call]) -> list[Any]:
        # EVALSHA directly: a pipelined redis-py Script would first ask SCRIPT EXISTS, an extra
        # round trip per batch; NOSCRIPT comes back as that call's result instead.
        if not isinstance(client, RedisCluster):
            return await self._send_packed(client, calls)
        # (As a raw command: redis-py's cluster pipeline blocks its evalsha() method, not the
        # command, which is safe here since every call's keys share one slot.)
        async with client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

    async def _send_packed(self, client: Redis, calls: Sequence[Call]) -> list[Any]:
        """The calls as one write on one pooled connection, and their replies in order (an
        error reply in its call's place), as redis-py's pipeline does, minus its generic
        command packing: with a room's fifteen keys and its arguments, packing each call
        argument by argument was a twentieth of a busy worker's CPU (py-spy, shape C on
        Redis). The keys' part of a call is packed once per room (:func:`_keys_part`)."""
        sha = self.sha.encode()
        wire = b"".join(
            b"".join(
                (
                    b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n" % (3 + len(keys) + len(args), sha),
                    _keys_part(keys),
                    *map(_bulk, args),
                )
            )
            for keys, args in calls
        )
        pool = client.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(wire, check_health=False)
            replies: list[Any] = []
            for _ in calls:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:
                    replies.append(exc)
        except BaseException:
            # Replies may be left unread (a timeout, a cancel): nobody may read them as theirs.
            await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)
        return replies


def _bulk(value: Any) -> bytes:
    """One argument as a RESP bulk string (what redis-py's encoder would send for it)."""
    if isinstance(value, str):
        value = value.encode()
    elif isinstance(value, int):
        value = b"%d" % value
    elif isinstance(value, float):
        value = repr(value).encode()
    elif not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"cannot send a {type(value).__name__} to Redis")
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _keys_part(keys: Sequence[Any]) -> bytes:
    """A call's key count and keys, packed; a room's many keys once per room (the per-address
    limits' single keys are not worth keeping)."""
    if len(keys) > 1:
        return _packed_keys(tuple(keys))
    return _bulk(len(keys)) + b"".join(map(_bulk, keys))


@functools.lru_cache(maxsize=1024)
def _packed_keys(keys: tuple[Any, ...]) -> bytes:
    return _bulk(len(keys)) + b"".join(map(_bulk, keys))


def by_node(client: Client, keys: Sequence[Any]) -> list[list[int]]:
    """The indices of ``keys`` grouped by the node that holds each, per a cluster client's slot
    map (keys it cannot place share a group); one group for any other client."""
    if not isinstance(client, RedisCluster):
        return [list(range(len(keys)))]
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(_node_name(client, [key] if key is not None else []), []).append(index)
    return list(groups.values())


def _node_name(client: RedisCluster, keys: Sequence[Any]) -> str:
    """The node that holds ``keys`` per the client's slot map ("" when it does not know)."""
    try:
        node = client.get_node_from_key(keys[0]) if keys else None
    except FAILURES:
        return ""
    return "" if node is None else str(node.name)


# --- many callers, one pipeline -----------------------------------------------------------
#
# Coalescing one Lua script's calls into pipelines, one pipeline in flight at a time.
#
# Under load, many sessions publish at once. Sent one by one, each call is a write syscall and
# a reply parse of its own (redis-py's ``send_packed_command`` per command). :class:`ScriptBatch`
# queues the calls and sends what has queued as one non-transactional pipeline: one write,
# one connection, the replies read in order. While a pipeline waits for its replies, new calls
# queue for the next one, so batches grow with the load by themselves; an idle worker's call
# goes out at the end of its loop turn, as before. (One pipeline per loop turn, several in
# flight, spent a quarter of a worker's CPU in write syscalls at the bench's capacity load.)
# Each caller still gets its own result, or its own error, and only once Redis has answered,
# so an ``ack`` still means the publish went out.
#
# Calls go out in the order they were made, one batch after the other, so Redis runs them in
# that order. In a Redis Cluster a batch is one pipeline per node (:mod:`chat.luascript`):
# a room's calls all go to the node that holds its slot, still in order, and a node that is
# down fails only the calls for the rooms it holds. A node that does not know the script
# (a restart, a ``SCRIPT FLUSH``, a failover) answers ``NOSCRIPT`` without running anything;
# the batch then loads it on that node and runs the refused calls once more.


_Queued = tuple[list[str], list[Any], "asyncio.Future[Any]", float]  # ..., deadline


BATCH_LIMIT = 500  # calls in one pipeline at most


class ScriptBatch:
    """Runs one Lua script for many callers, one batch in flight at a time.

    Args:
        client: the command client (one Redis, a Sentinel master, or a Cluster).
        script: the Lua source.
        timeout: seconds a call may wait, queued and sent, before it fails (TimeoutError):
            a batch has until its oldest call's deadline.
    """

    def __init__(self, client: Client, script: str, *, timeout: float) -> None:
        self._client = client
        self._timeout = timeout
        self._script = Script(script)
        self._pending: list[_Queued] = []
        self._sender: asyncio.Task[None] | None = None

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        """Run the script with ``keys`` and ``args`` in this turn's pipeline; its reply.

        Raises:
            RedisError: the script failed, or the batch could not be sent (every call in it
                fails the same way: none of them is known to have run).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((keys, args, future, loop.time() + self._timeout))
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
                # At most BATCH_LIMIT a pipeline: each pipeline has the command timeout to
                # itself, and ten thousand closes at once (a worker's connections ending)
                # would not fit in one.
                batch = self._pending[:BATCH_LIMIT]
                del self._pending[:BATCH_LIMIT]
                await self._run(batch)
        finally:
            self._sender = None
            for _, _, future, _ in self._pending:  # only when cancelled: nothing will send them
                future.cancel()
            self._pending = []

    async def _run(self, batch: list[_Queued]) -> None:
        # Calls queued behind a batch that took long have that much less time of their own.
        timeout = max(0.0, batch[0][3] - asyncio.get_running_loop().time())
        try:
            results = await self._script.pipelined(
                self._client, [(keys, args) for keys, args, _, _ in batch], timeout=timeout
            )
        except asyncio.CancelledError:
            for _, _, future, _ in batch:
                future.cancel()
            raise
        except Exception as exc:  # handed to every caller of the batch, who handles it
            results = [exc] * len(batch)
        for (_, _, future, _), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
