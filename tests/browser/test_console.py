"""The pages' consoles stay clean: no error logged, the favicon's included (issue 12)."""

from __future__ import annotations

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

pytestmark = pytest.mark.browser


def watched(page: Page) -> list[str]:
    """Collect what ``page`` logs at error level, and every failed or refused request."""
    errors: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"console: {message.text} at {message.location}")

    page.on("console", console)
    page.on("requestfailed", lambda request: errors.append(f"failed: {request.url}"))
    page.on(
        "response",
        lambda response: (
            errors.append(f"{response.status}: {response.url}") if response.status >= 400 else None
        ),
    )
    return errors


def test_start_and_room_pages_log_no_errors(server, new_page, ui):
    """The start page, a room's join form and a joined room (talking) log no console error and
    no request of theirs fails; /favicon.ico answers 204, not 404."""
    room = server.create_room("Quiet console", "Be kind.")
    page = new_page()
    errors = watched(page)
    page.goto(server.http + "/")
    # Headless Chromium does not fetch a favicon by itself (a headed one does, and logged the
    # 404 as an error): ask for it from the page, as the browser would.
    assert page.evaluate("fetch('/favicon.ico').then((r) => r.status)") == 204
    expect(page.locator("#title")).to_be_visible()
    page.goto(server.http + room["join_url"])
    expect(page.locator("#join-view")).to_be_visible()
    ui.join(page, server.http + room["join_url"], "Wren")
    ui.say(page, "a quiet hello")
    expect(ui.messages(page, "a quiet hello")).to_have_count(1)
    assert errors == []
