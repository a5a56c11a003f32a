"""Safety tools (protocol §14) in Chromium: a held message released, a contact-details nudge
confirmed, an ignored participant absent from one page and present on another, a revoked
co-facilitator's page closed; content warnings collapsed; joins coalesced; the axe audit of
the new controls; screenshots at phone and desktop width."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_axe import audit
from tests.timing import SCALE

pytestmark = pytest.mark.browser
PHONE = {"width": 320, "height": 720}


def actions(page, name: str) -> None:
    """Open a participant's Actions menu on the facilitator's page."""
    page.locator("#members li.member").filter(has_text=name).get_by_role("button").first.click()
    expect(page.locator("#member-dialog")).to_be_visible()


def hold(page, ui, name: str) -> None:
    """Hold a participant's messages for review from the Actions menu (§14)."""
    actions(page, name)
    page.click("#member-hold")
    expect(ui.member(page, name).locator(".tag")).to_have_text("messages held")


def test_a_held_message_is_explained_and_released(server, new_page, ui, screenshots):
    """A facilitator holds a participant (with the Actions menu); the participant is told
    calmly; the message waits in the review queue and reaches the room when posted."""
    room = server.create_room("Review", "")
    guide, wren, ash = new_page(), new_page(viewport=PHONE), new_page()
    ui.join(guide, server.http + room["facilitator_url"], "Guide")
    ui.join(wren, server.http + room["join_url"], "Wren")
    ui.join(ash, server.http + room["join_url"], "Ash")
    hold(guide, ui, "Wren")
    ui.say(wren, "Can I share something hard?")
    expect(wren.locator("#messages")).to_contain_text("waiting for a facilitator to read it")
    queue = guide.locator("#review-list li.held-item")
    expect(queue).to_have_count(1)
    expect(queue).to_contain_text("Can I share something hard?")
    expect(ash.locator("#messages")).not_to_contain_text("Can I share something hard?")
    wren.screenshot(path=str(screenshots / "safety-held-participant-320.png"), full_page=True)
    guide.screenshot(path=str(screenshots / "safety-review-queue-desktop.png"), full_page=True)
    queue.get_by_role("button", name=re.compile("Post the message")).click()
    for page in (ash, wren, guide):
        expect(ui.messages(page, "Can I share something hard?")).to_have_count(1)
    expect(wren.locator("#messages")).to_contain_text("A facilitator has posted your message")
    expect(queue).to_have_count(0)


def test_a_contact_details_nudge_is_confirmed(server, new_page, ui, screenshots):
    """A phone number in a message opens the confirm dialog; "Send anyway" sends it."""
    room = server.create_room("Nudge", "")
    wren, ash = new_page(viewport=PHONE), new_page()
    ui.join(wren, server.http + room["join_url"], "Wren")
    ui.join(ash, server.http + room["join_url"], "Ash")
    ui.try_say(wren, "call me on +44 7911 123456")
    dialog = wren.locator("#contact-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("a phone number")
    wren.screenshot(path=str(screenshots / "safety-contact-nudge-320.png"))
    dialog.get_by_role("button", name="Send anyway").click()
    expect(ui.messages(ash, "call me on +44 7911 123456")).to_have_count(1)


def test_an_ignored_participant_is_absent_from_one_page_only(server, new_page, ui):
    """Wren ignores Ash: Ash's messages never reach Wren's page, and still reach Rowan's."""
    room = server.create_room("Ignore", "")
    wren, ash, rowan = new_page(), new_page(), new_page()
    for page, name in ((wren, "Wren"), (ash, "Ash"), (rowan, "Rowan")):
        ui.join(page, server.http + room["join_url"], name)
    expect(wren.locator("#people-count")).to_have_text("3")
    ui.member(wren, "Ash").get_by_role("button", name=re.compile("Ignore")).click()
    expect(wren.locator("#messages")).to_contain_text("won't see messages from")
    ui.say(ash, "can you hear me")
    ui.say(rowan, "hello both")
    expect(ui.messages(rowan, "can you hear me")).to_have_count(1)
    expect(ui.messages(wren, "hello both")).to_have_count(1)
    expect(ui.messages(wren, "can you hear me")).to_have_count(0)
    expect(ui.member(wren, "Ash")).to_be_visible()  # presence still shows them


def test_a_revoked_co_facilitator_page_is_closed(server, new_page, ui, screenshots):
    """The owner invites a co-facilitator (a copyable link), who joins with it; revoking the
    label closes the co-facilitator's page for good."""
    room = server.create_room("Keys", "")
    owner, cohost = new_page(), new_page()
    ui.join(owner, server.http + room["facilitator_url"], "Owner")
    owner.click("#invite-btn")
    owner.fill("#invite-label", "Night shift")
    owner.click("#invite-create")
    link = owner.locator("#invite-link")
    expect(link).to_have_value(re.compile(r"#key=."))
    owner.screenshot(path=str(screenshots / "safety-invite-desktop.png"))
    url = link.input_value()
    owner.locator("#invite-dialog").get_by_role("button", name="Close").click()
    ui.join(cohost, url, "Cohost")
    expect(cohost.locator("#facilitator-panel")).to_be_visible()
    owner.fill("#revoke-label", "Night shift")
    owner.locator("#revoke-form").get_by_role("button", name="Revoke").click()
    expect(cohost.locator("#status")).to_have_attribute("data-state", "closed")
    expect(cohost.locator("#ended")).to_be_visible()
    expect(owner.locator("#messages")).to_contain_text("no longer works")


def test_warnings_flares_and_content_warnings(server, new_page, ui, screenshots):
    """A warning with its reason, help seen, a crisis flag, a content warning collapsed until
    tapped, and many joins in one notice; the page passes axe with the new controls."""
    room = server.create_room("Care", "")
    guide = new_page(bypass_csp=True)
    wren = new_page(viewport=PHONE, bypass_csp=True)
    ui.join(guide, server.http + room["facilitator_url"], "Guide")
    ui.join(wren, server.http + room["join_url"], "Wren")
    others = [new_page() for _ in range(5)]
    for index, page in enumerate(others):
        ui.join(page, server.http + room["join_url"], f"Guest {index}")
    expect(wren.locator("#messages li.presence")).to_have_count(4)  # three named, one count
    expect(wren.locator("#messages li.presence").last).to_contain_text("2 people joined")

    actions(guide, "Wren")
    guide.fill("#member-reason", "Please keep it kind")
    guide.click("#member-warn")
    expect(wren.locator("#messages")).to_contain_text("Please keep it kind")
    expect(wren.locator("#messages")).to_contain_text("first warning")

    wren.click("#help-btn")
    wren.locator("#resources-dialog").get_by_role("button", name="Close").click()
    wren.click("#help-btn")
    wren.locator("#resources-dialog").get_by_role("button", name="Close").click()
    alerts = guide.locator("#alerts .help-alert")
    expect(alerts).to_have_count(1)  # one per person
    expect(alerts).to_contain_text("again")
    alerts.get_by_role("button", name="Seen").click()
    expect(wren.locator("#messages")).to_contain_text("Help is on the way")

    ui.say(wren, "sometimes I want to kill myself")
    expect(ui.messages(guide, "sometimes I want to kill myself").locator(".flag")).to_have_text(
        "crisis words"
    )
    resources = wren.locator("#resources-dialog")  # the writer is shown the crisis resources
    expect(resources).to_be_visible()
    resources.get_by_role("button", name="Close").click()

    wren.check("#cw-toggle")
    wren.fill("#cw-text", "loss")
    ui.say(wren, "my dad died last spring")
    item = guide.locator("#messages li.msg", has_text="Content warning: loss")
    expect(item).to_have_count(1)
    expect(item.locator(".msg-text")).to_be_hidden()
    toggle = item.get_by_role("button", name="Show message")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    wren.screenshot(path=str(screenshots / "safety-participant-320.png"), full_page=True)
    guide.screenshot(path=str(screenshots / "safety-facilitator-desktop.png"), full_page=True)
    toggle.click()
    expect(item.locator(".msg-text")).to_have_text("my dad died last spring")
    assert audit(guide) == []
    assert audit(wren) == []


def test_a_reloaded_page_still_knows_whom_it_ignores(server, new_page, ui):
    """Wren ignores Ash and reloads: the page comes back with "Stop ignoring" pressed on Ash
    (from welcome.you.ignores), still without Ash's messages, and can undo the ignore."""
    room = server.create_room("Ignore again", "")
    wren, ash = new_page(), new_page()
    ui.join(wren, server.http + room["join_url"], "Wren")
    ui.join(ash, server.http + room["join_url"], "Ash")
    ui.member(wren, "Ash").get_by_role("button", name=re.compile("^Ignore")).click()
    expect(wren.locator("#messages")).to_contain_text("won't see messages from")
    wren.reload()
    expect(wren.locator("#status")).to_have_attribute("data-state", "open")
    expect(wren.locator("#chat-view")).to_be_visible()
    undo = ui.member(wren, "Ash").get_by_role("button", name=re.compile("Stop ignoring"))
    expect(undo).to_have_attribute("aria-pressed", "true")
    expect(ui.member(wren, "Ash").locator(".tag")).to_have_text("ignored")
    ui.say(ash, "still there?")
    ui.say(wren, "back again")
    expect(ui.messages(ash, "back again")).to_have_count(1)
    expect(ui.messages(wren, "still there?")).to_have_count(0)
    undo.click()
    again = ui.member(wren, "Ash").get_by_role("button", name=re.compile("^Ignore"))
    expect(again).to_have_attribute("aria-pressed", "false")
    expect(wren.locator("#messages")).to_contain_text("You'll see messages from")
    ui.say(ash, "and now?")
    expect(ui.messages(wren, "and now?")).to_have_count(1)


def test_a_facilitator_sets_and_removes_a_content_warning(server, new_page, ui, screenshots):
    """ "Content warning…" on a message (facilitators): another page's copy collapses behind
    the warning; an empty warning opens it again. The dialog passes axe, also at 320 px."""
    room = server.create_room("Warnings", "")
    guide = new_page(viewport=PHONE, bypass_csp=True)
    wren, ash = new_page(), new_page()
    ui.join(guide, server.http + room["facilitator_url"], "Guide")
    ui.join(wren, server.http + room["join_url"], "Wren")
    ui.join(ash, server.http + room["join_url"], "Ash")
    ui.say(ash, "my dog died this morning")
    expect(ui.messages(guide, "my dog died this morning")).to_have_count(1)
    expect(wren.locator("#messages li.msg .cw-toggle")).to_have_count(0)
    for page in (wren, ash):  # a participant has no such control
        expect(page.get_by_role("button", name=re.compile("Content warning for"))).to_have_count(0)

    message = ui.messages(guide, "my dog died this morning")
    message.get_by_role("button", name="Content warning for the message from Ash").click()
    dialog = guide.locator("#cw-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#cw-quote")).to_contain_text("my dog died this morning")
    expect(dialog.locator("#cw-edit-text")).to_have_attribute("maxlength", "60")
    guide.fill("#cw-edit-text", "grief")
    guide.screenshot(path=str(screenshots / "safety-cw-dialog-320.png"))
    assert audit(guide) == []
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()

    item = wren.locator("#messages li.msg", has_text="Content warning: grief")
    expect(item).to_have_count(1)
    expect(item.locator(".msg-text")).to_be_hidden()
    expect(item.get_by_role("button", name="Show message")).to_have_attribute(
        "aria-expanded", "false"
    )
    expect(ash.locator("#messages li.msg", has_text="Content warning: grief")).to_have_count(1)
    guided = guide.locator("#messages li.msg", has_text="Content warning: grief")
    expect(guided).to_have_count(1)
    guide.screenshot(path=str(screenshots / "safety-cw-set-320.png"), full_page=True)
    assert audit(guide) == []

    # Opening the dialog again shows the warning; emptied and saved, it is gone for everyone.
    guided.get_by_role("button", name="Content warning for the message from Ash").click()
    expect(guide.locator("#cw-edit-text")).to_have_value("grief")
    guide.fill("#cw-edit-text", "")
    dialog.get_by_role("button", name="Save").click()
    expect(ui.messages(wren, "my dog died this morning")).to_be_visible()
    expect(wren.locator("#messages li.msg", has_text="Content warning")).to_have_count(0)


def test_crisis_words_in_a_refused_message_still_bring_help(server, new_page, ui):
    """A message with crisis words and a phone number is held back for the contact check: the
    writer is still shown the resources, and the facilitator is told it was not posted."""
    room = server.create_room("Refused", "")
    guide, wren = new_page(), new_page(viewport=PHONE)
    ui.join(guide, server.http + room["facilitator_url"], "Guide")
    ui.join(wren, server.http + room["join_url"], "Wren")
    ui.try_say(wren, "I want to kill myself, call me on +44 7911 123456")
    resources = wren.locator("#resources-dialog")
    expect(resources).to_be_visible()
    expect(guide.locator("#messages")).to_contain_text(
        "Wren tried to send a message that may mean they are in crisis. It was not posted."
    )
    resources.get_by_role("button", name="Close").click()
    contact = wren.locator("#contact-dialog")
    expect(contact).to_be_visible()  # the contact check is still asked, beneath the help
    contact.get_by_role("button", name="Edit my message").click()
    expect(wren.locator("#composer-text")).to_have_value(re.compile("call me on"))
    expect(guide.locator("#messages li.msg")).to_have_count(0)


def test_a_help_flare_refused_for_speed_is_sent_again(own_server, new_page, ui):
    """The help flare shares the member's message allowance (Part 2): when the server answers
    rate_limited, the page asks again once allowed, so the facilitators still hear it, and
    the person is not told they are sending too fast."""
    server = own_server("--rate", "0.25", "--burst", "2")  # a token every 4 s
    room = server.create_room("Quick", "")
    guide, wren = new_page(), new_page(viewport=PHONE)
    ui.join(guide, server.http + room["facilitator_url"], "Guide")
    ui.join(wren, server.http + room["join_url"], "Wren")
    wren.click("#help-btn")  # the last token (the join took the first)
    wren.locator("#resources-dialog").get_by_role("button", name="Close").click()
    alerts = guide.locator("#alerts .help-alert")
    expect(alerts).to_have_count(1)
    expect(alerts).not_to_contain_text("again")
    wren.click("#help-btn")  # refused for now: the page sends it again when allowed
    expect(alerts).to_contain_text("again")
    expect(wren.locator("#resources-dialog")).to_be_visible()
    expect(wren.locator("#composer-note")).not_to_contain_text("quickly")


def test_a_held_message_past_the_history_window_leaves_the_queue(own_server, new_page, ui):
    """A held message kept longer than --history-seconds is gone (Part 2): posting it is
    refused calmly and it leaves the review queue, and nobody sees it."""
    window = 2.0 * SCALE
    server = own_server("--history-seconds", str(window))
    room = server.create_room("Window", "")
    guide, wren = new_page(), new_page(viewport=PHONE)
    ui.join(guide, server.http + room["facilitator_url"], "Guide")
    ui.join(wren, server.http + room["join_url"], "Wren")
    hold(guide, ui, "Wren")
    ui.say(wren, "Is anyone still there?")
    queue = guide.locator("#review-list li.held-item")
    expect(queue).to_have_count(1)
    # Wall-clock time must pass: held text is kept for the history's age, no longer.
    guide.wait_for_timeout((window + 0.5 * SCALE) * 1000)
    queue.get_by_role("button", name=re.compile("Post the message")).click()
    expect(queue).to_have_count(0)
    expect(guide.locator("#review-list")).to_contain_text("No messages are waiting.")
    expect(guide.locator("#composer-note")).to_contain_text("no longer here")
    for page in (guide, wren):
        expect(ui.messages(page, "Is anyone still there?")).to_have_count(0)
