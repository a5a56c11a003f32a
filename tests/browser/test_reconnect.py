"""Losing the connection: the page says so, resumes with `since`, and fills the gap once."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import WebSocket, expect

from tests.browser.conftest import TIMEOUT_MS

pytestmark = pytest.mark.browser

RECONNECT_TIMEOUT_MS = 2 * TIMEOUT_MS  # a backoff or two, then the resume


def test_messages_sent_during_an_outage_arrive_once(proxied_server, new_page, ui):
    """A participant whose socket was cut gets what was said meanwhile, once, after resuming."""
    hearth, proxy = proxied_server
    room = hearth.create_room("Outage")
    alice = new_page()
    joins: list[dict] = []

    def watch(ws: WebSocket) -> None:
        ws.on(
            "framesent",
            lambda payload: joins.extend(
                m for m in [json.loads(payload)] if isinstance(m, dict) and m.get("t") == "join"
            ),
        )

    alice.on("websocket", watch)
    ui.join(alice, proxy.http + room["join_url"], "Alice")
    bob = new_page()
    ui.join(bob, hearth.http + room["join_url"], "Bob")  # directly: never cut
    ui.say(bob, "one")
    expect(ui.messages(alice, "one")).to_have_count(1)

    proxy.cut()
    expect(alice.locator("#status")).to_have_attribute("data-state", "reconnecting")
    ui.say(bob, "two")
    ui.say(bob, "three")
    expect(ui.messages(bob, "three")).to_have_count(1)
    expect(alice.locator("#messages")).not_to_contain_text("two")
    # The others see no leave/join churn while Alice is within the resume grace.
    expect(bob.locator("#people-count")).to_have_text("2")

    proxy.mend()
    expect(alice.locator("#status")).to_have_attribute(
        "data-state", "open", timeout=RECONNECT_TIMEOUT_MS
    )
    for text in ("one", "two", "three"):
        expect(ui.messages(alice, text)).to_have_count(1)
    resumed = joins[-1]
    assert "resume" in resumed and resumed["since"] == 1, resumed  # "one" was seq 1
    assert "resume" not in joins[0]
    ui.say(bob, "four")
    expect(ui.messages(alice, "four")).to_have_count(1)
    assert alice.locator("#messages li.msg").count() == 4
    expect(bob.locator("#messages")).not_to_contain_text("Alice left")


def test_server_restart_shows_reconnecting_then_explains(own_server, new_page, ui, screenshots):
    """A restart (in-memory state lost) shows "reconnecting", then that the room is gone."""
    hearth = own_server()
    room = hearth.create_room("Restart")
    alice = new_page()
    ui.join(alice, hearth.http + room["join_url"], "Alice")
    ui.say(alice, "before the restart")
    expect(ui.messages(alice, "before the restart")).to_have_count(1)

    hearth.stop()
    expect(alice.locator("#status")).to_have_attribute("data-state", "reconnecting")
    expect(alice.locator("#status-text")).to_contain_text("Reconnecting")
    alice.screenshot(path=str(screenshots / "room-reconnecting.png"))
    hearth.start()
    expect(alice.locator("#status")).to_have_attribute(
        "data-state", "closed", timeout=RECONNECT_TIMEOUT_MS
    )
    expect(alice.locator("#ended-text")).to_contain_text("This room doesn't exist any more")
    # What was said stays readable until the tab closes, but cannot be added to.
    expect(ui.messages(alice, "before the restart")).to_have_count(1)
    expect(alice.locator("#composer-text")).to_be_disabled()
    alice.screenshot(path=str(screenshots / "room-ended.png"))


def test_restart_on_redis_reconnects_and_catches_up(own_server, new_page, ui):
    """With Redis, a restarted server keeps the room: the page resumes and catches up once."""
    from tests.redis_server import running_redis

    with running_redis() as redis:
        hearth = own_server("--redis-url", redis.url)
        room = hearth.create_room("Restart on Redis")
        alice, bob = new_page(), new_page()
        ui.join(alice, hearth.http + room["join_url"], "Alice")
        ui.join(bob, hearth.http + room["join_url"], "Bob")
        ui.say(bob, "before the restart")
        expect(ui.messages(alice, "before the restart")).to_have_count(1)

        hearth.stop()  # SIGTERM: both pages are closed with 1012, which means "reconnect"
        expect(alice.locator("#status")).to_have_attribute("data-state", "reconnecting")
        hearth.start()
        for page in (alice, bob):
            expect(page.locator("#status")).to_have_attribute(
                "data-state", "open", timeout=RECONNECT_TIMEOUT_MS
            )
        ui.say(bob, "after the restart")
        for text in ("before the restart", "after the restart"):
            expect(ui.messages(alice, text)).to_have_count(1)
        expect(alice.locator("#messages")).not_to_contain_text("Bob left")
        expect(alice.locator("#people-count")).to_have_text("2")
