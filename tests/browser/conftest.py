"""Fixtures for the browser tests: a real Hearth server subprocess, a TCP proxy that can cut
connections, and the system Chromium driven by Playwright's sync API.

The tests never run ``playwright install``: they use the Debian ``chromium`` package
(``/usr/bin/chromium``, or ``$HEARTH_CHROMIUM``) and fail with a clear message when it is missing.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    expect,
    sync_playwright,
)

from tests.ports import Listening, free_port
from tests.process import ServerProcess
from tests.timing import WAIT

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("HEARTH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
LOGS = REPO / "test-artifacts" / "logs"

# Playwright counts in milliseconds; every wait comes from tests/timing.py's one scale.
TIMEOUT_MS = int(2 * WAIT * 1000)
SERVER_ARGS = ("--resume-grace", "30", "--join-timeout", "30", "--rate", "100", "--burst", "200")

expect.set_options(timeout=TIMEOUT_MS)


class CuttableProxy(Listening):
    """A TCP proxy in a thread; ``cut()`` drops every connection like a network loss and
    refuses new ones until ``mend()``. The browser then sees close code 1006."""

    def __init__(self, target_port: int, port: int) -> None:
        self.target_port = target_port
        self.port = port
        self.refusing = False
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.listener = socket.create_server(("127.0.0.1", port))
        self.running = True
        self.thread = threading.Thread(target=self.accept_loop, daemon=True)
        self.thread.start()

    def accept_loop(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=WAIT)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, upstream))
            threading.Thread(target=self.pump, args=(client, upstream), daemon=True).start()

    def pump(self, client: socket.socket, upstream: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        try:
            while True:
                for key, _ in selector.select(timeout=0.5):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()

    def cut(self) -> None:
        self.refusing = True
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def mend(self) -> None:
        self.refusing = False

    def close(self) -> None:
        self.running = False
        self.cut()
        self.listener.close()


def server_process(name: str, *extra: str, port: int | None = None) -> ServerProcess:
    """A server process for the browser tests, its output in test-artifacts/logs/."""
    port = port or free_port()
    return ServerProcess(*SERVER_ARGS, *extra, port=port, output=LOGS / f"{name}-{port}.log")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """System Chromium. Module-scoped on purpose: while Playwright's sync API is alive it leaves
    its event loop marked as running in this thread, which would break the pytest-asyncio tests
    that run after the browser modules."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: apt-get install chromium (the Debian package)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """One server for the tests that only need rooms (each test makes its own rooms)."""
    with server_process("shared") as hearth:
        yield hearth


@pytest.fixture
def own_server() -> Iterator[Callable[..., ServerProcess]]:
    """A private server for tests that stop or restart it."""
    started: list[ServerProcess] = []

    def make(*extra: str) -> ServerProcess:
        hearth = server_process("own", *extra).start()
        started.append(hearth)
        return hearth

    yield make
    for hearth in started:
        hearth.stop()


@pytest.fixture
def proxied_server() -> Iterator[tuple[ServerProcess, CuttableProxy]]:
    """A private server plus a proxy in front of it whose connections the test can cut."""
    port, proxy_port = free_port(), free_port()
    origins = f"http://127.0.0.1:{port},http://127.0.0.1:{proxy_port}"
    with server_process("proxied", "--allowed-origins", origins, port=port) as hearth:
        proxy = CuttableProxy(port, proxy_port)
        yield hearth, proxy
        proxy.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """Open a page in its own browser context (own sessionStorage, like a separate person)."""
    contexts: list[BrowserContext] = []

    def make(**options: Any) -> Page:
        options.setdefault("viewport", {"width": 1280, "height": 800})
        context = browser.new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    errors: list[str] = []
    yield make
    for context in contexts:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


class Ui:
    """Steps a person takes on the room page, shared by the tests (handed out by ``ui``)."""

    @staticmethod
    def join(page: Page, url: str, name: str | None = None, *, agree: bool = True) -> None:
        """Open a room link, fill the join form and wait until connected."""
        page.goto(url)
        expect(page.locator("#join-view")).to_be_visible()
        if name:
            page.fill("#name", name)
        if agree and page.locator("#agree").is_visible():
            page.check("#agree")
        page.click("#join-btn")
        expect(page.locator("#status")).to_have_attribute("data-state", "open")
        expect(page.locator("#chat-view")).to_be_visible()

    @staticmethod
    def say(page: Page, text: str) -> None:
        """Type a message into the composer and send it with Enter."""
        page.fill("#composer-text", text)
        page.press("#composer-text", "Enter")
        expect(page.locator("#composer-text")).to_have_value("")

    @staticmethod
    def try_say(page: Page, text: str) -> None:
        """Send a message that the server will refuse (the text comes back to the composer)."""
        page.fill("#composer-text", text)
        page.press("#composer-text", "Enter")

    @staticmethod
    def send_to(page: Page, name: str) -> None:
        """Choose the private line to ``name`` in the composer's "Send to" menu (the option's
        text isolates the name with U+2068…U+2069, so it is matched by content)."""
        value = page.locator("#to option", has_text=name).get_attribute("value")
        assert value, f"no private line to {name}"
        page.select_option("#to", value)

    @staticmethod
    def messages(page: Page, text: str) -> Locator:
        """Room messages whose text is exactly ``text``."""
        exact = re.compile(f"^{re.escape(text)}$")
        return page.locator("#messages li.msg").filter(
            has=page.locator(".msg-text", has_text=exact)
        )

    @staticmethod
    def member(page: Page, name: str) -> Locator:
        """The member-list entry of ``name``."""
        return page.locator("#members li.member").filter(has_text=name)


@pytest.fixture
def screenshots() -> Path:
    """Where screenshots go: test-artifacts/screenshots/ at the repository root."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def ui() -> Ui:
    return Ui()
