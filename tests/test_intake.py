"""POST /api/rooms under abuse (protocol §11): media type, size, slowness and rate."""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.client import http_client
from tests.timing import WAIT

LIMIT = 16_384


async def raw_request(
    port: int, head: str, body_parts: list[bytes] | None = None, *, pause: float = 0.0
) -> tuple[bytes, bool]:
    """Send a request by hand, the body part by part (``pause`` apart), reading the answer
    meanwhile; go on sending after the answer, as a careless client would.

    Returns:
        The answer, and whether the server hung up before the body was through (a write
        failed): a server that read and dropped the rest would take it all.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode())
    answer = asyncio.create_task(reader.read(65536))
    closed = False
    try:
        for part in body_parts or []:
            try:
                writer.write(part)
                await writer.drain()
            except ConnectionError:
                closed = True
                break
            if pause:
                await asyncio.sleep(pause)
        async with asyncio.timeout(WAIT):
            data = await answer
    finally:
        writer.close()
    return data, closed


def head(port: int, *lines: str) -> str:
    return "".join(
        [f"POST /api/rooms HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"]
        + [f"{line}\r\n" for line in lines]
        + ["\r\n"]
    )


async def test_only_json_creates_rooms(server) -> None:
    """415 for text/plain or no Content-Type; JSON with a charset parameter is fine."""
    body = json.dumps({"title": "x"})
    async with httpx.AsyncClient(base_url=server.http) as http:
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {"content-type": content_type} if content_type else {}
            answer = await http.post("/api/rooms", content=body, headers=headers)
            assert answer.status_code == 415, content_type
        for content_type in ("application/json; charset=utf-8", "Application/JSON"):
            answer = await http.post(
                "/api/rooms", content=body, headers={"content-type": content_type}
            )
            assert answer.status_code == 201, content_type


async def test_cross_site_text_plain_post_creates_no_room(server) -> None:
    """A form-like cross-site POST (text/plain, no preflight in a browser) is refused."""
    async with httpx.AsyncClient(base_url=server.http) as http:
        answer = await http.post(
            "/api/rooms",
            content=b'{"title": "planted"}',
            headers={"content-type": "text/plain", "origin": "https://evil.example"},
        )
    assert answer.status_code == 415
    assert "room" not in answer.text


async def test_large_content_length_is_refused_before_reading(server) -> None:
    """A 300 MB Content-Length answers 413 at once, and the connection closes."""
    port = server.settings.port
    request = head(port, "Content-Type: application/json", "Content-Length: 300000000")
    answer, closed = await raw_request(port, request, [b"x" * 65536] * 4000)  # 262 MB
    assert answer.startswith(b"HTTP/1.1 413")
    assert closed  # the server hung up rather than read (and drop) the rest


async def test_chunked_body_is_cut_at_the_limit(server) -> None:
    """A chunked body is read up to 16 KiB and no further: 413, and the connection closes."""
    port = server.settings.port
    request = head(port, "Content-Type: application/json", "Transfer-Encoding: chunked")
    chunk = b"%x\r\n%s\r\n" % (4096, b" " * 4096)
    answer, closed = await raw_request(port, request, [chunk] * 20_000)  # 82 MB
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"connection: close" in answer.lower()
    assert closed


async def test_body_just_under_the_limit_is_read(server) -> None:
    """16 KiB of JSON is a valid request; the limit is not off by one."""
    body = json.dumps({"title": "t", "rules": "r" * 3000}).ljust(LIMIT).encode()
    assert len(body) == LIMIT
    async with httpx.AsyncClient(base_url=server.http) as http:
        answer = await http.post(
            "/api/rooms", content=body, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 201
    async with httpx.AsyncClient(base_url=server.http) as http:
        answer = await http.post(
            "/api/rooms", content=body + b" ", headers={"content-type": "application/json"}
        )
    assert answer.status_code == 413


async def test_slow_body_answers_408(start_server) -> None:
    """A body trickled a byte at a time past the deadline answers 408 and is dropped; a
    well-behaved client is served meanwhile."""
    server = await start_server(body_timeout=0.5)
    port = server.settings.port
    request = head(port, "Content-Type: application/json", "Content-Length: 100")
    started = asyncio.get_running_loop().time()
    trickle = asyncio.create_task(raw_request(port, request, [b" "] * 100, pause=0.05))
    async with http_client(server.http, "127.0.0.3") as http:
        assert (await http.post("/api/rooms", json={})).status_code == 201
    assert not trickle.done()  # served while the trickle still went on
    answer, closed = await trickle
    assert answer.startswith(b"HTTP/1.1 408")
    assert closed
    assert asyncio.get_running_loop().time() - started < WAIT


async def test_room_creation_rate_per_address(server) -> None:
    """Ten rooms a minute per address, then 429 with Retry-After; other addresses go on."""
    async with http_client(server.http, "127.0.0.2") as http:
        for _ in range(10):
            assert (await http.post("/api/rooms", json={})).status_code == 201
        refused = await http.post("/api/rooms", json={})
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    async with http_client(server.http, "127.0.0.3") as http:
        assert (await http.post("/api/rooms", json={})).status_code == 201


async def test_operator_token_is_not_rate_limited(start_server) -> None:
    """With an operator token, creation is the operator's: no per-address rate."""
    server = await start_server(operator_token="s3cret")
    headers = {"authorization": "Bearer s3cret"}
    async with http_client(server.http, "127.0.0.2", headers=headers) as http:
        for _ in range(12):
            assert (await http.post("/api/rooms", json={})).status_code == 201


async def test_room_creation_rate_setting(start_server) -> None:
    """--room-create-rate sets the number a minute."""
    server = await start_server(room_create_rate=2)
    async with http_client(server.http, "127.0.0.2") as http:
        codes = [(await http.post("/api/rooms", json={})).status_code for _ in range(3)]
    assert codes == [201, 201, 429]
