"""What the runner asks of one generator process (serialised as JSON between them)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Phase:
    """A constant offered load: ``rate`` messages/s in total, over every sender."""

    rate: float
    warmup_s: float
    measure_s: float


@dataclass(frozen=True)
class GenSpec:
    """One generator run: who connects where, and the load phases to play."""

    urls: list[str]
    rooms: list[str]
    members_per_room: int
    senders_per_room: int
    slow_per_room: int = 0  # members that join, then stop reading (not counted as recipients)
    text_pad: int = 0  # characters put before each text's "<sender>:<n>:<ns>"
    phases: list[Phase] = field(default_factory=list)
    mode: str = "load"  # "load", "idle", "join" (workload J) or "resume" (workload R)
    drain_s: float = 3.0
    idle_hold_s: float = 3.0
    watch_pids: list[int] = field(default_factory=list)  # server processes
    redis_pids: list[int] = field(default_factory=list)  # measured separately
    subprotocol: str = "hearth.v1.msgpack"
    connect_concurrency: int = 100
    join_timeout_s: float = 30.0
    fail_p99_ms: float | None = None  # set for capacity: stop at the first failing phase
    # capacity-ignore (Hearth only): this fraction of each room's members ignore another
    # member once joined (protocol §14); what a message is owed leaves its ignorers out.
    ignoring: float = 0.0
    # The storms (J and R): how many handshakes may be in flight at once while measured.
    storm_concurrency: int = 1000
    expect_presence: bool = True  # J: wait for joined announcements (the baseline has none)
    storm_deadline_s: float = 60.0  # J: announcements; R: everyone back; then it is reported
    # R only: the pid to SIGTERM (worker A, urls[0]); members come back on urls[1].
    kill_pid: int = 0
    talk_rate: float = 0.0  # R: messages/s in total while the storm runs
    talk_before_s: float = 3.0  # R: talking before the SIGTERM
    talk_after_s: float = 3.0  # R: talking once everyone is back

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> GenSpec:
        raw = json.loads(text)
        raw["phases"] = [Phase(**p) for p in raw.get("phases", [])]
        return cls(**raw)
