"""The start page: creating a room (with and without an operator token) and its two links."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_create_a_room_and_open_it_as_facilitator(server, new_page, screenshots):
    """Creating a room shows both links; the facilitator link opens the room with the tools."""
    page = new_page()
    page.goto(server.http + "/")
    page.fill("#title", "Thursday circle")
    page.get_by_role("button", name="Use suggested rules").click()
    page.get_by_role("button", name="Create the room").click()
    expect(page.locator("#result")).to_be_visible()
    join_link = page.locator("#join-link").input_value()
    fac_link = page.locator("#fac-link").input_value()
    assert re.fullmatch(re.escape(server.http) + r"/r/[A-Za-z0-9_-]+", join_link)
    assert fac_link.startswith(join_link + "#key=")
    page.screenshot(path=str(screenshots / "home-created-desktop.png"), full_page=True)

    page.get_by_role("link", name="Open the room as facilitator").click()
    expect(page).to_have_url(join_link)  # the key was read and removed from the address bar
    expect(page.locator("#room-title")).to_have_text("Thursday circle")
    expect(page.locator("#facilitator-note")).to_be_visible()
    page.check("#agree")
    page.click("#join-btn")
    expect(page.locator("#facilitator-panel")).to_be_visible()
    assert page.evaluate("localStorage.length") == 0


def test_operator_token_is_asked_for_when_needed(own_server, new_page):
    """A server with an operator token answers 401; the page asks for the token and succeeds."""
    hearth = own_server("--operator-token", "letmein")
    page = new_page()
    page.goto(hearth.http + "/")
    page.fill("#title", "Guarded")
    page.get_by_role("button", name="Create the room").click()
    expect(page.locator("#token-row")).to_be_visible()
    expect(page.locator("#create-error")).to_contain_text("needs an operator token")
    page.fill("#token", "wrong")
    page.get_by_role("button", name="Create the room").click()
    expect(page.locator("#create-error")).to_contain_text("wasn't accepted")
    page.fill("#token", "letmein")
    page.get_by_role("button", name="Create the room").click()
    expect(page.locator("#result")).to_be_visible()
    assert page.evaluate("document.cookie") == ""


def test_unknown_room_link_explains(server, new_page):
    """A link to a room that does not exist says so plainly instead of a join form."""
    page = new_page()
    page.goto(server.http + "/r/doesNotExist123")
    expect(page.locator("#ended-text")).to_contain_text("This room doesn't exist any more")
    expect(page.locator("#join-view")).to_be_hidden()
