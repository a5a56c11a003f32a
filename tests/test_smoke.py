"""A first conversation end to end."""

from tests.client import JSON, MSGPACK


async def test_three_clients_talk(server):
    """Three clients in both encodings join, see each other, talk, and leave."""
    room = await server.room(title="Evening circle")
    a = await server.client(MSGPACK)
    b = await server.client(JSON)
    welcome = await a.join(room["room"], key=room["facilitator_key"])
    assert welcome["you"]["role"] == "facilitator"
    welcome_b = await b.join(room["room"])
    assert welcome_b["you"]["role"] == "participant"
    joined = await a.next("joined")
    assert joined["member"]["pid"] == b.pid
    ack = await b.request({"t": "say", "text": "hello there"})
    assert ack["t"] == "ack" and ack["seq"] == 1
    msg = await a.next("msg")
    assert msg["text"] == "hello there" and msg["seq"] == 1 and msg["pid"] == b.pid
