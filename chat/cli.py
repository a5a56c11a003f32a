"""The ``hearth`` command: ``hearth serve`` with every option of protocol §9."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn

from chat import logs
from chat.openfiles import fit_open_files
from chat.settings import OPTIONS, Settings, SettingsError
from chat.transport import PROTOCOL_PATH


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="hearth", description="Hearth: facilitated peer-support chat."
    )
    commands = top.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the server",
        description="Run the server. Every option also reads HEARTH_<NAME> from the environment.",
    )
    for option in OPTIONS:
        env = ", ".join(option.env_names())
        if option.flag_only:
            serve.add_argument(
                option.flag,
                dest=option.name,
                action="store_const",
                const="true",
                help=f"{option.help} [{env}]",
            )
        else:
            serve.add_argument(
                option.flag,
                dest=option.name,
                metavar=option.name.upper(),
                help=f"{option.help} [{env}]",
            )
    return top


def settings_from(args: argparse.Namespace) -> Settings:
    """Environment first, then flags on top.

    Raises:
        SettingsError: an invalid value, named by its flag or variable.
    """
    overrides: dict[str, Any] = {}
    for option in OPTIONS:
        raw = getattr(args, option.name, None)
        if raw is not None:
            overrides[option.name] = option.parse(raw, option.flag)
    return Settings.from_env(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except SettingsError as exc:
        print(f"hearth: error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    serve(settings, args)
    return 0


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's settings for ``settings``: the contract's limits (style §1), our protocol."""
    return dict(
        host=settings.host,
        port=settings.port,
        ws=PROTOCOL_PATH,  # websockets-sansio, plus a direct write for fan-out
        ws_max_size=settings.max_frame,
        ws_per_message_deflate=False,  # memory per connection, and no compression side channel
        ws_ping_interval=settings.ping_interval,
        ws_ping_timeout=settings.ping_timeout,
        timeout_graceful_shutdown=settings.shutdown_timeout,
        access_log=False,
        # The client address is ours to decide (chat.address, --trusted-proxies): uvicorn's
        # default would rewrite it from X-Forwarded-For whenever the peer is loopback.
        proxy_headers=False,
        log_config=None,
        server_header=False,
        lifespan="on",
    )


def serve(settings: Settings, args: argparse.Namespace) -> None:
    """Run uvicorn: one worker in this process, or ``--workers`` worker processes."""
    common = uvicorn_options(settings)
    if settings.workers > 1:
        # Worker processes build their own app from the environment: hand the flags down.
        for option in OPTIONS:
            raw = getattr(args, option.name, None)
            if raw is not None:
                os.environ[option.env_names()[0]] = raw
        uvicorn.run("chat.app:app_from_env", factory=True, workers=settings.workers, **common)
        return
    from chat.app import create_app, tune_garbage_collector

    settings = fit_open_files(settings)
    tune_garbage_collector()
    uvicorn.run(create_app(settings), **common)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
