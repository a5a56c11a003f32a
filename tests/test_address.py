"""The client address (protocol §11): the TCP peer, or what a trusted proxy says it saw."""

from __future__ import annotations

import pytest

from chat.address import TrustedProxies, client_address, limit_key, parse_ip
from chat.settings import Settings, SettingsError
from tests.client import Client, http_client

XFF = b"x-forwarded-for"


def headers(*values: str) -> list[tuple[bytes, bytes]]:
    return [(XFF, v.encode()) for v in values]


def test_untrusted_peer_is_the_client_whatever_it_says() -> None:
    """With no trusted proxies (the default, loopback included) the header changes nothing."""
    assert client_address("127.0.0.1", headers("203.0.113.9"), TrustedProxies()) == "127.0.0.1"
    trusted = TrustedProxies.parse("10.0.0.0/8")
    assert client_address("192.0.2.1", headers("203.0.113.9"), trusted) == "192.0.2.1"


def test_trusted_peer_gives_the_right_most_untrusted_hop() -> None:
    """Behind trusted proxies the client is the right-most X-Forwarded-For hop not trusted."""
    trusted = TrustedProxies.parse("127.0.0.1, 10.0.0.0/8")
    assert client_address("127.0.0.1", headers("203.0.113.9"), trusted) == "203.0.113.9"
    # A client that writes its own header only adds to the left of what the proxy appended.
    forged = headers("6.6.6.6, 203.0.113.9")
    assert client_address("127.0.0.1", forged, trusted) == "203.0.113.9"
    # Several trusted hops: load balancer 10.1.1.1 in front of the local proxy.
    chain = headers("6.6.6.6, 203.0.113.9, 10.1.1.1")
    assert client_address("127.0.0.1", chain, trusted) == "203.0.113.9"
    # Several headers form one list, in order.
    split = headers("6.6.6.6", "203.0.113.9, 10.2.2.2")
    assert client_address("127.0.0.1", split, trusted) == "203.0.113.9"


def test_odd_chains() -> None:
    """No header, an all-trusted chain, ports, brackets, IPv4-mapped and junk entries."""
    trusted = TrustedProxies.parse("127.0.0.0/8,10.0.0.0/8,::1")
    assert client_address("127.0.0.1", [], trusted) == "127.0.0.1"
    assert client_address("127.0.0.1", headers("10.0.0.2, 10.0.0.3"), trusted) == "10.0.0.2"
    assert client_address("127.0.0.1", headers("203.0.113.9:4711"), trusted) == "203.0.113.9"
    assert client_address("::1", headers("[2001:db8::7]:443"), trusted) == "2001:db8::7"
    assert client_address("::ffff:127.0.0.1", headers("::ffff:192.0.2.5"), trusted) == "192.0.2.5"
    # Junk to the right of the last trusted hop: the hop that passed it on answers for it.
    assert client_address("127.0.0.1", headers("203.0.113.9, unknown"), trusted) == "127.0.0.1"
    assert client_address("127.0.0.1", headers("unknown, 10.0.0.9"), trusted) == "10.0.0.9"


def test_limits_count_ipv6_per_64() -> None:
    """An IPv6 client holds a /64: the limits count the /64, IPv4 counts per address."""
    assert limit_key("2001:db8:1:2:3:4:5:6") == limit_key("2001:db8:1:2:ffff::1")
    assert limit_key("2001:db8:1:2::1") != limit_key("2001:db8:1:3::1")
    assert limit_key("192.0.2.1") == "192.0.2.1"
    assert parse_ip("example.org") is None


def test_trusted_proxies_setting() -> None:
    """--trusted-proxies takes addresses and CIDR blocks; anything else is a one-line error."""
    parsed = Settings.from_env({"HEARTH_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7 ,::1"})
    assert parsed.trusted_proxies.trusts(parse_ip("10.9.9.9"))
    assert not Settings().trusted_proxies.trusts(parse_ip("127.0.0.1"))
    with pytest.raises(SettingsError, match="HEARTH_TRUSTED_PROXIES"):
        Settings.from_env({"HEARTH_TRUSTED_PROXIES": "10.0.0.0/8, proxy.local"})


async def create(server, source: str, forwarded: str | None = None) -> int:
    extra = {"x-forwarded-for": forwarded} if forwarded else {}
    async with http_client(server.http, source) as http:
        response = await http.post("/api/rooms", json={}, headers=extra)
    return response.status_code


async def test_forged_header_from_an_untrusted_peer_changes_nothing(server) -> None:
    """Ten rooms from one address, each with another forged X-Forwarded-For: the 11th is 429."""
    for n in range(10):
        assert await create(server, "127.0.0.2", f"198.51.100.{n}") == 201
    assert await create(server, "127.0.0.2", "198.51.100.99") == 429
    assert await create(server, "127.0.0.3") == 201  # another address is served


async def test_forged_header_from_loopback_is_not_believed(server) -> None:
    """127.0.0.1 is the peer uvicorn trusts by default (``forwarded_allow_ips``): Hearth turns
    uvicorn's proxy headers off, so from there too the header is only a header."""
    for n in range(10):
        assert await create(server, "127.0.0.1", f"198.51.100.{n}") == 201
    assert await create(server, "127.0.0.1", "198.51.100.99") == 429
    assert await create(server, "127.0.0.2", "198.51.100.99") == 201  # another address is served


async def test_header_from_a_trusted_proxy_is_believed(start_server) -> None:
    """Behind a trusted proxy each forwarded client has its own limit, even a forged chain."""
    server = await start_server(trusted_proxies=TrustedProxies.parse("127.0.0.5"))
    for n in range(10):  # one client behind the proxy, who also forges a left-hand hop
        assert await create(server, "127.0.0.5", f"6.6.6.{n}, 198.51.100.1") == 201
    assert await create(server, "127.0.0.5", "198.51.100.1") == 429
    assert await create(server, "127.0.0.5", "198.51.100.2") == 201
    # The same header from a peer that is not the proxy is that peer's own request.
    assert await create(server, "127.0.0.6", "198.51.100.2") == 201


async def test_chain_of_trusted_hops(start_server) -> None:
    """Load balancer 127.0.0.8 behind proxy 127.0.0.7: the client left of both is counted."""
    trusted = TrustedProxies.parse("127.0.0.7, 127.0.0.8")
    server = await start_server(trusted_proxies=trusted)
    for _ in range(10):
        assert await create(server, "127.0.0.7", "198.51.100.3, 127.0.0.8") == 201
    assert await create(server, "127.0.0.7", "198.51.100.3, 127.0.0.8") == 429
    assert await create(server, "127.0.0.7", "198.51.100.4, 127.0.0.8") == 201


async def test_removed_member_cannot_return_with_a_forged_header(server) -> None:
    """A removed participant's X-Forwarded-For does not make them someone else."""
    room = await server.room()
    facilitator = await server.client(source="127.0.0.2")
    await facilitator.join(room["room"], key=room["facilitator_key"])
    removed = await server.client(source="127.0.0.3")
    await removed.join(room["room"])
    await facilitator.request({"t": "remove", "pid": removed.pid})
    assert await removed.closed() == 4001
    back = await Client.open(
        server.ws, source="127.0.0.3", additional_headers={"X-Forwarded-For": "198.51.100.8"}
    )
    assert (await back.join(room["room"]))["code"] == "banned"
    other = await server.client(source="127.0.0.4")
    assert (await other.join(room["room"]))["t"] == "welcome"


async def test_a_ban_keys_on_the_address_at_removal(server) -> None:
    """Joined from one address and resumed from another: the removal bans where the member is
    at that moment (Part 2), and the address they joined from is free again."""
    room = await server.room()
    facilitator = await server.client(source="127.0.0.2")
    await facilitator.join(room["room"], key=room["facilitator_key"])
    first = await server.client(source="127.0.0.3")
    welcome = await first.join(room["room"])
    await first.close()
    moved = await server.client(source="127.0.0.4")
    assert (await moved.join(room["room"], resume=welcome["resume"]))["t"] == "welcome"
    assert (await facilitator.request({"t": "remove", "pid": moved.pid}))["t"] == "ack"
    assert await moved.closed() == 4001
    again = await server.client(source="127.0.0.4")
    assert (await again.join(room["room"]))["code"] == "banned"
    fresh = await server.client(source="127.0.0.3")
    assert (await fresh.join(room["room"]))["t"] == "welcome"
