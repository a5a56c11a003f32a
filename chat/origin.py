"""Which Host names and browser origins the server answers (protocol §2 and §11); stdlib only.

Origins are compared as (lower-cased scheme, lower-cased host, port), the default port filled
in, so ``https://Chat.Example.org`` and ``https://chat.example.org:443`` are one origin.

The Host header is what a DNS-rebinding page controls: it points a name of its own at the
server's address, and the browser then calls that name "same origin". So the server keeps a
list of hosts it knows: the loopback names when it listens on loopback, plus the host of
``--public-url``. With ``--public-url`` set, a request naming any other Host is refused with
400. Without it, a server listening on loopback still refuses a WebSocket from a page whose
own origin is an unknown host (the default Origin check trusts the server's own origin only
for a known Host), and a server listening on a non-loopback address knows every host, so a
platform deploy works with no setting, and says at start that ``--public-url`` should be set.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
LOOPBACK_NAMES = frozenset({"localhost"})


class Origin(NamedTuple):
    """A web origin, normalised: lower-case scheme and host, explicit port."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if DEFAULT_PORTS.get(self.scheme) == self.port:
            return f"{self.scheme}://{host}"
        return f"{self.scheme}://{host}:{self.port}"


def parse_origin(text: str, *, strict: bool = False) -> Origin | None:
    """An ``Origin`` header value (or a configured origin) in normal form.

    Args:
        text: ``scheme://host[:port]``; ``null`` and anything unparsable give None.
        strict: refuse a path, query, fragment or user part (for configured values) instead
            of ignoring it.

    Raises:
        ValueError: only when ``strict``: the value is not an origin; the message says why.
    """
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    bad = (
        scheme not in DEFAULT_PORTS
        or not parts.hostname
        or port == -1
        or (strict and (parts.path not in ("", "/") or parts.query or parts.fragment))
        or (strict and (parts.username is not None or parts.password is not None))
    )
    if bad:
        if strict:
            raise ValueError(f"{text!r} is not an origin such as https://chat.example.org")
        return None
    return Origin(scheme, _host_name(parts.hostname or ""), port or DEFAULT_PORTS[scheme])


def parse_host(header: str | None) -> tuple[str, int | None] | None:
    """A ``Host`` header as (lower-cased name, port or None); None when it is unusable."""
    if not header:
        return None
    parts = urlsplit("//" + header.strip())
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.path or parts.query or parts.username is not None:
        return None
    return _host_name(parts.hostname), port


def is_loopback_host(name: str) -> bool:
    """Whether ``name`` (a host name or address literal) means this machine's loopback."""
    name = _host_name(name)
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class SiteRules:
    """The Host and Origin checks for one deployment.

    Args:
        listen_host: ``--host``; loopback or not decides the default known hosts.
        public_url: ``--public-url`` or None.
        allowed_origins: ``--allowed-origins`` in normal form (empty: the server's own).
    """

    listen_host: str
    public_url: str | None = None
    allowed_origins: frozenset[Origin] = frozenset()

    @property
    def public_origin(self) -> Origin | None:
        return parse_origin(self.public_url) if self.public_url else None

    @property
    def knows_every_host(self) -> bool:
        """Listening on a non-loopback address without ``--public-url``: a platform deploy
        that works with no setting, and should be told to set one."""
        return self.public_url is None and not is_loopback_host(self.listen_host)

    def host_known(self, header: str | None) -> bool:
        if self.knows_every_host:
            return True
        host = parse_host(header)
        if host is None:
            return False
        name = host[0]
        public = self.public_origin
        if public is not None and name == public.host:
            return True
        return is_loopback_host(self.listen_host) and is_loopback_host(name)

    def host_refused(self, header: str | None) -> bool:
        """§11: with ``--public-url`` set, a request naming any other Host gets 400."""
        return self.public_url is not None and not self.host_known(header)

    def origin_allowed(self, origin_header: str | None, host_header: str | None) -> bool:
        """§2 and §11: no Origin is a non-browser client; a present one must be allowed.

        With ``--allowed-origins``, exactly those. Otherwise the server's own origin: the
        ``--public-url`` origin, or the origin the request's own Host names, but the latter
        only when that Host is known (and, with ``--public-url`` set, a loopback name).
        """
        if origin_header is None:
            return True
        origin = parse_origin(origin_header)
        if origin is None:
            return False
        if self.allowed_origins:
            return origin in self.allowed_origins
        if origin == self.public_origin:
            return True
        if not self.host_known(host_header):
            return False
        host = parse_host(host_header)
        if host is None:
            return False
        name, port = host
        if self.public_url is not None and not is_loopback_host(name):
            return False  # the public name's one origin is the public URL's (scheme included)
        return origin.host == name and origin.port == (port or DEFAULT_PORTS[origin.scheme])


def _host_name(name: str) -> str:
    # Host names are case-insensitive and may carry the root's trailing dot.
    return name.strip().lower().rstrip(".").strip("[]")
