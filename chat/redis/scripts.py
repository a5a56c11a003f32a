"""The Lua scripts of the Redis backend: each one a check-then-write that must be atomic.

The Lua source lives in ``chat/redis/lua/``, one file per script, each opening with what it
receives (KEYS, ARGV) and returns; ``common.lua`` (the room's keys in order, and helpers)
comes first in every script that works on a room.

The central one is :data:`COMMIT`: it checks a commit's ops against the room's keys, assigns
the entry its offset (and, for a room message, its ``seq``), applies the ops, publishes the
entry, keeps it on the room's stream and, for a room message, in its history — one round trip,
all or nothing. It implements the op table of :mod:`chat.roomstate` on the room's keys; the
backend contract tests hold both implementations to the same results.

Values of a room's settings and of members' fields are kept as MessagePack (``cmsgpack`` in
Lua), each in its own hash field, so that one can change without rewriting a record. Names,
titles, rules, key hashes, salts, reports, log entries and envelopes are sealed by the caller
(:mod:`chat.buscrypt`) and opaque here. Key order: :data:`chat.redis.client.ROOM_PARTS`.
"""

from __future__ import annotations

from importlib.resources import files

# How long a room's keys outlive its end time at most (§13): long enough for a worker that holds
# members to commit the close and tell them (its clock fires at the end, retrying every 0.3 s);
# a room nobody holds goes with its keys then. Joins and GET /api/rooms refuse from the end on.
END_LATE_MS = 5_000


def _source(name: str) -> str:
    return files("chat.redis").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def _room_script(name: str) -> str:
    """A script that works on one room's keys: the shared prelude, then its own source."""
    common = _source("common").replace("__END_LATE_MS__", str(END_LATE_MS))
    return common + "\n" + _source(name)


COMMIT = _room_script("commit")
CREATE = _room_script("create")
VOUCH = _room_script("vouch")
SNAPSHOT = _room_script("snapshot")
RESTORE = _room_script("restore")
READ_AFTER = _room_script("read_after")
ROOM_SLOT = _source("room_slot")  # on the deployment's room index, not on a room's keys


def sharded(script: str) -> str:
    """The script for a Redis Cluster: it publishes with ``SPUBLISH`` (sharded pub/sub) on the
    room's channel, which lives on the room's slot like every key the script touches."""
    publish = "redis.call('PUBLISH', "
    assert publish in script
    return script.replace(publish, "redis.call('SPUBLISH', ")
