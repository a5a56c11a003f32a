"""Private ``redis-server`` processes for the tests: start, stop, kill and restart on a free port.

Never the shared Redis on 6379: each server gets a free port and a temporary directory. By
default it keeps nothing on disk (``--save "" --appendonly no``, what docs/scaling.md asks of
operators); ``persistent=True`` starts one with RDB snapshots on, for the detection test.
A missing binary fails the test with a clear message; it never skips (style §5).
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
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

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
    """

    def __init__(self, port: int | None = None, *, persistent: bool = False) -> None:
        self.port = port or free_port()
        self.persistent = persistent
        self._dir = tempfile.TemporaryDirectory(prefix="hearth-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        save = "3600 1" if self.persistent else ""
        self.process = subprocess.Popen(
            [
                redis_binary(),
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
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
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

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    @property
    def dir(self) -> Path:
        return Path(self._dir.name)


@contextlib.contextmanager
def running_redis(*, persistent: bool = False, port: int | None = None) -> Iterator[RedisServer]:
    """A started private server, stopped and removed afterwards."""
    server = RedisServer(port, persistent=persistent)
    server.start()
    try:
        yield server
    finally:
        server.close()


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
