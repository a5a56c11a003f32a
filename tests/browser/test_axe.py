"""An automated accessibility audit (axe-core, WCAG 2.1 A and AA) of every page, both themes."""

from __future__ import annotations

from pathlib import Path

import pytest

AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
RULES = "Speak from your own experience. Keep what is said here, here."

pytestmark = pytest.mark.browser


def audit(page) -> list[str]:
    """Run axe on the page as it stands; return one line per violation."""
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `npm ci --prefix tests/browser` (make test does)")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_pass_an_axe_audit(server, new_page, ui, scheme) -> None:
    """The start page, the join form and the facilitator's room have no WCAG A/AA violations."""
    room = server.create_room("Audit", RULES)
    options = {"bypass_csp": True, "color_scheme": scheme}  # CSP would block the injected axe
    home = new_page(**options)
    home.goto(server.http + "/")
    assert audit(home) == []

    joining = new_page(**options)
    joining.goto(server.http + room["join_url"])
    joining.locator("#join-view").wait_for()
    assert audit(joining) == []

    participant = new_page(**options)
    ui.join(participant, server.http + room["join_url"], "Wren")
    ui.say(participant, "hello, everyone")
    facilitator = new_page(**options)
    ui.join(facilitator, server.http + room["facilitator_url"], "Guide")
    ui.say(facilitator, "welcome")
    assert audit(facilitator) == []
    assert audit(participant) == []
