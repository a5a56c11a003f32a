"""The HTTP and WebSocket application: routes, lifespan, Origin check, security headers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import html
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from chat import intake, metrics, presence, recovery
from chat.address import limit_key
from chat.backends import build_backend
from chat.context import Services, now_ms
from chat.errors import Unavailable
from chat.guard import Guard, Refusal, build_guard, header
from chat.hub import Hub
from chat.identity import hash_secret, new_room_id, new_salt, new_secret
from chat.limiter import LimiterUnavailable, retry_after
from chat.protocol import Encoding, Limits
from chat.rooms import RoomRequestError, parse_room_request
from chat.roomstate import Refused, RoomState
from chat.session import Session
from chat.settings import Settings
from chat.transport import CLOSE_TIMEOUT_STATE, WRITE_EXTENSION

log = logging.getLogger("hearth.app")
STATIC = Path(__file__).resolve().parent.parent / "static"
# The pages carry the operator's --quick-exit-url in this tag, so that quick exit works before
# any script has fetched anything.
QUICK_EXIT_META = '<meta name="hearth-quick-exit" content="">'

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
        guard = await build_guard(settings)
        _say_what_languages_lack(settings)
        janitor = asyncio.create_task(_sweep_idle_rooms(services))
        vouching = asyncio.create_task(presence.keep_presence(services))
        watching = asyncio.create_task(recovery.watch(services.hub))
        log.info("hearth started", extra={"backend": type(services.hub.backend).__name__})
        try:
            # The transport reads its close timeout from the lifespan state (chat.transport).
            yield {
                "services": services,
                "guard": guard,
                CLOSE_TIMEOUT_STATE: settings.close_timeout,
            }
        finally:
            janitor.cancel()
            vouching.cancel()
            watching.cancel()
            for handle in services.departures.values():
                handle.cancel()
            await services.hub.aclose()
            await guard.aclose()

    routes = [
        Route("/api/rooms", create_room, methods=["POST"]),
        Route("/api/rooms/{room}", room_info, methods=["GET"]),
        Route("/api/languages", language_list, methods=["GET"]),
        Route("/api/languages/{tag}", language_catalogue, methods=["GET"]),
        Route("/healthz", healthz),
        Route("/favicon.ico", favicon),
        Route("/readyz", readyz),
        Route("/metrics", metrics_text),
        Route("/", page("index.html", settings)),
        Route("/r/{room}", page("room.html", settings)),
        Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={Unavailable: unavailable},
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


async def _sweep_idle_rooms(services: Services) -> None:
    settings = services.settings
    period = min(30.0, max(0.2, min(settings.room_idle, settings.room_unused) / 4))
    while True:
        await asyncio.sleep(period)
        try:
            await services.hub.backend.sweep(now_ms())
        except Unavailable:
            log.debug("idle sweep skipped: backend unavailable")
        except Exception:
            log.exception("idle sweep failed")


def _services(conn: Request | WebSocket) -> Services:
    services: Services = conn.state.services
    return services


# --- HTTP ----------------------------------------------------------------------------------


async def create_room(request: Request) -> Response:
    """``POST /api/rooms`` (§3), with the limits of §11: JSON only, 16 KiB read at most, the
    whole body within ``body_timeout`` of the headers, and without an operator token at most
    ``--room-create-rate`` rooms per address a minute."""
    services = _services(request)
    deadline = asyncio.get_running_loop().time() + services.settings.body_timeout
    token = services.settings.operator_token
    if token is not None and not _bearer_matches(request, token):
        return JSONResponse(
            {"error": "unauthorized", "message": "An operator token is needed."},
            status_code=401,
            headers={"www-authenticate": "Bearer"},
        )
    guard: Guard = request.state.guard
    try:
        body = await guard.room_request(
            _peer(request),
            request.scope["headers"],
            request.receive,
            limited=token is None,
            deadline=deadline,
        )
        settings = services.settings
        wanted = parse_room_request(body, settings.languages, settings.default_lang)
    except intake.BodyRefused as refused:
        return _refused(refused)
    except intake.ClientGone:
        return Response(status_code=400)  # nobody reads it; the server needs an answer
    except RoomRequestError as exc:
        return JSONResponse({"error": "bad_request", "message": str(exc)}, status_code=400)
    except LimiterUnavailable:
        return await unavailable(request, Unavailable())
    key = new_secret()
    record = RoomState(
        id=new_room_id(), key_hash=hash_secret(key), salt=new_salt(), created_ms=now_ms(), **wanted
    )
    try:
        await services.hub.backend.create_room(record)
    except Refused:
        return JSONResponse(
            {"error": "unavailable", "message": "No more rooms can be opened here just now."},
            status_code=503,
            headers={"retry-after": "60"},
        )
    return JSONResponse(
        {
            "room": record.id,
            "facilitator_key": key,
            "join_url": f"/r/{record.id}",
            "facilitator_url": f"/r/{record.id}#key={key}",
        },
        status_code=201,
    )


_REFUSED_ERRORS = {
    400: "bad_request",
    408: "timeout",
    413: "too_large",
    415: "bad_media_type",
    429: "rate_limited",
}


def _refused(refused: intake.BodyRefused) -> Response:
    # The body was not read to its end: close the connection rather than read the rest.
    headers = {"connection": "close"}
    if refused.retry_after is not None:
        headers["retry-after"] = retry_after(refused.retry_after)
    return JSONResponse(
        {"error": _REFUSED_ERRORS[refused.status], "message": refused.message},
        status_code=refused.status,
        headers=headers,
    )


def _peer(conn: Request | WebSocket) -> str | None:
    return conn.client.host if conn.client else None


def _bearer_matches(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = hash_secret(token)
    return scheme.lower() == "bearer" and hmac.compare_digest(hash_secret(given.strip()), expected)


async def room_info(request: Request) -> Response:
    """The public part of ``welcome.room`` (protocol §3, v1.1): id, title, rules and every
    setting at the top level, and the retention it states; no members, no messages. ``room``
    repeats ``id`` (v1 pages)."""
    services = _services(request)
    record = await services.hub.backend.snapshot(request.path_params["room"])
    if record is None:
        return JSONResponse(
            {"error": "not_found", "message": "There is no such room."}, status_code=404
        )
    settings = services.settings
    return JSONResponse(
        {
            "id": record.id,
            "room": record.id,
            "title": record.title,
            "rules": record.rules,
            **record.public_settings(),
            "retention": {
                "messages": settings.history_messages,
                "seconds": int(settings.history_seconds),
                "on_disk": False,
            },
        }
    )


async def language_list(request: Request) -> Response:
    """The languages rooms and pages may use (protocol §15): tag, own name, direction."""
    settings = _services(request).settings
    return JSONResponse(
        {"default": settings.default_lang, "languages": settings.languages.listing()}
    )


async def language_catalogue(request: Request) -> Response:
    """One language's page sentences, complete (docs/languages.md)."""
    languages = _services(request).settings.languages
    tag = languages.known(request.path_params["tag"])
    lang = languages.get(tag) if tag is not None else None
    if lang is None:
        return JSONResponse(
            {"error": "not_found", "message": "There is no such language."}, status_code=404
        )
    return JSONResponse(lang.catalogue())


async def unavailable(request: Request, exc: Exception) -> Response:
    """Room state lives in the backend: while it is unreachable, say so and when to retry."""
    return JSONResponse(
        {"error": "unavailable", "message": "The service is briefly unavailable; try again."},
        status_code=503,
        headers={"retry-after": "2"},
    )


async def favicon(request: Request) -> Response:
    """No icon, said explicitly: 204 (cached for a day) instead of a 404 that every page's
    console would report."""
    return Response(status_code=204, headers={"cache-control": "public, max-age=86400"})


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    if _services(request).hub.backend.ready:
        return PlainTextResponse("ready")
    return PlainTextResponse("backend unavailable", status_code=503)


async def metrics_text(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def page(name: str, settings: Settings) -> Any:
    meta = f'<meta name="hearth-quick-exit" content="{html.escape(settings.quick_exit_url)}">'

    async def serve(request: Request) -> Response:
        path = STATIC / name
        if not path.is_file():
            return PlainTextResponse("Hearth is running. The browser client is not installed.")
        text = await run_in_threadpool(path.read_text, encoding="utf-8")
        return HTMLResponse(text.replace(QUICK_EXIT_META, meta))

    return serve


# --- WebSocket -----------------------------------------------------------------------------


async def websocket_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """``/ws``: the handshake checks with Starlette's WebSocket, then the session on raw ASGI."""
    services: Services = scope["state"]["services"]
    guard: Guard = scope["state"]["guard"]
    websocket = WebSocket(scope, receive, send)
    address = guard.address(_peer(websocket), scope["headers"])
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
