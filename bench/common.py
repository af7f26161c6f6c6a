"""Shared helpers: statistics, result files, process RSS/CPU, and child servers.

Rules:
- Every timing inside one process uses ``time.perf_counter()``; across processes (network namespaces)
  ``time.monotonic()``, which Linux shares between processes and network namespaces.
- Percentiles are nearest-rank on the sorted samples; a figure with no samples is ``None``, never 0.
- A child server prints ``PORT <n>`` on its first stdout line; :func:`spawn_server` waits for it with a
  timeout and kills the child (by its pid) on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PY = sys.executable
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def pct(samples: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile ``p`` (0-100) of ``samples``; ``None`` when empty."""
    if not samples:
        return None
    s = sorted(samples)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def summary_ms(samples_s: Sequence[float]) -> dict[str, Any]:
    """p50/p99/max/mean in milliseconds of samples given in seconds."""
    ms = [x * 1000 for x in samples_s]
    p50, p99 = pct(ms, 50), pct(ms, 99)
    return {
        "n": len(ms),
        "p50_ms": None if p50 is None else round(p50, 3),
        "p99_ms": None if p99 is None else round(p99, 3),
        "max_ms": round(max(ms), 3) if ms else None,
        "mean_ms": round(sum(ms) / len(ms), 3) if ms else None,
    }


def payload_text(tag: int, size: int = 200) -> str:
    """A ``size``-byte ASCII message whose first 10 characters are its tag."""
    head = f"{tag:010d}"
    return head + "x" * (size - len(head))


def tag_of(text: str | bytes) -> int:
    return int(text[:10])


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_result(name: str, data: dict[str, Any], out_dir: Path | None = None) -> Path:
    """Write ``data`` (plus the environment) to ``<out_dir>/<name>.json`` and return the path."""
    d = out_dir or RESULTS
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.json"
    path.write_text(json.dumps({"name": name, "env": environment(), **data}, indent=2) + "\n")
    return path


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of ``pid`` (default: this process) from /proc."""
    with open(f"/proc/{pid or os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds consumed so far by ``pid`` (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@dataclass
class Child:
    proc: subprocess.Popen[str]
    port: int

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextlib.contextmanager
def spawn_server(argv: list[str], timeout: float = 20.0, prefix: list[str] | None = None) -> Iterator[Child]:
    """Run ``argv`` (optionally behind ``prefix``, e.g. ``ip netns exec NS``) until ``PORT n`` appears."""
    proc = subprocess.Popen(
        [*(prefix or []), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    try:
        port = _read_port(proc, timeout)
        yield Child(proc, port)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _read_port(proc: subprocess.Popen[str], timeout: float) -> int:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    os.set_blocking(proc.stdout.fileno(), True)
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while time.monotonic() < deadline:
            if not sel.select(deadline - time.monotonic()):
                break
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("PORT "):
                return int(line.split()[1])
    finally:
        sel.close()
    raise RuntimeError(f"server {proc.args!r} did not report its port")


def raise_fd_limit(want: int = 65536) -> int:
    """Raise the soft fd limit towards ``want`` (bounded by the hard limit); return the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = min(want, hard) if hard != resource.RLIM_INFINITY else want
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return max(new, soft)


class Pinger:
    """Chat round trips through a room handle, the bench peers' ping protocol: ``ping N`` goes out, the
    other side answers ``pong N``; the room's listener hands every text to :meth:`settle`."""

    def __init__(self, room: Any, timeout_s: float) -> None:
        self.room = room
        self.timeout_s = timeout_s
        self._pongs: dict[int, Any] = {}
        self._seq = 0

    def settle(self, text: str) -> bool:
        """``text`` is a ``pong N``: ping N has its answer (False for any other text)."""
        if not text.startswith("pong "):
            return False
        fut = self._pongs.get(int(text[5:]))
        if fut is not None and not fut.done():
            fut.set_result(time.perf_counter())
        return True

    async def ping(self) -> float:
        """One round trip, in seconds."""
        self._seq += 1
        seq = self._seq
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pongs[seq] = fut
        t0 = time.perf_counter()
        await self.room.send(f"ping {seq}")
        try:
            return await asyncio.wait_for(fut, self.timeout_s) - t0
        finally:
            del self._pongs[seq]


async def start_page_profile(page: Any, interval_us: int) -> Any:
    """Start Chromium's CPU profiler on a Playwright page (CDP); returns the session to stop it with."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Profiler.enable")
    await cdp.send("Profiler.setSamplingInterval", {"interval": interval_us})
    await cdp.send("Profiler.start")
    return cdp
