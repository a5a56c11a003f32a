"""Private ``redis-server`` processes for the tests: start, stop, kill and restart on a free port.

Never the shared Redis on 6379: each server gets a free port and a temporary directory. By
default it keeps nothing on disk (``--save "" --appendonly no``, what docs/scaling.md asks of
operators); ``persistent=True`` starts one with RDB snapshots on, for the detection test.
A missing binary fails the test with a clear message; it never skips (style §5).

Also the two topologies of protocol §16, on loopback: a :class:`SentinelSet` (a primary, a
replica and three sentinels) and a :class:`ClusterNodes` (three primaries made a cluster with
``redis-cli --cluster create``). A cluster node keeps its ``nodes.conf`` (the cluster's map,
no data) in its directory, so a node killed and started again rejoins the cluster, empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
import redis
from redis.crc import key_slot

from tests.ports import free_port
from tests.timing import WAIT, wait_until

START_TIMEOUT = 2 * WAIT


def redis_binary() -> str:
    """The ``redis-server`` binary; fails the test when it is missing."""
    found = shutil.which("redis-server")
    if found is None:
        pytest.fail(
            "redis-server is not installed: the Redis tests need it "
            "(Debian/Ubuntu: apt-get install redis-server)",
            pytrace=False,
        )
    return found


class RedisServer:
    """One private redis-server process on 127.0.0.1.

    Args:
        port: the port (a free one when None); kept across :meth:`restart`.
        persistent: turn RDB snapshots on (``save 3600 1``) instead of keeping nothing on disk.
        args: more ``redis-server`` options (``--cluster-enabled yes``, ``--replicaof ...``).
        password: the ``requirepass`` the server was given (to ask it things).
        sentinel: a sentinel's configuration: the process runs ``--sentinel`` with it.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        persistent: bool = False,
        args: Sequence[str] = (),
        password: str | None = None,
        sentinel: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.persistent = persistent
        self.args = list(args)
        self.password = password
        self.sentinel = sentinel
        self._dir = tempfile.TemporaryDirectory(prefix="hearth-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        save = "3600 1" if self.persistent else ""
        head = [redis_binary()]
        if self.sentinel is not None:
            conf = self.dir / "sentinel.conf"
            if not conf.exists():  # a sentinel rewrites it as it learns: keep that on restart
                conf.write_text(self.sentinel)
            head = [redis_binary(), str(conf), "--sentinel"]
        self.process = subprocess.Popen(
            [
                *head,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                save,
                "--appendonly",
                "no",
                "--dir",
                self._dir.name,
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not answer PING in time")
            time.sleep(0.02)

    def answers(self) -> bool:
        """Whether the server answers PING now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                auth = f"AUTH {self.password}\r\n".encode() if self.password else b""
                sock.sendall(auth + b"PING\r\n")
                seen = b""
                while seen.count(b"\r\n") < (2 if auth else 1):
                    chunk = sock.recv(64)
                    if not chunk:
                        return False
                    seen += chunk
                return seen.endswith(b"+PONG\r\n")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: Redis loses everything in memory, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=START_TIMEOUT)
        self.process = None

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL if it lingers)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=START_TIMEOUT)
        self.process = None

    def restart(self) -> None:
        """Kill and start again on the same port, empty."""
        self.kill()
        self.start()

    def cli(self, *args: str) -> str:
        """Run one command with a raw RESP connection and return the raw reply."""
        if self.password:
            return str(self.ask(*args))
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        reply = b""
        with socket.create_connection(("127.0.0.1", self.port), timeout=WAIT) as sock:
            sock.sendall(b"".join(parts))
            while not reply.endswith(b"\r\n"):  # the commands used answer one line
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                reply += chunk
        return reply.decode(errors="replace")

    def ask(self, *args: Any) -> Any:
        """Run one command and return redis-py's parsed reply (text)."""
        with redis.Redis(
            port=self.port, password=self.password, decode_responses=True, socket_timeout=5
        ) as client:
            return client.execute_command(*args)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    @property
    def dir(self) -> Path:
        return Path(self._dir.name)


class Startable(Protocol):
    """A server or a set of them, with its own files: started, then stopped and removed."""

    def start(self) -> None: ...

    def close(self) -> None: ...


S = TypeVar("S", bound=Startable)


@contextlib.contextmanager
def started(servers: S) -> Iterator[S]:
    """``servers`` started, then stopped and their files removed (also when a start fails
    half-way: a cluster may have started some of its nodes)."""
    try:
        servers.start()
        yield servers
    finally:
        servers.close()


def running_redis(
    *, persistent: bool = False, port: int | None = None
) -> contextlib.AbstractContextManager[RedisServer]:
    """A started private server, stopped and removed afterwards."""
    return started(RedisServer(port, persistent=persistent))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private server for the whole session; each test uses its own key prefix."""
    with running_redis() as server:
        yield server


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A private server for one test, which may kill and restart it."""
    with running_redis() as server:
        yield server


@contextlib.asynccontextmanager
async def monitor(server: RedisServer) -> AsyncIterator[bytearray]:
    """Everything MONITOR shows while the block runs: from the moment MONITOR is on, to a
    marker command sent at the end (Redis runs commands in order, so whatever ran in the block
    was shown before the marker)."""
    seen = bytearray()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"MONITOR\r\n")
    await writer.drain()

    async def pump() -> None:
        while chunk := await reader.read(65536):
            seen.extend(chunk)

    task = asyncio.create_task(pump())
    try:
        await wait_until(lambda: seen.startswith(b"+OK\r\n"), what="MONITOR on")
        yield seen
        marker = secrets.token_hex(8).encode()
        ping, pinged = await asyncio.open_connection("127.0.0.1", server.port)
        pinged.write(b"ECHO " + marker + b"\r\n")
        await pinged.drain()
        await ping.readline()
        pinged.close()
        await wait_until(lambda: marker in seen, what="MONITOR caught up")
    finally:
        task.cancel()
        await asyncio.wait([task])
        writer.close()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> float:
    """Poll ``condition`` (a blocking check) until it holds; the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


MASTER = "hearth"  # the master's name in the sentinels


class SentinelSet:
    """A primary, its replica, and three sentinels that fail over in about two seconds.

    Args:
        password: ``requirepass`` (and ``masterauth``) of the data nodes.
        sentinel_password: the sentinels' own ``requirepass``.
        persistent_replica: the replica writes RDB snapshots (the primary does not).
    """

    def __init__(
        self,
        *,
        password: str | None = None,
        sentinel_password: str | None = None,
        persistent_replica: bool = False,
    ) -> None:
        auth = ["--requirepass", password, "--masterauth", password] if password else []
        auth += ["--repl-diskless-sync-delay", "0"]  # a replica syncs at once, not in 5 s
        self.password = password
        self.sentinel_password = sentinel_password
        self.primary = RedisServer(args=auth, password=password)
        self.replica = RedisServer(
            args=[*auth, "--replicaof", "127.0.0.1", str(self.primary.port)],
            password=password,
            persistent=persistent_replica,
        )
        conf = [
            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} 2",
            f"sentinel down-after-milliseconds {MASTER} 1000",
            f"sentinel failover-timeout {MASTER} 4000",
            f"sentinel parallel-syncs {MASTER} 1",
        ]
        if password:
            conf.append(f"sentinel auth-pass {MASTER} {password}")
        if sentinel_password:
            conf += [
                f"requirepass {sentinel_password}",
                f"sentinel sentinel-pass {sentinel_password}",
            ]
        # Each sentinel knows the others and the replica from the start: found by themselves
        # (hello messages, the master's INFO every 10 s) they would take ten seconds.
        ports = [free_port() for _ in range(3)]
        ids = [secrets.token_hex(20) for _ in ports]
        self.sentinels = []
        for port, myid in zip(ports, ids, strict=True):
            known = [
                f"sentinel myid {myid}",
                f"sentinel known-replica {MASTER} 127.0.0.1 {self.replica.port}",
                *(
                    f"sentinel known-sentinel {MASTER} 127.0.0.1 {other} {other_id}"
                    for other, other_id in zip(ports, ids, strict=True)
                    if other != port
                ),
            ]
            self.sentinels.append(
                RedisServer(
                    port, sentinel="\n".join(conf + known) + "\n", password=sentinel_password
                )
            )

    @property
    def data_nodes(self) -> list[RedisServer]:
        return [self.primary, self.replica]

    def settings(self) -> dict[str, Any]:
        """The Settings fields that point a worker at this set."""
        return {
            "redis_sentinel": tuple(("127.0.0.1", s.port) for s in self.sentinels),
            "redis_master": MASTER,
            "redis_password": self.password,
            "redis_sentinel_password": self.sentinel_password,
        }

    def start(self) -> None:
        self.primary.start()
        self.replica.start()
        wait_for(
            lambda: self.replica.ask("INFO", "replication").get("master_link_status") == "up",
            "the replica syncing",
        )
        for sentinel in self.sentinels:
            sentinel.start()
        wait_for(self._settled, "the sentinels finding each other and the replica")

    def _settled(self) -> bool:
        for sentinel in self.sentinels:
            state = sentinel.ask("SENTINEL", "MASTER", MASTER)  # parsed by redis-py
            if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                return False
        return True

    def master_port(self) -> int:
        """The master's port, as the first sentinel that answers names it."""
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError, OSError):
                return int(sentinel.ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)[1])
        raise RuntimeError("no sentinel answers")

    def master(self) -> RedisServer:
        port = self.master_port()
        return next(node for node in self.data_nodes if node.port == port)

    def close(self) -> None:
        for server in [*self.sentinels, *self.data_nodes]:
            server.close()


class ClusterNodes:
    """Three primaries on free ports, made one Redis Cluster with ``redis-cli --cluster``.

    ``cluster-require-full-coverage no`` (what docs/scaling.md advises): while a node is down,
    the rooms on the other nodes keep working.
    """

    def __init__(self, count: int = 3, *, password: str | None = None) -> None:
        auth = ["--requirepass", password, "--masterauth", password] if password else []
        options = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "1000",
            "--cluster-require-full-coverage", "no",
            *auth,
        ]  # fmt: skip
        self.password = password
        # Each node's cluster bus on a port of its own (by default it is the port + 10000,
        # which may be taken, or beyond 65535).
        self.nodes = [
            RedisServer(args=[*options, "--cluster-port", str(free_port())], password=password)
            for _ in range(count)
        ]

    def settings(self) -> dict[str, Any]:
        """The Settings fields that point a worker at this cluster (every node a seed)."""
        return {
            "redis_cluster": tuple(("127.0.0.1", n.port) for n in self.nodes),
            "redis_password": self.password,
        }

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.fail(
                "redis-cli is not installed: the cluster tests need it to create the cluster "
                "(Debian/Ubuntu: apt-get install redis-tools)",
                pytrace=False,
            )
        command = [cli, "--cluster", "create", "--cluster-yes"]
        if self.password:
            command += ["-a", self.password, "--no-auth-warning"]
        command += [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(command, check=True, capture_output=True, timeout=30)
        self.wait_ok()

    def wait_ok(self, timeout: float = 20.0) -> float:
        """Wait until every node reports ``cluster_state:ok`` and agrees on who holds each
        slot; the seconds it took."""

        def agreed() -> bool:
            maps = []
            for node in self.nodes:
                try:
                    if "cluster_state:ok" not in str(node.ask("CLUSTER", "INFO")):
                        return False
                    maps.append(sorted(self._slots(node).items()))
                except (redis.RedisError, OSError):
                    return False
            return all(m == maps[0] for m in maps) and len(maps[0]) == 16384

        return wait_for(agreed, "the cluster agreeing", timeout)

    def _slots(self, node: RedisServer) -> dict[int, int]:
        """slot -> port of the node that holds it, as ``node`` sees it."""
        owners: dict[int, int] = {}
        for line in node.ask("CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            for part in fields[8:]:
                if part.startswith("["):
                    continue  # a slot being migrated or imported
                first, _, last = part.partition("-")
                for slot in range(int(first), int(last or first) + 1):
                    owners[slot] = port
        return owners

    def failed(self, node: RedisServer) -> bool:
        """Whether the other nodes mark ``node`` as failed (after the node timeout)."""
        other = next(n for n in self.nodes if n is not node)
        for line in other.ask("CLUSTER", "NODES").splitlines():
            fields = line.split()
            if fields[1].split("@")[0].endswith(f":{node.port}"):
                return "fail" in fields[2].split(",")
        return False

    def owner(self, key: str) -> RedisServer:
        """The node that holds ``key``'s slot (a room's keys and channel: its id in braces)."""
        port = self._slots(self.nodes[0])[key_slot(key.encode())]
        return next(n for n in self.nodes if n.port == port)

    def migrate(self, key: str, to: RedisServer) -> None:
        """Move ``key``'s slot, with every key in it, to the node ``to`` (as ``redis-cli
        --cluster reshard`` would): IMPORTING, MIGRATING, MIGRATE the keys, SETSLOT NODE."""
        slot = key_slot(key.encode())
        source = self.owner(key)
        ids = {n.port: n.ask("CLUSTER", "MYID") for n in self.nodes}
        to.ask("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.port])
        source.ask("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to.port])
        while keys := source.ask("CLUSTER", "GETKEYSINSLOT", slot, 100):
            auth = ["AUTH", self.password] if self.password else []
            source.ask("MIGRATE", "127.0.0.1", to.port, "", 0, 5000, *auth, "KEYS", *keys)
        for node in [to, source, *self.nodes]:
            node.ask("CLUSTER", "SETSLOT", slot, "NODE", ids[to.port])

    def close(self) -> None:
        for node in self.nodes:
            node.close()


def running_sentinels(**kwargs: Any) -> contextlib.AbstractContextManager[SentinelSet]:
    """A started :class:`SentinelSet`, stopped and removed afterwards."""
    return started(SentinelSet(**kwargs))


def running_cluster(**kwargs: Any) -> contextlib.AbstractContextManager[ClusterNodes]:
    """A started :class:`ClusterNodes`, stopped and removed afterwards."""
    return started(ClusterNodes(**kwargs))


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[ClusterNodes]:
    """One private cluster for the whole session; each test uses its own key prefix."""
    with running_cluster() as found:
        yield found


@pytest.fixture
def own_cluster() -> Iterator[ClusterNodes]:
    """A private cluster for one test, which may kill, restart or reshard it."""
    with running_cluster() as found:
        yield found


@pytest.fixture
def own_sentinels() -> Iterator[SentinelSet]:
    """A private Sentinel set for one test, which may kill its primary."""
    with running_sentinels(password="data-secret", sentinel_password="sentinel-secret") as found:
        yield found
