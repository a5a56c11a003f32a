"""Facilitation (protocol §4 knock, §5 report/whisper, §6): authority, every action, refusals.

One worker, embedded broker, real server and real WebSocket clients. Every test client
connects from 127.0.0.1, so a removal bans every later participant of that room: tests that
remove someone use a room of their own.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import pytest

from chat.settingfiles import CrisisResources
from tests.client import JSON, MSGPACK, Client
from tests.timing import MS, WAIT, scaled, wait_until


@dataclass
class Circle:
    """A room with its facilitator (``host``) and participants, every inbox drained."""

    id: str
    key: str
    host: Client
    people: list[Client]


async def room_with(
    server: Any, n_participants: int, encoding: str = MSGPACK, **settings: Any
) -> Circle:
    """Create a room, join its facilitator, then ``n_participants`` participants."""
    room = await server.room(settings=settings) if settings else await server.room()
    host = await server.client(encoding)
    welcome = await host.join(room["room"], key=room["facilitator_key"])
    assert welcome["t"] == "welcome", welcome
    circle = Circle(room["room"], room["facilitator_key"], host, [])
    for _ in range(n_participants):
        person = await server.client(encoding)
        welcome = await person.join(room["room"])
        assert welcome["t"] == "welcome", welcome
        for earlier in [host, *circle.people]:
            joined = await earlier.next("joined")
            assert joined["member"]["pid"] == person.pid
        circle.people.append(person)
    return circle


async def newcomer(
    server: Any,
    circle: Circle,
    *,
    facilitator: bool = False,
    encoding: str = MSGPACK,
    **fields: Any,
) -> tuple[Client, dict[str, Any]]:
    """A new connection that joins the circle's room; returns it and the join's answer."""
    client = await server.client(encoding)
    if facilitator:
        fields["key"] = circle.key
    return client, await client.join(circle.id, **fields)


async def acked(client: Client, message: dict[str, Any]) -> dict[str, Any]:
    """Send a request that must succeed; return its ``ack``."""
    answer = await client.request(message)
    assert answer["t"] == "ack" and answer["id"] == message["id"], answer
    return answer


async def refused(client: Client, message: dict[str, Any], code: str) -> dict[str, Any]:
    """Send a request that must fail with ``code``; return the ``error``."""
    answer = await client.request(message)
    assert answer["t"] == "error", answer
    assert answer["code"] == code and answer["id"] == message["id"], answer
    return answer


def room_event(locked: bool = False, slow: int = 0) -> dict[str, Any]:
    """The ``room`` event with these settings and the others at their defaults."""
    return {
        "t": "room",
        "locked": locked,
        "slow": slow,
        "paused": False,  # §13
        "ends_at": None,
        "review": "off",  # §14
        "contact": "nudge",
    }


async def said(client: Client, text: str) -> dict[str, Any]:
    """Say ``text``; return the ``ack`` (with ``mid`` and ``seq``)."""
    return await acked(client, {"t": "say", "text": text})


# --- authority -----------------------------------------------------------------------------


async def test_facilitator_role_is_shown_to_everyone(server, encoding):
    """The key makes a facilitator; two can share a room; everyone sees the role."""
    circle = await room_with(server, 1, encoding)
    host, (person,) = circle.host, circle.people
    assert host.welcome["you"]["role"] == "facilitator"
    assert person.welcome["you"]["role"] == "participant"

    second, welcome = await newcomer(server, circle, facilitator=True, encoding=encoding)
    assert welcome["you"]["role"] == "facilitator"
    roles = {m["pid"]: m["role"] for m in welcome["members"]}
    assert roles == {host.pid: "facilitator", second.pid: "facilitator", person.pid: "participant"}
    for other in (host, person):
        joined = await other.next("joined")
        assert joined["member"] == welcome["you"]
        assert joined["member"]["role"] == "facilitator"

    roles = {m["pid"]: m["role"] for m in person.welcome["members"]}
    assert roles[host.pid] == "facilitator" and roles[person.pid] == "participant"

    await said(second, "welcome, everyone")
    for other in (host, person, second):
        msg = await other.next("msg")
        assert msg["pid"] == second.pid and msg["role"] == "facilitator"
        assert "kind" not in msg
    await said(person, "hello")
    assert (await host.next("msg"))["role"] == "participant"


async def test_wrong_key_is_forbidden_and_closes_4003(server):
    """A join with a wrong facilitator key gets forbidden, then close 4003."""
    circle = await room_with(server, 0)
    client = await server.client()
    answer = await client.join(circle.id, key="not-the-key")
    assert answer["t"] == "error" and answer["code"] == "forbidden"
    assert await client.closed() == 4003
    assert await circle.host.quiet() == []


@pytest.mark.parametrize(
    "action", [{"t": "mute"}, {"t": "mute", "seconds": 5}, {"t": "remove"}, {"t": "unmute"}]
)
async def test_facilitators_cannot_act_on_each_other(server, action):
    """Muting, unmuting or removing a facilitator is forbidden, and changes nothing."""
    circle = await room_with(server, 1)
    second, _ = await newcomer(server, circle, facilitator=True)
    await circle.host.next("joined")
    await circle.people[0].next("joined")

    await refused(circle.host, {**action, "pid": second.pid}, "forbidden")
    await refused(second, {**action, "pid": circle.host.pid}, "forbidden")
    await refused(second, {**action, "pid": second.pid}, "forbidden")
    assert await circle.people[0].quiet() == []
    await said(second, "still here")
    assert (await circle.people[0].next("msg"))["pid"] == second.pid


# --- mute and unmute -----------------------------------------------------------------------


async def test_timed_mute_ends_by_itself(server, encoding):
    """A timed mute refuses say with muted/until, then ends alone and everyone sees unmuted."""
    circle = await room_with(server, 2, encoding)
    host, (target, other) = circle.host, circle.people
    before = int(time.time() * 1000)
    await acked(host, {"t": "mute", "pid": target.pid, "seconds": 1})
    events = [await c.next("muted") for c in (host, target, other)]
    until = events[0]["until"]
    assert all(e == {"t": "muted", "pid": target.pid, "until": until} for e in events)
    assert before + 1000 <= until <= int(time.time() * 1000) + 1000

    error = await refused(target, {"t": "say", "text": "let me speak"}, "muted")
    assert error["until"] == until
    assert await other.quiet(100 * MS) == []

    for client in (host, target, other):
        assert await client.next("unmuted", timeout=WAIT) == {"t": "unmuted", "pid": target.pid}
    assert time.time() * 1000 >= until
    await said(target, "thank you")
    assert (await other.next("msg"))["text"] == "thank you"


async def test_open_ended_mute_until_unmuted(server, encoding):
    """A mute without seconds lasts (until null) until unmute; welcome shows muted_until."""
    circle = await room_with(server, 2, encoding)
    host, (target, other) = circle.host, circle.people
    await acked(host, {"t": "mute", "pid": target.pid})
    for client in (host, target, other):
        assert await client.next("muted") == {"t": "muted", "pid": target.pid, "until": None}

    error = await refused(target, {"t": "say", "text": "hello?"}, "muted")
    assert error["until"] is None

    late, welcome = await newcomer(server, circle, encoding=encoding)
    listed = {m["pid"]: m for m in welcome["members"]}
    assert "muted_until" in listed[target.pid] and listed[target.pid]["muted_until"] is None
    assert "muted_until" not in listed[other.pid]
    assert "muted_until" not in listed[host.pid]

    await asyncio.sleep(scaled(1.2))  # a window to show: an open-ended mute does not run out
    await refused(target, {"t": "say", "text": "still?"}, "muted")

    await acked(host, {"t": "unmute", "pid": target.pid})
    for client in (host, target, other, late):
        assert await client.next("unmuted") == {"t": "unmuted", "pid": target.pid}
    await said(target, "back")
    assert (await late.next("msg"))["text"] == "back"


async def test_mute_survives_a_reconnect(server):
    """A muted member who reconnects with resume is still muted, and says so in welcome."""
    circle = await room_with(server, 1)
    host, target = circle.host, circle.people[0]
    await acked(host, {"t": "mute", "pid": target.pid})
    await target.next("muted")
    await target.close()

    back = await server.client()
    welcome = await back.join(circle.id, resume=target.welcome["resume"])
    assert welcome["you"]["pid"] == target.pid
    listed = {m["pid"]: m for m in welcome["members"]}
    assert "muted_until" in listed[target.pid] and listed[target.pid]["muted_until"] is None
    await refused(back, {"t": "say", "text": "am I back?"}, "muted")
    await acked(host, {"t": "unmute", "pid": target.pid})
    await back.next("unmuted")
    await said(back, "yes")


async def test_a_timed_mute_that_ran_out_while_away_ends_when_the_member_returns(server):
    """Part 2: the worker the muted member is connected to ends a timed mute; one that ran out
    while its member was away ends, once, when the member comes back."""
    circle = await room_with(server, 1)
    host, target = circle.host, circle.people[0]
    await acked(host, {"t": "mute", "pid": target.pid, "seconds": 1})
    until = (await target.next("muted"))["until"]
    await target.close()
    await wait_until(lambda: time.time() * 1000 > until, what="the mute to run out")
    # A window to show: nobody ends the mute of a member who is away.
    assert [m for m in await host.quiet(300 * MS) if m["t"] == "unmuted"] == []

    back = await server.client()
    welcome = await back.join(circle.id, resume=target.welcome["resume"])
    assert {m["pid"]: m for m in welcome["members"]}[target.pid]["muted_until"] == until
    for client in (host, back):
        assert await client.next("unmuted", timeout=WAIT) == {"t": "unmuted", "pid": target.pid}
    await said(back, "back again")
    # A window to show: the mute ends once.
    assert [m for m in await host.quiet(300 * MS) if m["t"] == "unmuted"] == []


# --- remove --------------------------------------------------------------------------------


async def test_remove_closes_4001_bans_and_revokes_resume(server, encoding):
    """Remove: target gets removed+4001, others left/removed; no rejoin and no resume."""
    circle = await room_with(server, 2, encoding)
    host, (target, other) = circle.host, circle.people
    token = target.welcome["resume"]

    await acked(host, {"t": "remove", "pid": target.pid, "reason": "please take a break"})
    removed = await target.next("removed")
    assert removed["reason"] == "please take a break"
    assert await target.closed() == 4001
    for client in (host, other):
        left = await client.next("left")
        assert left == {"t": "left", "pid": target.pid, "removed": True}

    again, answer = await newcomer(server, circle, encoding=encoding)
    assert answer["t"] == "error" and answer["code"] == "banned"
    assert await again.closed() == 4003

    back = await server.client(encoding)
    answer = await back.join(circle.id, resume=token)
    assert answer["t"] == "error" and answer["code"] == "bad_resume"
    assert await back.quiet(100 * MS) == []  # bad_resume leaves the connection open...
    answer = await back.join(circle.id)  # ...and a fresh join is still banned
    assert answer["t"] == "error" and answer["code"] == "banned"
    assert await back.closed() == 4003

    _, welcome = await newcomer(server, circle, facilitator=True)  # the key is not banned
    assert target.pid not in {m["pid"] for m in welcome["members"]}


async def test_remove_without_reason(server):
    """A remove with no reason still tells the target removed (reason "") and closes 4001."""
    circle = await room_with(server, 1)
    target = circle.people[0]
    await acked(circle.host, {"t": "remove", "pid": target.pid})
    assert (await target.next("removed"))["reason"] == ""
    assert await target.closed() == 4001


async def test_remove_member_who_is_away(server):
    """A member away within the resume grace can be removed: left/removed, no resume."""
    circle = await room_with(server, 1)
    host, target = circle.host, circle.people[0]
    async with server.closing():
        await target.close()
    assert await host.quiet() == []  # away, not gone: no left during the grace

    await acked(host, {"t": "remove", "pid": target.pid})
    assert await host.next("left") == {"t": "left", "pid": target.pid, "removed": True}
    back = await server.client()
    answer = await back.join(circle.id, resume=target.welcome["resume"])
    assert answer["t"] == "error" and answer["code"] == "bad_resume"


# --- delete --------------------------------------------------------------------------------


async def test_delete_removes_message_from_history(server, encoding):
    """Delete tells everyone and a later joiner of a recent-history room does not see it."""
    circle = await room_with(server, 2, encoding, history="recent")
    host, (author, other) = circle.host, circle.people
    gone = await said(author, "something regrettable")
    kept = await said(author, "something fine")
    for client in (host, author, other):
        await client.next("msg", mid=kept["mid"])

    await acked(host, {"t": "delete", "mid": gone["mid"]})
    for client in (host, author, other):
        assert await client.next("deleted") == {"t": "deleted", "mid": gone["mid"]}

    _, welcome = await newcomer(server, circle, encoding=encoding)
    assert [m["mid"] for m in welcome["history"]] == [kept["mid"]]
    _, welcome = await newcomer(server, circle, facilitator=True, encoding=encoding)
    assert [m["mid"] for m in welcome["history"]] == [kept["mid"]]

    await refused(host, {"t": "delete", "mid": gone["mid"]}, "not_found")
    await refused(host, {"t": "delete", "mid": "no-such-message"}, "not_found")


# --- lock, unlock, slow --------------------------------------------------------------------


async def test_lock_and_unlock(server, encoding):
    """Lock turns new participants away (room_locked, 4005) but not facilitators; unlock."""
    circle = await room_with(server, 1, encoding)
    host, person = circle.host, circle.people[0]
    await acked(host, {"t": "lock"})
    for client in (host, person):
        assert await client.next("room") == room_event(locked=True, slow=0)

    shut_out, answer = await newcomer(server, circle, encoding=encoding)
    assert answer["t"] == "error" and answer["code"] == "room_locked"
    assert await shut_out.closed() == 4005

    _, welcome = await newcomer(server, circle, facilitator=True, encoding=encoding)
    assert welcome["t"] == "welcome" and welcome["room"]["locked"] is True
    await said(person, "members inside still talk")

    await acked(host, {"t": "unlock"})
    for client in (host, person):
        assert await client.next("room") == room_event(locked=False, slow=0)
    _, answer = await newcomer(server, circle, encoding=encoding)
    assert answer["t"] == "welcome" and answer["room"]["locked"] is False


async def test_slow_mode_applies_to_participants_only(server, encoding):
    """Slow mode: a participant's second say too soon gets slow_mode/retry_after (ms)."""
    circle = await room_with(server, 1, encoding)
    host, person = circle.host, circle.people[0]
    await acked(host, {"t": "slow", "seconds": 30})
    for client in (host, person):
        assert await client.next("room") == room_event(locked=False, slow=30)

    await said(person, "first")
    error = await refused(person, {"t": "say", "text": "second"}, "slow_mode")
    assert isinstance(error["retry_after"], int) and 25_000 < error["retry_after"] <= 30_001

    await said(host, "facilitators")
    await said(host, "are not slowed")

    _, welcome = await newcomer(server, circle, encoding=encoding)
    assert welcome["room"]["slow"] == 30

    await acked(host, {"t": "slow", "seconds": 0})
    assert (await person.next("room"))["slow"] == 0
    await said(person, "second, now that slow mode is off")


# --- announce and close --------------------------------------------------------------------


async def test_announce(server, encoding):
    """Announce reaches everyone as a sequenced msg with role facilitator and kind announce."""
    circle = await room_with(server, 2, encoding)
    host = circle.host
    await acked(host, {"t": "announce", "text": "Ten minutes left."})
    for client in (host, *circle.people):
        msg = await client.next("msg")
        assert msg["kind"] == "announce" and msg["role"] == "facilitator"
        assert msg["pid"] == host.pid and msg["text"] == "Ten minutes left."
        assert msg["seq"] == 1 and msg["name"] == host.welcome["you"]["name"]


async def test_close_ends_the_room_and_wipes_it(server, encoding):
    """Close: everyone gets closed then 4010; joins and resumes then find no room (4004)."""
    circle = await room_with(server, 2, encoding)
    token = circle.people[0].welcome["resume"]
    await said(circle.people[0], "a last word")
    await acked(circle.host, {"t": "close"})
    for client in (circle.host, *circle.people):
        await client.next("closed")
        assert await client.closed() == 4010

    for fields in ({}, {"key": circle.key}, {"resume": token}):
        client = await server.client(encoding)
        answer = await client.join(circle.id, **fields)
        assert answer["t"] == "error" and answer["code"] == "not_found", fields
        assert await client.closed() == 4004


# --- refusals ------------------------------------------------------------------------------

PARTICIPANT_ATTEMPTS = {
    "mute": {"t": "mute", "pid": "{other}"},
    "unmute": {"t": "unmute", "pid": "{other}"},
    "remove": {"t": "remove", "pid": "{other}", "reason": "no"},
    "delete": {"t": "delete", "mid": "{mid}"},
    "lock": {"t": "lock"},
    "unlock": {"t": "unlock"},
    "slow": {"t": "slow", "seconds": 60},
    "announce": {"t": "announce", "text": "I am in charge now"},
    "close": {"t": "close"},
    "admit": {"t": "admit", "pid": "{other}"},
    "deny": {"t": "deny", "pid": "{other}"},
}


@pytest.mark.parametrize("action", list(PARTICIPANT_ATTEMPTS))
async def test_participant_cannot_facilitate(server, action):
    """Every facilitator action from a participant is forbidden and changes nothing."""
    circle = await room_with(server, 2)
    host, (rogue, other) = circle.host, circle.people
    mid = (await said(other, "an ordinary message"))["mid"]
    for client in (host, rogue, other):
        await client.next("msg", mid=mid)
    values = {"other": other.pid, "mid": mid}
    request = {
        k: v.format(**values) if isinstance(v, str) else v
        for k, v in PARTICIPANT_ATTEMPTS[action].items()
    }

    await refused(rogue, request, "forbidden")
    assert await host.quiet() == []
    assert await other.quiet(50 * MS) == []

    await said(other, "nothing changed")  # not muted, removed or slowed, room open
    await said(other, "really")
    _, welcome = await newcomer(server, circle)  # not locked, closed or banned
    assert welcome["t"] == "welcome"
    assert welcome["room"]["locked"] is False and welcome["room"]["slow"] == 0
    assert [m["mid"] for m in welcome["history"]] == []  # since_join room
    assert other.pid in {m["pid"] for m in welcome["members"]}
    _, welcome = await newcomer(server, circle, facilitator=True)
    assert mid in [m["mid"] for m in welcome["history"]]
    assert welcome["log"] == []
    assert not any(m.get("kind") == "announce" for m in welcome["history"])


@pytest.mark.parametrize(
    "request_",
    [
        {"t": "mute", "pid": "nobody-here"},
        {"t": "unmute", "pid": "nobody-here"},
        {"t": "remove", "pid": "nobody-here"},
        {"t": "admit", "pid": "nobody-here"},
        {"t": "deny", "pid": "nobody-here"},
        {"t": "delete", "mid": "no-such-mid"},
        {"t": "report", "mid": "no-such-mid"},
        {"t": "whisper", "to": "nobody-here", "text": "hi"},
    ],
    ids=lambda r: r["t"],
)
async def test_unknown_target_is_not_found(server, request_):
    """A pid or mid that is not in the room answers not_found."""
    circle = await room_with(server, 1)
    await refused(circle.host, dict(request_), "not_found")
    assert await circle.people[0].quiet(100 * MS) == []


async def test_open_room_members_cannot_be_admitted_or_denied(server):
    """Admit and deny act on waiting participants only: a present one is not_found."""
    circle = await room_with(server, 1)
    person = circle.people[0]
    await refused(circle.host, {"t": "admit", "pid": person.pid}, "not_found")
    await refused(circle.host, {"t": "deny", "pid": person.pid}, "not_found")
    await said(person, "still here")


@pytest.mark.parametrize(
    "request_",
    [
        {"t": "mute"},
        {"t": "mute", "pid": "{pid}", "seconds": "5"},
        {"t": "mute", "pid": "{pid}", "seconds": True},
        {"t": "mute", "pid": "{pid}", "seconds": 0},
        {"t": "mute", "pid": "{pid}", "seconds": -5},
        {"t": "mute", "pid": "{pid}", "seconds": 1.5},
        {"t": "mute", "pid": 12345},
        {"t": "unmute"},
        {"t": "remove"},
        {"t": "remove", "pid": "{pid}", "reason": 7},
        {"t": "delete"},
        {"t": "delete", "mid": ""},
        {"t": "slow"},
        {"t": "slow", "seconds": -1},
        {"t": "slow", "seconds": True},
        {"t": "slow", "seconds": "5"},
        {"t": "slow", "seconds": 3601},
        {"t": "announce"},
        {"t": "announce", "text": "   "},
        {"t": "admit"},
        {"t": "deny", "pid": ["x"]},
    ],
    ids=repr,
)
async def test_malformed_facilitator_request_is_bad_request(server, request_):
    """A missing or wrong-typed field answers bad_request, changes nothing, keeps the socket."""
    circle = await room_with(server, 1)
    host, person = circle.host, circle.people[0]
    request = {
        k: v.format(pid=person.pid) if isinstance(v, str) else v for k, v in request_.items()
    }
    await refused(host, request, "bad_request")
    assert await person.quiet(100 * MS) == []
    await said(person, "not muted, not removed")
    await acked(host, {"t": "announce", "text": "the connection is still open"})


async def test_action_on_member_who_left_is_not_found(server):
    """Once a participant has left, acting on them answers not_found."""
    circle = await room_with(server, 1)
    host, person = circle.host, circle.people[0]
    await person.send({"t": "leave"})
    assert await person.closed() == 1000
    assert await host.next("left") == {"t": "left", "pid": person.pid}
    for kind in ("mute", "unmute", "remove"):
        await refused(host, {"t": kind, "pid": person.pid}, "not_found")
    await refused(host, {"t": "whisper", "to": person.pid, "text": "are you ok?"}, "not_found")


# --- report --------------------------------------------------------------------------------


async def test_report_reaches_only_facilitators(server, encoding):
    """A report goes to facilitators only, with by = the reporter; late ones see it too."""
    circle = await room_with(server, 3, encoding)
    host, (author, reporter, bystander) = circle.host, circle.people
    mid = (await said(author, "something hurtful"))["mid"]
    for client in (host, author, reporter, bystander):
        await client.next("msg", mid=mid)

    await acked(reporter, {"t": "report", "mid": mid, "reason": "unkind"})
    report = await host.next("report")
    assert report["mid"] == mid and report["by"] == reporter.pid
    assert report["reason"] == "unkind" and isinstance(report["ts"], int)
    assert set(report) == {"t", "mid", "by", "reason", "ts"}
    for client in (author, reporter, bystander):
        assert await client.quiet() == []

    await acked(bystander, {"t": "report", "mid": mid})
    assert (await host.next("report"))["reason"] == ""

    _, welcome = await newcomer(server, circle, facilitator=True, encoding=encoding)
    reports = welcome["reports"]
    assert [(r["mid"], r["by"], r["reason"]) for r in reports] == [
        (mid, reporter.pid, "unkind"),
        (mid, bystander.pid, ""),
    ]
    _, welcome = await newcomer(server, circle, encoding=encoding)
    assert "reports" not in welcome


async def test_facilitator_log_lists_actions_without_text(server):
    """welcome.log lists each action with by/pid/mid/ts and never any message text."""
    circle = await room_with(server, 2)
    host, (one, two) = circle.host, circle.people
    said_mid = (await said(one, "SECRET-SAID-TEXT"))["mid"]
    await acked(host, {"t": "mute", "pid": one.pid, "seconds": 60})
    await acked(host, {"t": "unmute", "pid": one.pid})
    await acked(host, {"t": "delete", "mid": said_mid})
    await acked(host, {"t": "lock"})
    await acked(host, {"t": "unlock"})
    await acked(host, {"t": "slow", "seconds": 5})
    await acked(host, {"t": "announce", "text": "SECRET-ANNOUNCED-TEXT"})
    await acked(host, {"t": "remove", "pid": two.pid, "reason": "SECRET-REASON"})

    _, welcome = await newcomer(server, circle, facilitator=True)
    log = welcome["log"]
    actions = ["mute", "unmute", "delete", "lock", "unlock", "slow", "announce", "remove"]
    assert [e["action"] for e in log] == actions
    assert all(e["by"] == host.pid and isinstance(e["ts"], int) for e in log)
    assert all(set(e) <= {"action", "by", "pid", "mid", "ts", "label"} for e in log)
    assert all(e["label"] == "owner" for e in log)  # §14: the key behind each action
    assert [e.get("pid") for e in log if e["action"] in {"mute", "unmute", "remove"}] == [
        one.pid,
        one.pid,
        two.pid,
    ]
    assert log[2]["mid"] == said_mid
    assert "SECRET" not in repr(log)
    assert welcome["waiting"] == []


async def test_participant_welcome_has_no_facilitator_extras(server, encoding):
    """A participant's welcome carries no reports, log or waiting, even when they exist."""
    circle = await room_with(server, 1, encoding)
    host, person = circle.host, circle.people[0]
    mid = (await said(person, "hello"))["mid"]
    await acked(person, {"t": "report", "mid": mid})
    await acked(host, {"t": "slow", "seconds": 1})
    assert not {"reports", "log", "waiting"} & set(person.welcome)
    _, welcome = await newcomer(server, circle, encoding=encoding)
    assert not {"reports", "log", "waiting"} & set(welcome)

    knock_room = await room_with(server, 0, encoding, admission="knock")
    knocker = await server.client(encoding)
    assert (await knocker.join(knock_room.id))["t"] == "waiting"
    pid = (await knock_room.host.next("knock"))["member"]["pid"]
    await acked(knock_room.host, {"t": "admit", "pid": pid})
    welcome = await knocker.next("welcome")
    assert welcome["you"]["role"] == "participant"
    assert not {"reports", "log", "waiting"} & set(welcome)


# --- whisper -------------------------------------------------------------------------------


async def test_whisper_reaches_exactly_the_two_ends(server, encoding):
    """Whispers go participant ↔ facilitator, to sender and target only."""
    circle = await room_with(server, 2, encoding)
    host, (person, bystander) = circle.host, circle.people

    await acked(person, {"t": "whisper", "to": host.pid, "text": "can we talk?"})
    for client in (person, host):
        whisper = await client.next("whisper")
        assert whisper["from"] == person.pid and whisper["to"] == host.pid
        assert whisper["text"] == "can we talk?" and isinstance(whisper["ts"], int)
    assert await bystander.quiet() == []

    await acked(host, {"t": "whisper", "to": person.pid, "text": "of course"})
    for client in (host, person):
        whisper = await client.next("whisper")
        assert (whisper["from"], whisper["to"]) == (host.pid, person.pid)
        assert whisper["text"] == "of course"
    assert await bystander.quiet() == []


async def test_whisper_between_participants_is_forbidden(server):
    """A participant cannot whisper to another participant."""
    circle = await room_with(server, 2)
    one, two = circle.people
    await refused(one, {"t": "whisper", "to": two.pid, "text": "psst"}, "forbidden")
    assert await two.quiet() == []
    assert await circle.host.quiet(50 * MS) == []


# --- help flare ----------------------------------------------------------------------------


async def test_help_flare_answers_configured_resources(start_server, encoding):
    """Help alerts facilitators (pid, ts) and answers the operator's resources with the id."""
    resources = CrisisResources(
        text="If you are in danger, call 999.",
        links=(("Samaritans", "https://www.samaritans.org"),),
    )
    server = await start_server(crisis_resources=resources)
    circle = await room_with(server, 2, encoding)
    host, (person, bystander) = circle.host, circle.people
    answer = await person.request({"t": "help"})
    assert answer == {
        "t": "resources",
        "id": answer["id"],
        "text": "If you are in danger, call 999.",
        "links": [{"title": "Samaritans", "url": "https://www.samaritans.org"}],
    }
    flare = await host.next("help")
    assert flare["pid"] == person.pid and isinstance(flare["ts"], int)
    assert set(flare) == {"t", "pid", "ts"}
    assert await bystander.quiet() == []
    assert await person.quiet(50 * MS) == []


async def test_help_flare_default_resources_are_empty(server):
    """With no configured resources the flare answers empty text and no links."""
    circle = await room_with(server, 1)
    answer = await circle.people[0].request({"t": "help"})
    assert answer["t"] == "resources" and answer["text"] == "" and answer["links"] == []
    assert (await circle.host.next("help"))["pid"] == circle.people[0].pid
    await circle.people[0].send({"t": "help"})  # without id: still answered
    answer = await circle.people[0].next("resources")
    assert "id" not in answer and answer["links"] == []


# --- knock rooms ---------------------------------------------------------------------------


async def test_knock_then_admit(server, encoding):
    """A knock room: waiting, knock to facilitators, not_joined meanwhile, admit → welcome."""
    circle = await room_with(server, 0, encoding, admission="knock")
    host = circle.host
    knocker = await server.client(encoding)
    waiting = await knocker.join(circle.id, name="Robin")
    assert waiting == {"t": "waiting", "id": waiting["id"]}
    knock = await host.next("knock")
    assert knock["member"]["name"] == "Robin" and knock["member"]["role"] == "participant"
    pid = knock["member"]["pid"]

    await refused(knocker, {"t": "say", "text": "hello?"}, "not_joined")
    await refused(knocker, {"t": "help"}, "not_joined")
    await refused(knocker, {"t": "whisper", "to": host.pid, "text": "hi"}, "not_joined")
    assert await host.quiet() == []

    second, welcome = await newcomer(server, circle, facilitator=True, encoding=encoding)
    assert welcome["waiting"] == [knock["member"]]
    assert pid not in {m["pid"] for m in welcome["members"]}
    await host.next("joined")
    unseen = (await said(host, "said while Robin waits"))["mid"]

    await acked(host, {"t": "admit", "pid": pid})
    welcome = knocker.welcome = await knocker.next("welcome")
    assert welcome["id"] == waiting["id"]
    assert welcome["you"] == {"pid": pid, "name": "Robin", "role": "participant"}
    assert {m["pid"] for m in welcome["members"]} == {host.pid, second.pid, pid}
    assert welcome["history"] == []  # since_join: nothing said while waiting
    for client in (host, second):
        joined = await client.next("joined")
        assert joined["member"] == knock["member"]

    seen = (await said(knocker, "thanks for letting me in"))["mid"]
    assert (await second.next("msg"))["pid"] == pid
    _, welcome = await newcomer(server, circle, facilitator=True)
    assert welcome["waiting"] == []

    await knocker.close()  # a reconnect keeps the floor: still nothing from the wait
    back = await server.client(encoding)
    welcome = await back.join(circle.id, resume=knocker.welcome["resume"])
    assert [m["mid"] for m in welcome["history"]] == [seen]
    assert unseen not in repr(welcome)


async def test_knock_then_deny(server, encoding):
    """Deny answers denied and closes 4003; the participant never enters the room."""
    circle = await room_with(server, 0, encoding, admission="knock")
    host = circle.host
    knocker = await server.client(encoding)
    assert (await knocker.join(circle.id))["t"] == "waiting"
    pid = (await host.next("knock"))["member"]["pid"]

    await acked(host, {"t": "deny", "pid": pid})
    assert await knocker.next("denied") == {"t": "denied", "pid": pid}
    assert await knocker.closed() == 4003
    await refused(host, {"t": "admit", "pid": pid}, "not_found")

    _, welcome = await newcomer(server, circle, facilitator=True)
    assert welcome["waiting"] == []
    assert pid not in {m["pid"] for m in welcome["members"]}


async def test_knock_room_lets_facilitators_straight_in(server):
    """In a knock room a facilitator's join answers welcome, not waiting."""
    circle = await room_with(server, 0, admission="knock")
    assert circle.host.welcome["room"]["admission"] == "knock"
    _, welcome = await newcomer(server, circle, facilitator=True, encoding=JSON)
    assert welcome["t"] == "welcome" and welcome["you"]["role"] == "facilitator"


async def test_waiting_participant_is_told_when_the_room_closes(server):
    """A participant still waiting gets ``closed`` before the 4010 close, like everyone else."""
    circle = await room_with(server, 0, admission="knock")
    knocker = await server.client()
    assert (await knocker.join(circle.id))["t"] == "waiting"
    await circle.host.next("knock")
    await acked(circle.host, {"t": "close"})
    assert (await knocker.next("closed"))["t"] == "closed"
    assert await knocker.closed() == 4010


async def test_a_knocker_who_left_cannot_be_admitted(server):
    """Admitting someone who disconnected while waiting answers not_found and changes nothing."""
    circle = await room_with(server, 0, admission="knock")
    knocker = await server.client()
    assert (await knocker.join(circle.id))["t"] == "waiting"
    pid = (await circle.host.next("knock"))["member"]["pid"]
    async with server.closing():
        knocker.ws.transport.abort()
    await refused(circle.host, {"t": "admit", "pid": pid}, "not_found")
    _, welcome = await newcomer(server, circle, facilitator=True)
    assert [m["pid"] for m in welcome["waiting"]] == [pid]  # still waiting, within the grace


async def test_join_while_waiting_is_not_joined(server):
    """A second join while waiting answers not_joined (§4: anything but leave)."""
    circle = await room_with(server, 0, admission="knock")
    knocker = await server.client()
    assert (await knocker.join(circle.id))["t"] == "waiting"
    assert (await knocker.join(circle.id))["code"] == "not_joined"
