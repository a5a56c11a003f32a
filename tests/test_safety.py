"""Safety tools (protocol §14) on one worker: every message, error and setting.

Real server, real WebSocket clients, both encodings where the wire shape matters. The
two-worker half (and what reaches logs and Redis) is in ``tests/test_redis_safety.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import fields
from typing import Any

import pytest

from chat.languages import load_languages
from chat.redis.client import room_key
from chat.redis.topology import close_client, command_client
from chat.roomstate import SETTING_CHOICES, RoomState
from chat.settings import CrisisResources
from tests.client import JSON, MSGPACK, Client, http_client
from tests.test_facilitation import acked, newcomer, refused, room_with, said
from tests.timing import scaled

CRISIS = "some days I want to kill myself"


async def test_warn_tells_the_target_alone_with_a_count_that_survives_a_resume(server, encoding):
    """warn → the target alone gets warned{reason,count}; the count survives a resume; the
    log has the action without its reason."""
    circle = await room_with(server, 2, encoding)
    host, (target, other) = circle.host, circle.people
    await acked(host, {"t": "warn", "pid": target.pid, "reason": "Please be kind"})
    assert await target.next("warned") == {"t": "warned", "reason": "Please be kind", "count": 1}
    assert await other.quiet() == [] and await host.quiet() == []
    target.ws.transport.abort()
    back = await server.client(encoding)
    assert (await back.join(circle.id, resume=target.welcome["resume"]))["t"] == "welcome"
    await acked(host, {"t": "warn", "pid": target.pid})
    assert await back.next("warned") == {"t": "warned", "reason": "", "count": 2}
    _, welcome = await newcomer(server, circle, facilitator=True)
    entries = [e for e in welcome["log"] if e["action"] == "warn"]
    assert len(entries) == 2 and "Please be kind" not in repr(welcome["log"])


async def test_warn_refusals(server):
    """warn: a facilitator target is forbidden, an absent one not_found, a long reason and a
    participant sender refused."""
    circle = await room_with(server, 1)
    host, person = circle.host, circle.people[0]
    other_host, _ = await newcomer(server, circle, facilitator=True)
    await refused(host, {"t": "warn", "pid": other_host.pid}, "forbidden")
    await refused(host, {"t": "warn", "pid": "nobody"}, "not_found")
    await refused(host, {"t": "warn", "pid": person.pid, "reason": "x" * 201}, "bad_request")
    await refused(person, {"t": "warn", "pid": person.pid}, "forbidden")


async def test_a_mute_reason_reaches_the_target_alone(server, encoding):
    """mute with reason: the target's muted carries it, nobody else's does."""
    circle = await room_with(server, 2, encoding)
    host, (target, other) = circle.host, circle.people
    await acked(host, {"t": "mute", "pid": target.pid, "seconds": 60, "reason": "Take a breath"})
    assert (await target.next("muted"))["reason"] == "Take a breath"
    for client in (host, other):
        assert "reason" not in await client.next("muted")
    await refused(host, {"t": "mute", "pid": other.pid, "reason": "y" * 201}, "bad_request")


async def test_hold_release_and_discard(server, encoding):
    """A held participant's say is acked held (no seq) and reaches facilitators only; release
    posts it with the same mid and a new seq; discard drops it; reviewed goes to the sender
    and the facilitators, nobody else."""
    circle = await room_with(server, 2, encoding)
    host, (held, other) = circle.host, circle.people
    await acked(host, {"t": "hold", "pid": held.pid})
    assert await host.next("hold") == {"t": "hold", "pid": held.pid, "on": True, "by": host.pid}
    ack = await acked(held, {"t": "say", "text": "may I say this?", "cw": "grief"})
    assert ack["held"] is True and "seq" not in ack
    event = await host.next("held")
    assert {k: event[k] for k in ("mid", "pid", "text", "cw")} == {
        "mid": ack["mid"], "pid": held.pid, "text": "may I say this?", "cw": "grief",
    }  # fmt: skip
    assert set(event) == {"t", "mid", "pid", "name", "text", "ts", "cw"}
    assert await other.quiet() == [] and await held.quiet() == []
    _, late = await newcomer(server, circle, facilitator=True, encoding=encoding)
    assert [h["mid"] for h in late["held"]] == [ack["mid"]]
    assert next(m for m in late["members"] if m["pid"] == held.pid)["held"] is True
    _, plain = await newcomer(server, circle, encoding=encoding)
    assert "held" not in plain and all("held" not in m for m in plain["members"])

    await acked(host, {"t": "release", "mid": ack["mid"]})
    for client in (host, held, other):
        msg = await client.next("msg")
        assert msg["mid"] == ack["mid"] and msg["cw"] == "grief" and msg["seq"] == 1
    for client in (host, held):
        assert await client.next("reviewed") == {
            "t": "reviewed", "mid": ack["mid"], "action": "release",
        }  # fmt: skip
    assert [m["t"] for m in await other.quiet()] == []
    await refused(host, {"t": "release", "mid": ack["mid"]}, "not_found")

    second = await acked(held, {"t": "say", "text": "and this?"})
    await host.next("held")
    await acked(host, {"t": "discard", "mid": second["mid"]})
    assert (await held.next("reviewed"))["action"] == "discard"
    assert [m["t"] for m in await other.quiet()] == []
    await acked(host, {"t": "unhold", "pid": held.pid})
    assert (await acked(held, {"t": "say", "text": "free again"}))["seq"] == 2


async def test_unhold_keeps_held_messages_and_a_leaver_can_be_released(server):
    """unhold leaves what is already held; a held message of someone who left is released."""
    circle = await room_with(server, 2)
    host, (held, other) = circle.host, circle.people
    await acked(host, {"t": "hold", "pid": held.pid})
    ack = await acked(held, {"t": "say", "text": "before I go"})
    await acked(host, {"t": "unhold", "pid": held.pid})
    await acked(held, {"t": "leave"})
    await acked(host, {"t": "release", "mid": ack["mid"]})
    assert (await other.next("msg"))["text"] == "before I go"
    assert (await host.next("reviewed"))["mid"] == ack["mid"]


async def test_held_messages_go_with_the_history_window(start_server):
    """A held message older than --history-seconds is gone, though nothing else was held since:
    from the store (with Redis: its held key expires with it, and HLEN/EXISTS show it gone),
    from a late facilitator's welcome, and from release (not_found). A younger one stays."""
    window = scaled(0.8)
    server = await start_server(history_seconds=window)
    circle = await room_with(server, 1, review="all")
    host, person = circle.host, circle.people[0]
    old = await acked(person, {"t": "say", "text": "waited too long"})
    await host.next("held")
    async with held_store(server, circle.id) as store:
        if store is not None:
            assert await store.hlen() == 1
            assert 0 < await store.pttl() <= window * 1000  # not the room's idle timeout
        # Wall-clock time must pass (held text is kept for the history's age): not a settle.
        await asyncio.sleep(window + scaled(0.2))
        if store is not None:
            assert not await store.exists()  # gone unread, nothing else held or said
        await refused(host, {"t": "release", "mid": old["mid"]}, "not_found")
        _, late = await newcomer(server, circle, facilitator=True)
        assert late["held"] == []
        young = await acked(person, {"t": "say", "text": "just now"})
        await host.next("held")
        if store is not None:
            assert await store.hlen() == 1
    await acked(host, {"t": "release", "mid": young["mid"]})
    assert (await person.next("msg"))["text"] == "just now"
    assert [m["t"] for m in await person.quiet()] == ["reviewed"]


class _HeldKey:
    """The room's held hash in the run's Redis (protocol §14), read as an operator would."""

    def __init__(self, client: Any, key: str) -> None:
        self._client, self._key = client, key

    async def hlen(self) -> int:
        return int(await self._client.hlen(self._key))

    async def pttl(self) -> int:
        return int(await self._client.pttl(self._key))

    async def exists(self) -> bool:
        return bool(await self._client.exists(self._key))


@asynccontextmanager
async def held_store(server: Any, room: str) -> AsyncIterator[_HeldKey | None]:
    """The room's held key when the server runs on Redis (``--core-broker``), else None."""
    settings = server.settings
    if not (settings.redis_url or settings.redis_cluster or settings.redis_sentinel):
        yield None
        return
    client = command_client(settings)
    try:
        yield _HeldKey(client, room_key(settings.redis_prefix, room, "held"))
    finally:
        await close_client(client)


async def test_review_all_holds_every_participant_but_not_facilitators(server):
    """settings review=all: every participant message waits; facilitators post directly;
    the room event carries review and contact."""
    circle = await room_with(server, 1)
    host, person = circle.host, circle.people[0]
    await acked(host, {"t": "settings", "review": "all"})
    room = await person.next("room")
    assert room["review"] == "all" and room["contact"] == "nudge"
    assert (await acked(person, {"t": "say", "text": "hello"}))["held"] is True
    assert "seq" in await acked(host, {"t": "say", "text": "hi all"})
    await refused(host, {"t": "hold", "pid": host.pid}, "forbidden")
    await refused(host, {"t": "release", "mid": "nothing"}, "not_found")


async def test_settings_and_their_refusals(server):
    """settings: welcome.room carries review and contact; bad values, no field and a
    participant sender are refused; rooms may be created with them."""
    circle = await room_with(server, 1)
    host, person = circle.host, circle.people[0]
    assert (host.welcome["room"]["review"], host.welcome["room"]["contact"]) == ("off", "nudge")
    await refused(host, {"t": "settings", "review": "some"}, "bad_request")
    await refused(host, {"t": "settings", "contact": "maybe"}, "bad_request")
    await refused(host, {"t": "settings"}, "bad_request")
    await refused(person, {"t": "settings", "review": "all"}, "forbidden")
    room = await server.room(settings={"review": "all", "contact": "block"})
    async with http_client(server.http) as http:
        info = (await http.get(f"/api/rooms/{room['room']}")).json()
        assert (info["review"], info["contact"]) == ("all", "block")
        bad = await http.post("/api/rooms", json={"settings": {"contact": "never"}})
        assert bad.status_code == 400


async def test_a_facilitator_and_room_creation_accept_the_same_setting_values(start_server):
    """review, contact and slow: a value ``POST /api/rooms`` takes, the facilitator's
    ``settings`` (``slow``) message takes too, and one refused by either is refused by both."""
    server = await start_server(room_create_rate=100)
    _, host = await server.hosted()
    tried: dict[str, list[object]] = {
        "review": ["off", "all", "some", "ALL", "", 1, False],
        "contact": ["nudge", "allow", "block", "never", "Allow", 0],
        "slow": [0, 1, 3600, 3601, -1, 1.5, "10", True],
    }
    taken: dict[str, list[object]] = {}
    async with http_client(server.http) as http:
        for name, values in tried.items():
            for value in values:
                created = await http.post("/api/rooms", json={"settings": {name: value}})
                message = (
                    {"t": "slow", "seconds": value}
                    if name == "slow"
                    else {"t": "settings", name: value}
                )
                answer = await host.request(message)
                assert (created.status_code == 201) == (answer["t"] == "ack"), (name, value, answer)
                if answer["t"] == "ack":
                    taken.setdefault(name, []).append(value)
    assert taken == {
        "review": ["off", "all"],
        "contact": ["nudge", "allow", "block"],
        "slow": [0, 1, 3600],
    }


def test_each_choice_defaults_to_its_first_word() -> None:
    """Room creation fills a setting left out with its first word: the RoomState default."""
    defaults = {f.name: f.default for f in fields(RoomState)}
    assert {name: defaults[name] for name in SETTING_CHOICES} == {
        name: words[0] for name, words in SETTING_CHOICES.items()
    }


async def test_resolve_closes_the_loop_with_reporters(server, encoding):
    """resolve → facilitators get resolved{mid,by}; each reporter report_reviewed{mid}; the
    report is off the open list; nobody else hears of it."""
    circle = await room_with(server, 3, encoding)
    host, (author, one, two) = circle.host, circle.people
    mid = (await said(author, "something hurtful"))["mid"]
    for reporter in (one, two):
        await acked(reporter, {"t": "report", "mid": mid, "reason": "hurtful"})
    await acked(host, {"t": "resolve", "mid": mid})
    assert await host.next("resolved") == {"t": "resolved", "mid": mid, "by": host.pid}
    for reporter in (one, two):
        assert await reporter.next("report_reviewed") == {"t": "report_reviewed", "mid": mid}
    assert [m["t"] for m in await author.quiet()] == ["msg"]
    _, welcome = await newcomer(server, circle, facilitator=True)
    assert welcome["reports"] == []
    await refused(host, {"t": "resolve", "mid": mid}, "not_found")
    await refused(one, {"t": "resolve", "mid": mid}, "forbidden")


async def test_help_seen_tells_the_participant_and_the_facilitators(server, encoding):
    """help_seen → the participant gets a bare help_seen, every facilitator pid and by."""
    circle = await room_with(server, 2, encoding)
    host, (asker, other) = circle.host, circle.people
    second, _ = await newcomer(server, circle, facilitator=True, encoding=encoding)
    await asker.request({"t": "help"})
    await acked(host, {"t": "help_seen", "pid": asker.pid})
    assert await asker.next("help_seen") == {"t": "help_seen"}
    expected = {"t": "help_seen", "pid": asker.pid, "by": host.pid}
    assert await host.next("help_seen") == expected
    assert await second.next("help_seen") == expected
    assert [m for m in await other.quiet() if m["t"] == "help_seen"] == []
    await refused(host, {"t": "help_seen", "pid": "nobody"}, "not_found")
    await refused(other, {"t": "help_seen", "pid": asker.pid}, "forbidden")


async def test_crisis_language_flags_without_text_and_shows_resources_once(start_server):
    """A participant's crisis phrase is delivered; facilitators get flag (no text); the sender
    gets resources at most once in 15 minutes; facilitators are not checked; /metrics counts."""
    server = await start_server()
    circle = await room_with(server, 2)
    host, (sender, other) = circle.host, circle.people
    frames = await answered(sender, {"t": "say", "text": CRISIS, "id": 5})
    ack = frames[-2]  # the ack, then the resources (docs/protocol.md Part 2)
    assert ack["t"] == "ack" and ack["id"] == 5 and frames[-1]["t"] == "resources"
    flag = await host.next("flag")
    assert flag == {"t": "flag", "mid": ack["mid"], "pid": sender.pid, "kind": "crisis"}
    assert (await other.next("msg"))["text"] == CRISIS
    assert [m["t"] for m in await other.quiet()] == []
    await said(sender, "I  WANT   to die")  # white space and case do not matter
    await host.next("flag")
    assert [m["t"] for m in await sender.quiet() if m["t"] == "resources"] == []
    await said(host, CRISIS)
    assert [m for m in await host.quiet() if m["t"] == "flag"] == []
    async with http_client(server.http) as http:
        text = (await http.get("/metrics")).text
    assert 'hearth_flags_total{kind="crisis"} 2.0' in text


ANSWERS = {"ack", "error", "resources"}


async def flags_counted(server: Any) -> float:
    """``hearth_flags_total{kind="crisis"}`` as /metrics has it now (0 before any)."""
    async with http_client(server.http) as http:
        text = (await http.get("/metrics")).text
    line = 'hearth_flags_total{kind="crisis"} '
    return next((float(x[len(line) :]) for x in text.splitlines() if x.startswith(line)), 0.0)


async def answered(client: Client, request: dict[str, Any]) -> list[dict[str, Any]]:
    """Send ``request`` (with an ``id``); in the order they came, its answer and the
    resources that came before it or in the short while after (they follow the answer)."""
    await client.send(request)
    frames = [await client.recv()]
    while frames[-1].get("id") != request["id"] or frames[-1]["t"] not in ANSWERS:
        frames.append(await client.recv())
    return [m for m in frames + await client.quiet() if m["t"] in ANSWERS]


async def test_crisis_language_in_a_refused_say_still_shows_resources_and_flags(server):
    """A say refused for contact details, a mute, slow mode or the rate still shows its
    sender the resources (once in 15 minutes, after the error) and flags it to the
    facilitators without a mid, naming the refusal; nothing reaches the room."""
    circle = await room_with(server, 3)
    host, (nudged, muted, other) = circle.host, circle.people
    flags_before = await flags_counted(server)
    text = f"{CRISIS}, call me on +44 7911 123456"
    frames = await answered(nudged, {"t": "say", "text": text, "id": 1})
    assert [(m["t"], m.get("code")) for m in frames] == [
        ("error", "check_first"),
        ("resources", None),
    ]
    flag = await host.next("flag")
    assert flag == {"t": "flag", "pid": nudged.pid, "kind": "crisis", "refused": "check_first"}
    # Within 15 minutes: flagged again, no second resources (also once confirmed and sent).
    frames = await answered(nudged, {"t": "say", "text": text, "id": 2, "confirm": True})
    assert [m["t"] for m in frames] == ["ack"]
    assert (await host.next("flag"))["mid"] == frames[0]["mid"]
    await acked(host, {"t": "mute", "pid": muted.pid})
    frames = await answered(muted, {"t": "say", "text": "I want to die", "id": 3})
    assert [(m["t"], m.get("code")) for m in frames] == [
        ("error", "muted"),
        ("resources", None),
    ]
    assert (await host.next("flag")) == {
        "t": "flag", "pid": muted.pid, "kind": "crisis", "refused": "muted",
    }  # fmt: skip
    await acked(host, {"t": "slow", "seconds": 60})
    await said(other, "hello")
    frames = await answered(other, {"t": "say", "text": "I want to die", "id": 4})
    assert [(m["t"], m.get("code")) for m in frames] == [
        ("error", "slow_mode"),
        ("resources", None),
    ]
    assert (await host.next("flag", pid=other.pid))["refused"] == "slow_mode"
    # Whatever was refused never reached the room.
    texts = [m.get("text") for m in await other.quiet() + await host.quiet() if m["t"] == "msg"]
    assert texts == []
    assert await flags_counted(server) == flags_before + 4


async def test_crisis_language_past_the_rate_still_shows_resources(start_server):
    """A say refused for the rate (here the connection's, before any handler) shows the
    resources too, and flags it; a facilitator's is not checked."""
    server = await start_server(rate=0.01, burst=2)
    circle = await room_with(server, 1)
    host, person = circle.host, circle.people[0]
    await said(person, "hello")  # the join and this: the burst of 2
    frames = await answered(person, {"t": "say", "text": CRISIS, "id": 9})
    assert [(m["t"], m.get("code")) for m in frames] == [
        ("error", "rate_limited"),
        ("resources", None),
    ]
    assert (await host.next("flag"))["refused"] == "rate_limited"
    await said(host, "welcome")
    await refused(host, {"t": "say", "text": CRISIS}, "rate_limited")  # not checked
    assert [m for m in await host.quiet() if m["t"] == "flag"] == []


async def test_the_operator_list_replaces_the_built_in_one(start_server):
    """--safety-words for en replaces the built-in English list."""
    server = await start_server(safety_words=(("en", ("purple elephant",)),))
    circle = await room_with(server, 1)
    host, person = circle.host, circle.people[0]
    await said(person, "I want to kill myself")
    await said(person, "a PURPLE\n elephant again")
    flags = [m for m in await host.quiet() if m["t"] == "flag"]
    assert len(flags) == 1


async def test_spanish_rooms_flag_spanish_crisis_language(start_server, tmp_path):
    """An es room uses the built-in Spanish list (flag, resources in Spanish); a negated
    phrase does not count; an operator's es-MX room falls back to the es list."""
    (tmp_path / "es-MX").mkdir()
    (tmp_path / "es-MX" / "page.json").write_text(
        json.dumps({"messages": {"status.open": "Conectado"}})
    )
    resources = CrisisResources(
        by_lang=(
            ("en", CrisisResources("Call your local emergency number.", ())),
            ("es", CrisisResources("Llama al número de emergencias.", ())),
        )
    )
    server = await start_server(lang_dir=load_languages(tmp_path), crisis_resources=resources)
    for lang in ("es", "es-MX"):
        circle = await room_with(server, 1, lang=lang)
        host, person = circle.host, circle.people[0]
        await said(person, "No, no quiero morir, solo estoy cansada")
        assert [m for m in await host.quiet() if m["t"] == "flag"] == [], lang
        ack = await said(person, "A veces pienso que estarian mejor sin mi")  # no accents
        flag = await host.next("flag")
        assert (flag["mid"], flag["kind"]) == (ack["mid"], "crisis"), lang
        assert (await person.next("resources"))["text"] == "Llama al número de emergencias."


async def test_contact_details_nudge_block_and_allow(server, encoding):
    """nudge: check_first with kinds, confirm sends; block: not_allowed even confirmed;
    allow: anything; facilitators and whispers are not checked."""
    circle = await room_with(server, 1, encoding)
    host, person = circle.host, circle.people[0]
    text = "mail me at sam@example.org or call +44 7911 123456"
    answer = await refused(person, {"t": "say", "text": text}, "check_first")
    assert answer["kinds"] == ["phone", "email"]
    assert (await acked(person, {"t": "say", "text": text, "confirm": True}))["seq"]
    await acked(host, {"t": "settings", "contact": "block"})
    for confirm in (False, True):
        answer = await refused(
            person, {"t": "say", "text": "see www.example.com", "confirm": confirm}, "not_allowed"
        )
        assert answer["kinds"] == ["url"]
    await acked(host, {"t": "say", "text": "our line: +44 7911 123456"})
    await acked(person, {"t": "whisper", "to": host.pid, "text": "my insta: sam.o"})
    await acked(host, {"t": "settings", "contact": "allow"})
    await acked(person, {"t": "say", "text": "@sam_o on insta"})
    await refused(person, {"t": "say", "text": "x", "confirm": "yes"}, "bad_request")


async def test_ignore_hides_msg_and_typing_also_in_a_resume(server, encoding):
    """ignore: the ignorer gets none of the member's msg or typing (history in a resume too);
    presence still shows them; the target is never told; unignore restores."""
    circle = await room_with(server, 2, encoding)
    host, (ignorer, loud) = circle.host, circle.people
    assert "ignores" not in ignorer.welcome["you"]  # a member who ignores nobody
    await acked(ignorer, {"t": "ignore", "pid": loud.pid})
    assert await loud.quiet() == []
    await loud.send({"t": "typing"})
    await said(loud, "you can't hear me")
    assert (await host.next("msg"))["text"] == "you can't hear me"
    await said(host, "but you hear me")
    got = [m for m in await ignorer.quiet() if m["t"] in {"msg", "typing"}]
    assert [m.get("text") for m in got] == ["but you hear me"]
    ignorer.ws.transport.abort()
    back = await server.client(encoding)
    welcome = await back.join(circle.id, resume=ignorer.welcome["resume"], since=0)
    assert [m["text"] for m in welcome["history"]] == ["but you hear me"]
    assert loud.pid in {m["pid"] for m in welcome["members"]}
    assert welcome["you"]["ignores"] == [loud.pid]  # Part 2: a reloaded page knows it
    assert [m["member"] for m in await host.quiet() if m["t"] == "joined"] == []
    await said(loud, "still not")
    await said(host, "still yes")
    assert [m["text"] for m in await back.quiet() if m["t"] == "msg"] == ["still yes"]
    await acked(back, {"t": "unignore", "pid": loud.pid})
    await said(loud, "now you hear me")
    assert (await back.next("msg"))["text"] == "now you hear me"
    back.ws.transport.abort()
    again = await server.client(encoding)
    welcome = await again.join(circle.id, resume=ignorer.welcome["resume"])
    assert "ignores" not in welcome["you"]
    back = again
    await refused(back, {"t": "ignore", "pid": host.pid}, "forbidden")
    await refused(back, {"t": "ignore", "pid": "nobody"}, "not_found")


async def test_content_warnings_on_say_and_by_facilitators_follow_history(server, encoding):
    """say cw → msg and history carry it; a facilitator's cw changes it for the room and in
    history, "" removes it; limits are bad_request."""
    circle = await room_with(server, 1, encoding, history="recent")
    host, person = circle.host, circle.people[0]
    ack = await acked(person, {"t": "say", "text": "about my loss", "cw": "grief"})
    assert (await host.next("msg"))["cw"] == "grief"
    plain = await said(person, "something else")
    await acked(host, {"t": "cw", "mid": plain["mid"], "cw": "self-harm"})
    assert await person.next("cw") == {"t": "cw", "mid": plain["mid"], "cw": "self-harm"}
    await acked(host, {"t": "cw", "mid": ack["mid"], "cw": ""})
    _, welcome = await newcomer(server, circle, encoding=encoding)
    assert [m.get("cw") for m in welcome["history"]] == [None, "self-harm"]
    await refused(person, {"t": "say", "text": "x", "cw": ""}, "bad_request")
    await refused(person, {"t": "say", "text": "x", "cw": "c" * 61}, "bad_request")
    await refused(host, {"t": "cw", "mid": ack["mid"], "cw": "c" * 61}, "bad_request")
    await refused(host, {"t": "cw", "mid": "gone", "cw": "x"}, "not_found")
    await refused(person, {"t": "cw", "mid": ack["mid"], "cw": "x"}, "forbidden")


async def test_co_facilitator_keys_invite_label_and_revoke(server):
    """invite → ack with a key and label; it makes a facilitator whose actions the log labels;
    labels are unique ("owner" is taken); revoke closes its members with 4003, revokes their
    resume tokens and makes the key useless; the owner key cannot be revoked."""
    circle = await room_with(server, 1)
    host, person = circle.host, circle.people[0]
    ack = await acked(host, {"t": "invite", "label": "Sam's key"})
    assert ack["label"] == "Sam's key" and len(ack["key"]) >= 22
    await refused(host, {"t": "invite", "label": "sam's KEY"}, "bad_request")
    await refused(host, {"t": "invite", "label": "owner"}, "bad_request")
    await refused(host, {"t": "invite", "label": "l" * 41}, "bad_request")
    await refused(person, {"t": "invite", "label": "mine"}, "forbidden")
    cohost = await server.client()
    welcome = await cohost.join(circle.id, key=ack["key"])
    assert welcome["you"]["role"] == "facilitator"
    await acked(cohost, {"t": "warn", "pid": person.pid})
    log = (await newcomer(server, circle, facilitator=True))[1]["log"]
    assert [e["label"] for e in log if e["action"] in {"invite", "warn"}] == ["owner", "Sam's key"]

    await refused(host, {"t": "revoke", "label": "owner"}, "forbidden")
    await refused(host, {"t": "revoke", "label": "nobody's"}, "not_found")
    await acked(host, {"t": "revoke", "label": "Sam's key"})
    assert await cohost.closed() == 4003
    assert (await host.next("left"))["pid"] == cohost.pid
    again = await server.client()
    answer = await again.join(circle.id, resume=welcome["resume"])
    assert answer["code"] == "bad_resume"
    answer = await again.join(circle.id, key=ack["key"])
    assert answer["code"] == "forbidden" and await again.closed() == 4003


async def test_the_facilitator_backchannel(server, encoding):
    """whisper to "facilitators" reaches every facilitator and no participant; a participant
    may not use it."""
    circle = await room_with(server, 1, encoding)
    host, person = circle.host, circle.people[0]
    second, _ = await newcomer(server, circle, facilitator=True, encoding=encoding)
    await person.next("joined")
    await acked(host, {"t": "whisper", "to": "facilitators", "text": "I'll take the next one"})
    for client in (host, second):
        got = await client.next("whisper")
        assert (got["from"], got["to"], got["text"]) == (
            host.pid, "facilitators", "I'll take the next one",
        )  # fmt: skip
    assert await person.quiet() == []
    await refused(person, {"t": "whisper", "to": "facilitators", "text": "hi"}, "forbidden")


@pytest.mark.parametrize("kind", ["warn", "hold", "unhold", "help_seen"])
async def test_facilitator_only_actions_are_forbidden_to_participants(server, kind):
    """Every §14 action marked (facilitators) answers forbidden to a participant."""
    circle = await room_with(server, 2, JSON)
    await refused(circle.people[0], {"t": kind, "pid": circle.people[1].pid}, "forbidden")


async def test_clients_that_never_send_the_new_messages_keep_working(server):
    """An old client (plain say, no cw or confirm) is untouched by the defaults."""
    circle = await room_with(server, 1, MSGPACK)
    person: Client = circle.people[0]
    assert (await said(person, "an ordinary message about 2024, 12:30 and 5/10"))["seq"] == 1
