"""Logs at every level, debug included, hold no text, names, keys, tokens, reasons or
addresses (protocol §11): the formatter's rules, then a whole session against a real process."""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from chat.logs import JsonFormatter
from tests.client import JSON, MSGPACK, Client, create_room
from tests.process import ServerProcess

MARK = "Zebra4417"
FORWARDED = "203.0.113.77"  # the client a trusted proxy forwards for
PEER = "127.0.0.9"  # a client's own loopback address


def line(name: str, msg: object, *args: object, exc: BaseException | None = None) -> str:
    record = logging.LogRecord(name, logging.DEBUG, "x.py", 1, msg, args or None, None)
    if exc is not None:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    return JsonFormatter().format(record)


def test_library_records_show_templates_never_arguments() -> None:
    """uvicorn's and websockets' records keep their template; the arguments never show."""
    said = line("uvicorn.error", '%s - "WebSocket %s" %d', "192.0.2.1:5000", "/ws", 403)
    assert "192.0.2.1" not in said
    assert json.loads(said)["event"] == '%s - "WebSocket %s" %d'
    frame = line("websockets.server", "< %s", f'TEXT \'{{"t":"join","key":"{MARK}"}}\'')
    assert MARK not in frame
    assert "Application startup complete." in line("uvicorn.error", "Application startup complete.")


def test_preformatted_library_text_is_withheld() -> None:
    """A library string formatted beforehand (asyncio's callback reprs) is withheld."""
    for msg in (f"Exception in callback deliver('{MARK}')", f"Task failed\nfuture: {MARK}"):
        assert MARK not in line("asyncio", msg)
    assert MARK not in line("uvicorn.error", KeyError(MARK))


def test_exceptions_show_type_and_stack_not_message() -> None:
    """A traceback keeps its frames and types; the messages, ours included, are withheld."""
    try:
        try:
            {}[MARK]
        except KeyError as exc:
            raise RuntimeError(f"while handling {MARK}") from exc
    except RuntimeError as exc:
        said = json.loads(line("hearth.session", "session failed", exc=exc))
    assert MARK not in json.dumps(said)
    assert "builtins.KeyError" in said["exc"] and "builtins.RuntimeError" in said["exc"]
    assert "test_exceptions_show_type_and_stack_not_message" in said["exc"]


def test_an_os_error_says_what_failed_not_where() -> None:
    """uvicorn logs a failed bind as the OSError itself, whose text holds the address: the
    line says what the system says of its error number, and withholds the rest."""
    bind = OSError(errno.EADDRINUSE, f"error while attempting to bind on address ('{PEER}', 80)")
    said = json.loads(line("uvicorn.error", bind))
    assert said["event"] == f"(a OSError: {os.strerror(errno.EADDRINUSE)}, withheld)"
    refused = ConnectionRefusedError(errno.ECONNREFUSED, f"connecting to {PEER}:6379")
    traced = json.loads(line("hearth.app", "redis unreachable", exc=refused))
    assert f"({os.strerror(errno.ECONNREFUSED)}; message withheld)" in traced["exc"]
    assert PEER not in json.dumps(said) + json.dumps(traced)


def test_a_worker_that_cannot_bind_its_port_says_so(tmp_path: Path) -> None:
    """A real worker started on a port another process holds: it exits, and its log says the
    address is in use (the operator's first question), without the address."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "chat", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert os.strerror(errno.EADDRINUSE) in said
    assert f":{port}" not in said and "attempting to bind" not in said


@pytest.fixture
def debug_process(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(
        "--log-level", "debug", "--trusted-proxies", "127.0.0.1", "--resume-grace", "30",
        "--max-per-address", "3", output=tmp_path / "server.log",
    )  # fmt: skip
    server.start()
    yield server
    server.kill()


async def test_debug_output_of_a_whole_session_holds_no_secret(
    debug_process: ServerProcess,
) -> None:
    """Joins, says, whispers, a facilitator key, a resume token, reports, a removal with a
    reason, refusals and a forwarded address, at --log-level debug: none of it in the output."""
    process = debug_process
    forwarded = {"X-Forwarded-For": FORWARDED}
    room = await create_room(process.http, title=f"{MARK} title", rules=f"{MARK} rules")
    key = room["facilitator_key"]
    fac = await Client.open(process.ws, MSGPACK, origin=process.http, additional_headers=forwarded)
    await fac.join(room["room"], key=key, name=f"{MARK} Guide")
    one = await Client.open(process.ws, JSON, source=PEER)
    welcome = await one.join(room["room"], name=f"{MARK} One", agree=True)
    token = welcome["resume"]
    await one.request({"t": "say", "text": f"my secret is {MARK}"})
    await one.request({"t": "whisper", "to": fac.pid, "text": f"whisper {MARK}"})
    msg = await fac.next("msg")
    await fac.request({"t": "report", "mid": msg["mid"], "reason": f"reason {MARK}"})
    await fac.request({"t": "announce", "text": f"announce {MARK}"})
    await one.send_raw(f"{{not json {MARK}")
    await one.request({"t": "say", "text": MARK * 500})  # too large
    await one.ws.close()  # drop, then come back with the resume token
    again = await Client.open(process.ws, JSON, source=PEER)
    assert (await again.join(room["room"], resume=token))["t"] == "welcome"
    held = [await Client.open(process.ws, MSGPACK, source=PEER) for _ in range(2)]
    with pytest.raises(InvalidStatus):  # the fourth connection of PEER: 429
        await Client.open(process.ws, MSGPACK, source=PEER)
    for client in held:
        await client.close()
    wrong = await Client.open(process.ws, MSGPACK)
    assert (await wrong.join(room["room"], key=key[::-1]))["code"] == "forbidden"
    with pytest.raises(InvalidStatus):  # a foreign origin: 403
        await Client.open(process.ws, MSGPACK, origin=f"https://{MARK}.example")
    async with httpx.AsyncClient(base_url=process.http, headers=forwarded) as http:
        await http.post("/api/rooms", content=MARK, headers={"content-type": "text/plain"})
    await fac.request({"t": "remove", "pid": again.welcome["you"]["pid"], "reason": MARK})
    await again.closed()
    await fac.send({"t": "leave"})
    await fac.closed()
    process.terminate()  # a graceful exit: whatever the server had to log is in the output
    output = process.output.read_text()
    assert '"level": "debug"' in output  # debug logging was on, websockets' frames included
    for secret in (MARK, FORWARDED, PEER, key, token):
        assert secret not in output
    for secret in (key, token):  # not even a part of one
        for start in range(len(secret) - 7):
            assert secret[start : start + 8] not in output, "part of a key or token"
