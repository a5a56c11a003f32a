"""Starting and stopping what is measured: servers, a private Redis, CPU pinning.

Every child is started in its own session so it can be stopped by process group id,
and is registered so that ``stop_all()`` can clean up after errors and Ctrl-C.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# Hearth's protective settings, opened up so that the offered load is not refused
# (documented in bench/README.md).
HEARTH_SETTINGS = [
    "--rate",
    "1000",
    "--burst",
    "1000",
    # The idle run holds 10,000 connections in one process. 12,000 needs about 13,300 open
    # files (chat.openfiles), within a hard limit of 20,000; asking for more than the machine
    # allows makes every server warn and lower its cap, which clutters every row's notes.
    "--max-connections",
    "12000",
    "--join-timeout",
    "30",
]

# Hearth's per-address limits (protocol §11): every bench connection and room comes from
# 127.0.0.1, so the defaults (30 connections, 10 rooms a minute) would refuse the workloads.
# Passed only when this build's `serve --help` lists them (see per_address_limits()).
PER_ADDRESS_LIMITS = {
    "--max-per-address": "20000",  # more than any run holds: idle-10000 and R fit
    "--room-create-rate": "10000",  # rooms a minute; a whole run creates under 2,000
}

_children: list[subprocess.Popen[bytes]] = []


class Unavailable(RuntimeError):
    """A target could not be started in this topology (reported, not fatal)."""


@dataclass(frozen=True)
class Pinning:
    """Which CPUs the generator and the server side (servers and Redis) may use."""

    generator: frozenset[int] | None
    server: frozenset[int] | None

    @classmethod
    def detect(cls) -> Pinning:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2 or shutil.which("taskset") is None:
            return cls(None, None)
        # One core each, even on bigger machines, so that results stay comparable.
        return cls(frozenset({cpus[0]}), frozenset({cpus[1]}))

    def describe(self) -> str:
        if self.generator is None or self.server is None:
            return "not pinned (needs 2 CPUs and taskset)"
        return (
            f"generator on CPU {sorted(self.generator)}, "
            f"servers and Redis on CPU {sorted(self.server)} (taskset)"
        )


def raise_fd_limit() -> int:
    """Raise this process's RLIMIT_NOFILE to its hard limit; children inherit it.

    10,000 idle connections need as many descriptors on each side.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def spawn(
    argv: list[str], cpus: frozenset[int] | None, log: Path, stdout_pipe: bool = False
) -> subprocess.Popen[bytes]:
    """Start a registered child in its own process group, pinned, stderr to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    if cpus is not None:
        # taskset execs the command, so the pid we hold is the pinned program's own.
        argv = ["taskset", "-c", ",".join(map(str, sorted(cpus))), *argv]
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else err,
            stderr=err,
            start_new_session=True,
        )
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the child's process group, then SIGKILL it after ``grace`` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc in _children:
        _children.remove(proc)


def stop_all() -> None:
    """Stop every child still registered (used on exit, errors and Ctrl-C)."""
    for proc in list(reversed(_children)):
        stop(proc, grace=2.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(
    check: Callable[[], bool],
    proc: subprocess.Popen[bytes],
    timeout: float,
    what: str,
    log: Path,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Unavailable(f"{what} exited with {proc.returncode}: {tail(log)}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if check():
                return
        time.sleep(0.1)
    raise Unavailable(f"{what} not ready after {timeout:.0f}s: {tail(log)}")


def tail(log: Path, lines: int = 6) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def _status(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def _ready(port: int) -> bool:
    # /readyz says the broker is reachable too (protocol §3); a server started with
    # --redis-url can be alive before it is ready, and joins meanwhile fail "unavailable".
    status = _status(port, "/readyz")
    if status == 404:
        return _status(port, "/healthz") == 200
    return status == 200


def _redis_pong(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")


@dataclass
class Deployment:
    """A running target: one or two server processes, and Redis for the latter."""

    target: str  # "baseline" or "hearth"
    topology: str  # "single", "redis" or "cluster"
    ports: list[int] = field(default_factory=list)
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    redis: subprocess.Popen[bytes] | None = None
    cluster: list[subprocess.Popen[bytes]] = field(default_factory=list)  # its Redis nodes
    logs: list[Path] = field(default_factory=list)

    @property
    def redis_pids(self) -> list[int]:
        """Every Redis process of the deployment (one server, or a cluster's nodes)."""
        found = [self.redis] if self.redis is not None else []
        return [p.pid for p in [*found, *self.cluster]]

    @property
    def urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{p}/ws" for p in self.ports]

    @property
    def server_pids(self) -> list[int]:
        return [p.pid for p in self.servers]

    def stop(self) -> None:
        for proc in self.servers:
            stop(proc)
        if self.redis is not None:
            stop(self.redis)
        for node in self.cluster:
            stop(node)


@functools.cache
def per_address_limits() -> list[str]:
    """The per-address limit options to raise, of those this Hearth's ``serve`` knows."""
    help_text = subprocess.run(
        [PYTHON, "-m", "chat", "serve", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    ).stdout
    args: list[str] = []
    for option, value in PER_ADDRESS_LIMITS.items():
        if option in help_text.split():
            args += [option, value]
    return args


def _server_argv(target: str, port: int, redis: list[str]) -> list[str]:
    if target == "baseline":
        argv = [PYTHON, "-m", "bench.baseline_server", "--port", str(port)]
    else:
        argv = [
            PYTHON,
            "-m",
            "chat",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        argv += HEARTH_SETTINGS + per_address_limits()
    return argv + redis


def deploy(target: str, topology: str, pinning: Pinning, log_dir: Path, tag: str) -> Deployment:
    """Start ``target`` in ``topology``; raise ``Unavailable`` if it does not come up."""
    dep = Deployment(target, topology)
    try:
        redis: list[str] = []  # the server's options that name its Redis
        if topology == "cluster":
            if target == "baseline":
                raise Unavailable("the baseline has no Redis Cluster mode")
            redis = ["--redis-cluster", _start_cluster(dep, pinning, log_dir, tag)]
        if topology == "redis":
            rport = free_port()
            rlog = log_dir / f"{tag}-redis.log"
            dep.redis = spawn(
                [
                    "redis-server",
                    "--port",
                    str(rport),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                pinning.server,
                rlog,
            )
            _wait(lambda: _redis_pong(rport), dep.redis, 10, "redis-server", rlog)
            redis = ["--redis-url", f"redis://127.0.0.1:{rport}/0"]
        for i in range(1 if topology == "single" else 2):
            port = free_port()
            log = log_dir / f"{tag}-server-{i}.log"
            proc = spawn(_server_argv(target, port, redis), pinning.server, log)
            dep.ports.append(port)
            dep.servers.append(proc)
            dep.logs.append(log)
            _wait(functools.partial(_ready, port), proc, 30, f"{target} server", log)
    except BaseException:
        dep.stop()
        raise
    return dep


def _start_cluster(dep: Deployment, pinning: Pinning, log_dir: Path, tag: str) -> str:
    """Three Redis Cluster primaries (pinned with the servers), made one cluster with
    ``redis-cli --cluster create``; returns the seed list for ``--redis-cluster``."""
    ports = []
    for i in range(3):
        port, bus = free_port(), free_port()
        node_dir = log_dir / f"{tag}-cluster-{i}"
        node_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / f"{tag}-cluster-{i}.log"
        argv = [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(node_dir), "--cluster-enabled", "yes",
            "--cluster-port", str(bus), "--cluster-require-full-coverage", "no",
        ]  # fmt: skip
        node = spawn(argv, pinning.server, log)
        dep.cluster.append(node)
        _wait(functools.partial(_redis_pong, port), node, 10, "redis-server (cluster)", log)
        ports.append(port)
    seeds = [f"127.0.0.1:{p}" for p in ports]
    made = subprocess.run(
        ["redis-cli", "--cluster", "create", *seeds, "--cluster-yes"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    if made.returncode != 0:
        raise Unavailable(f"redis-cli --cluster create failed: {made.stdout[-500:]}")

    def ok() -> bool:
        for port in ports:
            info = subprocess.run(
                ["redis-cli", "-p", str(port), "cluster", "info"],
                capture_output=True, text=True, check=False, timeout=10,
            ).stdout  # fmt: skip
            if "cluster_state:ok" not in info:
                return False
        return True

    _wait(ok, dep.cluster[0], 30, "the cluster agreeing", log_dir / f"{tag}-cluster-0.log")
    return ",".join(seeds)


def create_rooms(dep: Deployment, count: int) -> list[str]:
    """Room ids for ``count`` rooms: created over HTTP on Hearth, made up on the baseline."""
    if dep.target == "baseline":
        run = uuid.uuid4().hex[:8]
        return [f"bench-{run}-{i}" for i in range(count)]
    conn = http.client.HTTPConnection("127.0.0.1", dep.ports[0], timeout=10)
    rooms: list[str] = []
    try:
        for _ in range(count):
            conn.request(
                "POST",
                "/api/rooms",
                body=json.dumps({"title": "bench"}),
                headers={"Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 201:
                raise Unavailable(f"POST /api/rooms answered {resp.status}: {body[:200]!r}")
            rooms.append(json.loads(body)["room"])
    finally:
        conn.close()
    return rooms


@contextlib.contextmanager
def deployed(
    target: str, topology: str, pinning: Pinning, log_dir: Path, tag: str
) -> Iterator[Deployment]:
    dep = deploy(target, topology, pinning, log_dir, tag)
    try:
        yield dep
    finally:
        dep.stop()
