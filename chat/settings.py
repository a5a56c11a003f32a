"""Every operator knob with its default, and the only reader of ``os.environ``.

Stdlib only, apart from the leaves that parse an option's value (:mod:`chat.address`,
:mod:`chat.origin`, :mod:`chat.languages`) and :mod:`chat.settingfiles`, which reads the JSON
files that options name.

:data:`OPTIONS` is the single table of settings: the ``hearth serve`` command builds its flags
from it, :meth:`Settings.from_env` reads the ``HEARTH_*`` twins from it, and the README's
configuration table mirrors it (protocol §9).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from chat.address import TrustedProxies
from chat.languages import Languages, canonical_tag, load_languages, shipped_languages
from chat.origin import parse_origin
from chat.settingfiles import CrisisResources, crisis_resources, safety_words


class SettingsError(ValueError):
    """An invalid setting; the message names the option and is fit for one line."""


@dataclass(frozen=True, slots=True)
class Settings:
    """One worker's configuration. Tests build it directly; operators use flags or env."""

    host: str = "127.0.0.1"
    port: int = 8000
    redis_url: str | None = None
    # Protocol §16: a Sentinel set or a Cluster instead of one Redis (the three exclude each other).
    redis_sentinel: tuple[tuple[str, int], ...] = ()
    redis_master: str | None = None
    redis_cluster: tuple[tuple[str, int], ...] = ()
    redis_username: str | None = None
    redis_password: str | None = field(default=None, repr=False)
    redis_tls: bool = False
    redis_sentinel_password: str | None = field(default=None, repr=False)
    workers: int = 1
    join_timeout: float = 10.0
    operator_token: str | None = None
    allowed_origins: tuple[str, ...] = ()  # empty: the server's own origin only
    resume_grace: float = 120.0
    room_idle: float = 3600.0
    history_messages: int = 200
    history_seconds: float = 1800.0
    max_frame: int = 16_384
    max_text: int = 2_000
    rate: float = 5.0
    burst: int = 10
    allow_persistent_redis: bool = False
    bus_key: bytes | None = field(default=None, repr=False)
    bus_key_old: bytes | None = field(default=None, repr=False)
    crisis_resources: CrisisResources = field(default_factory=CrisisResources)
    # §14: crisis phrases per room language, ((lang, (phrase, ...)), ...); none: built-in en.
    safety_words: tuple[tuple[str, tuple[str, ...]], ...] = ()
    max_connections: int = 10_000
    # Protocol §11: the edge.
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)  # none at all
    public_url: str | None = None  # normalised origin, such as https://chat.example.org
    room_create_rate: int = 10  # rooms one address may create a minute (no operator token)
    max_per_address: int = 30  # open WebSocket connections one address may hold
    body_timeout: float = 10.0  # §11 fixes it at 10 s; a field so that tests can shorten it
    max_rooms: int = 10_000  # live rooms per deployment (then 503)
    room_unused: float = 600.0  # seconds a room nobody has joined lives
    default_lang: str = "en"
    lang_dir: Languages = field(default_factory=shipped_languages)  # shipped + --lang-dir
    quick_exit_url: str = "https://www.bbc.co.uk/weather"
    max_waiting: int = 20  # participants waiting at one knock room's door (§11)
    knock_timeout: float = 600.0  # seconds a knocker may wait before ``denied`` (§11)
    # Not in the contract's table, but every one is an operator's knob all the same.
    queue_frames: int = 512  # outbound frames a member may lag behind before close 4008
    flood_strikes: int = 20  # rate_limited answers in a row before close 1008
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    shutdown_timeout: float = 5.0
    close_timeout: float = 5.0  # a closing connection not gone by then is aborted
    redis_prefix: str = "hearth"
    log_level: str = "info"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``HEARTH_*`` variables (and ``REDIS_URL``, ``PORT``), then overrides.

        Raises:
            SettingsError: a variable holds an invalid value; the message names it.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for option in OPTIONS:
            raw = next((env[name] for name in option.env_names() if env.get(name)), None)
            if raw is not None:
                values[option.name] = option.parse(raw, option.env_names()[0])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values).checked()

    @property
    def uses_redis(self) -> bool:
        """Whether rooms live in Redis (one server, a Sentinel set or a Cluster)."""
        return bool(self.redis_url or self.redis_sentinel or self.redis_cluster)

    def checked(self) -> Settings:
        """Cross-field checks.

        Raises:
            SettingsError: the combination cannot work.
        """
        if self.workers > 1 and not self.uses_redis:
            raise SettingsError(
                "--workers: more than 1 worker needs Redis "
                "(--redis-url, --redis-sentinel or --redis-cluster)"
            )
        self._check_redis()
        if self.burst < 1 or self.rate <= 0:
            raise SettingsError("--rate/--burst: both must be positive")
        if self.max_frame < 256 or self.max_text < 1:
            raise SettingsError("--max-frame/--max-text: too small to carry a message")
        known = ", ".join(self.languages.tags)
        if self.languages.get(self.default_lang) is None:
            raise SettingsError(
                f"--default-lang: {self.default_lang} is not a language this server has ({known})"
            )
        for tag, _ in self.crisis_resources.by_lang:
            if self.languages.get(tag) is None:
                raise SettingsError(
                    f"--crisis-resources: {tag} is not a language this server has ({known})"
                )
        for tag, _ in self.safety_words:
            if self.languages.get(tag) is None:
                raise SettingsError(
                    f"--safety-words: {tag} is not a language this server has ({known})"
                )
        return self

    @property
    def languages(self) -> Languages:
        """Every language rooms may use: the shipped ones and the operator's ``--lang-dir``."""
        return self.lang_dir

    def _check_redis(self) -> None:
        """Protocol §16: one way to reach Redis, and the options that go with it."""
        chosen = [
            flag
            for flag, value in (
                ("--redis-url", self.redis_url),
                ("--redis-sentinel", self.redis_sentinel),
                ("--redis-cluster", self.redis_cluster),
            )
            if value
        ]
        if len(chosen) > 1:
            raise SettingsError(f"{' and '.join(chosen)}: give only one way to reach Redis")
        if self.redis_sentinel and not self.redis_master:
            raise SettingsError("--redis-master: required with --redis-sentinel")
        if self.redis_master and not self.redis_sentinel:
            raise SettingsError("--redis-master: only with --redis-sentinel")
        if self.redis_sentinel_password and not self.redis_sentinel:
            raise SettingsError("--redis-sentinel-password: only with --redis-sentinel")
        extras = [
            flag
            for flag, value in (
                ("--redis-username", self.redis_username),
                ("--redis-password", self.redis_password),
                ("--redis-tls", self.redis_tls),
            )
            if value
        ]
        if extras and not (self.redis_sentinel or self.redis_cluster):
            raise SettingsError(
                f"{'/'.join(extras)}: only with --redis-sentinel or --redis-cluster "
                "(with --redis-url, put them in the URL: rediss://user:password@host)"
            )


@dataclass(frozen=True, slots=True)
class Option:
    """One row of the settings table."""

    name: str
    parse_value: Callable[[str], Any]
    help: str
    flag_only: bool = False  # a switch: ``--allow-persistent-redis`` takes no value

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def env_names(self) -> tuple[str, ...]:
        own = "HEARTH_" + self.name.upper()
        twins = {"redis_url": ("REDIS_URL",), "port": ("PORT",)}
        return (own, *twins.get(self.name, ()))

    def parse(self, raw: str, source: str) -> Any:
        try:
            return self.parse_value(raw)
        except (ValueError, OSError) as exc:
            raise SettingsError(f"{source}: {exc}") from None


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be a positive integer")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value < 65536:
        raise ValueError("must be a port number (0-65535)")
    return value


def _seconds(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number of seconds")
    return value


def _positive(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _flag(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be true or false")


def _origins(raw: str) -> tuple[str, ...]:
    """Origins in normal form: lower-case scheme and host, default port left out."""
    return tuple(_origin(o) for o in raw.split(",") if o.strip())


def _origin(raw: str) -> str:
    return str(parse_origin(raw, strict=True))


def _redis_url(raw: str) -> str:
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return raw


def endpoints(raw: str) -> tuple[tuple[str, int], ...]:
    """``host:port[,host:port...]`` (an IPv6 host in brackets: ``[::1]:26379``)."""
    found: list[tuple[str, int]] = []
    for item in raw.split(","):
        text = item.strip()
        if not text:
            continue
        host, sep, port = text.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port[,host:port...]")
        found.append((host, int(port)))
    if not found:
        raise ValueError("must be host:port[,host:port...]")
    return tuple(found)


def _name(raw: str) -> str:
    value = raw.strip()
    if not value or any(c.isspace() for c in value):
        raise ValueError("must be a name without spaces")
    return value


def _secret(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty")
    return raw


def bus_key(raw: str) -> bytes:
    """Parse a 32-byte key given as 64 hex characters or URL-safe base64."""
    text = raw.strip()
    try:
        key = (
            bytes.fromhex(text)
            if len(text) == 64
            else base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        )
    except (ValueError, binascii.Error):
        raise ValueError("must be 32 bytes as 64 hex characters or URL-safe base64") from None
    if len(key) != 32:
        raise ValueError("must be 32 bytes as 64 hex characters or URL-safe base64")
    return key


def _lang_tag(raw: str) -> str:
    tag = canonical_tag(raw)
    if tag is None:
        raise ValueError(f"{raw!r} is not a language tag such as en, es or pt-BR")
    return tag


def _neutral_url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("must be a full http:// or https:// address")
    return raw.strip()


def _log_level(raw: str) -> str:
    level = raw.strip().lower()
    if level not in {"debug", "info", "warning", "error"}:
        raise ValueError("must be debug, info, warning or error")
    return level


OPTIONS: tuple[Option, ...] = (
    Option("host", str, "address to listen on"),
    Option("port", _port, "port to listen on ($PORT if set)"),
    Option("redis_url", _redis_url, "Redis for multi-worker fan-out (none: embedded broker)"),
    Option("redis_sentinel", endpoints, "Redis Sentinel host:port[,host:port...] instead"),
    Option("redis_master", _name, "the master's name in Sentinel (with --redis-sentinel)"),
    Option("redis_cluster", endpoints, "Redis Cluster seed nodes host:port[,host:port...]"),
    Option("redis_username", _name, "ACL user for --redis-sentinel/--redis-cluster nodes"),
    Option("redis_password", _secret, "password for --redis-sentinel/--redis-cluster nodes"),
    Option("redis_tls", _flag, "TLS to --redis-sentinel/--redis-cluster nodes", True),
    Option("redis_sentinel_password", _secret, "password of the sentinels themselves"),
    Option("workers", _positive_int, "worker processes on one port (more than 1 needs Redis)"),
    Option("join_timeout", _seconds, "seconds a connection may stay without a join"),
    Option("operator_token", str, "token required to create rooms (none: open)"),
    Option("allowed_origins", _origins, "comma-separated origins for the Origin check"),
    Option("resume_grace", _seconds, "seconds a disconnected member can resume"),
    Option("room_idle", _seconds, "seconds an empty room lives"),
    Option("history_messages", _positive_int, "messages of history kept per room"),
    Option("history_seconds", _seconds, "seconds of history kept per room"),
    Option("max_frame", _positive_int, "largest client frame in bytes (close 1009 beyond)"),
    Option("max_text", _positive_int, "longest message text in characters"),
    Option("rate", _positive, "room messages per second per member, sustained"),
    Option("burst", _positive_int, "room messages a member may send at once"),
    Option("allow_persistent_redis", _flag, "keep history in a Redis that writes to disk", True),
    Option("bus_key", bus_key, "32-byte key that encrypts what Hearth puts in Redis"),
    Option("bus_key_old", bus_key, "previous bus key, still accepted for reading"),
    Option("crisis_resources", crisis_resources, "JSON file answered to the help flare"),
    Option("safety_words", safety_words, "JSON file of crisis phrases per room language"),
    Option("max_connections", _positive_int, "WebSocket connections per worker"),
    Option("trusted_proxies", TrustedProxies.parse, "proxies whose X-Forwarded-For is believed"),
    Option("public_url", _origin, "the URL people use, such as https://chat.example.org"),
    Option("room_create_rate", _positive_int, "rooms one address may create a minute"),
    Option("max_per_address", _positive_int, "WebSocket connections one address may hold"),
    Option("max_rooms", _positive_int, "live rooms a deployment holds at most (then 503)"),
    Option("room_unused", _seconds, "seconds a room nobody has joined lives"),
    Option("default_lang", _lang_tag, "language of a room that names none (en)"),
    Option("lang_dir", load_languages, "directory of languages to add or correct"),
    Option("quick_exit_url", _neutral_url, "the neutral page quick exit goes to"),
    Option("max_waiting", _positive_int, "participants who may wait at a knock room's door"),
    Option("knock_timeout", _seconds, "seconds a knocker may wait before being turned away"),
    Option("queue_frames", _positive_int, "outbound frames a member may lag before 4008"),
    Option("ping_interval", _seconds, "seconds between keep-alive pings"),
    Option("ping_timeout", _seconds, "seconds to wait for a pong before closing"),
    Option("shutdown_timeout", _seconds, "seconds to drain connections on SIGTERM"),
    Option("close_timeout", _seconds, "seconds a closing connection has before it is aborted"),
    Option("redis_prefix", str, "prefix of every Redis key and channel Hearth uses"),
    Option("log_level", _log_level, "debug, info, warning or error"),
)

assert {o.name for o in OPTIONS} <= {f.name for f in fields(Settings)}
