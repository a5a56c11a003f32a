"""The backend interface: where rooms live and how their streams reach every worker.

A backend owns, for every room, its authoritative state (:class:`~chat.roomstate.RoomState`)
and its *stream*: a sequence of entries, each with an offset ``off`` (1, 2, 3, ... within an
``epoch``), published to every worker subscribed to the room, kept for a short while so that
a worker that missed some can read them back (:meth:`Backend.read_after`), and — for entries
that carry a room message — numbered with the contract's ``seq`` and kept as history. Every
state change is committed together with the entry that carries it (:meth:`Backend.commit`),
so the order of the stream is the order of the changes (centrifuge's broker, with its
publish-with-offset, history and recovery, is the model).

Two implementations: :mod:`chat.backend.memory` (one process, no setup) and
:mod:`chat.redis.backend` (Redis memory, shared by any number of workers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chat.envelope import Envelope
from chat.ops import Op
from chat.roomstate import RoomState


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of a room's stream as a worker receives it.

    Args:
        epoch: the stream's epoch; a new one starts when a room is restored after the store
            lost it (offsets then start over from the restorer's).
        off: the entry's offset, or 0 for an ephemeral publish (``typing``), which is not on
            the stream and may be lost.
        seq: the contract's message number for an entry that carries a room message, else 0.
        data: the packed :class:`~chat.envelope.Envelope`, in clear.
        parsed: the same envelope unpacked, when the entry never left this process (the
            embedded backend hands over what the hub committed): the replica then applies the
            committer's own ops and maps instead of parsing copies of them, which saves the
            parse and keeps one copy of each member's strings per process, not two.
    """

    epoch: int
    off: int
    seq: int
    data: bytes
    parsed: Envelope | None = field(default=None, compare=False)

    def envelope(self) -> Envelope:
        """The entry's envelope.

        Raises:
            ValueError: the data is not an envelope this version can read.
        """
        parsed = self.parsed
        return parsed if parsed is not None else Envelope.unpack(self.data)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a commit landed on its room's stream."""

    epoch: int
    off: int
    seq: int


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """What a commit that carries a room message tells the backend about it.

    Args:
        mid: the message id (history is searched by it).
        ts: when it was said (ms; history is trimmed by age).
        guard: a participant's pid: the backend refuses the commit (``guard``) unless that
            member is in the room, present, not muted and not under review (neither held nor
            in a room whose ``review`` is ``"all"``, §14), checked against the store itself,
            so that a worker whose replica is behind cannot let a removed, muted or held
            member speak.
    """

    mid: str
    ts: int
    guard: str | None = None


Deliver = Callable[[str, Entry], None]
"""Called with every entry of every subscribed room, in stream order per room. Never awaits."""

Reconnected = Callable[[], None]
"""Called when the backend's subscriptions are back after a loss: every room may have missed
entries (and the store may have lost its memory meanwhile)."""


class Backend(Protocol):
    """Rooms' state and streams. Every coroutine may raise :class:`~chat.errors.Unavailable`."""

    @property
    def ready(self) -> bool:
        """Whether commits can succeed and this worker hears its rooms right now."""
        ...

    @property
    def shared(self) -> bool:
        """Whether other workers share the state (Redis): presence must then be vouched for."""
        ...

    async def start(self, deliver: Deliver, reconnected: Reconnected) -> None:
        """Connect and start handing entries to ``deliver``."""
        ...

    async def aclose(self) -> None: ...

    async def subscribe(self, room: str) -> None:
        """Start receiving the room's entries; returns once the subscription is confirmed."""
        ...

    async def unsubscribe(self, room: str) -> None: ...

    async def create_room(self, state: RoomState) -> None:
        """Create a room (it lives for the unused timeout until someone joins it).

        Raises:
            Refused: ``full`` when the deployment holds its most live rooms already (§11).
        """
        ...

    async def snapshot(self, room: str) -> RoomState | None:
        """The room's state with its stream position (epoch, off, seq), read atomically; None
        when there is no such room."""
        ...

    async def commit(
        self,
        room: str,
        ops: Sequence[Op],
        envelope: bytes,
        message: MessageMeta | None = None,
        parsed: Envelope | None = None,
    ) -> Position:
        """Check ``ops``, apply them and append ``envelope`` to the stream, all or nothing.

        ``parsed`` is ``envelope`` unpacked; a backend that hands entries over in process may
        pass it on (:attr:`Entry.parsed`), the others ignore it.

        Raises:
            Refused: a precondition failed (``noroom`` when the room does not exist).
            Unavailable: nothing was done.
        """
        ...

    async def publish(self, room: str, envelope: bytes) -> None:
        """An ephemeral publish (``typing``): not on the stream, at most once."""
        ...

    async def read_after(self, room: str, epoch: int, off: int) -> list[Entry] | None:
        """The stream's entries after ``off`` in ``epoch``, in order; None when they are no
        longer all kept (or the epoch changed): the caller must reload a snapshot."""
        ...

    async def history(self, room: str, after_seq: int) -> list[Entry]:
        """The kept entries that carry room messages with a ``seq`` above ``after_seq``."""
        ...

    async def has_message(self, room: str, mid: str) -> bool:
        """Whether the room's history still holds the message ``mid``."""
        ...

    async def restore(self, state: RoomState) -> bool:
        """Write back a room the store lost (or holds at an older offset than ``state``), as a
        commit of a :class:`~chat.roomstate.Reset` in a new epoch. False when another worker
        restored it first or the store is ahead."""
        ...

    async def ended(self, room: str) -> bool:
        """Whether the room was closed or expired (as opposed to lost with the store's memory)."""
        ...

    async def positions(self, rooms: Sequence[str]) -> dict[str, tuple[int, int] | None]:
        """Where each room's stream stands in the store, ``(epoch, off)``; a room the store
        does not hold is absent, one whose part of the store did not answer (a Cluster shard
        that is down) is None. A worker compares it with its replicas to find entries it
        missed without noticing (a lost publish)."""
        ...

    async def vouch(self, room: str, pids: Sequence[str], cutoff_ms: int = 0) -> list[str]:
        """Presence: this worker holds these members now (keeps the room alive too).

        Returns:
            The members no worker has vouched for since ``cutoff_ms``.
        """
        ...

    async def sweep(self, now_ms: int) -> int:
        """Wipe the rooms that have ended by time (empty for the idle timeout, or never joined
        for the unused one); a store that expires rooms by itself does nothing. Returns how
        many went."""
        ...
