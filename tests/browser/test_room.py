"""The room page in a real Chromium against a real server: chatting, facilitation, safety."""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import expect
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.timing import SCALE, WAIT

pytestmark = pytest.mark.browser

RULES = "Be kind.\nWhat is said here stays here."


def test_two_participants_and_a_facilitator_chat(server, new_page, ui):
    """Three people in three browser contexts see each other's messages, names and roles."""
    room = server.create_room("Tuesday circle", RULES)
    facilitator, alice, bob = new_page(), new_page(), new_page()

    ui.join(facilitator, server.http + room["facilitator_url"], "Sam")
    expect(facilitator).to_have_url(server.http + room["join_url"])  # the key left the address bar
    ui.join(alice, server.http + room["join_url"], "Alice")
    ui.join(bob, server.http + room["join_url"])  # keeps the server's suggested name

    expect(alice.locator("#people-count")).to_have_text("3")
    expect(ui.member(alice, "Sam").locator(".badge")).to_have_text("Facilitator")
    expect(alice.locator("#room-title")).to_have_text("Tuesday circle")

    ui.say(alice, "Hello, everyone")
    for page in (facilitator, alice, bob):
        expect(ui.messages(page, "Hello, everyone")).to_have_count(1)
    expect(ui.messages(alice, "Hello, everyone")).to_have_class(re.compile(r"\bown\b"))
    expect(ui.messages(bob, "Hello, everyone")).not_to_have_class(re.compile(r"\bown\b"))
    expect(ui.messages(bob, "Hello, everyone").locator(".msg-name")).to_have_text("Alice")

    ui.say(facilitator, "Welcome, take your time")
    expect(ui.messages(bob, "Welcome, take your time").locator(".badge")).to_have_text(
        "Facilitator"
    )

    bob.fill("#composer-text", "I am typi")
    bob.type("#composer-text", "ng")
    expect(alice.locator("#typing")).to_contain_text("is typing")

    # A private line from a participant to the facilitator reaches only the facilitator.
    ui.send_to(alice, "Sam")
    ui.say(alice, "Can I talk to you privately?")
    expect(
        facilitator.locator("li.whisper", has_text="Can I talk to you privately?")
    ).to_have_count(1)
    expect(alice.locator("li.whisper", has_text="Can I talk to you privately?")).to_have_count(1)
    expect(bob.locator("#messages")).not_to_contain_text("Can I talk to you privately?")
    # Bob can only whisper to facilitators: Alice is not among his private choices.
    expect(bob.locator("#to option", has_text="Alice")).to_have_count(0)


def test_facilitator_mutes_deletes_and_removes(server, new_page, ui, screenshots):
    """A facilitator's mute, delete and remove reach everyone in plain words."""
    room = server.create_room("Facilitated", RULES)
    facilitator, alice = new_page(), new_page()
    bob = new_page(viewport={"width": 375, "height": 740})
    ui.join(facilitator, server.http + room["facilitator_url"], "Sam")
    ui.join(alice, server.http + room["join_url"], "Alice")
    ui.join(bob, server.http + room["join_url"], "Bob")

    # Mute Bob for 5 minutes.
    ui.member(facilitator, "Bob").get_by_role("button", name="Actions for Bob").click()
    facilitator.get_by_role("button", name="Mute for 5 minutes").click()
    expect(bob.locator("#messages")).to_contain_text("You have been muted by a facilitator until")
    expect(alice.locator("#messages")).to_contain_text("Bob has been muted")
    expect(ui.member(alice, "Bob")).to_contain_text("muted until")
    ui.try_say(bob, "Am I muted?")
    expect(bob.locator("#composer-note")).to_contain_text("You're muted")
    expect(alice.locator("#messages")).not_to_contain_text("Am I muted?")

    # Unmute, then delete one of Alice's messages.
    ui.member(facilitator, "Bob").get_by_role("button", name="Actions for Bob").click()
    facilitator.get_by_role("button", name="Unmute").click()
    expect(bob.locator("#messages")).to_contain_text("You can send messages again.")
    ui.say(alice, "Something to delete")
    expect(ui.messages(facilitator, "Something to delete")).to_have_count(1)
    ui.messages(facilitator, "Something to delete").get_by_role(
        "button", name="Delete message from Alice"
    ).click()
    facilitator.locator("#confirm-ok").click()
    for page in (facilitator, alice, bob):
        expect(ui.messages(page, "Something to delete")).to_have_count(0)
        expect(page.locator("#messages li.deleted")).to_have_count(1)
        expect(page.locator("#messages li.deleted")).to_have_text(
            "This message was removed by a facilitator."
        )

    # Remove Bob, with a reason.
    ui.member(facilitator, "Bob").get_by_role("button", name="Actions for Bob").click()
    facilitator.get_by_role("button", name="Remove from the room…").click()
    facilitator.fill("#confirm-reason", "Please take a break")
    facilitator.locator("#confirm-ok").click()
    expect(bob.locator("#ended")).to_be_visible()
    expect(bob.locator("#ended-text")).to_contain_text(
        "A facilitator has removed you from this room."
    )
    expect(bob.locator("#ended-text")).to_contain_text("Please take a break")
    bob.screenshot(path=str(screenshots / "room-removed-phone.png"))
    expect(bob.locator("#status")).to_have_attribute("data-state", "closed")
    expect(alice.locator("#messages")).to_contain_text("Bob was asked to leave by a facilitator.")
    expect(alice.locator("#people-count")).to_have_text("2")
    bob.wait_for_timeout(1500 * SCALE)  # a window to show: a removed person does not reconnect
    expect(bob.locator("#status")).to_have_attribute("data-state", "closed")


def test_markup_in_a_message_is_shown_as_text(server, new_page, ui):
    """A message that looks like HTML is displayed literally and runs nothing."""
    room = server.create_room("Safe rendering")
    alice, bob = new_page(), new_page()
    dialogs: list[str] = []
    for page in (alice, bob):
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    ui.join(alice, server.http + room["join_url"], "Alice")
    ui.join(bob, server.http + room["join_url"], "Bob")

    payload = "<img src=x onerror=alert(1)>"
    ui.say(alice, payload)
    ui.say(alice, '<script>alert("x")</script><b>bold</b>')
    expect(ui.messages(bob, payload)).to_have_count(1)
    expect(bob.locator("#messages")).to_contain_text('<script>alert("x")</script><b>bold</b>')
    bob.wait_for_timeout(500 * SCALE)  # a window to show: no handler runs, no dialog opens
    for page in (alice, bob):
        assert page.locator("#messages img").count() == 0
        assert page.locator("#messages script, #messages b").count() == 0
    assert dialogs == []


def test_quick_exit_leaves_no_way_back(server, new_page, ui):
    """The quick-exit button replaces the room with a neutral page and Back does not return."""
    room = server.create_room("Quick exit")
    page = new_page()
    page.context.route(
        "https://www.bbc.co.uk/**",
        lambda route: route.fulfill(
            status=200, content_type="text/html", body="<title>Weather</title><p>Weather</p>"
        ),
    )
    ui.join(page, server.http + room["join_url"], "Alice")
    page.select_option("#lang-select", "es")
    # Something to forget: the seat (resume token) and the language choice.
    assert page.evaluate("sessionStorage.length") >= 2
    length_before = page.evaluate("history.length")

    page.locator("#exit-btn").click()
    page.wait_for_url("https://www.bbc.co.uk/weather")
    assert page.evaluate("history.length") == length_before  # replaced, not added
    page.go_back()
    assert "/r/" not in page.url
    # sessionStorage is per tab and origin: look at Hearth's, in the same tab.
    page.goto(server.http + "/")
    expect(page.locator("#exit-btn")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_quick_exit_keyboard_shortcuts(server, new_page, ui):
    """Escape twice quickly, or Shift+Escape, leaves at once."""
    room = server.create_room("Quick exit keys")
    for keys in (["Escape", "Escape"], ["Shift+Escape"]):
        page = new_page()
        page.context.route(
            "https://www.bbc.co.uk/**",
            lambda route: route.fulfill(
                status=200, content_type="text/html", body="<p>Weather</p>"
            ),
        )
        ui.join(page, server.http + room["join_url"])
        page.locator("#composer-text").focus()
        for key in keys:
            page.keyboard.press(key)
        page.wait_for_url("https://www.bbc.co.uk/weather")


def test_nothing_is_left_in_browser_storage(server, new_page, ui):
    """After chatting: no localStorage, cookies or IndexedDB, and no message text stored."""
    room = server.create_room("No trace", RULES)
    facilitator, alice = new_page(), new_page()
    ui.join(facilitator, server.http + room["facilitator_url"], "Sam")
    ui.join(alice, server.http + room["join_url"], "Alice")
    ui.say(alice, "a very private sentence")
    expect(ui.messages(facilitator, "a very private sentence")).to_have_count(1)

    for page in (facilitator, alice):
        assert page.evaluate("localStorage.length") == 0
        assert page.evaluate("document.cookie") == ""
        assert page.evaluate("indexedDB.databases().then((dbs) => dbs.length)") == 0
        stored = page.evaluate("JSON.stringify(Object.entries(sessionStorage))")
        assert "a very private sentence" not in stored
        assert page.context.cookies() == []
    # Browser history records titles: the tab title never names the room.
    assert alice.title() == "Hearth"
    # The facilitator key survives a reload through sessionStorage only, never in the URL.
    assert "#key=" not in facilitator.url
    assert room["facilitator_key"] in facilitator.evaluate(
        "JSON.stringify(Object.entries(sessionStorage))"
    )
    facilitator.reload()
    expect(facilitator.locator("#status")).to_have_attribute("data-state", "open")
    expect(facilitator.locator("#facilitator-panel")).to_be_visible()


def test_help_flare_and_report_reach_the_facilitator(server, new_page, ui):
    """The help button shows resources and alerts the facilitator; reports reach the inbox."""
    room = server.create_room("Help")
    facilitator, alice = new_page(), new_page()
    ui.join(facilitator, server.http + room["facilitator_url"], "Sam")
    ui.join(alice, server.http + room["join_url"], "Alice")

    alice.get_by_role("button", name="I need help").click()
    expect(alice.locator("#resources-dialog")).to_be_visible()
    expect(facilitator.locator("#alerts")).to_contain_text("Alice asked for help")
    alice.locator("#resources-dialog").get_by_role("button", name="Close").click()

    ui.say(facilitator, "Report me")
    ui.messages(alice, "Report me").get_by_role("button", name="Report message from Sam").click()
    alice.fill("#report-reason", "testing reports")
    alice.locator("#report-dialog").get_by_role("button", name="Send report").click()
    expect(alice.locator("#messages")).to_contain_text("The facilitators have been told")
    expect(facilitator.locator("#reports-list")).to_contain_text("testing reports")


@pytest.mark.parametrize(("label", "size"), [("phone", (375, 740)), ("desktop", (1280, 800))])
def test_room_screenshots(server, new_page, ui, screenshots, label, size):
    """Screenshots of a lively room at phone and desktop width, in light and dark themes."""
    room = server.create_room("Tuesday evening circle", RULES)
    width, height = size
    facilitator = new_page(viewport={"width": 1280, "height": 800})
    ui.join(facilitator, server.http + room["facilitator_url"], "Sam")
    others = []
    for name in ("Gentle Otter", "مریم"):
        other = new_page()
        ui.join(other, server.http + room["join_url"], name)
        others.append(other)
    for scheme in ("light", "dark"):
        page = new_page(viewport={"width": width, "height": height}, color_scheme=scheme)
        ui.join(page, server.http + room["join_url"])
        ui.say(facilitator, f"Welcome, everyone ({scheme}). Take your time; listening is fine too.")
        ui.say(others[0], "Hi all, first time here. " + "Supercalifragilistic" * 3)
        ui.say(others[1], "سلام به همه")
        ui.say(page, "Glad to be here.")
        expect(ui.messages(page, "Glad to be here.")).to_have_count(1)
        page.screenshot(path=str(screenshots / f"room-{label}-{scheme}.png"))
        facilitator.set_viewport_size({"width": width, "height": height})
        facilitator.emulate_media(color_scheme=scheme)
        facilitator.screenshot(path=str(screenshots / f"room-facilitator-{label}-{scheme}.png"))
        # Nothing wider than the viewport: readable without sideways scrolling.
        assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_facilitator_room_controls(server, new_page, ui):
    """Announce, slow mode, lock and close reach the participants in plain words."""
    room = server.create_room("Controls")
    facilitator, alice = new_page(), new_page()
    ui.join(facilitator, server.http + room["facilitator_url"], "Sam")
    ui.join(alice, server.http + room["join_url"], "Alice")

    facilitator.select_option("#to", label="Everyone, as an announcement")
    ui.say(facilitator, "We start in two minutes")
    expect(ui.messages(alice, "We start in two minutes")).to_have_class(re.compile(r"\bannounce\b"))

    facilitator.select_option("#slow-select", "10")
    expect(alice.locator("#messages")).to_contain_text("Slow mode is on: one message every 10")
    ui.say(alice, "first")
    expect(ui.messages(alice, "first")).to_have_count(1)
    ui.try_say(alice, "second, too soon")
    expect(alice.locator("#composer-note")).to_contain_text("Slow mode is on")
    expect(alice.locator("#composer-text")).to_have_value("second, too soon")  # not lost
    facilitator.select_option("#slow-select", "0")
    expect(alice.locator("#messages")).to_contain_text("Slow mode is off.")

    facilitator.get_by_role("button", name="Lock the room").click()
    expect(alice.locator("#messages")).to_contain_text("The room is now locked")
    latecomer = new_page()
    latecomer.goto(server.http + room["join_url"])
    latecomer.click("#join-btn")
    expect(latecomer.locator("#ended-text")).to_contain_text("This room is locked right now")
    facilitator.get_by_role("button", name="Unlock the room").click()
    expect(alice.locator("#messages")).to_contain_text("The room is open to new people again.")

    facilitator.get_by_role("button", name="Close the session…").click()
    facilitator.locator("#confirm-ok").click()
    for page in (alice, facilitator):
        expect(page.locator("#ended-text")).to_contain_text(
            "The facilitator has closed this session"
        )
        expect(page.locator("#status")).to_have_attribute("data-state", "closed")


def test_knock_room_admits_and_declines(server, new_page, ui):
    """In a knock room a participant waits until a facilitator lets them in or declines."""
    room = server.create_room("Knock", admission="knock")
    facilitator = new_page()
    ui.join(facilitator, server.http + room["facilitator_url"], "Sam")

    alice = new_page()
    alice.goto(server.http + room["join_url"])
    alice.fill("#name", "Alice")
    alice.click("#join-btn")
    expect(alice.locator("#waiting-view")).to_be_visible()
    expect(facilitator.locator("#waiting-list")).to_contain_text("Alice")
    facilitator.get_by_role("button", name="Let in Alice").click()
    expect(alice.locator("#chat-view")).to_be_visible()
    expect(alice.locator("#status")).to_have_attribute("data-state", "open")
    expect(facilitator.locator("#waiting-list")).to_contain_text("No one is waiting.")

    bob = new_page()
    bob.goto(server.http + room["join_url"])
    bob.fill("#name", "Bob")
    bob.click("#join-btn")
    expect(facilitator.locator("#waiting-list")).to_contain_text("Bob")
    facilitator.get_by_role("button", name="Decline Bob").click()
    expect(bob.locator("#ended-text")).to_contain_text("wasn't able to let you in")


def test_keyboard_path_and_live_region(server, new_page, ui):
    """The room works from the keyboard and new messages are spoken by the live region."""
    room = server.create_room("Keyboard", RULES)
    alice, bob = new_page(), new_page()
    ui.join(bob, server.http + room["join_url"], "Bob")

    alice.goto(server.http + room["join_url"])
    expect(alice.locator("#name")).to_be_focused()
    alice.keyboard.type("Alice")
    alice.keyboard.press("Tab")
    expect(alice.locator("#agree")).to_be_focused()
    alice.keyboard.press("Space")
    alice.keyboard.press("Tab")
    expect(alice.locator("#join-btn")).to_be_focused()
    alice.keyboard.press("Enter")
    expect(alice.locator("#composer-text")).to_be_focused()
    alice.keyboard.type("typed with the keyboard")
    alice.keyboard.press("Enter")
    expect(ui.messages(bob, "typed with the keyboard")).to_have_count(1)
    expect(bob.locator("#announcer")).to_contain_text("Alice: typed with the keyboard")
    assert bob.locator("#announcer").get_attribute("aria-live") == "polite"
    # Every form control in the room has an accessible name.
    unnamed = bob.evaluate(
        """[...document.querySelectorAll('button, input, select, textarea')]
             .filter((n) => n.offsetParent !== null)
             .filter((n) => !(n.labels?.length || n.getAttribute('aria-label')
                              || n.textContent.trim()))
             .map((n) => n.id || n.outerHTML)"""
    )
    assert unnamed == []


def test_at_most_300_messages_stay_on_the_page(server, new_page, ui):
    """A long, busy conversation keeps only the latest 300 entries in the DOM, newest last."""
    room = server.create_room("Busy")
    alice = new_page()
    ui.join(alice, server.http + room["join_url"], "Alice")
    ws_url = server.http.replace("http://", "ws://") + "/ws"
    with connect(ws_url, subprotocols=[Subprotocol("hearth.v1.json")]) as talker:
        talker.send(json.dumps({"t": "join", "room": room["room"], "name": "Chatty"}))
        while "welcome" not in talker.recv(timeout=WAIT):
            pass
        for n in range(330):
            talker.send(json.dumps({"t": "say", "text": f"line {n}"}))
            time.sleep(0.012)  # stay under the server's rate limit
        expect(ui.messages(alice, "line 329")).to_have_count(1)
    assert alice.locator("#messages > li").count() <= 300
    expect(ui.messages(alice, "line 0")).to_have_count(0)
    seqs = alice.eval_on_selector_all("#messages li.msg", "(ns) => ns.map((n) => +n.dataset.seq)")
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))


def test_wrong_facilitator_key_is_explained(server, new_page):
    """A facilitator link with a wrong key ends with a plain explanation, not a retry loop."""
    room = server.create_room("Keys")
    page = new_page()
    page.goto(server.http + room["join_url"] + "#key=not-the-key")
    page.click("#join-btn")
    expect(page.locator("#ended-text")).to_contain_text("facilitator link isn't valid")
    expect(page.locator("#status")).to_have_attribute("data-state", "closed")
