"""Fixtures for the browser tests: a real Hearth server subprocess, a TCP proxy that can cut
connections, and the system Chromium driven by Playwright's sync API.

The tests never run ``playwright install``: they use the Debian ``chromium`` package
(``/usr/bin/chromium``, or ``$HEARTH_CHROMIUM``) and fail with a clear message when it is missing.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
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
ROOM_SOURCES = itertools.count()
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
LOGS = REPO / "test-artifacts" / "logs"

# One scale for every wait (style.md §5): a hang fails in seconds.
SECOND_MS = 1000
TIMEOUT_MS = 10 * SECOND_MS
START_TIMEOUT_S = 20.0

expect.set_options(timeout=TIMEOUT_MS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class HearthServer:
    """``python -m chat serve`` as a subprocess on a fixed port, restartable on that port."""

    def __init__(self, port: int, *extra: str, name: str = "server") -> None:
        self.port = port
        self.extra = list(extra)
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "chat",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--resume-grace",
            "30",
            "--join-timeout",
            "30",
            "--rate",
            "100",
            "--burst",
            "200",
            *self.extra,
        ]

    def start(self) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        log = (LOGS / f"{self.name}-{self.port}-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            self.command(),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"the server exited with {self.process.returncode}; see {log.name} in {LOGS}"
                )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.base_url}/healthz", timeout=1) as answer,
            ):
                if answer.status == 200:
                    return
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"the server did not answer /healthz within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_room(
        self, title: str = "Evening circle", rules: str = "", **settings: Any
    ) -> dict[str, Any]:
        """Create a room over HTTP (protocol §3) and return the 201 answer."""
        body: dict[str, Any] = {"title": title, "rules": rules}
        if settings:
            body["settings"] = settings
        # Each room from the next loopback address: one address may create ten rooms a
        # minute (protocol §11), and the suite makes more than that.
        source = f"127.0.0.{10 + next(ROOM_SOURCES) % 200}"
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=5, source_address=(source, 0)
        )
        try:
            conn.request(
                "POST",
                "/api/rooms",
                body=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            answer = conn.getresponse()
            assert answer.status == 201, answer.read()
            room: dict[str, Any] = json.load(answer)
            return room
        finally:
            conn.close()


class CuttableProxy:
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

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
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
def server() -> Iterator[HearthServer]:
    """One server for the tests that only need rooms (each test makes its own rooms)."""
    hearth = HearthServer(free_port(), name="shared")
    hearth.start()
    yield hearth
    hearth.stop()


@pytest.fixture
def own_server() -> Iterator[Callable[..., HearthServer]]:
    """A private server for tests that stop or restart it."""
    started: list[HearthServer] = []

    def make(*extra: str) -> HearthServer:
        hearth = HearthServer(free_port(), *extra, name="own")
        hearth.start()
        started.append(hearth)
        return hearth

    yield make
    for hearth in started:
        hearth.stop()


@pytest.fixture
def proxied_server() -> Iterator[tuple[HearthServer, CuttableProxy]]:
    """A private server plus a proxy in front of it whose connections the test can cut."""
    port, proxy_port = free_port(), free_port()
    origins = f"http://127.0.0.1:{port},http://127.0.0.1:{proxy_port}"
    hearth = HearthServer(port, "--allowed-origins", origins, name="proxied")
    hearth.start()
    proxy = CuttableProxy(port, proxy_port)
    yield hearth, proxy
    proxy.close()
    hearth.stop()


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
