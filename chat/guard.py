"""One worker's edge defences (protocol §11), built once in the lifespan.

Who the client is (:mod:`chat.address`), which Host and Origin pass (:mod:`chat.origin`),
and the per-address limits (:mod:`chat.limiter`): in memory for one process, in Redis for a
deployment. The limits' Redis client is made for the deployment's topology (one server, a
Sentinel set or a Cluster) by ``chat.redis.topology.limits_client`` and handed in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from chat import intake
from chat.address import TrustedProxies, client_address, limit_key
from chat.intake import BodyRefused, Receive, header
from chat.limiter import (
    AddressHasher,
    Connections,
    LimiterUnavailable,
    MemoryConnections,
    MemoryRoomRate,
    RedisConnections,
    RedisRoomRate,
    RoomRate,
)
from chat.luascript import Client
from chat.origin import SiteRules, parse_origin
from chat.settings import Settings

log = logging.getLogger("hearth.guard")
TOO_MANY_ROOMS = "Too many rooms from here; try again later."


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a handshake is refused: the HTTP status, a metrics label, a sentence, a wait."""

    status: int
    reason: str
    message: str
    retry_after: int | None = None


@dataclass(slots=True)
class Guard:
    """The checks every request and handshake goes through."""

    site: SiteRules
    trusted: TrustedProxies
    room_rate: RoomRate
    connections: Connections

    def address(self, peer: str | None, headers: Iterable[tuple[bytes, bytes]]) -> str:
        """The client address of a request (§11): the only place anything asks for it."""
        return client_address(peer, headers, self.trusted)

    async def admit(
        self, headers: list[tuple[bytes, bytes]], counted: str, open_here: int, cap: int
    ) -> Refusal | None:
        """The edge checks of a WebSocket handshake (§2, §9, §11), in order: Host (400),
        Origin (403), this worker's ``--max-connections`` (503), the address's connections
        (429; 503 while Redis is unreachable). None: admitted, and ``counted`` now counts
        one more connection, which the caller releases when it ends.
        """
        host = header(headers, b"host")
        if self.site.host_refused(host):
            return Refusal(400, "host", "This server does not answer to that host name.")
        if not self.site.origin_allowed(header(headers, b"origin"), host):
            return Refusal(403, "origin", "")
        if open_here >= cap:
            return Refusal(503, "capacity", "This server is full; try again.", 5)
        try:
            if await self.connections.acquire(counted):
                return None
        except LimiterUnavailable:
            return Refusal(503, "unavailable", "Briefly unavailable; try again.", 2)
        return Refusal(429, "address", "Too many connections from your address.", 30)

    async def room_request(
        self,
        peer: str | None,
        headers: list[tuple[bytes, bytes]],
        receive: Receive,
        *,
        limited: bool,
        deadline: float,
    ) -> bytes:
        """The body of a ``POST /api/rooms``, through §11's checks in order: media type, the
        declared length, the address's room rate (before reading, so a refused client costs
        no body), the body itself, then the rate once more, atomically, which counts it.

        Args:
            peer: the TCP peer; headers: the raw request headers; receive: ASGI receive.
            limited: whether the room rate applies (no operator token is configured).
            deadline: loop time by which the whole body must have arrived.

        Raises:
            BodyRefused: 415, 413, 429 (with ``retry_after``), 408 or 400.
            intake.ClientGone: the client left before its body was complete.
            LimiterUnavailable: Redis could not be asked (answer 503).
        """
        intake.require_json(headers)
        intake.declared_length(headers, intake.MAX_BODY)
        key = limit_key(self.address(peer, headers)) if limited else None
        if key is not None and (wait := await self.room_rate.wait(key)):
            raise BodyRefused(429, TOO_MANY_ROOMS, retry_after=wait)
        body = await intake.read_body(receive, intake.MAX_BODY, deadline)
        if key is not None and (wait := await self.room_rate.take(key)):
            raise BodyRefused(429, TOO_MANY_ROOMS, retry_after=wait)
        return body

    async def aclose(self) -> None:
        """Stop the limits' heartbeat (the caller closes the Redis client it gave)."""
        await self.connections.aclose()


def site_rules(settings: Settings) -> SiteRules:
    origins = (parse_origin(o) for o in settings.allowed_origins)
    return SiteRules(
        listen_host=settings.host,
        public_url=settings.public_url,
        allowed_origins=frozenset(o for o in origins if o is not None),
    )


async def build_guard(settings: Settings, redis: Client | None = None) -> Guard:
    """The guard for one worker: limits for the deployment when there is Redis.

    Never fails because Redis is down: the limits then answer ``unavailable`` until it is up.

    Args:
        settings: the worker's settings.
        redis: the limits' own client when the settings name a Redis (the caller closes it,
            after :meth:`Guard.aclose`).

    Raises:
        ValueError: the settings name a Redis, and no client was given.
    """
    site = site_rules(settings)
    if site.knows_every_host:
        log.warning(
            "listening on a non-loopback address without --public-url: every Host is "
            "accepted; set --public-url to the address people use (protocol §11)"
        )
    trusted = settings.trusted_proxies
    if not settings.uses_redis:
        return Guard(
            site,
            trusted,
            MemoryRoomRate(settings.room_create_rate),
            MemoryConnections(settings.max_per_address),
        )
    if redis is None:
        raise ValueError("build_guard: the per-address limits need their Redis client")
    client = redis
    hasher = AddressHasher(client, settings.redis_prefix, settings.bus_key)
    connections = RedisConnections(client, settings.redis_prefix, settings.max_per_address, hasher)
    connections.start()
    try:
        await hasher.key("")  # agree on the salt now, if Redis is there
    except LimiterUnavailable:
        log.warning("redis unreachable: per-address limits answer unavailable until it is up")
    return Guard(
        site,
        trusted,
        RedisRoomRate(client, settings.redis_prefix, settings.room_create_rate, hasher),
        connections,
    )


__all__ = ["Guard", "Refusal", "build_guard", "header", "limit_key"]
