"""A real WebSocket client for the tests, speaking protocol v1 in either encoding."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

import httpx
import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.timing import MS, WAIT

MSGPACK = "hearth.v1.msgpack"
JSON = "hearth.v1.json"


class Client:
    """One connection. Server frames may hold a message or an array of them: both flatten."""

    def __init__(self, ws: ClientConnection, encoding: str | None) -> None:
        self.ws = ws
        self.encoding = encoding
        self.inbox: deque[dict[str, Any]] = deque()
        self.welcome: dict[str, Any] = {}

    @classmethod
    async def open(
        cls, base: str, encoding: str | None = MSGPACK, *, source: str | None = None, **kwargs: Any
    ) -> Client:
        """Connect; ``source`` binds the client to a loopback address such as 127.0.0.2, so
        that a test can be many clients without raising a per-address limit."""
        protocols = [encoding] if encoding else None
        if source is not None:
            kwargs["local_addr"] = (source, 0)
        ws = await connect(f"{base}/ws", subprotocols=protocols, **kwargs)  # type: ignore[arg-type]
        return cls(ws, ws.subprotocol)

    @property
    def pid(self) -> str:
        return str(self.welcome["you"]["pid"])

    async def send(self, message: dict[str, Any]) -> None:
        if self.encoding == MSGPACK:
            await self.ws.send(msgpack.packb(message))
        else:
            await self.ws.send(json.dumps(message))

    async def send_raw(self, frame: bytes | str) -> None:
        await self.ws.send(frame)

    async def recv(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next server message (raises ConnectionClosed when the socket closed)."""
        while not self.inbox:
            async with asyncio.timeout(timeout):
                frame = await self.ws.recv()
            if self.encoding == MSGPACK:
                assert isinstance(frame, bytes), "msgpack encoding must use binary frames"
                value = msgpack.unpackb(frame)
            else:
                assert isinstance(frame, str), "json encoding must use text frames"
                value = json.loads(frame)
            self.inbox.extend(value if isinstance(value, list) else [value])
        return self.inbox.popleft()

    async def next(self, kind: str, timeout: float = WAIT, **fields: Any) -> dict[str, Any]:
        """The next message of type ``kind`` (and matching ``fields``), skipping others."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.recv(timeout)
                if message["t"] == kind and all(message.get(k) == v for k, v in fields.items()):
                    return message

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send a request with an id and return its ``ack``/``error`` (or id-carrying answer)."""
        request_id = message.setdefault("id", id(message) % 2**31)
        await self.send(message)
        passed: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    answer = await self.recv()
                    if answer.get("id") == request_id and answer["t"] != "msg":
                        return answer
                    passed.append(answer)
        finally:  # what arrived meanwhile stays readable, in order
            self.inbox.extendleft(reversed(passed))

    async def join(self, room: str, **fields: Any) -> dict[str, Any]:
        """Join and return the ``welcome`` (or the error / waiting answer)."""
        answer = await self.request({"t": "join", "room": room, **fields})
        if answer["t"] == "welcome":
            self.welcome = answer
        return answer

    async def closed(self, timeout: float = WAIT) -> int:
        """Read until the server closes; return the close code it sent."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.ws.recv()
        except ConnectionClosed as exc:
            assert exc.rcvd is not None, "the server closed without a close frame"
            return exc.rcvd.code
        raise AssertionError("unreachable")

    async def quiet(self, period: float = 300 * MS) -> list[dict[str, Any]]:
        """Everything that arrives within ``period`` seconds: a window to show that something
        does NOT arrive (what a test expects to arrive it awaits with :meth:`next`)."""
        got: list[dict[str, Any]] = []
        try:
            while True:
                got.append(await self.recv(timeout=period))
        except TimeoutError:
            return got

    async def close(self) -> None:
        await self.ws.close()


def http_client(base: str, source: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
    """An HTTP client for ``base``, bound to the loopback address ``source`` when given."""
    transport = httpx.AsyncHTTPTransport(local_address=source) if source else None
    return httpx.AsyncClient(
        base_url=base.replace("ws://", "http://"), transport=transport, **kwargs
    )


async def create_room(base: str, source: str | None = None, **body: Any) -> dict[str, Any]:
    """POST /api/rooms (from the loopback address ``source``); returns the JSON answer."""
    async with http_client(base, source) as http:
        response = await http.post("/api/rooms", json=body)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data
