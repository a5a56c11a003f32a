"""The one place that decides a connection's client address (protocol §11); stdlib only.

The client address is the TCP peer, unless that peer is one of the operator's
``--trusted-proxies``; then it is the right-most ``X-Forwarded-For`` entry that is not itself
a trusted proxy. Every proxy appends the address it saw to the right, so entries to the left
of the last trusted hop were written by the client and can say anything: only the entry a
trusted proxy appended is believed. uvicorn is started with ``proxy_headers=False`` so that it
never rewrites the peer itself (its default believes the header from loopback).

Addresses decide bans and per-address limits, never anything shown or logged. IPv6 clients
usually hold a whole /64, so the limits count them per /64 (:func:`limit_key`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

FORWARDED_FOR = b"x-forwarded-for"
MAX_HOPS = 32  # entries of X-Forwarded-For looked at, from the right; a longer chain is junk
IPV6_LIMIT_PREFIX = 64


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The operator's ``--trusted-proxies``: addresses and CIDR blocks (default: none)."""

    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, raw: str) -> TrustedProxies:
        """``"10.0.0.0/8, 192.0.2.7, ::1"`` into networks.

        Raises:
            ValueError: an entry is neither an address nor a CIDR block.
        """
        networks: list[IPNetwork] = []
        for entry in (part.strip() for part in raw.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is not an address or CIDR block") from None
        return cls(tuple(networks))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: IPAddress | None) -> bool:
        if address is None:
            return False
        address = _unmapped(address)
        return any(address in network for network in self.networks)


def client_address(
    peer: str | None, headers: Iterable[tuple[bytes, bytes]], trusted: TrustedProxies
) -> str:
    """The client address of one request or handshake.

    Args:
        peer: the TCP peer's host as the server saw it (ASGI ``scope["client"][0]``).
        headers: the request's raw headers (ASGI ``scope["headers"]``), names lower-case.
        trusted: the trusted proxies.

    Returns:
        The address in canonical text form ("" when the server gave no peer).
    """
    peer_ip = parse_ip(peer or "")
    if peer_ip is None:
        return peer or ""
    if not trusted.trusts(peer_ip):
        return str(_unmapped(peer_ip))
    hops = _forwarded_for(headers)
    if not hops:
        return str(_unmapped(peer_ip))
    leftmost: IPAddress | None = None
    for entry in reversed(hops[-MAX_HOPS:]):
        hop = parse_ip(entry)
        if hop is None:
            # A trusted proxy passed on something that is no address: there is no client
            # address to believe beyond it, so the last trusted hop answers for it.
            return str(_unmapped(leftmost or peer_ip))
        if not trusted.trusts(hop):
            return str(_unmapped(hop))
        leftmost = hop
    # Every hop is trusted (a request from inside the proxy tier): the left-most one.
    return str(_unmapped(leftmost or peer_ip))


def limit_key(address: str) -> str:
    """What per-address limits count: the address, or its /64 for IPv6."""
    ip = parse_ip(address)
    if isinstance(ip, ipaddress.IPv6Address):
        network = ipaddress.IPv6Network((int(ip), IPV6_LIMIT_PREFIX), strict=False)
        return str(network)
    return address


def parse_ip(text: str) -> IPAddress | None:
    """An address from a peer or header entry: ``1.2.3.4``, ``1.2.3.4:5``, ``[::1]:5``, ``::1``.

    Returns None for anything else (a hostname, ``unknown``, an obfuscated identifier).
    """
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has two or more
        text = text.partition(":")[0]
    text = text.partition("%")[0]  # an IPv6 zone id names an interface, not a client
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _forwarded_for(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    # Several X-Forwarded-For headers form one list, in order (RFC 9110 §5.3).
    hops: list[str] = []
    for name, value in headers:
        if name == FORWARDED_FOR:
            hops.extend(part for part in value.decode("latin-1").split(",") if part.strip())
    return hops


def _unmapped(address: IPAddress) -> IPAddress:
    # An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d; it is the IPv4 client.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
