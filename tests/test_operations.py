"""The server as an operator runs it: a real process, its whole output, and SIGTERM."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client import JSON, MSGPACK, Client, create_room
from tests.process import ServerProcess


@pytest.fixture
def process(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess("--resume-grace", "30", output=tmp_path / "server.log")
    server.start()
    yield server
    server.kill()


async def test_output_never_holds_text_names_or_addresses(process: ServerProcess) -> None:
    """Everything the server prints, during a whole session, holds no text, name or address."""
    marker = "Zebra4417"
    room = await create_room(process.http, title="t", rules="r")
    a = await Client.open(process.ws, MSGPACK, origin=process.http)
    b = await Client.open(process.ws, JSON)
    await a.join(room["room"], key=room["facilitator_key"], name=f"{marker} Fac")
    await b.join(room["room"], name=f"{marker} One", agree=True)
    await b.request({"t": "say", "text": f"my secret is {marker}"})
    await b.request({"t": "whisper", "to": a.pid, "text": marker})
    msg = await a.next("msg")
    await b.request({"t": "report", "mid": msg["mid"], "reason": marker})
    await a.request({"t": "announce", "text": marker})
    await b.send_raw(f"{{not json {marker}")  # a malformed frame quoting the marker
    await b.request({"t": "say", "text": marker * 500})  # too large
    await a.request({"t": "remove", "pid": b.pid, "reason": marker})
    await b.closed()
    await a.send({"t": "leave"})
    await a.closed()
    process.terminate()  # a graceful exit: whatever the server had to log is in the output
    output = process.output.read_text()
    assert "hearth started" in output  # we did capture the server's output
    assert marker not in output
    assert "127.0.0.1:" not in output.replace(f"127.0.0.1:{process.port}", "")
    assert '"WebSocket /ws"' not in output  # uvicorn's handshake line carries the address


async def test_sigterm_closes_1012_and_exits(process: ServerProcess) -> None:
    """On SIGTERM every member is closed with 1012 (reconnect) and the process exits cleanly."""
    room = await create_room(process.http)
    clients = [await Client.open(process.ws, enc) for enc in (MSGPACK, JSON)]
    for client in clients:
        await client.join(room["room"])
    loop = asyncio.get_running_loop()
    exit_code = loop.run_in_executor(None, process.terminate)
    codes = await asyncio.gather(*(c.closed() for c in clients))
    assert codes == [1012, 1012]
    assert await exit_code in (0, -15)  # uvicorn re-raises the signal after a clean drain
