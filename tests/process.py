"""A Hearth server as a real operating-system process, started the way an operator would.

The one helper for every test that needs ``python -m chat serve`` as a process rather than a
server in the test's own event loop (``tests.conftest.running``): to read its whole output, to
send it SIGTERM or SIGKILL, to restart it on the same port, to give it several workers, or to
serve the browser tests.
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from tests.ports import Listening, free_port
from tests.timing import START, WAIT, block_until

ROOT = Path(__file__).resolve().parent.parent
# Rooms made by create_room come from 127.0.0.10 ... 127.0.0.209 in turn: one address may
# create ten rooms a minute (protocol §11), and a suite makes more than that.
ROOM_SOURCES = itertools.count()


class ServerProcess(Listening):
    """``python -m chat serve ARGS`` on a port (a free one unless given), its whole output
    appended to ``output``. Also a context manager, sync or async: start, then stop.

    Args:
        args: command-line options after ``serve``.
        port: the port; kept across :meth:`restart`.
        output: the file that receives stdout and stderr.
    """

    def __init__(self, *args: str, port: int | None = None, output: Path) -> None:
        self.port = port or free_port()
        self.output = output
        self.args = ["--host", "127.0.0.1", "--port", str(self.port), *args]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, prefix: list[str] | None = None) -> ServerProcess:
        """Start and wait until /readyz answers 200; ``prefix`` runs it under another command
        (``["prlimit", "--nofile=256:1024", "--"]``).

        Raises:
            RuntimeError: the process exited, or was not ready within :data:`START` seconds.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
        env.pop("REDIS_URL", None)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        with self.output.open("ab") as sink:
            self.process = subprocess.Popen(
                [*(prefix or []), sys.executable, "-m", "chat", "serve", *self.args],
                cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        try:
            block_until(self._ready, START, "the server process answers /readyz")
        except TimeoutError:
            self.kill()
            raise RuntimeError(f"server not ready in time: {self.tail()}") from None
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"server exited ({self.process.returncode}): {self.tail()}")
        try:
            with urllib.request.urlopen(f"{self.http}/readyz", timeout=0.5) as answer:
                return bool(answer.status == 200)
        except OSError:  # refused, not ready yet (503), or slow to answer
            return False

    def tail(self) -> str:
        """The end of the process's output (for failure messages)."""
        return self.output.read_text(errors="replace")[-2000:]

    def terminate(self, timeout: float = 3 * WAIT) -> int:
        """SIGTERM, then wait for the process to exit; returns its exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """SIGTERM (SIGKILL if it lingers) and wait; nothing if it is not running."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.terminate()
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL and wait: a crash, with no graceful shutdown."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=2 * WAIT)

    def restart(self) -> None:
        """Stop, then start again on the same port."""
        self.stop()
        self.start()

    def create_room(
        self, title: str = "Evening circle", rules: str = "", **settings: Any
    ) -> dict[str, Any]:
        """Create a room over HTTP (protocol §3), each from the next loopback address; returns
        the 201 answer. Blocking: for tests that are not async (the browser's)."""
        body: dict[str, Any] = {"title": title, "rules": rules}
        if settings:
            body["settings"] = settings
        source = f"127.0.0.{10 + next(ROOM_SOURCES) % 200}"
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=WAIT, source_address=(source, 0)
        )
        try:
            conn.request(
                "POST", "/api/rooms", body=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            answer = conn.getresponse()
            assert answer.status == 201, answer.read()
            room: dict[str, Any] = json.load(answer)
            return room
        finally:
            conn.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> ServerProcess:
        """Start without blocking the test's event loop (servers may be running in it)."""
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)
