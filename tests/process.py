"""A Hearth server as a real operating-system process, started the way an operator would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


class ServerProcess:
    """``python -m chat serve`` on a free port, with its whole output captured to a file."""

    def __init__(self, *args: str, port: int | None = None, output: Path) -> None:
        self.port = port or free_port()
        self.output = output
        self.args = ["--host", "127.0.0.1", "--port", str(self.port), *args]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, prefix: list[str] | None = None) -> ServerProcess:
        """Start and wait until /healthz answers; ``prefix`` runs it under another command
        (``["prlimit", "--nofile=256:1024", "--"]``)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
        env.pop("REDIS_URL", None)
        with self.output.open("ab") as sink:
            self.process = subprocess.Popen(
                [*(prefix or []), sys.executable, "-m", "chat", "serve", *self.args],
                cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.output.read_text()}")
            try:
                if httpx.get(f"{self.http}/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("server did not start in time")

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM, then wait for the process to exit; returns its exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
