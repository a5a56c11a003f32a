"""Who facilitates a room, and what their actions leave behind (protocol §6, §14).

A room has the key handed out at its creation (label ``"owner"``) and the co-facilitator keys
that facilitators ``invite``: each is at least 128 random bits, stored only as a hash, matched
in constant time, and filed under a *token* of its label (a hash keyed with the room's salt),
so that the store's index shows no label; the label itself, which may hold a name, is sealed
at rest with the key's hash. A member who joined with a key carries its token (``label``), so
that ``revoke`` finds every member of that key and the facilitation log can name the key
behind each action. The helpers every facilitator action shares live here too: the target
check, the log entry, and turning a refused commit into the contract's answer.
"""

from __future__ import annotations

import hashlib
import hmac

from chat.context import Answer, Caller, Services, facilitator, now_ms
from chat.envelope import Delivery
from chat.errors import ErrorCode, RequestError, Unavailable
from chat.events import Ack, Left
from chat.identity import hash_secret, new_secret
from chat.localroom import LocalRoom
from chat.ops import KeyAdd, KeyDrop, LogAdd, MemberDrop, Op, Refused
from chat.requests import Invite, Revoke
from chat.roomstate import FACILITATOR, OWNER, MemberState, RoomState
from chat.screening import fold

MAX_KEYS = 50  # co-facilitator keys one room may hold at once
RETRIES = 3  # compare-and-set rounds before a busy room answers unavailable


def key_token(salt: bytes, label: str) -> str:
    """The token a key's label is filed (and held unique) under: labels that read alike
    (case, width, white space) are one label."""
    folded = " ".join(fold(label).split())
    return hmac.new(salt, b"key:" + folded.encode(), hashlib.sha256).hexdigest()


def match_key(state: RoomState, key: str) -> str | None:
    """The token of the key ``key`` is (``"owner"`` for the room's own), or None.

    Every stored hash is compared, in constant time, whichever matches.
    """
    presented = hash_secret(key)
    found = OWNER if hmac.compare_digest(presented, state.key_hash) else None
    for token, entry in state.keys.items():
        if hmac.compare_digest(presented, str(entry.get("hash", ""))) and found is None:
            found = token
    return found


def label_of(state: RoomState, member: MemberState) -> str:
    """The label of the key a facilitator joined with ("" for a participant)."""
    if member.label in ("", OWNER):
        return member.label
    return str(state.keys.get(member.label, {}).get("label", ""))


def logged(room: LocalRoom, action: str, by: MemberState, **target: str) -> LogAdd:
    """The facilitation log's entry for an action: never any text or reason (§6), and the
    label of the key behind it (§14)."""
    entry = {"action": action, "by": by.pid, "ts": now_ms(), **target}
    state = room.state
    if state is not None:
        entry["label"] = label_of(state, by)
    return LogAdd(entry)


def target(room: LocalRoom, pid: str, *, waiting: bool = False) -> MemberState:
    """A participant in the room, for a facilitator to act on: one present, or with
    ``waiting`` one at a knock room's door (``admit``, ``deny``).

    Raises:
        RequestError: ``not_found``, or ``forbidden`` for a facilitator.
    """
    state = room.state
    member = state.members.get(pid) if state is not None else None
    if member is None or member.waiting != waiting:
        raise RequestError(ErrorCode.NOT_FOUND, "No such member in this room.")
    if member.role == FACILITATOR:
        raise RequestError(ErrorCode.FORBIDDEN, "Facilitators cannot act on each other.")
    return member


async def decide(services: Services, room: LocalRoom, ops: list[Op], out: list[Delivery]) -> None:
    """Commit a facilitator's decision; a refusal becomes the contract's answer.

    Raises:
        RequestError: ``not_found`` (member, message or report gone), ``forbidden``.
        Unavailable: the store refused for another reason.
    """
    try:
        await services.hub.commit(room, ops, out)
    except Refused as exc:
        if exc.reason in {"missing", "waiting", "nomsg"}:
            raise RequestError(ErrorCode.NOT_FOUND, "No such member or message here.") from None
        if exc.reason == "mismatch":
            raise RequestError(ErrorCode.FORBIDDEN, "That is not possible now.") from None
        raise Unavailable(f"decision refused: {exc.reason}") from None


async def invite(services: Services, caller: Caller, msg: Invite) -> Answer:
    """Make a co-facilitator key with a label unique in the room; the ``ack`` carries it."""
    room, me = facilitator(caller)
    state = room.state
    assert state is not None
    token = key_token(state.salt, msg.label)
    if token in state.keys or key_token(state.salt, OWNER) == token:
        raise RequestError(ErrorCode.BAD_REQUEST, "That label is already in use here.")
    if len(state.keys) >= MAX_KEYS:
        raise RequestError(ErrorCode.BAD_REQUEST, f"A room holds at most {MAX_KEYS} keys.")
    key = new_secret()
    entry = {"label": msg.label, "hash": hash_secret(key), "ts": now_ms()}
    try:
        await services.hub.commit(room, [KeyAdd(token, entry), logged(room, msg.t, me)])
    except Refused as exc:
        if exc.reason == "taken":
            raise RequestError(
                ErrorCode.BAD_REQUEST, "That label is already in use here."
            ) from None
        raise Unavailable(f"invite refused: {exc.reason}") from None
    return Ack(key=key, label=msg.label)


async def revoke(services: Services, caller: Caller, msg: Revoke) -> Answer:
    """Make a key useless: the members who joined with it are dropped (their resume tokens go
    with them) and their connections close with 4003, wherever they are."""
    room, me = facilitator(caller)
    for _ in range(RETRIES):
        state = room.state
        assert state is not None
        if key_token(state.salt, msg.label) == key_token(state.salt, OWNER):
            raise RequestError(ErrorCode.FORBIDDEN, "The owner key cannot be revoked.")
        token = key_token(state.salt, msg.label)
        if token not in state.keys:
            raise RequestError(ErrorCode.NOT_FOUND, "No key has that label here.")
        holders = [m for m in state.members.values() if m.label == token]
        ops: list[Op] = [KeyDrop(token, tuple(m.pid for m in holders))]
        ops += [MemberDrop(m.pid, "revoked", {"label": token}) for m in holders]
        ops.append(logged(room, msg.t, me))
        out = [Delivery(Left(m.pid), exclude=m.pid) for m in holders]
        try:
            await services.hub.commit(room, ops, out)
            return None
        except Refused as exc:
            if exc.reason == "missing":
                raise RequestError(ErrorCode.NOT_FOUND, "No key has that label here.") from None
            if exc.reason != "mismatch":
                raise Unavailable(f"revoke refused: {exc.reason}") from None
            await services.hub.refresh(room)  # someone joined or left with it meanwhile
    raise Unavailable("the room changed too often to revoke the key")
