"""Half-sent HTTP requests from one address against a signaling server with a small file limit
(issue 13, item 10). Loopback only; the server runs in a child process with ``RLIMIT_NOFILE`` = 256.

Run: ``.venv/bin/python -m bench.signaling_halfopen [N]`` (default 300 half-sent requests from
127.0.0.1); prints how many were refused at once (503), and whether a request from 127.0.0.2 still
gets ``/healthz``.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import sys
import time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def _healthz(port: int, source: str) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3, source_address=(source, 0)) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).split(b"\r\n")[0].decode() or "closed"
    except OSError as exc:
        return f"failed ({type(exc).__name__})"


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    port = _free_port()
    code = f"from signaling.app import run; run(port={port})"
    child = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, preexec_fn=_limit_files)
    socks: list[socket.socket] = []
    try:
        assert child.stderr is not None
        while b"Running on" not in child.stderr.readline():
            pass
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=3)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the blank line never comes
            socks.append(s)
        time.sleep(0.5)  # a benchmark's settling time, not synchronisation
        refused = 0
        for s in socks:
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError, ConnectionError):
                if s.recv(16).startswith(b"HTTP/1.1 503"):
                    refused += 1
        print(f"{n} half-sent requests from 127.0.0.1: {refused} refused with 503 at once")
        print(f"/healthz from 127.0.0.2 meanwhile: {_healthz(port, '127.0.0.2')}")
    finally:
        for s in socks:
            s.close()
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:  # an old server waits for its connections: end it
            child.kill()
            child.wait()


if __name__ == "__main__":
    main()
