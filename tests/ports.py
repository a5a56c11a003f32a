"""Loopback ports: the one way every fixture picks a free port, and what listens on one."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nobody listens on now (the kernel picks it; it may be taken again later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Listening:
    """Something the tests started on a loopback port: its HTTP and WebSocket bases."""

    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"
