"""The open-file limit against ``--max-connections``, checked once at start (protocol §11).

Every connection is a file descriptor. Under the common soft limit of 1,024, about a
thousand connections left a worker unable to accept anything, ``/healthz`` included, and
nothing said why. At start the worker raises its soft limit as far as needed (up to the hard
limit, which a process may do unprivileged); if even the hard limit is too low, it says so
and lowers its connection cap to what fits, so that it refuses the excess cleanly (503) while
its descriptors still serve health checks, HTTP and Redis.
"""

from __future__ import annotations

import dataclasses
import logging
import resource

from chat.settings import Settings

log = logging.getLogger("hearth.openfiles")
RESERVE = 64  # listening sockets, Redis connections, HTTP requests, the log, the event loop


def files_needed(connections: int) -> int:
    """Descriptors a worker needs for ``connections`` WebSockets: a tenth more for HTTP
    requests arriving meanwhile, plus a fixed reserve."""
    return connections + connections // 10 + RESERVE


def connections_within(files: int) -> int:
    """The largest connection cap whose :func:`files_needed` fits in ``files``."""
    cap = max(1, (files - RESERVE) * 10 // 11)  # within one or two of the answer
    while files_needed(cap + 1) <= files:
        cap += 1
    while cap > 1 and files_needed(cap) > files:
        cap -= 1
    return cap


def fit_open_files(settings: Settings) -> Settings:
    """Raise the soft open-file limit to what ``max_connections`` needs, or lower the cap.

    Returns:
        ``settings``, or a copy with a lower ``max_connections`` when the hard limit is too
        low to raise the soft limit far enough.
    """
    needed = files_needed(settings.max_connections)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return settings
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.info("open-file limit raised", extra={"from": soft, "to": target})
            soft = target
        except (ValueError, OSError):
            pass
    if soft >= needed:
        return settings
    cap = connections_within(soft)
    log.warning(
        "the open-file limit is too low for --max-connections: lowering the cap; raise the "
        "hard limit (ulimit -Hn, systemd LimitNOFILE) to serve more",
        extra={
            "open_files": soft,
            "needed": needed,
            "max_connections": settings.max_connections,
            "lowered_to": cap,
        },
    )
    return dataclasses.replace(settings, max_connections=cap)
