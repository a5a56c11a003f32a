"""The application: the lifespan (services, guard, sweeps), the WebSocket endpoint and its
handshake checks, the Host check and security headers. The HTTP routes are :mod:`chat.routes`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from chat import metrics, presence, recovery, review, routes, schedule
from chat.address import limit_key
from chat.backends import build_backend
from chat.context import Services, now_ms
from chat.errors import Unavailable
from chat.guard import Guard, Refusal, build_guard, header
from chat.hub import Hub
from chat.protocol import Encoding, Limits
from chat.redis.topology import close_client, limits_client
from chat.screening import crisis_list
from chat.session import Session
from chat.settings import Settings
from chat.tasks import end
from chat.transport import CLOSE_TIMEOUT_STATE, WRITE_EXTENSION

log = logging.getLogger("hearth.app")

# Seconds a departure or a room's timer under way at shutdown may take to finish: one commit.
BACKGROUND_GRACE = 2.0

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        b"form-action 'self'; object-src 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """Adds the security headers to every HTTP response (pages, API and assets alike)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    h for h in SECURITY_HEADERS if h[0] not in names
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HostCheck:
    """§11: with ``--public-url`` set, an HTTP request naming an unknown Host gets 400."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            guard: Guard = scope["state"]["guard"]
            if guard.site.host_refused(header(scope["headers"], b"host")):
                answer = PlainTextResponse("This server does not answer to that host name.", 400)
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings) -> ASGIApp:
    """Build the application for one worker.

    Args:
        settings: the worker's configuration.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        services = await _build_services(settings)
        limits = limits_client(settings) if settings.uses_redis else None
        guard = await build_guard(settings, limits)
        _say_what_languages_lack(settings)
        janitor = asyncio.create_task(_sweep_idle_rooms(services))
        vouching = asyncio.create_task(presence.keep_presence(services))
        watching = asyncio.create_task(recovery.watch(services.hub))
        clock = asyncio.create_task(schedule.keep_time(services))  # §13: rooms' times
        log.info("hearth started", extra={"backend": type(services.hub.backend).__name__})
        try:
            # The transport reads its close timeout from the lifespan state (chat.transport).
            yield {
                "services": services,
                "guard": guard,
                CLOSE_TIMEOUT_STATE: settings.close_timeout,
            }
        finally:
            # Nothing of the worker's own may still be talking to Redis when the hub closes the
            # client: a command cut off by the close would be logged as a Redis failure on
            # every restart. The loops stop at once; a departure or a room's timer already
            # under way may finish. (Sessions are over: uvicorn waited for them.)
            for handle in services.departures.values():
                handle.cancel()
            await end([janitor, vouching, watching, clock])
            await services.tasks.end(BACKGROUND_GRACE)
            await services.hub.aclose()
            await guard.aclose()
            if limits is not None:
                await close_client(limits)

    table = [
        Route("/api/rooms", routes.create_room, methods=["POST"]),
        Route("/api/rooms/{room}", routes.room_info, methods=["GET"]),
        Route("/api/languages", routes.language_list, methods=["GET"]),
        Route("/api/languages/{tag}", routes.language_catalogue, methods=["GET"]),
        Route("/healthz", routes.healthz),
        Route("/favicon.ico", routes.favicon),
        Route("/readyz", routes.readyz),
        Route("/metrics", routes.metrics_text),
        Route("/", routes.page("index.html", settings)),
        Route("/r/{room}", routes.page("room.html", settings)),
        Mount("/static", StaticFiles(directory=routes.STATIC, check_dir=False), name="static"),
    ]
    app = Starlette(
        routes=table,
        lifespan=lifespan,
        exception_handlers={Unavailable: routes.unavailable},
    )
    app.add_middleware(HostCheck)
    app.add_middleware(SecurityHeaders)  # the outermost: refusals carry the headers too
    return WebSocketFastPath(app)


class WebSocketFastPath:
    """``/ws`` goes straight to its endpoint; everything else (and the lifespan) to Starlette.

    Every open WebSocket keeps its ASGI call stack alive for its whole life. Skipping
    Starlette's middleware and router frames for ``/ws`` (they do nothing for a WebSocket:
    headers are HTTP-only, exceptions are handled in the session) saves about 3 KiB per idle
    connection, measured with tracemalloc.
    """

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            await websocket_endpoint(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _build_services(settings: Settings) -> Services:
    hub = Hub(await build_backend(settings))
    recovery.install(hub)
    await hub.start()
    limits = Limits(max_frame=settings.max_frame, max_text=settings.max_text)
    return Services(settings=settings, hub=hub, limits=limits)


def _say_what_languages_lack(settings: Settings) -> None:
    for lang in settings.languages.by_tag.values():
        if lang.missing:
            log.warning(
                "language incomplete: english fills the missing sentences",
                extra={"lang": lang.tag, "missing": lang.missing},
            )
        if lang.names is None:
            log.info(
                "language has no names.json: pseudonyms in the default's", extra={"lang": lang.tag}
            )
        if crisis_list(lang.tag, settings.safety_words) is None:
            # An operator's language with no --safety-words entry: its rooms get no crisis
            # flag at all, which an operator must not learn about from a missed message.
            log.warning(
                "language has no crisis phrases: its rooms are not screened for them",
                extra={"lang": lang.tag},
            )


async def _sweep_idle_rooms(services: Services) -> None:
    settings = services.settings
    period = min(30.0, max(0.2, min(settings.room_idle, settings.room_unused) / 4))
    while True:
        await asyncio.sleep(period)
        try:
            await services.hub.backend.sweep(now_ms())
            review.forget_old(services, services.hub.rooms.values(), now_ms())
        except Unavailable:
            log.debug("idle sweep skipped: backend unavailable")
        except Exception:
            log.exception("idle sweep failed")


# --- WebSocket -----------------------------------------------------------------------------


async def websocket_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """``/ws``: the handshake checks with Starlette's WebSocket, then the session on raw ASGI."""
    services: Services = scope["state"]["services"]
    guard: Guard = scope["state"]["guard"]
    websocket = WebSocket(scope, receive, send)
    address = guard.address(routes.peer(websocket), scope["headers"])
    counted = limit_key(address)
    refusal = await guard.admit(
        scope["headers"], counted, services.connections, services.settings.max_connections
    )
    if refusal is not None:
        await _refuse(websocket, refusal)
        return
    try:
        session = await _handshake(websocket, services, receive, send, address)
        if session is None:
            return
        services.connections += 1
        metrics.CONNECTIONS.inc()
        try:
            await session.run()
        finally:
            services.connections -= 1
            metrics.CONNECTIONS.dec()
    finally:
        await guard.connections.release(counted)


async def _refuse(websocket: WebSocket, refusal: Refusal) -> None:
    metrics.REFUSED.labels(reason=refusal.reason).inc()
    if refusal.status == 403:
        await websocket.close()  # before accept: uvicorn answers HTTP 403
        return
    error = {400: "bad_request", 429: "rate_limited"}.get(refusal.status, "unavailable")
    headers = {"retry-after": str(refusal.retry_after)} if refusal.retry_after else None
    body = {"error": error, "message": refusal.message}
    await websocket.send_denial_response(JSONResponse(body, refusal.status, headers))


async def _handshake(
    websocket: WebSocket, services: Services, receive: Receive, send: Send, address: str
) -> Session | None:
    """Accept the connection and build its session, or refuse an unknown subprotocol."""
    offered = websocket.scope.get("subprotocols") or []
    encoding = Encoding.negotiate(offered)
    if encoding is None and offered:
        metrics.REFUSED.labels(reason="subprotocol").inc()
        await websocket.close()
        return None
    await websocket.accept(subprotocol=encoding.value if encoding else None)
    # The checks before the accept were the last to read the request's headers, and the scope
    # lives as long as the connection (uvicorn's protocol and this call both hold it): 1 KiB
    # of an idle member (tracemalloc, the idle bench).
    websocket.scope["headers"] = []
    direct = websocket.scope.get("extensions", {}).get(WRITE_EXTENSION) or {}
    return Session(
        receive,
        send,
        services,
        encoding or Encoding.JSON,
        address,
        direct.get("write"),
        direct.get("closing"),
    )


def tune_garbage_collector() -> None:
    """Process-wide GC policy for a serving worker (called once, before serving).

    Fan-out allocates many short-lived objects (a wake-up per member per message), so the
    default gen-0 threshold of 700 runs a collection every few messages in a big room, and
    each older-generation pass walks every live connection. Freezing what start-up built and
    raising the thresholds cut the worst latency in the 1,000-member room (bench B) from
    65 to 23 ms.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def app_from_env() -> ASGIApp:
    """The app as uvicorn's worker processes build it (``--workers``): settings from env."""
    from chat import logs
    from chat.openfiles import fit_open_files

    settings = Settings.from_env()
    logs.configure(settings.log_level)
    settings = fit_open_files(settings)
    tune_garbage_collector()
    return create_app(settings)


__all__ = ["app_from_env", "create_app"]
