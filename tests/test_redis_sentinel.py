"""Protocol §16 with Redis Sentinel: two workers on a primary, its replica and three sentinels.

The primary is killed mid-conversation (or demoted by a manual failover while it stays up):
within 10 s of the sentinels naming the new master every worker publishes, stores and
subscribes there, no acked message is lost, facilitator decisions made before and after still
bind, and every member is still connected. The failover times are measured and reported.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from chat.redis.history import redis_persists
from chat.redis.topology import close_client, command_client
from tests.conftest import running
from tests.conversation import Conversation
from tests.redis_server import (
    MASTER,
    RedisServer,
    SentinelSet,
    own_sentinels,
    running_sentinels,
)
from tests.timing import WAIT, scaled, wait_until
from tests.workers import at, wait_ready, worker_settings, workers

__all__ = ["own_sentinels"]  # fixture, imported for pytest

pytestmark = pytest.mark.redis
# §16: every worker on the new master within 10 s of it being named (on an idle machine)
NEW_MASTER = scaled(10.0)
# The error a worker logs when a re-check finds a node that persists (chat.redis.backend).
MOVED_OUT = "after a reconnect or failover a redis node writes to disk"


async def named_new_master(found: SentinelSet, old: int, timeout: float = scaled(20.0)) -> float:
    """Wait until the sentinels name a master other than ``old``; the monotonic time then."""

    async def named() -> bool:
        return await asyncio.to_thread(found.master_port) != old

    await wait_until(named, timeout, "the sentinels naming a new master")
    return time.monotonic()


async def subscribers(node: RedisServer, channel: str) -> int:
    client = aioredis.Redis(port=node.port, password=node.password)
    try:
        return int((await client.pubsub_numsub(channel))[0][1])
    finally:
        await client.aclose()


async def test_primary_killed_mid_conversation(
    own_sentinels: SentinelSet, record_property: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL the primary while members on both workers talk: within 10 s of the sentinels
    naming the new master both workers talk again; no acked message is lost; a mute from
    before still binds and a remove after binds; everyone else is still connected."""
    async with workers(own_sentinels) as (a, b):
        room = await a.room()
        fac = await a.client()
        await fac.join(room["room"], key=room["facilitator_key"], name="Fac")
        alice, bob = await a.client(**at(80)), await b.client(**at(81))
        muted, removed = await b.client(**at(82)), await a.client(**at(83))
        for client, name in ((alice, "Alice"), (bob, "Bob"), (muted, "Muted"), (removed, "Gone")):
            await client.join(room["room"], name=name)
        assert (await fac.request({"t": "mute", "pid": muted.pid}))["t"] == "ack"
        talk = Conversation(alice, bob)
        talk.start()
        await talk.more()

        old = own_sentinels.master()
        killed = time.monotonic()
        old.kill()
        named = await named_new_master(own_sentinels, old.port)
        await wait_ready(a, 200, timeout=NEW_MASTER)
        await wait_ready(b, 200, timeout=NEW_MASTER)
        again = await talk.talking_again(named, timeout=NEW_MASTER)
        await talk.more()
        await talk.stop()
        record_property("sentinel_failover_s", round(named - killed, 2))
        record_property("talking_again_after_named_s", round(again, 2))
        print(
            f"\nsentinel: named {named - killed:.2f} s after the kill; talking {again:.2f} s later"
        )
        assert again < NEW_MASTER

        await talk.check(alice, bob, fac)
        assert (await muted.request({"t": "say", "text": "now?"}))["code"] == "muted"
        assert (await fac.request({"t": "remove", "pid": removed.pid}))["t"] == "ack"
        assert await removed.closed(timeout=WAIT) == 4001
        for client in (alice, bob, fac):
            assert (await client.request({"t": "say", "text": "still here"}))["t"] == "ack"
    # The dead old master, listed as a replica (disconnected) after the switch, is no node
    # that persists: history stays in Redis (§7).
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_manual_failover_moves_every_worker(
    own_sentinels: SentinelSet, record_property: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """SENTINEL FAILOVER demotes a primary that stays up (and accepts writes until the
    sentinels reconfigure it): both workers' subscriptions move to the new master within
    10 s, members talking meanwhile lose no acked message, and talking goes on."""
    async with workers(own_sentinels) as (a, b):
        room = await a.room()
        alice, bob = await a.client(), await b.client()
        await alice.join(room["room"], name="Alice")
        await bob.join(room["room"], name="Bob")
        channel = f"{a.settings.redis_prefix}:{{{room['room']}}}:bus"
        old = own_sentinels.master()
        assert await subscribers(old, channel) == 2
        talk = Conversation(alice, bob)
        talk.start()
        await talk.more()
        await asyncio.to_thread(own_sentinels.sentinels[0].ask, "SENTINEL", "FAILOVER", "hearth")
        named = await named_new_master(own_sentinels, old.port)
        new = own_sentinels.master()

        async def moved_over() -> bool:
            return await subscribers(new, channel) == 2 and not await subscribers(old, channel)

        await wait_until(moved_over, NEW_MASTER, "both workers subscribed on the new master")
        moved = time.monotonic() - named
        record_property("sentinel_subscriptions_moved_after_named_s", round(moved, 2))
        print(f"\nsentinel: subscriptions on the new master {moved:.2f} s after it was named")
        assert moved < NEW_MASTER
        assert await talk.talking_again(time.monotonic(), timeout=NEW_MASTER) < NEW_MASTER
        await talk.more()
        await talk.stop()
        await talk.check(alice, bob)
    # The demoted master, resyncing as a replica, is still no node that persists (§7).
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_persisting_replica_makes_the_deployment_persisting() -> None:
    """§7 through Sentinel: the primary keeps nothing on disk, its replica writes snapshots:
    the server counts the deployment as persisting (history stays in worker memory)."""
    for persistent_replica in (False, True):
        with running_sentinels(persistent_replica=persistent_replica) as found:
            client = command_client(worker_settings(found, "t"))
            try:
                assert await redis_persists(client) is persistent_replica
            finally:
                await close_client(client)


async def test_a_listed_replica_that_does_not_answer_counts_as_persisting() -> None:
    """§7: a replica the sentinels still list but that does not answer may be promoted and
    take the text: like a refused CONFIG, it counts as writing to disk."""
    with running_sentinels() as found:
        for sentinel in found.sentinels:  # they keep listing it while the test asks
            sentinel.ask("SENTINEL", "SET", MASTER, "down-after-milliseconds", "60000")
        client = command_client(worker_settings(found, "t"))
        try:
            assert await redis_persists(client) is False
            found.replica.kill()
            assert await redis_persists(client) is True
        finally:
            await close_client(client)


async def test_a_failover_to_a_persisting_replica_moves_history_out_of_redis(
    own_sentinels: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    """§7 after +switch-master: the replica was made to persist after the workers started;
    once it is master, each worker finds that out, says so once as an error (no names, no
    text), and keeps new message history out of Redis; members still talk."""
    async with workers(own_sentinels) as (a, b):
        room = await a.room()
        alice, bob = await a.client(**at(90)), await b.client(**at(91))
        await alice.join(room["room"], name="Alice")
        await bob.join(room["room"], name="Bob")
        history = f"{a.settings.redis_prefix}:{{{room['room']}}}:history"
        assert (await alice.request({"t": "say", "text": "kept in redis"}))["t"] == "ack"
        assert own_sentinels.master().ask("ZCARD", history) == 1
        old = own_sentinels.master()
        replica = next(node for node in own_sentinels.data_nodes if node is not old)
        replica.ask("CONFIG", "SET", "save", "3600 1")
        await asyncio.to_thread(own_sentinels.sentinels[0].ask, "SENTINEL", "FAILOVER", MASTER)
        await named_new_master(own_sentinels, old.port)
        assert own_sentinels.master() is replica

        def flipped() -> list[logging.LogRecord]:
            return [
                r
                for r in caplog.records
                if r.levelno == logging.ERROR and MOVED_OUT in r.getMessage()
            ]

        # Each worker follows the new master (within 10 s of it being named), asks again.
        await wait_until(lambda: len(flipped()) == 2, NEW_MASTER, "both workers asking again")
        for n, (client, other) in enumerate(((alice, bob), (bob, alice))):
            before = replica.ask("ZCARD", history)
            assert (await client.request({"t": "say", "text": f"after {n}"}))["t"] == "ack"
            assert (await other.next("msg", text=f"after {n}"))["t"] == "msg"
            assert replica.ask("ZCARD", history) == before  # the new text is not in Redis
    for record in flipped():
        assert record.name == "hearth.redis"
        assert room["room"] not in record.getMessage()


async def test_sentinel_down_then_up_is_only_not_ready(own_sentinels: SentinelSet) -> None:
    """Workers started while no sentinel answers are not ready, then ready by themselves."""
    for sentinel in own_sentinels.sentinels:
        sentinel.kill()
    prefix = "t" + secrets.token_hex(4)
    async with running(worker_settings(own_sentinels, prefix)) as a:
        await wait_ready(a, 503)
        for sentinel in own_sentinels.sentinels:
            sentinel.start()
        await wait_ready(a, 200, timeout=3 * WAIT)
        room = await a.room()
        alice = await a.client()
        assert (await alice.join(room["room"], name="Alice"))["t"] == "welcome"
