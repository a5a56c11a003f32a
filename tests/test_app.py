"""HTTP routes and the WebSocket handshake: rooms, health, metrics, Origin, capacity."""

from __future__ import annotations

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.client import JSON, MSGPACK, Client
from tests.timing import wait_until


async def test_create_room_answers_the_contract(server) -> None:
    """POST /api/rooms answers 201 with room, key and both links; ids are long and random."""
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.post("/api/rooms", json={"title": "Tuesday", "rules": "Be kind"})
    assert response.status_code == 201
    body = response.json()
    assert len(body["room"]) >= 16 and len(body["facilitator_key"]) >= 22
    assert body["join_url"] == f"/r/{body['room']}"
    assert body["facilitator_url"] == f"/r/{body['room']}#key={body['facilitator_key']}"


@pytest.mark.parametrize(
    "body",
    [
        b"[1]",
        b"{bad",
        b'{"title": 5}',
        b'{"settings": {"history": "forever"}}',
        b'{"settings": {"slow": -1}}',
        b'{"settings": {"admission": "vip"}}',
        b'{"settings": {"typing": "loud"}}',
        b'{"settings": []}',
        b'{"title": "\\ud800"}',
    ],
)
async def test_create_room_rejects_bad_bodies(server, body: bytes) -> None:
    """A malformed room request answers 400 with a reason."""
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.post(
            "/api/rooms", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


async def test_operator_token_guards_room_creation(start_server) -> None:
    """With an operator token, creating a room needs it as a Bearer token; else 401."""
    server = await start_server(operator_token="s3cret")
    async with httpx.AsyncClient(base_url=server.http) as http:
        assert (await http.post("/api/rooms", json={})).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert (await http.post("/api/rooms", json={}, headers=wrong)).status_code == 401
        right = {"authorization": "Bearer s3cret"}
        assert (await http.post("/api/rooms", json={}, headers=right)).status_code == 201


async def test_health_ready_and_metrics(server) -> None:
    """/healthz and /readyz answer 200; /metrics has the contract's aggregate figures."""
    room = await server.room(title="Secret Title")
    client = await server.client()
    await client.join(room["room"])
    async with httpx.AsyncClient(base_url=server.http) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200
        text = (await http.get("/metrics")).text
    for name in ("hearth_connections", "hearth_rooms", "hearth_messages_total"):
        assert name in text
    assert room["room"] not in text and "Secret Title" not in text


async def test_pages_carry_security_headers(server) -> None:
    """Every page answers with a strict CSP and the usual security headers."""
    room = await server.room()
    async with httpx.AsyncClient(base_url=server.http) as http:
        for path in ("/", f"/r/{room['room']}", "/healthz"):
            response = await http.get(path)
            assert response.status_code == 200
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe" not in csp
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"


async def test_room_info_for_the_page(server) -> None:
    """GET /api/rooms/{id} gives title and rules before joining; unknown rooms 404."""
    room = await server.room(title="Circle", rules="Listen")
    async with httpx.AsyncClient(base_url=server.http) as http:
        info = (await http.get(f"/api/rooms/{room['room']}")).json()
        assert (info["title"], info["rules"], info["locked"]) == ("Circle", "Listen", False)
        assert (await http.get("/api/rooms/nope")).status_code == 404


async def test_foreign_origin_is_refused_with_403(server) -> None:
    """A browser handshake from a foreign Origin is refused; our own origin and none pass."""
    with pytest.raises(InvalidStatus) as refused:
        await Client.open(server.ws, origin="https://evil.example")
    assert refused.value.response.status_code == 403
    own = await Client.open(server.ws, origin=server.http)
    none = await Client.open(server.ws)
    await own.close()
    await none.close()


async def test_configured_origins_replace_the_default(start_server) -> None:
    """--allowed-origins lists exactly which browser origins may connect."""
    server = await start_server(allowed_origins=("https://chat.example.org",))
    ok = await Client.open(server.ws, origin="https://chat.example.org")
    await ok.close()
    with pytest.raises(InvalidStatus):
        await Client.open(server.ws, origin=server.http)


async def test_connection_cap_refuses_with_503(start_server) -> None:
    """Beyond --max-connections the handshake is refused with HTTP 503."""
    server = await start_server(max_connections=2)
    first, second = await server.client(), await server.client()
    with pytest.raises(InvalidStatus) as refused:
        await server.client()
    assert refused.value.response.status_code == 503
    await first.close()
    third = await server.admitted()  # the closed connection's place is free again
    await third.close()
    await second.close()


async def test_subprotocol_negotiation(server) -> None:
    """The first supported offer wins; no offer means JSON text frames."""
    msgpack_client = await server.client(MSGPACK)
    assert msgpack_client.ws.subprotocol == MSGPACK
    plain = await server.client(None)
    assert plain.ws.subprotocol is None
    plain.encoding = JSON
    await plain.send({"t": "say", "text": "x"})
    assert (await plain.recv())["code"] == "not_joined"


async def test_departures_leave_the_hub_tidy(server) -> None:
    """After leave, removal and close, this worker holds no room (the gauge returns to 0)."""
    room = await server.room()
    facilitator, stays, removed = (
        await server.client(),
        await server.client(),
        await server.client(),
    )
    await facilitator.join(room["room"], key=room["facilitator_key"])
    await stays.join(room["room"])
    await removed.join(room["room"])
    assert await server.metric("hearth_rooms") == 1
    await facilitator.request({"t": "remove", "pid": removed.pid})
    assert await removed.closed() == 4001
    await stays.send({"t": "leave"})
    assert await stays.closed() == 1000
    await facilitator.request({"t": "close"})
    assert await facilitator.closed() == 4010

    async def no_rooms() -> bool:
        return await server.metric("hearth_rooms") == 0

    await wait_until(no_rooms, what="the hub released the closed room")
