"""Session structure (protocol §13) in Chromium against a real server: a round in three
browsers, the strict refusal in plain words, the lobby opening on time, the end's notice and
extend, the staffed pause, stepping out, the meeting plan on the start page, the phone's tab
bar — with screenshots at 320 px and desktop width, and the axe audit of the new views."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_axe import audit
from tests.timing import SCALE

pytestmark = pytest.mark.browser

PHONE = {"width": 320, "height": 720}
DESKTOP = {"width": 1280, "height": 800}


def ms(seconds_from_now: float) -> int:
    return int((time.time() + seconds_from_now) * 1000)


def room_info(server: Any, room: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.http}/api/rooms/{room}") as answer:
        data: dict[str, Any] = json.load(answer)
        return data


def start_round(page: Page, mode: str = "queue", strict: bool = False) -> None:
    """A facilitator starts a round from the round panel."""
    page.select_option("#round-mode", mode)
    if strict:
        page.check("#round-strict-box")
    else:
        page.uncheck("#round-strict-box")
    page.get_by_role("button", name="Start the round").click()


def announced(page: Page) -> str:
    return page.locator("#announcer").inner_text()


def test_a_queue_round_in_three_browsers(server, new_page, ui, screenshots):
    """A facilitator runs a raised-hands round: hands queue up in order, the speaker sees it is
    their turn (and a screen reader hears it), "I'm done" passes the turn, a strict round tells
    the others kindly that it is someone else's turn, and the round ends for everyone."""
    room = server.create_room("Check-in")
    guide, alice = new_page(), new_page()
    bob = new_page(viewport=PHONE)
    ui.join(guide, server.http + room["facilitator_url"], "Sam")
    ui.join(alice, server.http + room["join_url"], "Alice")
    ui.join(bob, server.http + room["join_url"], "Bob")
    expect(guide.locator("#people-count")).to_have_text("3")

    start_round(guide)
    for page in (guide, alice, bob):
        expect(page.locator("#speaking-text")).to_have_text("Nobody is speaking right now.")
        expect(page.locator("#messages")).to_contain_text("A round has started")
    alice.get_by_role("button", name="Raise hand").first.click()
    expect(alice.locator("#speaking-text")).to_contain_text("It's your turn to speak.")
    expect(alice.locator("#announcer")).to_contain_text("It's your turn to speak.")
    for page in (guide, bob):
        expect(page.locator("#speaking-text")).to_have_text("Now speaking: Alice")
    expect(bob.locator("#announcer")).to_contain_text("Now speaking: Alice.")
    bob.get_by_role("button", name="Raise hand").first.click()
    expect(bob.locator("#speaking-note")).to_have_text("1 person before you.")
    expect(bob.get_by_role("button", name="Lower hand").first).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(guide.locator("#round-queue")).to_have_text("Bob")
    bob.screenshot(path=str(screenshots / "round-participant-phone.png"))
    alice.screenshot(path=str(screenshots / "round-speaker-desktop.png"))
    guide.screenshot(path=str(screenshots / "round-facilitator-desktop.png"))

    alice.get_by_role("button", name="I'm done").first.click()
    for page in (guide, alice):
        expect(page.locator("#speaking-text")).to_have_text("Now speaking: Bob")
    expect(bob.locator("#speaking-text")).to_contain_text("It's your turn to speak.")
    expect(bob.locator("#announcer")).to_contain_text("It's your turn to speak.")

    # A strict round: only the speaker (and facilitators) may post.
    start_round(guide, strict=True)
    bob.get_by_role("button", name="Raise hand").first.click()
    expect(alice.locator("#speaking-text")).to_have_text("Now speaking: Bob")
    expect(alice.locator("#speaking-note")).to_contain_text("Raise your hand")
    ui.try_say(alice, "What's happening here?")
    expect(alice.locator("#composer-note")).to_have_text(
        "Someone else is speaking right now. Raise your hand, and your turn will come."
    )
    expect(alice.locator("#composer-text")).to_have_value("What's happening here?")
    ui.say(bob, "My share, uninterrupted")
    ui.say(guide, "Thank you, Bob")
    for page in (guide, bob):
        expect(page.locator("#messages")).not_to_contain_text("What's happening here?")
    expect(ui.messages(alice, "My share, uninterrupted")).to_have_count(1)
    alice.screenshot(path=str(screenshots / "round-strict-refusal-desktop.png"))

    guide.get_by_role("button", name="End the round").click()
    for page in (guide, alice, bob):
        expect(page.locator("#speaking-banner")).to_be_hidden()
        expect(page.locator("#messages")).to_contain_text("The round has ended.")
    ui.say(alice, "Now anyone may talk")
    expect(ui.messages(bob, "Now anyone may talk")).to_have_count(1)


def test_the_lobby_opens_on_time(server, new_page, ui, screenshots):
    """Before the opening a participant waits in a calm lobby that says when; a facilitator
    who came early sees them waiting; at the opening they are let in without doing anything."""
    opens = ms(15 * SCALE)  # time enough to load two pages on a busy machine
    room = server.create_room("Opens soon", opens_at=opens)
    guide = new_page()
    ui.join(guide, server.http + room["facilitator_url"], "Sam")
    early = new_page(viewport=PHONE)
    early.goto(server.http + room["join_url"])
    early.fill("#name", "Early")
    early.click("#join-btn")
    expect(early.locator("#waiting-view")).to_be_visible()
    expect(early.locator("#waiting-heading")).to_have_text("The group hasn't started yet")
    # "at <time>", or "on <day> at <time>" when the opening falls on another day (a run
    # just before midnight).
    expect(early.locator("#waiting-text")).to_contain_text(re.compile(r"It opens (at|on) "))
    expect(early.locator("#status-text")).to_have_text("Waiting for the group to open.")
    expect(guide.locator("#waiting-list")).to_contain_text("Early")
    early.screenshot(path=str(screenshots / "lobby-phone.png"))
    expect(early.locator("#chat-view")).to_be_visible(
        timeout=(opens / 1000 - time.time() + 10) * 1000
    )
    assert time.time() * 1000 >= opens - 100
    expect(early.locator("#status")).to_have_attribute("data-state", "open")
    expect(guide.locator("#messages")).to_contain_text("Early joined.")
    expect(guide.locator("#waiting-list")).not_to_contain_text("Early")


def test_the_end_notice_extend_and_close_on_time(server, new_page, ui, screenshots):
    """With less than five minutes left everyone sees when the session ends; the facilitator
    extends it from the notice; at the end the room closes with a kind word."""
    room = server.create_room("Ends soon", ends_at=ms(60))
    guide = new_page()
    person = new_page(viewport=PHONE)
    ui.join(guide, server.http + room["facilitator_url"], "Sam")
    ui.join(person, server.http + room["join_url"], "Wren")
    for page in (guide, person):
        expect(page.locator("#ending-banner")).to_be_visible()
        expect(page.locator("#ending-text")).to_contain_text("This session ends at")
    # The notice went out once, when the first of them came; Wren reads the end in welcome.
    expect(guide.locator("#messages")).to_contain_text("This session ends in about")
    expect(person.locator("#extend-now")).to_be_hidden()
    person.screenshot(path=str(screenshots / "ending-notice-phone.png"))
    guide.select_option("#extend-now-minutes", "5")
    guide.locator("#extend-now").get_by_role("button", name="Extend").click()
    # "at <time>", or "on <day> at <time>" once the extended end falls on another day: a
    # run a few minutes before midnight failed on the plain "at" (fresh-clone CI, 2026-12-01).
    expect(person.locator("#messages")).to_contain_text(
        re.compile(r"The session now ends (at|on) ")
    )
    for page in (guide, person):  # six minutes left: the next notice comes at five
        expect(page.locator("#ending-banner")).to_be_hidden()
    expect(guide.locator("#extend-later")).to_be_visible()  # extend stays at hand in the tools
    guide.screenshot(path=str(screenshots / "ending-extended-desktop.png"))

    soon = server.create_room("Ends now", ends_at=ms(4 * SCALE))
    last = new_page(viewport=PHONE)
    ui.join(last, server.http + soon["join_url"], "Last")
    expect(last.locator("#ended")).to_be_visible()
    expect(last.locator("#ended-text")).to_have_text(
        "This session has reached its end time. Thank you for being here."
    )
    expect(last.locator("#tabbar")).to_be_hidden()


def test_a_staffed_room_pauses_and_people_step_out(server, new_page, ui, screenshots):
    """A staffed room is paused until a facilitator arrives (and says so calmly); a
    facilitator's pause shows the same; stepping out shows next to the name."""
    room = server.create_room("Staffed", staffed="required")
    person = new_page(viewport=PHONE)
    ui.join(person, server.http + room["join_url"], "Wren")
    expect(person.locator("#paused-banner")).to_have_text(
        "The room is paused until a facilitator arrives. You can still read, ask for help, "
        "or report a message."
    )
    ui.try_say(person, "Hello?")
    expect(person.locator("#composer-note")).to_contain_text("The room is paused right now")
    person.screenshot(path=str(screenshots / "paused-staffed-phone.png"))
    person.get_by_role("button", name="I need help").click()
    person.get_by_role("button", name="Close").click()

    guide = new_page()
    ui.join(guide, server.http + room["facilitator_url"], "Sam")
    expect(guide.locator("#alerts")).to_contain_text("Wren asked for help")  # kept for them
    expect(person.locator("#paused-banner")).to_be_hidden()
    expect(person.locator("#messages")).to_contain_text("The room is open for messages again.")
    ui.say(person, "Thank you for coming")
    guide.get_by_role("button", name="Pause the room").click()
    expect(person.locator("#paused-banner")).to_contain_text("The room is paused for a moment.")
    expect(guide.locator("#paused-banner")).to_have_text(
        "The room is paused: participants can read but not post."
    )
    expect(guide.get_by_role("button", name="Resume the room")).to_have_attribute(
        "aria-pressed", "true"
    )
    guide.get_by_role("button", name="Resume the room").click()
    expect(person.locator("#paused-banner")).to_be_hidden()

    person.get_by_role("button", name="Step out").click()
    expect(ui.member(guide, "Wren")).to_contain_text("stepped out")
    expect(guide.locator("#messages")).to_contain_text("Wren stepped out for a moment.")
    expect(person.get_by_role("button", name="I'm back")).to_have_attribute("aria-pressed", "true")
    person.get_by_role("button", name="I'm back").click()
    expect(ui.member(guide, "Wren")).not_to_contain_text("stepped out")
    expect(guide.locator("#messages")).to_contain_text("Wren is back.")


def test_the_meeting_plan_on_the_start_page(server, new_page, screenshots):
    """The start page sends staffed, capacity, and the opening and end read in the creator's
    local time; a plan whose end comes before its opening is refused on the page."""
    page = new_page(timezone_id="America/Mexico_City")
    page.goto(server.http + "/")
    page.fill("#title", "Planned circle")
    page.get_by_text("Meeting plan (optional)").click()
    expect(page.locator("#times-hint")).to_contain_text("America/Mexico_City")
    page.check("#staffed")
    page.fill("#capacity", "8")
    page.fill("#opens-at", "2031-05-06T18:00")
    page.fill("#ends-at", "2031-05-06T17:00")
    page.click("#create-btn")
    expect(page.locator("#create-error")).to_have_text(
        "The end must be in the future, and after the opening."
    )
    page.fill("#ends-at", "2031-05-06T19:30")
    page.screenshot(path=str(screenshots / "home-plan-desktop.png"), full_page=True)
    page.click("#create-btn")
    expect(page.locator("#result")).to_be_visible()
    room = page.locator("#join-link").input_value().rsplit("/", 1)[-1]
    info = room_info(server, room)
    # 18:00 in Mexico City (UTC-6, no daylight saving since 2022) is 00:00 UTC the next day.
    assert info["opens_at"] == 1935878400000
    assert info["ends_at"] == 1935878400000 + 90 * 60 * 1000
    assert (info["staffed"], info["capacity"]) == ("required", 8)


def test_the_phone_tab_bar_keeps_everything_one_tap_away(server, new_page, ui, screenshots):
    """At 320 px the people, the round and the facilitator tools are tabs at the bottom,
    reachable with one tap or the arrow keys; on a desktop everything shows at once."""
    room = server.create_room("On a phone", capacity=12)
    guide = new_page(viewport=PHONE)
    person = new_page(viewport=PHONE)
    ui.join(guide, server.http + room["facilitator_url"], "Sam")
    ui.join(person, server.http + room["join_url"], "Wren")
    expect(person.locator("#tabbar")).to_be_visible()
    expect(person.locator("#tab-tools")).to_be_hidden()
    expect(person.locator("#members")).to_be_hidden()
    person.get_by_role("tab", name="People").click()
    expect(person.locator("#members")).to_be_visible()
    expect(person.locator("#composer")).to_be_hidden()
    expect(person.get_by_role("tab", name="People")).to_have_attribute("aria-selected", "true")
    person.screenshot(path=str(screenshots / "tabs-people-phone.png"))
    person.keyboard.press("ArrowRight")
    expect(person.get_by_role("tab", name="Round")).to_be_focused()
    expect(person.locator("#round-status")).to_have_text("No round is going on.")
    person.keyboard.press("Home")
    expect(person.locator("#composer")).to_be_visible()

    guide.get_by_role("tab", name="Round").click()
    start_round(guide, "order")
    expect(guide.locator("#round-status")).to_have_text("Everyone in turn")
    expect(guide.locator("#speaking-text")).to_be_hidden()  # on the chat tab
    guide.screenshot(path=str(screenshots / "tabs-round-facilitator-phone.png"))
    guide.get_by_role("tab", name="Tools").click()
    expect(guide.get_by_role("button", name="Pause the room")).to_be_visible()
    guide.screenshot(path=str(screenshots / "tabs-tools-phone.png"))
    guide.get_by_role("tab", name="Messages").click()
    expect(guide.locator("#speaking-text")).to_have_text("Now speaking: Wren")
    # Every label on one line at 320 px, the selected (bold) one included: none breaks inside
    # its word ("Message / s").
    lines = guide.eval_on_selector_all(
        ".tabs [role=tab]:not([hidden])",
        """tabs => tabs.map(tab => {
            const range = document.createRange();
            range.selectNodeContents(tab);
            return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
        })""",
    )
    assert lines == [1, 1, 1, 1], lines
    expect(person.locator("#speaking-text")).to_contain_text("It's your turn to speak.")
    person.screenshot(path=str(screenshots / "round-speaker-phone.png"))

    person.set_viewport_size(DESKTOP)
    expect(person.locator("#tabbar")).to_be_hidden()
    expect(person.locator("#members")).to_be_visible()
    expect(person.locator("#composer")).to_be_visible()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_new_views_pass_an_axe_audit(server, new_page, ui, scheme):
    """The lobby, a paused staffed room, a round (participant and facilitator, phone and
    desktop), the end's notice and the start page's meeting plan: no WCAG A/AA violations."""
    options = {"bypass_csp": True, "color_scheme": scheme}
    home = new_page(**options)
    home.goto(server.http + "/")
    home.get_by_text("Meeting plan (optional)").click()
    assert audit(home) == []

    lobby = server.create_room("Lobby", opens_at=ms(120))
    waiting = new_page(**options, viewport=PHONE)
    waiting.goto(server.http + lobby["join_url"])
    waiting.click("#join-btn")
    expect(waiting.locator("#waiting-view")).to_be_visible()
    assert audit(waiting) == []

    room = server.create_room("Audit", staffed="required", ends_at=ms(120), capacity=10)
    person = new_page(**options, viewport=PHONE)
    ui.join(person, server.http + room["join_url"], "Wren")
    expect(person.locator("#paused-banner")).to_be_visible()
    assert audit(person) == []
    guide = new_page(**options)
    ui.join(guide, server.http + room["facilitator_url"], "Sam")
    start_round(guide, strict=True)
    person.get_by_role("button", name="Raise hand").first.click()
    expect(guide.locator("#speaking-text")).to_have_text("Now speaking: Wren")
    expect(guide.locator("#ending-banner")).to_be_visible()
    assert audit(guide) == []
    assert audit(person) == []
    person.get_by_role("tab", name="Round").click()
    assert audit(person) == []
