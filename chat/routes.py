"""The HTTP routes: rooms (§3, §11), languages (§15), the pages, health and metrics.

Each route is a plain Starlette endpoint; the worker's services are in the lifespan state. The
WebSocket endpoint is :mod:`chat.app`'s (it skips Starlette's stack for ``/ws``).
"""

from __future__ import annotations

import asyncio
import hmac
import html
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.websockets import WebSocket

from chat import intake
from chat.context import Services, now_ms
from chat.errors import Unavailable
from chat.guard import Guard
from chat.identity import hash_secret, new_room_id, new_salt, new_secret
from chat.limiter import LimiterUnavailable, retry_after
from chat.ops import Refused
from chat.rooms import RoomRequestError, parse_room_request
from chat.roomstate import RoomState
from chat.settings import Settings

STATIC = Path(__file__).resolve().parent.parent / "static"
# The pages carry the operator's --quick-exit-url in this tag, so that quick exit works before
# any script has fetched anything.
QUICK_EXIT_META = '<meta name="hearth-quick-exit" content="">'


def _services(conn: Request | WebSocket) -> Services:
    services: Services = conn.state.services
    return services


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
            peer(request),
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


def peer(conn: Request | WebSocket) -> str | None:
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
    # Past its end time a room has ended (§13), even before a clock has closed it or its keys
    # have expired: nobody may join it any more (chat.lobby.admission).
    if record is None or (record.ends_at is not None and record.ends_at <= now_ms()):
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
