"""Protocol §16 with Redis Cluster: two workers on three primaries, sharded pub/sub.

Rooms spread over the shards, each room's keys and channel on its own slot; a node restarted
(empty) or a room's slot migrated to another node mid-conversation loses no acked message and
leaves facilitation working; a shard that is down leaves the rooms of the others working;
scripts are loaded on the node that lost them. (The core protocol tests also run on a cluster:
``pytest --core-broker=cluster``.)
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from chat.buscrypt import Sealer
from chat.envelope import Delivery, Envelope
from chat.limiter import AddressHasher, RedisConnections
from chat.ops import MemberAdd, MemberSet
from chat.redis.backend import RedisBackend
from chat.redis.client import RedisSpace
from chat.redis.history import RECHECK_PAUSE, RoomHistory, redis_persists
from chat.redis.topology import close_client, command_client
from tests.client import Client, create_room
from tests.conftest import Server
from tests.conversation import Conversation
from tests.redis_server import ClusterNodes, RedisServer, own_cluster, redis_cluster
from tests.test_backend import Inbox, commit, member, new_room, say
from tests.test_guard import refused_status
from tests.test_redis_sentinel import MOVED_OUT
from tests.test_reliability import BOUND, VoidSpace
from tests.timing import MS, WAIT, scaled, wait_until
from tests.workers import at, wait_ready, worker_settings, workers

__all__ = ["own_cluster", "redis_cluster"]  # fixtures, imported for pytest

pytestmark = pytest.mark.redis
BACK = scaled(10.0)  # §16: talking again within 10 s of cluster_state:ok (on an idle machine)
MOVE = scaled(5.0)  # §12: a worker hears a room again within 5 s of its slot moving
DOCS = Path(__file__).resolve().parents[1] / "docs" / "scaling.md"


_CREATED = itertools.count()


async def fresh_room(server: Server) -> dict[str, Any]:
    """A room created from a loopback address of its own: these tests create many rooms to
    find one on each shard, and one address may create only ten a minute (§11)."""
    n = next(_CREATED)
    return await create_room(server.http, source=f"127.0.{1 + n // 250}.{1 + n % 250}")


def channel(server: Server, room: str) -> str:
    return f"{server.settings.redis_prefix}:{{{room}}}:bus"


async def shard_subscribers(node: RedisServer, name: str) -> int:
    client = aioredis.Redis(port=node.port, password=node.password)
    try:
        reply = await client.execute_command("PUBSUB", "SHARDNUMSUB", name)
        return int(reply[1])
    finally:
        await client.aclose()


async def test_rooms_spread_over_shards(redis_cluster: ClusterNodes) -> None:
    """Rooms land on every shard; each room's keys live on its channel's node only, both
    workers subscribe there (SSUBSCRIBE), and members on two workers talk in every room."""
    async with workers(redis_cluster) as (a, b):
        rooms: dict[int, str] = {}  # node port -> a room it holds
        for _ in range(40):
            room = (await fresh_room(a))["room"]
            rooms.setdefault(redis_cluster.owner(channel(a, room)).port, room)
            if len(rooms) == len(redis_cluster.nodes):
                break
        assert len(rooms) == 3, "forty rooms, and a shard holds none of them"
        for port, room in rooms.items():
            alice, bob = await a.client(), await b.client()
            await alice.join(room, name="Alice")
            await bob.join(room, name="Bob")
            started = time.monotonic()
            ack = await alice.request({"t": "say", "text": f"on {port}"})
            assert (await bob.next("msg", text=f"on {port}"))["seq"] == ack["seq"]
            # Each node's link has its own reader: an idle shard delays no other.
            assert time.monotonic() - started < 500 * MS
            for node in redis_cluster.nodes:
                held = await asyncio.to_thread(node.ask, "KEYS", f"*{{{room}}}*")
                subscribed = await shard_subscribers(node, channel(a, room))
                if node.port == port:
                    assert len(held) >= 5 and subscribed == 2
                else:
                    assert held == [] and subscribed == 0


async def room_on(
    server: Server, found: ClusterNodes, avoid: RedisServer | None = None
) -> dict[str, Any]:
    """A new room (not on ``avoid``'s shard)."""
    for _ in range(40):
        room = await fresh_room(server)
        if found.owner(channel(server, room["room"])) is not avoid:
            return room
    raise AssertionError("forty rooms, all on one shard")


async def test_a_node_restarted_mid_conversation(
    own_cluster: ClusterNodes, record_property: Any
) -> None:
    """The node that holds a room is killed and started again, empty, while members talk:
    meanwhile a room on another shard keeps working; once the cluster is ok again both
    workers talk within 10 s, no acked message was lost, the room's mute and lock were
    restored from the workers, and the facilitator can still remove."""
    async with workers(own_cluster) as (a, b):
        room = await a.room()
        node = own_cluster.owner(channel(a, room["room"]))
        other = await room_on(b, own_cluster, avoid=node)
        fac = await a.client()
        await fac.join(room["room"], key=room["facilitator_key"], name="Fac")
        alice, bob, muted, gone = [
            await w.client(**at(n)) for w, n in ((a, 90), (b, 91), (b, 92), (a, 93))
        ]
        for client, name in ((alice, "Alice"), (bob, "Bob"), (muted, "Muted"), (gone, "Gone")):
            await client.join(room["room"], name=name)
        elsewhere = await b.client(**at(94))
        await elsewhere.join(other["room"], name="Elsewhere")
        assert (await fac.request({"t": "mute", "pid": muted.pid}))["t"] == "ack"
        assert (await fac.request({"t": "lock"}))["t"] == "ack"
        talk = Conversation(alice, bob)
        talk.start()
        await talk.more()

        node.kill()
        await wait_until(
            lambda: asyncio.to_thread(own_cluster.failed, node), WAIT, "the node marked failed"
        )
        # The other shard's rooms keep working while this one is down.
        assert (await elsewhere.request({"t": "say", "text": "still on"}))["t"] == "ack"
        await wait_ready(a, 503)
        node.start()
        ok = time.monotonic()
        ok += await asyncio.to_thread(own_cluster.wait_ok)
        again = await talk.talking_again(ok, timeout=BACK)
        await wait_ready(a, 200, timeout=BACK)
        await wait_ready(b, 200, timeout=BACK)
        await talk.more()
        await talk.stop()
        record_property("cluster_node_back_talking_s", round(again, 2))
        print(f"\ncluster: talking {again:.2f} s after cluster_state:ok")
        assert again < BACK

        await talk.check(alice, bob, fac)
        assert (await muted.request({"t": "say", "text": "now?"}))["code"] == "muted"
        late = await b.client(**at(95))
        assert (await late.join(room["room"], name="Late"))["code"] == "room_locked"
        assert (await fac.request({"t": "remove", "pid": gone.pid}))["t"] == "ack"
        assert await gone.closed(timeout=WAIT) == 4001


async def test_a_lost_decision_binds_while_another_shard_is_down(own_cluster: ClusterNodes) -> None:
    """§12 during a shard's outage: the watch for lost publishes still covers the rooms of
    the shards that are up. A worker holds a room on the node that goes down and one on
    another; a mute on the other whose publish was lost binds there within 5 s."""
    async with workers(own_cluster) as (a, b):
        room = await a.room()
        home = own_cluster.owner(channel(a, room["room"]))
        other = await room_on(a, own_cluster, avoid=home)
        down = own_cluster.owner(channel(a, other["room"]))
        member, there = await b.client(**at(96)), await b.client(**at(97))
        await member.join(room["room"], name="Quiet")
        await there.join(other["room"], name="There")
        prefix = b.settings.redis_prefix
        client = command_client(worker_settings(own_cluster, prefix))
        lossy = RedisBackend(
            VoidSpace(client, prefix, Sealer(None), 60), history_messages=10, history_seconds=60
        )
        await lossy.start(lambda room, entry: None, lambda: None)
        try:
            await asyncio.to_thread(down.kill)
            await wait_ready(b, 503)  # its link to that node is down: the watch asks it too
            change = MemberSet(member.pid, {"muted": True, "muted_until": None})
            out = [Delivery({"t": "muted", "pid": member.pid, "until": None})]
            await lossy.commit(room["room"], [change], Envelope([change], out).pack())
        finally:
            await lossy.aclose()
        told = await member.next("muted", timeout=BOUND)
        assert told["pid"] == member.pid
        assert (await member.request({"t": "say", "text": "hello?"}))["code"] == "muted"


async def test_a_node_that_persists_or_does_not_answer_makes_the_cluster_persisting(
    own_cluster: ClusterNodes,
) -> None:
    """§7 on a Cluster: every node of the slot map is asked; one that writes snapshots, or
    one that does not answer, makes the deployment persisting."""
    client = command_client(worker_settings(own_cluster, "t"))
    try:
        assert await redis_persists(client) is False
        some = own_cluster.nodes[1]
        some.ask("CONFIG", "SET", "save", "3600 1")
        assert await redis_persists(client) is True
        some.ask("CONFIG", "SET", "save", "")
        assert await redis_persists(client) is False
        own_cluster.nodes[2].kill()
        assert await redis_persists(client) is True
    finally:
        await close_client(client)


async def test_a_recheck_asks_a_node_that_is_down_until_it_answers(
    own_cluster: ClusterNodes,
) -> None:
    """§7 after a reconnect: the reconnect that starts the check can come (from another
    node's link, or a new slot map) while a node is still down. The worker asks that node
    until it answers, and moves history out of Redis when it came back writing snapshots."""
    client = command_client(worker_settings(own_cluster, "t"))
    try:
        space = RedisSpace(client, "t", Sealer(None), 60.0)
        history = RoomHistory(
            space, history_messages=10, history_seconds=60.0, allow_persistent=False
        )
        assert await history.in_redis()
        node = own_cluster.nodes[1]
        node.kill()
        check = asyncio.create_task(history.recheck())
        await asyncio.sleep(2 * RECHECK_PAUSE)
        assert not check.done() and not history.in_worker_memory
        node.persistent = True
        await asyncio.to_thread(node.start)
        await asyncio.wait_for(check, BACK)
        assert history.in_worker_memory
    finally:
        await close_client(client)


async def test_a_node_back_with_snapshots_moves_history_out_of_redis(
    own_cluster: ClusterNodes, caplog: pytest.LogCaptureFixture
) -> None:
    """§7 after a cluster change: a room's node restarted as it was leaves history in Redis;
    restarted writing snapshots, each worker finds that out once it hears the node again,
    says so once as an error (no names), and keeps new history out of Redis."""

    def errors() -> list[logging.LogRecord]:
        return [
            r for r in caplog.records if r.levelno == logging.ERROR and MOVED_OUT in r.getMessage()
        ]

    async with workers(own_cluster) as (a, b):
        room = await a.room()
        node = own_cluster.owner(channel(a, room["room"]))
        alice, bob = await a.client(**at(98)), await b.client(**at(99))
        await alice.join(room["room"], name="Alice")
        await bob.join(room["room"], name="Bob")
        history = f"{a.settings.redis_prefix}:{{{room['room']}}}:history"

        async def said(text: str) -> bool:
            return (await alice.request({"t": "say", "text": text}))["t"] == "ack"

        async def restarted(persistent: bool) -> None:
            node.persistent = persistent
            await asyncio.to_thread(node.restart)
            await asyncio.to_thread(own_cluster.wait_ok)
            await wait_ready(a, 200, timeout=BACK)
            await wait_ready(b, 200, timeout=BACK)
            await wait_until(lambda: said("back"), BACK, "talking again")

        await restarted(persistent=False)
        assert await said("kept") and node.ask("ZCARD", history) >= 1  # still in Redis
        assert not errors()
        await restarted(persistent=True)
        await wait_until(lambda: len(errors()) == 2, BACK, "both workers asking again")
        before = node.ask("ZCARD", history)
        assert await said("kept out")
        assert (await bob.next("msg", text="kept out"))["t"] == "msg"
        assert node.ask("ZCARD", history) == before
    for record in errors():
        assert record.name == "hearth.redis"
        assert room["room"] not in record.getMessage()


async def test_a_slot_migrated_mid_conversation(
    own_cluster: ClusterNodes, record_property: Any
) -> None:
    """A room's slot moves to another node while members on both workers talk: both
    workers' subscriptions follow it within 5 s, no acked message is lost, and a facilitator
    decision after the move binds on both workers."""
    async with workers(own_cluster) as (a, b):
        room = await a.room()
        name = channel(a, room["room"])
        source = own_cluster.owner(name)
        target = next(n for n in own_cluster.nodes if n is not source)
        fac = await a.client()
        await fac.join(room["room"], key=room["facilitator_key"], name="Fac")
        alice, bob = await a.client(**at(100)), await b.client(**at(101))
        muted = await b.client(**at(102))
        for client, who in ((alice, "Alice"), (bob, "Bob"), (muted, "Muted")):
            await client.join(room["room"], name=who)
        talk = Conversation(alice, bob)
        talk.start()
        await talk.more()

        await asyncio.to_thread(own_cluster.migrate, name, target)
        moved = time.monotonic()

        async def followed() -> bool:
            return await shard_subscribers(target, name) == 2

        await wait_until(followed, MOVE, "both workers subscribed on the new node")
        followed = time.monotonic() - moved
        assert await shard_subscribers(source, name) == 0
        await talk.more()
        await talk.stop()
        record_property("cluster_subscriptions_followed_slot_s", round(followed, 2))
        print(f"\ncluster: subscriptions on the new node {followed:.2f} s after the move")

        await talk.check(alice, bob, fac)
        assert (await fac.request({"t": "mute", "pid": muted.pid}))["t"] == "ack"
        assert (await muted.next("muted", timeout=WAIT))["pid"] == muted.pid
        assert (await muted.request({"t": "say", "text": "now?"}))["code"] == "muted"
        assert sorted(await asyncio.to_thread(target.ask, "KEYS", f"*{{{room['room']}}}*"))


async def test_scripts_load_on_the_node_that_lost_them(redis_cluster: ClusterNodes) -> None:
    """SCRIPT FLUSH on every node: commits batched across shards, single scripts, and the
    per-address limits' heartbeat load their script where it is missing and succeed."""
    settings = worker_settings(redis_cluster, "t" + secrets.token_hex(4))
    space = RedisSpace(command_client(settings), settings.redis_prefix, Sealer(None), 60)
    backend = RedisBackend(space, history_messages=10, history_seconds=60)
    inbox = Inbox()
    await backend.start(inbox, lambda: None)
    await wait_until(lambda: backend.ready, WAIT, "the backend's links up")
    limits = command_client(settings)
    try:
        rooms = [new_room(f"r{i}") for i in range(12)]
        assert len({redis_cluster.owner(space.channel(r.id)).port for r in rooms}) == 3
        for room in rooms:
            await backend.create_room(room)
            await backend.subscribe(room.id)
            await commit(backend, room.id, MemberAdd(member("p1")))
        for node in redis_cluster.nodes:
            await asyncio.to_thread(node.ask, "SCRIPT", "FLUSH")
        seqs = await asyncio.gather(*(say(backend, r.id, "p1", "hi") for r in rooms))
        assert seqs == [1] * len(rooms)
        await inbox.wait_for(2 * len(rooms))
        for node in redis_cluster.nodes:
            await asyncio.to_thread(node.ask, "SCRIPT", "FLUSH")
        assert all([await backend.snapshot(r.id) for r in rooms])
        conns = RedisConnections(
            limits, settings.redis_prefix, 2, AddressHasher(limits, settings.redis_prefix, None)
        )
        addresses = [f"198.51.100.{i}" for i in range(12)]
        for address in addresses:
            assert await conns.acquire(address)
        for node in redis_cluster.nodes:
            await asyncio.to_thread(node.ask, "SCRIPT", "FLUSH")
        await conns._write_counts([(address, 1) for address in addresses])  # the heartbeat
        await conns.aclose()
    finally:
        await backend.aclose()
        await close_client(limits)


async def test_per_address_limits_hold_across_workers(redis_cluster: ClusterNodes) -> None:
    """--max-per-address counts an address's connections on both workers of a cluster."""
    async with workers(redis_cluster, max_per_address=2) as (a, b):
        held = [await Client.open(s.ws, source="127.0.0.110") for s in (a, b)]
        assert await refused_status(a.ws, "127.0.0.110") == 429
        assert await refused_status(b.ws, "127.0.0.110") == 429
        other = await Client.open(b.ws, source="127.0.0.111")
        for client in [*held, other]:
            await client.close()


async def test_serve_with_several_workers_on_a_cluster(
    redis_cluster: ClusterNodes, tmp_path: Path
) -> None:
    """``hearth serve --workers 2 --redis-cluster ...`` starts, is ready, and chats."""
    from tests.process import ServerProcess

    seeds = ",".join(f"127.0.0.1:{node.port}" for node in redis_cluster.nodes)
    prefix = "t" + secrets.token_hex(4)
    server = ServerProcess(
        "--workers", "2", "--redis-cluster", seeds, "--redis-prefix", prefix,
        output=tmp_path / "serve.log",
    )  # fmt: skip
    try:
        await asyncio.to_thread(server.start)
        async with httpx.AsyncClient(base_url=server.http) as http:

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await wait_until(ready, BACK, "both worker processes ready")
        room = await create_room(server.http)
        clients = [await Client.open(server.ws) for _ in range(4)]
        for i, client in enumerate(clients):
            assert (await client.join(room["room"], name=f"P{i}"))["t"] == "welcome"
        ack = await clients[0].request({"t": "say", "text": "to all"})
        for client in clients:
            assert (await client.next("msg", text="to all"))["seq"] == ack["seq"]
            await client.close()
    finally:
        if server.process is not None and server.process.poll() is None:
            await asyncio.to_thread(server.terminate)


async def test_documented_cluster_acl_user_is_enough(redis_cluster: ClusterNodes) -> None:
    """The Cluster ACL line in docs/scaling.md, set on every node, lets two workers with
    --redis-username/--redis-password chat in rooms on every shard."""
    line = re.search(r"^ACL SETUSER .*\+ssubscribe.*$", DOCS.read_text(), re.MULTILINE)
    assert line is not None
    words = line.group(0).split()
    words[2] = user = "w" + secrets.token_hex(4)
    for node in redis_cluster.nodes:
        assert await asyncio.to_thread(node.ask, *words) == "OK"
    account = {"redis_username": user, "redis_password": "CHANGE-ME-long-random"}
    async with workers(redis_cluster, **account) as (a, b):
        await wait_ready(a, 200)
        seen: set[int] = set()
        for _ in range(40):
            room = (await fresh_room(a))["room"]
            port = redis_cluster.owner(channel(a, room)).port
            if port in seen:
                continue
            seen.add(port)
            alice, bob = await a.client(), await b.client()
            await alice.join(room, name="Alice")
            await bob.join(room, name="Bob")
            ack = await alice.request({"t": "say", "text": "through the acl"})
            assert (await bob.next("msg", text="through the acl"))["seq"] == ack["seq"]
            if len(seen) == len(redis_cluster.nodes):
                break
        assert len(seen) == len(redis_cluster.nodes)
