"""Reconnecting (protocol §7): resume keeps the identity, fills the gap, hides the churn."""

from __future__ import annotations

from tests.client import JSON, MSGPACK
from tests.timing import MS, scaled


async def test_resume_keeps_identity_and_fills_the_gap(server, encoding) -> None:
    """A member who drops and resumes with since keeps pid and name and gets what it missed."""
    room = await server.room()
    stayer = await server.client(MSGPACK)
    await stayer.join(room["room"])
    leaver = await server.client(encoding)
    first = await leaver.join(room["room"], name="Wren")
    await leaver.request({"t": "say", "text": "before the drop"})
    await stayer.next("msg")
    leaver.ws.transport.abort()  # a network loss, not a goodbye
    for text in ("missed one", "missed two"):
        await stayer.request({"t": "say", "text": text})
    back = await server.client(encoding)
    welcome = await back.join(room["room"], resume=first["resume"], since=1)
    assert welcome["you"] == first["you"]
    assert [m["text"] for m in welcome["history"]] == ["missed one", "missed two"]
    assert welcome["seq"] == 3
    assert [m["t"] for m in await stayer.quiet(400 * MS) if m["t"] in {"left", "joined"}] == []
    await stayer.request({"t": "say", "text": "welcome back"})
    assert (await back.next("msg"))["text"] == "welcome back"


async def test_resume_without_since_gives_everything_since_joining(server) -> None:
    """Without since, a since_join member gets what was said since it first joined."""
    room = await server.room()
    stayer = await server.client()
    await stayer.join(room["room"])
    await stayer.request({"t": "say", "text": "before"})
    leaver = await server.client(JSON)
    first = await leaver.join(room["room"])
    await stayer.request({"t": "say", "text": "after"})
    leaver.ws.transport.abort()
    back = await server.client(JSON)
    welcome = await back.join(room["room"], resume=first["resume"])
    assert [m["text"] for m in welcome["history"]] == ["after"]


async def test_left_comes_when_the_grace_ends(start_server) -> None:
    """Without a reconnect the others see ``left`` once the grace has passed, not before."""
    server = await start_server(resume_grace=scaled(0.6))
    room = await server.room()
    stayer, leaver = await server.client(), await server.client()
    await stayer.join(room["room"])
    await leaver.join(room["room"])
    await stayer.next("joined")
    leaver.ws.transport.abort()
    assert [m for m in await stayer.quiet(300 * MS) if m["t"] == "left"] == []
    assert (await stayer.next("left")) == {"t": "left", "pid": leaver.pid}


async def test_expired_or_unknown_resume_is_bad_resume(start_server) -> None:
    """A token past its grace, or an unknown one, answers bad_resume and grants nothing."""
    server = await start_server(resume_grace=0.2)
    room = await server.room()
    watcher, leaver = await server.client(), await server.client()
    await watcher.join(room["room"])
    first = await leaver.join(room["room"])
    leaver.ws.transport.abort()
    await watcher.next("left", pid=first["you"]["pid"])  # the grace is over
    back = await server.client()
    assert (await back.join(room["room"], resume=first["resume"]))["code"] == "bad_resume"
    assert (await back.join(room["room"], resume="made-up"))["code"] == "bad_resume"
    assert (await back.join(room["room"]))["t"] == "welcome"  # may join afresh


async def test_name_is_reserved_during_the_grace(server) -> None:
    """While a member is away within the grace, nobody else can take its name."""
    room = await server.room()
    leaver = await server.client()
    await leaver.join(room["room"], name="Heron")
    async with server.closing():  # the server has marked it away
        leaver.ws.transport.abort()
    other = await server.client()
    assert (await other.join(room["room"], name="heron"))["code"] == "name_taken"


async def test_a_second_connection_takes_over(server) -> None:
    """Resuming while the old socket is still open closes the old one, without churn."""
    room = await server.room()
    watcher, old = await server.client(), await server.client()
    await watcher.join(room["room"])
    first = await old.join(room["room"])
    new = await server.client()
    welcome = await new.join(room["room"], resume=first["resume"])
    assert welcome["you"]["pid"] == first["you"]["pid"]
    assert await old.closed() == 1000
    churn = [m for m in await watcher.quiet(300 * MS) if m["t"] in {"left", "joined"}]
    assert churn == [{"t": "joined", "member": first["you"]}]  # the first join only
    await watcher.request({"t": "say", "text": "hi"})
    assert (await new.next("msg"))["text"] == "hi"
