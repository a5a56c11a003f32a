"""Host and Origin (protocol §2, §11): DNS rebinding, --public-url, normal-form origins, CSP."""

from __future__ import annotations

import logging

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from chat.guard import build_guard
from chat.origin import Origin, SiteRules, parse_origin
from chat.settings import Settings, SettingsError
from tests.client import Client


def test_origins_in_normal_form() -> None:
    """Scheme and host lower-cased, default ports filled in; junk is no origin."""
    assert parse_origin("HTTPS://Chat.Example.org") == Origin("https", "chat.example.org", 443)
    assert parse_origin("http://chat.example.org:80") == Origin("http", "chat.example.org", 80)
    assert parse_origin("http://[::1]:8000") == Origin("http", "::1", 8000)
    assert str(parse_origin("https://chat.example.org:443")) == "https://chat.example.org"
    for junk in ("null", "chat.example.org", "ftp://x", "http://x:99999", ""):
        assert parse_origin(junk) is None
    with pytest.raises(ValueError):
        parse_origin("https://chat.example.org/path", strict=True)


def test_origin_rules() -> None:
    """Own origin by a known Host; a configured list replaces it; --public-url's origin too."""
    loopback = SiteRules("127.0.0.1")
    assert loopback.origin_allowed(None, "evil.example")  # no Origin: not a browser
    assert loopback.origin_allowed("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert loopback.origin_allowed("http://LOCALHOST:8000", "localhost:8000")
    assert not loopback.origin_allowed("http://127.0.0.1:8001", "127.0.0.1:8000")
    assert not loopback.origin_allowed("null", "127.0.0.1:8000")
    # DNS rebinding: the page's own name points at the server; the Host is unknown.
    assert not loopback.origin_allowed("http://rebind.example:8000", "rebind.example:8000")
    anywhere = SiteRules("0.0.0.0")  # a platform deploy without --public-url knows every host
    assert anywhere.origin_allowed("https://app.example", "app.example")
    assert anywhere.origin_allowed("https://app.example:443", "APP.example:443")
    public = SiteRules("127.0.0.1", public_url="https://chat.example.org")
    assert public.origin_allowed("https://chat.example.org", "127.0.0.1:8000")  # proxy's Host
    assert public.origin_allowed("https://Chat.Example.org:443", "chat.example.org")
    assert not public.origin_allowed("http://chat.example.org", "chat.example.org")
    configured = SiteRules("127.0.0.1", allowed_origins=frozenset({Origin("https", "a.b", 443)}))
    assert configured.origin_allowed("https://A.b:443", "x")
    assert not configured.origin_allowed("http://127.0.0.1:8000", "127.0.0.1:8000")


def test_known_hosts() -> None:
    """Loopback names when listening on loopback, plus --public-url's host; 400 only with it."""
    loopback = SiteRules("127.0.0.1")
    assert loopback.host_known("localhost:8000") and loopback.host_known("[::1]:8000")
    assert not loopback.host_known("rebind.example") and not loopback.host_refused("x")
    public = SiteRules("0.0.0.0", public_url="https://chat.example.org")
    assert public.host_known("chat.example.org") and public.host_known("Chat.Example.org.:443")
    assert public.host_refused("localhost:8000") and public.host_refused(None)
    both = SiteRules("::1", public_url="https://chat.example.org")
    assert both.host_known("localhost") and both.host_known("chat.example.org")


def test_public_url_setting() -> None:
    """--public-url is an origin, in normal form; a path or junk is a one-line error."""
    env = {"HEARTH_PUBLIC_URL": "HTTPS://Chat.Example.org:443/"}
    assert Settings.from_env(env).public_url == "https://chat.example.org"
    for bad in ("chat.example.org", "https://chat.example.org/hearth", "ftp://x"):
        with pytest.raises(SettingsError, match="HEARTH_PUBLIC_URL"):
            Settings.from_env({"HEARTH_PUBLIC_URL": bad})
    origins = Settings.from_env({"HEARTH_ALLOWED_ORIGINS": "https://A.example:443"})
    assert origins.allowed_origins == ("https://a.example",)


async def test_non_loopback_without_public_url_says_so(caplog) -> None:
    """Listening on every address without --public-url: a warning at start."""
    with caplog.at_level(logging.WARNING, logger="hearth.guard"):
        guard = await build_guard(Settings(host="0.0.0.0"))
    assert "--public-url" in caplog.text
    await guard.aclose()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hearth.guard"):
        guard = await build_guard(Settings(host="0.0.0.0", public_url="https://c.example"))
    assert "--public-url" not in caplog.text
    await guard.aclose()


async def handshake(server, host: str, origin: str | None) -> int:
    """The HTTP status of a handshake naming ``host``, sent to the server's own address."""
    extra = {"origin": origin} if origin else {}
    try:
        client = await Client.open(
            f"ws://{host}", host="127.0.0.1", port=server.settings.port, **extra
        )
    except InvalidStatus as refused:
        return refused.response.status_code
    await client.close()
    return 101


async def test_dns_rebinding_page_cannot_connect(server) -> None:
    """A page on a name pointed at the server is refused (403); the real origin is not."""
    port = server.settings.port
    assert await handshake(server, f"rebind.example:{port}", f"http://rebind.example:{port}") == 403
    assert await handshake(server, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}") == 101
    assert await handshake(server, f"localhost:{port}", f"http://localhost:{port}") == 101
    assert await handshake(server, f"rebind.example:{port}", None) == 101  # not a browser


async def test_public_url_refuses_other_hosts(start_server) -> None:
    """With --public-url, HTTP and handshakes naming another Host get 400."""
    server = await start_server(public_url="https://chat.example.org")
    port = server.settings.port
    async with httpx.AsyncClient(base_url=server.http) as http:
        assert (await http.get("/healthz", headers={"host": "rebind.example"})).status_code == 400
        answer = await http.post(
            "/api/rooms", json={}, headers={"host": "rebind.example", "origin": "x"}
        )
        assert answer.status_code == 400
        assert (await http.get("/healthz", headers={"host": "chat.example.org"})).status_code == 200
        assert (await http.get("/healthz")).status_code == 200  # loopback, listening on it
    assert await handshake(server, "rebind.example", "https://chat.example.org") == 400
    assert await handshake(server, "chat.example.org", "https://chat.example.org") == 101
    assert await handshake(server, f"127.0.0.1:{port}", "https://chat.example.org") == 101
    assert await handshake(server, "chat.example.org", "http://chat.example.org") == 403


async def test_configured_origins_compare_in_normal_form(start_server) -> None:
    """--allowed-origins matches whatever the case and with the default port written out."""
    server = await start_server(allowed_origins=("https://Chat.Example.org:443",))
    port = server.settings.port
    assert await handshake(server, f"127.0.0.1:{port}", "https://chat.example.org") == 101
    assert await handshake(server, f"127.0.0.1:{port}", "https://CHAT.example.org:443") == 101
    assert await handshake(server, f"127.0.0.1:{port}", "https://chat.example.org:8443") == 403


async def test_csp_allows_websockets_to_its_own_origin_only(server) -> None:
    """connect-src 'self' and no ws:/wss: wildcard."""
    async with httpx.AsyncClient(base_url=server.http) as http:
        csp = (await http.get("/")).headers["content-security-policy"]
    assert "connect-src 'self';" in csp
    assert "ws:" not in csp and "wss:" not in csp
