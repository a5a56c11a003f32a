"""Settings: defaults, the environment twins, and one-line errors from ``hearth serve``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chat.address import parse_ip
from chat.cli import parser, settings_from
from chat.settings import OPTIONS, Settings, SettingsError
from tests.timing import START


def test_contract_options_exist() -> None:
    """Every option of protocol §9 is a flag of ``hearth serve``."""
    flags = {option.flag for option in OPTIONS}
    for flag in (
        "--host", "--port", "--redis-url", "--workers", "--join-timeout", "--operator-token",
        "--allowed-origins", "--resume-grace", "--room-idle", "--history-messages",
        "--history-seconds", "--max-frame", "--max-text", "--rate", "--burst",
        "--allow-persistent-redis", "--bus-key", "--bus-key-old", "--crisis-resources",
        "--max-connections",
    ):  # fmt: skip
        assert flag in flags


def test_defaults_match_the_contract() -> None:
    """The contract's defaults (§9)."""
    s = Settings()
    assert (s.host, s.port, s.redis_url, s.workers, s.join_timeout) == (
        "127.0.0.1",
        8000,
        None,
        1,
        10,
    )
    assert (s.resume_grace, s.room_idle, s.history_messages, s.history_seconds) == (
        120,
        3600,
        200,
        1800,
    )
    assert (s.max_frame, s.max_text, s.max_connections) == (16384, 2000, 10000)


def test_public_limits_defaults() -> None:
    """§11's defaults, as the README's limits table gives them."""
    s = Settings()
    assert (s.room_create_rate, s.max_rooms, s.room_unused, s.max_per_address) == (
        10,
        10_000,
        600,
        30,
    )
    assert (s.max_waiting, s.knock_timeout, s.queue_frames, s.close_timeout) == (20, 600, 512, 5)
    assert (s.rate, s.burst) == (5, 10)
    assert not s.trusted_proxies.trusts(parse_ip("127.0.0.1"))


def test_every_option_is_in_the_readme() -> None:
    """The README's configuration table names every flag of ``hearth serve`` (and only those)."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `--")]
    named = {flag for row in rows for flag in re.findall(r"`(--[a-z-]+)`", row.split(" | ")[0])}
    assert named == {option.flag for option in OPTIONS}


def test_environment_twins() -> None:
    """HEARTH_* variables, REDIS_URL and PORT are read; flags win over them."""
    env = {"HEARTH_ROOM_IDLE": "60", "REDIS_URL": "redis://h:1/0", "PORT": "9000",
           "HEARTH_ALLOWED_ORIGINS": "https://a.example, https://b.example/"}  # fmt: skip
    s = Settings.from_env(env)
    assert s.room_idle == 60 and s.redis_url == "redis://h:1/0" and s.port == 9000
    assert s.allowed_origins == ("https://a.example", "https://b.example")
    assert Settings.from_env(env, port=1234).port == 1234


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"HEARTH_PORT": "eighty"}, "HEARTH_PORT"),
        ({"HEARTH_WORKERS": "2"}, "--workers"),
        ({"HEARTH_BUS_KEY": "short"}, "HEARTH_BUS_KEY"),
        ({"HEARTH_ALLOWED_ORIGINS": "example.org"}, "HEARTH_ALLOWED_ORIGINS"),
        ({"HEARTH_CRISIS_RESOURCES": "/nonexistent.json"}, "HEARTH_CRISIS_RESOURCES"),
        ({"REDIS_URL": "http://x"}, "HEARTH_REDIS_URL"),
        # §15: languages and the quick exit.
        ({"HEARTH_DEFAULT_LANG": "klingon"}, "HEARTH_DEFAULT_LANG"),
        ({"HEARTH_DEFAULT_LANG": "fr"}, "--default-lang"),  # a tag, but not a language we have
        ({"HEARTH_QUICK_EXIT_URL": "javascript:alert(1)"}, "HEARTH_QUICK_EXIT_URL"),
        ({"HEARTH_QUICK_EXIT_URL": "/relative"}, "HEARTH_QUICK_EXIT_URL"),
        # §16: one way to reach Redis, and the options that go with it.
        ({"HEARTH_REDIS_CLUSTER": "nohost"}, "HEARTH_REDIS_CLUSTER"),
        ({"HEARTH_REDIS_SENTINEL": "h:99999"}, "HEARTH_REDIS_SENTINEL"),
        ({"HEARTH_REDIS_SENTINEL": "h:26379"}, "--redis-master: required"),
        ({"HEARTH_REDIS_MASTER": "m"}, "--redis-master: only with --redis-sentinel"),
        (
            {"REDIS_URL": "redis://h/0", "HEARTH_REDIS_CLUSTER": "h:7000"},
            "--redis-url and --redis-cluster",
        ),
        (
            {
                "HEARTH_REDIS_SENTINEL": "h:1",
                "HEARTH_REDIS_MASTER": "m",
                "HEARTH_REDIS_CLUSTER": "h:7000",
            },
            "--redis-sentinel and --redis-cluster",
        ),
        ({"REDIS_URL": "redis://h/0", "HEARTH_REDIS_PASSWORD": "x"}, "--redis-password: only"),
        ({"HEARTH_REDIS_TLS": "on"}, "--redis-tls: only"),
        ({"HEARTH_REDIS_SENTINEL_PASSWORD": "x"}, "--redis-sentinel-password: only"),
    ],
)
def test_invalid_values_name_their_source(env: dict[str, str], named: str) -> None:
    """An invalid value or combination raises SettingsError, in one line naming the variable
    or flag."""
    with pytest.raises(SettingsError, match=named) as raised:
        Settings.from_env(env)
    assert "\n" not in str(raised.value)


def test_bus_key_accepts_hex_and_base64() -> None:
    """A bus key is 32 bytes as hex or URL-safe base64."""
    assert Settings.from_env({"HEARTH_BUS_KEY": "ab" * 32}).bus_key == b"\xab" * 32
    assert Settings.from_env({"HEARTH_BUS_KEY": "q" * 43}).bus_key is not None


def test_crisis_resources_file(tmp_path: Path) -> None:
    """The crisis-resources file is read into text and links."""
    path = tmp_path / "crisis.json"
    path.write_text(json.dumps({"text": "Call", "links": [{"title": "T", "url": "https://u"}]}))
    args = parser().parse_args(["serve", "--crisis-resources", str(path)])
    resources = settings_from(args).crisis_resources
    assert resources.answer("es", "en") == {
        "text": "Call",
        "links": [{"title": "T", "url": "https://u"}],
    }


def test_cli_prints_one_line_error_not_a_traceback() -> None:
    """``hearth serve --port x`` exits 2 with one line naming --port."""
    done = subprocess.run(
        [sys.executable, "-m", "chat", "serve", "--port", "x"],
        capture_output=True, text=True, timeout=START,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "--port" in done.stderr and "Traceback" not in done.stderr


def test_language_options() -> None:
    """--default-lang, --lang-dir and --quick-exit-url have defaults and environment twins."""
    s = Settings()
    assert s.default_lang == "en" and {"en", "es", "ar"} <= set(s.languages.tags)
    assert s.quick_exit_url.startswith("https://")
    env = {"HEARTH_DEFAULT_LANG": "ES", "HEARTH_QUICK_EXIT_URL": "https://example.org/news"}
    s = Settings.from_env(env)
    assert (s.default_lang, s.quick_exit_url) == ("es", "https://example.org/news")


def test_crisis_resources_per_language(tmp_path: Path) -> None:
    """The per-language form answers in the room's language, else the default language's."""
    path = tmp_path / "crisis.json"
    path.write_text(
        json.dumps(
            {
                "en": {"text": "Call 999", "links": [{"title": "Samaritans", "url": "https://s"}]},
                "ES": {"text": "Llama al 112"},
            }
        ),
        encoding="utf-8",
    )
    resources = Settings.from_env({"HEARTH_CRISIS_RESOURCES": str(path)}).crisis_resources
    assert resources.answer("es", "en") == {"text": "Llama al 112", "links": []}
    assert resources.answer("ar", "en")["text"] == "Call 999"
    assert resources.answer("ar", "es")["text"] == "Llama al 112"
    assert resources.answer("es-MX", "en")["text"] == "Llama al 112"


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ({"fr": {"text": "Appelez le 15"}}, "not a language this server has"),
        ({"english": {"text": "x"}}, "language tag"),
        ({"es": {"text": 5}}, "string 'text'"),
        ({"es": {"links": [{"title": "x"}]}}, "'links'"),
        # Both forms in one file: the language entries would otherwise be dropped unseen.
        ({"text": "Call 999", "es": {"text": "Llama al 112"}}, "'es' beside 'text'/'links'"),
        ({"es": {"text": "Llama al 112"}, "links": []}, "'es' beside 'text'/'links'"),
        ([{"text": "Call 999"}], "must hold an object"),
    ],
)
def test_crisis_resources_mistakes(tmp_path: Path, content: object, complaint: str) -> None:
    """A per-language file naming an unknown language, a malformed entry, or a file that mixes
    the single-object and per-language forms is refused."""
    path = tmp_path / "crisis.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(SettingsError, match=complaint):
        Settings.from_env({"HEARTH_CRISIS_RESOURCES": str(path)})


def test_redis_topologies_parse() -> None:
    """§16: a Sentinel set or a Cluster as host:port lists, with credentials and TLS; the
    password never shows in the settings' repr."""
    env = {
        "HEARTH_REDIS_SENTINEL": "s1:26379, [::1]:26380",
        "HEARTH_REDIS_MASTER": "hearth",
        "HEARTH_REDIS_USERNAME": "hearth",
        "HEARTH_REDIS_PASSWORD": "PASSWORD-MARKER",
        "HEARTH_REDIS_TLS": "yes",
        "HEARTH_REDIS_SENTINEL_PASSWORD": "SENTINEL-MARKER",
        "HEARTH_WORKERS": "4",
    }
    s = Settings.from_env(env)
    assert s.redis_sentinel == (("s1", 26379), ("::1", 26380)) and s.redis_master == "hearth"
    assert s.redis_tls and s.uses_redis and s.workers == 4
    assert "MARKER" not in repr(s)
    cluster = Settings.from_env({"HEARTH_REDIS_CLUSTER": "a:7000,b:7001", "HEARTH_WORKERS": "2"})
    assert cluster.redis_cluster == (("a", 7000), ("b", 7001)) and cluster.uses_redis
    args = parser().parse_args(["serve", "--redis-cluster", "c:7002", "--redis-tls"])
    assert settings_from(args).redis_cluster == (("c", 7002),) and settings_from(args).redis_tls
