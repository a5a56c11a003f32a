"""Languages in Chromium (protocol §15): an Arabic room right to left and mirrored, a Spanish room
in Spanish, names and messages of either direction in the right order, a participant's own
language switch that leaves no trace, and the accessibility audit in Arabic and Spanish."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from chat.languages import SHIPPED, shipped_languages
from tests.browser.test_axe import audit

pytestmark = pytest.mark.browser

CATALOGUES = {
    tag: json.loads((SHIPPED / tag / "page.json").read_text(encoding="utf-8"))["messages"]
    for tag in ("en", "es", "ar")
}
AR, ES, EN = CATALOGUES["ar"], CATALOGUES["es"], CATALOGUES["en"]
PHONE = {"width": 320, "height": 720}
DESKTOP = {"width": 1280, "height": 800}
RULES_AR = "نتحدث من تجاربنا الشخصية.\nما يُقال هنا يبقى هنا."


def box(page: Page, selector: str) -> dict[str, float]:
    """The bounding box of the first element matching ``selector``."""
    found = page.locator(selector).first.bounding_box()
    assert found is not None, f"{selector} is not displayed"
    return found


def english_leaks(page: Page, tag: str) -> list[str]:
    """English sentences visible on the page (text or a label) where ``tag`` says otherwise."""
    own = CATALOGUES[tag]
    plain = [
        text for key, text in EN.items()
        if isinstance(text, str) and "{" not in text and own[key] != text and len(text) > 3
    ]  # fmt: skip
    shown = page.evaluate(
        """() => [document.body.innerText,
                  ...[...document.querySelectorAll('[aria-label], [title], [placeholder]')]
                     .flatMap((n) => ['aria-label', 'title', 'placeholder']
                        .map((a) => n.getAttribute(a)).filter(Boolean))]"""
    )
    return [text for text in plain if any(text in block for block in shown)]


def watch_for_missing_sentences(page: Page) -> list[str]:
    """Collect i18n.js's warnings about a key with no sentence (there must be none)."""
    missing: list[str] = []
    page.on("console", lambda m: missing.append(m.text) if "no sentence for" in m.text else None)
    return missing


def char_x(where: Locator, char: str) -> float:
    """The horizontal middle of where ``char`` is drawn inside the element (first occurrence)."""
    x: float = where.first.evaluate(
        """(root, char) => {
            const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
              const at = node.data.indexOf(char);
              if (at < 0) continue;
              const range = document.createRange();
              range.setStart(node, at);
              range.setEnd(node, at + char.length);
              const r = range.getBoundingClientRect();
              return r.left + r.width / 2;
            }
            throw new Error(`${char} is not there`);
        }""",
        char,
    )
    return x


def test_arabic_room_is_right_to_left_and_mirrored(server, new_page, ui, screenshots):
    """An Arabic room: dir="rtl", Arabic everywhere, composer and facilitator tools mirrored
    (screenshots at 320 px and desktop width, light and dark)."""
    room = server.create_room("حلقة مساء الثلاثاء", RULES_AR, lang="ar")
    facilitator = new_page(viewport=DESKTOP)
    missing = watch_for_missing_sentences(facilitator)
    ui.join(facilitator, server.http + room["facilitator_url"], "سارة")
    expect(facilitator.locator("html")).to_have_attribute("dir", "rtl")
    expect(facilitator.locator("html")).to_have_attribute("lang", "ar")
    others = []
    for name in ("Sam", "مريم"):
        other = new_page(viewport=DESKTOP)
        ui.join(other, server.http + room["join_url"], name)
        others.append(other)
    ui.say(facilitator, "أهلًا بالجميع. خذوا وقتكم، والاستماع وحده مشاركة أيضًا.")
    ui.say(others[0], "Hi everyone, first time here.")
    ui.say(others[1], "شكرًا على هذه المساحة الآمنة")
    others[0].get_by_role("button", name=AR["room.help_button"]).click()
    expect(facilitator.locator("#alerts .help-alert")).to_have_count(1)
    facilitator.select_option("#slow-select", "10")

    for page in (facilitator, *others):
        expect(page.locator("#status-text")).to_have_text(AR["status.open"])
    expect(facilitator.locator("#lock-btn")).to_have_text(AR["fac.lock"])
    expect(facilitator.locator("#messages")).to_contain_text("انضم Sam.")
    assert english_leaks(facilitator, "ar") == []

    for scheme in ("light", "dark"):
        facilitator.emulate_media(color_scheme=scheme)
        for label, size in (("320", PHONE), ("desktop", DESKTOP)):
            facilitator.set_viewport_size(size)

            def tab(key: str, phone: bool = label == "320") -> None:
                """On a phone the panes are tabs (§13's tab bar): show the one named."""
                if phone:
                    facilitator.get_by_role("tab", name=AR[key]).click()

            tab("tabs.chat")
            composer, send = box(facilitator, "#composer-text"), box(facilitator, "#send")
            assert send["x"] + send["width"] <= composer["x"] + 1  # Send sits at the left
            alert = box(facilitator, ".help-alert p")
            whisper = box(facilitator, ".help-alert button")
            assert whisper["x"] + whisper["width"] > alert["x"] + alert["width"] - 24
            tab("tabs.tools")
            panel = box(facilitator, "#facilitator-panel")
            lock = box(facilitator, "#lock-btn")
            # The tools start at the right: the lock button hugs the panel's right padding.
            assert panel["x"] + panel["width"] - (lock["x"] + lock["width"]) < 24
            assert lock["x"] - panel["x"] > 24
            tab("tabs.people")
            name = box(facilitator, "#members li.member:has(button) .member-name")
            actions = box(facilitator, "#members li.member:has(button) button")
            assert actions["x"] + actions["width"] <= name["x"]  # actions at the far left
            tab("tabs.chat")
            if label == "desktop":
                side, talk = box(facilitator, ".side"), box(facilitator, ".conversation")
                assert side["x"] + side["width"] <= talk["x"]  # the tools column on the left
            assert facilitator.evaluate("document.documentElement.scrollWidth") <= size["width"]
            facilitator.screenshot(
                path=str(screenshots / f"lang-ar-facilitator-{label}-{scheme}.png"),
                full_page=label == "320",
            )
            participant = others[1]
            participant.emulate_media(color_scheme=scheme)
            participant.set_viewport_size(size)
            participant.screenshot(
                path=str(screenshots / f"lang-ar-participant-{label}-{scheme}.png")
            )

    facilitator.set_viewport_size(DESKTOP)
    own = box(facilitator, "#messages li.msg.own")
    theirs = box(facilitator, "#messages li.msg:not(.own)")
    assert own["x"] < theirs["x"]  # one's own messages sit at the (left) end
    borders = facilitator.evaluate(
        """() => { const s = getComputedStyle(document.querySelector('.msg.from-facilitator'));
                   return [s.borderRightWidth, s.borderLeftWidth]; }"""
    )
    assert borders == ["4px", "0px"]  # the facilitator's mark on the inline start: the right
    assert missing == []


def test_spanish_room_created_from_the_start_page(server, new_page, ui, screenshots):
    """A reader whose browser prefers es-MX gets the start page in Spanish, creates a Spanish
    room, and everyone there sees Spanish, Spanish pseudonyms and times in their locale."""
    creator = new_page(locale="es-MX")
    missing = watch_for_missing_sentences(creator)
    creator.goto(server.http + "/")
    expect(creator.locator("html")).to_have_attribute("lang", "es")
    expect(creator.locator("#create-btn")).to_have_text(ES["home.create_button"])
    expect(creator.locator("#room-lang")).to_have_value("es")
    assert english_leaks(creator, "es") == []
    creator.fill("#title", "Círculo del jueves")
    creator.get_by_role("button", name=ES["home.suggest_rules"]).click()
    expect(creator.locator("#rules")).to_have_value(ES["home.suggested_rules"])
    creator.get_by_role("button", name=ES["home.create_button"]).click()
    expect(creator.locator("#result")).to_be_visible()
    creator.screenshot(path=str(screenshots / "lang-es-home-created.png"), full_page=True)
    join_link = creator.locator("#join-link").input_value()

    creator.get_by_role("link", name=ES["home.open_fac"]).click()
    expect(creator.locator("#join-btn")).to_have_text(ES["join.button"])
    creator.check("#agree")
    creator.click("#join-btn")
    expect(creator.locator("#facilitator-panel")).to_be_visible()

    words = shipped_languages().words("es", "en")
    spanish_names = {words.name(i) for i in range(words.size)}
    guest = new_page(locale="en-US")  # the room's language wins over the browser's
    ui.join(guest, join_link)
    expect(guest.locator("html")).to_have_attribute("lang", "es")
    you = guest.locator("#members .member-name", has_text=re.compile(r"\(tú\)$"))
    expect(you).to_have_count(1)
    assert you.inner_text().removesuffix(" (tú)") in spanish_names
    expect(creator.locator("#messages")).to_contain_text("ha entrado.")

    ui.say(guest, "Hola a todos")
    creator.select_option("#slow-select", "10")
    expect(guest.locator("#messages")).to_contain_text("cada 10 segundos")
    ui.try_say(guest, "otra vez")
    expect(guest.locator("#composer-note")).to_contain_text("El modo lento está activado")
    for page, locale in ((creator, "es-MX"), (guest, "es")):
        expect(page.locator("#status-text")).to_have_text(ES["status.open"])
        assert english_leaks(page, "es") == []
        times = page.evaluate(
            """(locale) => [...document.querySelectorAll('#messages time')].map((t) => [
                 t.textContent,
                 new Intl.DateTimeFormat(locale, {hour: '2-digit', minute: '2-digit'})
                   .format(new Date(+t.dataset.ts))])""",
            locale,
        )
        assert times and all(shown == wanted for shown, wanted in times)
    guest.screenshot(path=str(screenshots / "lang-es-room-desktop.png"))
    assert missing == []


def test_mixed_direction_names_and_messages_keep_their_order(server, new_page, ui):
    """A Hebrew name in an English room and an English name in an Arabic room are isolated;
    each message takes its own direction from its first letter."""
    english = server.create_room("Mixed", lang="en")
    reader = new_page()
    ui.join(reader, server.http + english["join_url"], "Ann")
    hebrew = new_page()
    ui.join(hebrew, server.http + english["join_url"], "שרה!")
    ui.say(hebrew, "שלום לכולם, nice to meet you")
    ui.say(reader, "Hello שרה, welcome")

    notice = reader.locator("#messages li.notice span", has_text="joined").first
    expect(notice).to_contain_text("שרה! joined.")
    # Isolated, "שרה!" reads right to left: its "!" is drawn left of its first letter, and
    # the whole name stays left of "joined".
    assert char_x(notice, "!") < char_x(notice, "ש")
    assert char_x(notice, "ש") < char_x(notice, "joined")
    assert notice.locator("bdi").count() == 1
    directions = reader.evaluate(
        """() => [...document.querySelectorAll('#messages .msg-text')]
                 .map((n) => getComputedStyle(n).direction)"""
    )
    assert directions == ["rtl", "ltr"]
    host = new_page()
    ui.join(host, server.http + english["facilitator_url"], "דנה")
    # A menu cannot hold a <bdi>: the name is isolated with U+2068 ... U+2069 instead.
    expect(reader.locator("#to option", has_text="דנה")).to_have_count(1)
    options = reader.locator("#to option").all_text_contents()
    assert "\u2068דנה\u2069 (private)" in options

    arabic = server.create_room("مختلط", lang="ar")
    reader_ar = new_page()
    ui.join(reader_ar, server.http + arabic["join_url"], "مريم")
    sam = new_page()
    ui.join(sam, server.http + arabic["join_url"], "Sam!")
    ui.say(sam, "Hello, مرحبا")
    notice_ar = reader_ar.locator("#messages li.notice span", has_text="Sam").first
    expect(notice_ar).to_contain_text("انضم Sam!.")
    # In a right-to-left sentence the isolated "Sam!" keeps its "!" after (right of) the "m",
    # and sits left of the Arabic verb that starts the sentence.
    assert char_x(notice_ar, "m") < char_x(notice_ar, "!")
    assert char_x(notice_ar, "!") < char_x(notice_ar, "انضم")
    text = reader_ar.locator("#messages .msg-text").first
    assert text.evaluate("(n) => getComputedStyle(n).direction") == "ltr"
    # The member list isolates every other name.
    assert reader_ar.locator("#members bdi", has_text="Sam!").count() == 1


def test_language_switch_changes_only_ones_own_view(server, new_page, ui, screenshots):
    """Switching language re-renders one's own page, keeps the choice in sessionStorage only,
    and changes nothing for anyone else."""
    room = server.create_room("Círculo", lang="es")
    alice, bob = new_page(), new_page()
    ui.join(alice, server.http + room["join_url"], "Alicia")
    ui.join(bob, server.http + room["join_url"], "Roberto")
    expect(alice.locator("#messages")).to_contain_text("Roberto ha entrado.")

    alice.select_option("#lang-select", "en")
    expect(alice.locator("html")).to_have_attribute("lang", "en")
    expect(alice.locator("#status-text")).to_have_text(EN["status.open"])
    expect(alice.locator("#messages")).to_contain_text("Roberto joined.")  # notices too
    expect(alice.locator("#send")).to_have_text(EN["composer.send"])
    assert english_leaks(bob, "es") == []
    expect(bob.locator("#send")).to_have_text(ES["composer.send"])

    stored: dict[str, Any] = alice.evaluate("() => ({...sessionStorage})")
    assert stored["hearth.lang"] == "en"
    assert alice.evaluate("localStorage.length") == 0
    assert alice.evaluate("document.cookie") == ""
    assert alice.context.cookies() == []

    alice.reload()
    expect(alice.locator("#status")).to_have_attribute("data-state", "open")
    expect(alice.locator("#send")).to_have_text(EN["composer.send"])
    alice.select_option("#lang-select", "ar")
    expect(alice.locator("html")).to_have_attribute("dir", "rtl")
    expect(alice.locator("#send")).to_have_text(AR["composer.send"])
    bar = box(alice, ".topbar-title")
    assert (
        char_x(alice.locator("#room-title"), "o") > bar["x"] + bar["width"] / 2
    )  # Latin, at the right
    alice.screenshot(path=str(screenshots / "lang-switch-es-room-in-ar.png"))
    assert alice.evaluate("localStorage.length") == 0
    assert alice.context.cookies() == []
    expect(bob.locator("html")).to_have_attribute("dir", "ltr")


def test_plural_forms_cover_every_category_chromium_uses(server, new_page):
    """Each plural sentence gives a form for every category Intl.PluralRules has for it."""
    page = new_page()
    page.goto(server.http + "/")
    for tag, messages in CATALOGUES.items():
        categories = set(
            page.evaluate("(tag) => new Intl.PluralRules(tag).resolvedOptions().pluralCategories",
                          tag)
        )  # fmt: skip
        for key, text in messages.items():
            if isinstance(text, dict):
                assert categories <= set(text), (tag, key, categories - set(text))


@pytest.mark.parametrize("lang", ["ar", "es"])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_pass_an_axe_audit_in_arabic_and_spanish(
    server, new_page, ui, screenshots, lang, scheme
):
    """The start page, the join form and both rooms have no WCAG A/AA violations in Arabic and
    Spanish."""
    room = server.create_room("Audit", RULES_AR if lang == "ar" else "Sé amable.", lang=lang)
    options = {"bypass_csp": True, "color_scheme": scheme}  # CSP would block the injected axe
    home = new_page(**options)
    home.goto(server.http + "/")
    home.select_option("#lang-select", lang)
    expect(home.locator("html")).to_have_attribute("lang", lang)
    home.screenshot(path=str(screenshots / f"lang-{lang}-home-{scheme}.png"), full_page=True)
    assert audit(home) == []

    joining = new_page(**options)
    joining.goto(server.http + room["join_url"])
    joining.locator("#join-view").wait_for()
    expect(joining.locator("html")).to_have_attribute("lang", lang)
    assert audit(joining) == []

    participant = new_page(**options)
    ui.join(participant, server.http + room["join_url"], "Wren")
    ui.say(participant, "hola" if lang == "es" else "مرحبا")
    facilitator = new_page(**options)
    ui.join(facilitator, server.http + room["facilitator_url"], "Guía")
    ui.say(facilitator, "bienvenidos" if lang == "es" else "أهلًا")
    participant.locator("#help-btn").click()  # the facilitator's help banner is audited too
    expect(facilitator.locator("#alerts .help-alert")).to_have_count(1)
    participant.locator("#resources-dialog button").click()
    assert audit(facilitator) == []
    assert audit(participant) == []


def test_quick_exit_goes_where_the_operator_says(own_server, new_page, ui):
    """--quick-exit-url sets where quick exit goes, from both pages, and the language chosen
    there is forgotten: back on Hearth's origin in the same tab (sessionStorage is per tab and
    origin), nothing is stored and the page is in the default language again."""
    hearth = own_server("--quick-exit-url", "https://example.org/recipes")
    room = hearth.create_room("Exit")
    for path in ("/", room["join_url"]):
        page = new_page()
        page.context.route(
            "https://example.org/**",
            lambda route: route.fulfill(status=200, content_type="text/html", body="<p>Soup</p>"),
        )
        page.goto(hearth.http + path)
        page.select_option("#lang-select", "es")
        expect(page.locator("html")).to_have_attribute("lang", "es")
        assert page.evaluate("sessionStorage.getItem('hearth.lang')") == "es"
        page.locator("#exit-btn").click()
        page.wait_for_url("https://example.org/recipes")
        page.goto(hearth.http + path)  # the same tab, Hearth's origin again
        expect(page.locator("#exit-btn")).to_be_visible()
        assert page.evaluate("sessionStorage.length") == 0, path
        expect(page.locator("html")).to_have_attribute("lang", "en")


# What i18n.js's day() asks Intl.DateTimeFormat for, worked out here again in the page.
INTL_DAY = """([ts, locale]) => {
  const date = new Date(ts);
  const options = {
    weekday: "long", day: "numeric", month: "long", hour: "2-digit", minute: "2-digit",
  };
  if (date.getFullYear() !== new Date().getFullYear()) options.year = "numeric";
  return new Intl.DateTimeFormat(locale, options).format(date);
}"""


def filled(sentence: str, when: str) -> str:
    """The sentence with {when}; a date that ends in a full stop ("p.m.") takes the
    sentence's own."""
    if when.endswith("."):
        sentence = sentence.replace("{when}.", "{when}")
    return sentence.replace("{when}", when)


@pytest.mark.parametrize(
    ("lang", "browser_locale"), [("es", "es-MX"), ("ar", "ar"), ("en", "en-GB")]
)
def test_a_time_on_another_day_says_which_day(
    server, new_page, ui, screenshots, lang, browser_locale
):
    """A room that opens in two days: the lobby and "About this room" name the weekday and the
    date with the time, exactly as Intl.DateTimeFormat writes them in the reader's locale (the
    browser's es-MX for a Spanish page), in the day's own sentence ("Se abre el ..."); so does
    the notice when the facilitator extends that end."""
    opens = int((time.time() + 2 * 86400) * 1000)
    ends = opens + 90 * 60 * 1000
    room = server.create_room("Círculo", lang=lang, opens_at=opens, ends_at=ends)
    page = new_page(locale=browser_locale, viewport=PHONE)
    missing = watch_for_missing_sentences(page)
    page.goto(server.http + room["join_url"])
    page.fill("#name", "Lucía")
    page.click("#join-btn")
    expect(page.locator("#waiting-view")).to_be_visible()
    catalogue = CATALOGUES[lang]
    opens_text, ends_text = (page.evaluate(INTL_DAY, [ts, browser_locale]) for ts in (opens, ends))
    weekday = page.evaluate(
        "([ts, locale]) => new Intl.DateTimeFormat(locale, {weekday: 'long'}).format(new Date(ts))",
        [opens, browser_locale],
    )
    assert weekday in opens_text  # the day is in it, not only the clock
    # (to_have_text compares white space as white space: the page glues the time together
    # with no-break spaces.)
    expect(page.locator("#waiting-text")).to_have_text(
        filled(catalogue["waiting.lobby_text_day"], opens_text)
    )
    page.screenshot(path=str(screenshots / f"lang-{lang}-lobby-another-day.png"))
    guide = new_page(locale=browser_locale)  # a facilitator is in before the opening
    ui.join(guide, server.http + room["facilitator_url"], "Sam")
    plan = guide.locator("#about-plan li")
    expect(plan.nth(0)).to_have_text(filled(catalogue["about.opens_at_day"], opens_text))
    expect(plan.nth(1)).to_have_text(filled(catalogue["about.ends_at_day"], ends_text))
    # Extending an end that is days away: the notice names the day too.
    minutes = int(guide.locator("#extend-later-minutes").input_value())
    guide.locator("#extend-later").evaluate("(form) => form.requestSubmit()")
    later = page.evaluate(INTL_DAY, [ends + minutes * 60_000, browser_locale])
    expect(guide.locator("#messages")).to_contain_text(
        filled(catalogue["notice.extended_day"], later)
    )
    assert missing == []
