"""Real service fixtures: a ``redis-server`` and a coturn ``turnserver`` on free loopback ports.

Rules:
- Each service runs in a temporary directory (pid file, logs, databases), listens on 127.0.0.1 only and is
  stopped (SIGTERM, then SIGKILL) at the end of the session.
- Readiness is *probed*, never slept for: redis must answer ``PING`` with ``PONG``; coturn must answer a
  STUN Binding request over UDP. Each probe blocks on its socket with a timeout.
- A missing binary skips the tests that need it, with the reason; any other start failure is an error
  that shows the service's log.
- Tests share one server per session and isolate themselves by key prefix (``redis_prefix``).

Import the fixtures into a test module (``from tests.fixtures_services import redis_server``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT = 10.0
REDIS_BIN = "/usr/bin/redis-server"
TURN_BIN = "/usr/bin/turnserver"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port the kernel just handed out on 127.0.0.1 (free for TCP and, best effort, UDP)."""
    while True:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, other) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def _binary(path: str, name: str) -> str:
    found = path if os.access(path, os.X_OK) else shutil.which(name)
    if found is None:
        pytest.skip(
            f"{name} is not installed (Debian package: {'redis-server' if 'redis' in name else 'coturn'})"
        )
    return found


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _fail(what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    _stop(proc)
    text = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
    pytest.fail(f"{what} did not become ready within {START_TIMEOUT} s; log:\n{text}")


# ------------------------------------------------------------------------------------------ redis


@dataclass(frozen=True)
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.settimeout(0.5)
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A ``redis-server`` on 127.0.0.1 (no persistence), ready to answer."""
    binary = _binary(REDIS_BIN, "redis-server")
    work = tmp_path_factory.mktemp("redis")
    port = free_port()
    log = work / "redis.log"
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(work), "--save", ""]
    args += [
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--logfile",
        str(log),
        "--pidfile",
        str(work / "redis.pid"),
    ]
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + START_TIMEOUT
    while not _redis_ping(port):  # each probe blocks up to 0.5 s on its socket
        if proc.poll() is not None or time.monotonic() > deadline:
            _fail("redis-server", proc, log)
    try:
        yield RedisServer(port, proc)
    finally:
        _stop(proc)


# ------------------------------------------------------------------------------------------ coturn


@dataclass(frozen=True)
class TurnServer:
    port: int
    secret: str
    realm: str
    min_port: int
    max_port: int
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"


STUN_MAGIC = 0x2112A442


def _stun_ping(port: int) -> bool:
    """Send a STUN Binding request over UDP; True on a Binding success response with our transaction id."""
    txid = secrets.token_bytes(12)
    request = struct.pack("!HHI", 0x0001, 0, STUN_MAGIC) + txid
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        try:
            s.sendto(request, ("127.0.0.1", port))
            data = s.recv(2048)
        except OSError:
            return False
    return len(data) >= 20 and data[:2] == b"\x01\x01" and data[8:20] == txid


def _relay_range() -> tuple[int, int]:
    """A small relay port range whose first port is free right now."""
    while True:
        low = 40000 + secrets.randbelow(2000) * 10
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", low))
            except OSError:
                continue
        return low, low + 19


@pytest.fixture(scope="session")
def turn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TurnServer]:
    """coturn on 127.0.0.1 with ``use-auth-secret`` (REST credentials), UDP/TCP only, loopback peers allowed."""
    binary = _binary(TURN_BIN, "turnserver")
    work = tmp_path_factory.mktemp("coturn")
    port = free_port(socket.SOCK_DGRAM)
    low, high = _relay_range()
    secret = secrets.token_hex(16)
    realm = "ephemesh.test"
    log = work / "turn.log"
    args = [
        binary,
        "-n",  # no configuration file
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        f"--min-port={low}",
        f"--max-port={high}",
        "--use-auth-secret",
        f"--static-auth-secret={secret}",
        f"--realm={realm}",
        "--allow-loopback-peers",
        "--fingerprint",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--no-software-attribute",
        f"--pidfile={work / 'turn.pid'}",
        f"--log-file={log}",
        "--simple-log",
        "--no-stdout-log",
        f"--userdb={work / 'turndb'}",
        "--verbose",
    ]
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + START_TIMEOUT
    while not _stun_ping(port):  # each probe blocks up to 0.3 s on its socket
        if proc.poll() is not None or time.monotonic() > deadline:
            _fail("turnserver", proc, log)
    try:
        yield TurnServer(port, secret, realm, low, high, log, proc)
    finally:
        _stop(proc)
