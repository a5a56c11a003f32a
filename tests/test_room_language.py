"""Protocol §15 on a real server: the room's language, its pseudonyms, its resources, its pages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from chat.languages import load_languages, shipped_languages
from chat.settingfiles import CrisisResources

RESOURCES = CrisisResources(
    by_lang=(
        (
            "en",
            CrisisResources("Call your local emergency number.", (("Samaritans", "https://s"),)),
        ),
        ("es", CrisisResources("Llama al número de emergencias.", (("Teléfono", "https://t"),))),
    )
)


async def _post(server: Any, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http) as http:
        return await http.post("/api/rooms", json=body)


async def _get(server: Any, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http) as http:
        return await http.get(path)


async def test_lang_is_echoed_in_welcome_and_room_info(server) -> None:
    """A room's lang (default en) is in welcome.room and in GET /api/rooms/{room}."""
    for wanted, expected in ((None, "en"), ("es", "es"), ("ar", "ar"), ("ES", "es")):
        room = await server.room(settings={"lang": wanted} if wanted else {})
        info = (await _get(server, f"/api/rooms/{room['room']}")).json()
        assert info["lang"] == expected
        client = await server.client()
        welcome = await client.join(room["room"])
        assert welcome["room"]["lang"] == expected
        await client.close()


async def test_room_info_is_the_public_part_of_welcome_room(server) -> None:
    """GET /api/rooms/{room}: id, title, rules and every setting of welcome.room, top level;
    the keys pages used before v1.1 stay."""
    room = await server.room(
        title="Círculo", rules="Sé amable.",
        settings={"lang": "es", "admission": "knock", "slow": 5, "typing": "off",
                  "history": "recent"},
    )  # fmt: skip
    info = (await _get(server, f"/api/rooms/{room['room']}")).json()
    facilitator = await server.client()
    welcome = await facilitator.join(room["room"], key=room["facilitator_key"])
    for key, value in welcome["room"].items():
        assert info[key] == value, key
    assert info["room"] == info["id"] == room["room"]
    assert (info["admission"], info["slow"], info["typing"]) == ("knock", 5, "off")
    assert info["history"] == "recent"  # the setting, never messages
    assert not {"members", "messages", "seq"} & set(info)


@pytest.mark.parametrize("lang", ["xx", "fr", "", "en_US", "english", 5, None, ["es"]])
async def test_unknown_lang_is_refused(server, lang: Any) -> None:
    """A lang the server does not have answers 400 bad_request."""
    response = await _post(server, {"settings": {"lang": lang}})
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


async def test_pseudonyms_come_from_the_rooms_language(server) -> None:
    """Generated names come from the room language's word list, unique in the room."""
    for tag in ("es", "ar", "en"):
        words = shipped_languages().words(tag, "en")
        allowed = {words.name(i) for i in range(words.size)}
        room = await server.room(settings={"lang": tag})
        names = []
        for _ in range(6):
            client = await server.client()
            names.append((await client.join(room["room"]))["you"]["name"])
        assert set(names) <= allowed, (tag, names)
        assert len(set(names)) == len(names)


async def test_resources_answer_in_the_rooms_language(start_server) -> None:
    """resources comes in the room's language, else the default language's."""
    server = await start_server(crisis_resources=RESOURCES)
    answers = {}
    for tag in ("es", "ar", "en"):
        room = await server.room(settings={"lang": tag})
        client = await server.client()
        await client.join(room["room"])
        answers[tag] = await client.request({"t": "help"})
    assert answers["es"]["t"] == "resources"
    assert answers["es"]["text"] == "Llama al número de emergencias."
    assert answers["es"]["links"] == [{"title": "Teléfono", "url": "https://t"}]
    assert answers["ar"]["text"] == "Call your local emergency number."  # no ar: default en
    assert answers["en"]["links"] == [{"title": "Samaritans", "url": "https://s"}]


async def test_resources_fall_back_to_the_default_language(start_server) -> None:
    """With --default-lang es, a room in a language the file does not name gets Spanish."""
    server = await start_server(crisis_resources=RESOURCES, default_lang="es")
    room = await server.room(settings={"lang": "ar"})
    client = await server.client()
    await client.join(room["room"])
    assert (await client.request({"t": "help"}))["text"] == "Llama al número de emergencias."
    default_room = await server.room()
    assert (await _get(server, f"/api/rooms/{default_room['room']}")).json()["lang"] == "es"


async def test_single_object_resources_serve_every_language(start_server) -> None:
    """The single-object form answers the same resources in every room."""
    every = CrisisResources("Help is near.", (("Line", "https://l"),))
    server = await start_server(crisis_resources=every)
    for tag in ("ar", "es"):
        room = await server.room(settings={"lang": tag})
        client = await server.client()
        await client.join(room["room"])
        answer = await client.request({"t": "help"})
        assert (answer["text"], answer["links"]) == ("Help is near.", [
            {"title": "Line", "url": "https://l"}
        ])  # fmt: skip


async def test_languages_are_listed_and_served(server) -> None:
    """GET /api/languages lists tag, name and direction; each catalogue is served whole."""
    listing = (await _get(server, "/api/languages")).json()
    assert listing["default"] == "en"
    tags = {entry["tag"]: entry["dir"] for entry in listing["languages"]}
    assert tags["ar"] == "rtl" and tags["es"] == tags["en"] == "ltr"
    arabic = (await _get(server, "/api/languages/ar")).json()
    english = (await _get(server, "/api/languages/en")).json()
    assert arabic["dir"] == "rtl" and set(arabic["messages"]) == set(english["messages"])
    assert arabic["messages"]["composer.send"] == "إرسال"
    for missing in ("xx", "fr", "..%2Fen"):
        assert (await _get(server, f"/api/languages/{missing}")).status_code == 404


async def test_an_operators_language_is_usable(start_server, tmp_path: Path) -> None:
    """A language added with --lang-dir can be a room's language, with its own pseudonyms."""
    (tmp_path / "fr").mkdir()
    (tmp_path / "fr" / "page.json").write_text(
        json.dumps({"language": {"name": "Français"}, "messages": {"composer.send": "Envoyer"}})
    )
    (tmp_path / "fr" / "names.json").write_text(
        json.dumps({"pattern": "{noun} {adjective}",
                    "groups": [{"adjectives": ["Calme"], "nouns": ["Loutre"]}]})
    )  # fmt: skip
    server = await start_server(lang_dir=load_languages(tmp_path))
    room = await server.room(settings={"lang": "fr"})
    client = await server.client()
    welcome = await client.join(room["room"])
    assert welcome["room"]["lang"] == "fr" and welcome["you"]["name"] == "Loutre Calme"
    french = (await _get(server, "/api/languages/fr")).json()
    assert french["messages"]["composer.send"] == "Envoyer"
    assert french["messages"]["status.open"] == "Connected"  # completed from English


async def test_role_words_of_every_language_are_refused_in_every_room(
    start_server, tmp_path: Path
) -> None:
    """A participant may not take a role word of any language the server has, in a room of any
    language; an operator's --lang-dir adds words; a facilitator may use them."""
    (tmp_path / "fr").mkdir()
    (tmp_path / "fr" / "names.json").write_text(json.dumps({"reserved": ["animatrice"]}))
    server = await start_server(lang_dir=load_languages(tmp_path))
    for tag in ("en", "es", "ar"):
        room = await server.room(settings={"lang": tag})
        client = await server.client()
        for name in ("Facilitadora", "المشرف", "الميسر", "Anfitrión", "Animatrice", "Moderator"):
            assert (await client.join(room["room"], name=name))["code"] == "bad_name", (tag, name)
        assert (await client.join(room["room"], name="Maysara"))["t"] == "welcome"
        facilitator = await server.client()
        welcome = await facilitator.join(room["room"], key=room["facilitator_key"], name="المشرف")
        assert welcome["you"]["name"] == "المشرف"
        await client.close()
        await facilitator.close()


async def test_pages_carry_the_quick_exit_url(start_server) -> None:
    """Both pages name --quick-exit-url (escaped) for quick exit, before any script runs."""
    server = await start_server(quick_exit_url='https://example.org/news?a=1&b="2"')
    room = await server.room()
    for path in ("/", f"/r/{room['room']}"):
        page = (await _get(server, path)).text
        assert (
            '<meta name="hearth-quick-exit" '
            'content="https://example.org/news?a=1&amp;b=&quot;2&quot;">' in page
        )
