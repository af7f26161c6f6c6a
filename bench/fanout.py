"""Room latency and room rate: ephemesh vs a WebSocket relay vs a raw aiortc mesh.

``python -m bench.fanout [--sizes 2 4 8] [--messages 300] [--rate-peers 8] [--rate-messages 2000]``

Layout: all peers of a system live in this one process (one asyncio loop); the signaling server and the
relay server each run in their own process on 127.0.0.1.

- Latency: messages are sent one at a time (closed loop), senders in turn; a sample is ``send()`` until
  the last other member has the message. p50/p99 over the samples.
- Rate: the same, but up to ``--window`` messages in flight; rate = messages delivered to *all* members
  per second of wall time, from the first send to the last delivery.
- CPU per delivered message: CPU seconds of this process (plus the server's, for the relay) during the
  rate run, divided by messages × (n - 1) deliveries.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import PY, cpu_seconds, rss_bytes, spawn_server, summary_ms, write_result
from bench.groups import EphemeshGroup, Group, RawMeshGroup, RelayGroup, Tracker, warm_up

SYSTEMS = ("ephemesh", "ws-relay", "raw-aiortc")


async def measure_latency(group: Group, messages: int, timeout: float = 30.0) -> dict[str, Any]:
    tracker = Tracker(group.n)
    await group.start(tracker)
    try:
        await warm_up(group, tracker)
        for k in range(messages):
            tracker.sent(k)
            await group.send(k % group.n, k)
            await tracker.wait_below(1, timeout)
        return summary_ms(tracker.latencies)
    finally:
        await group.close()


async def measure_rate(
    group: Group,
    messages: int,
    window: int,
    server_pid: int | None,
    cap_s: float = 30.0,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Send up to ``messages`` (stop early once ``cap_s`` seconds have passed); count what reached all."""
    tracker = Tracker(group.n)
    await group.start(tracker)
    try:
        await warm_up(group, tracker)
        cpu0 = time.process_time() + (cpu_seconds(server_pid) if server_pid else 0.0)
        t0 = time.perf_counter()
        async with asyncio.timeout(timeout):
            sent = 0
            for k in range(messages):
                if time.perf_counter() - t0 > cap_s:
                    break
                await tracker.wait_below(window, timeout)
                tracker.sent(k)
                await group.send(k % group.n, k)
                sent += 1
            await tracker.wait_below(1, timeout)
        messages = sent
        elapsed = tracker.last_done - t0
        cpu = time.process_time() + (cpu_seconds(server_pid) if server_pid else 0.0) - cpu0
        deliveries = messages * (group.n - 1)
        return {
            "messages": messages,
            "window": window,
            "elapsed_s": round(elapsed, 4),
            "msgs_per_s": round(messages / elapsed, 1),
            "deliveries_per_s": round(deliveries / elapsed, 1),
            "cpu_s": round(cpu, 3),
            "cpu_us_per_delivery": round(cpu / deliveries * 1e6, 1),
            "latency_under_load": summary_ms(tracker.latencies),
        }
    finally:
        await group.close()


def make_group(system: str, n: int, sig_url: str, relay_url: str, home: Path) -> Group:
    if system == "ephemesh":
        return EphemeshGroup(n, sig_url, home)
    if system == "ws-relay":
        return RelayGroup(n, relay_url)
    return RawMeshGroup(n)


async def run(
    sizes: list[int],
    messages: int,
    rate_peers: int,
    rate_messages: int,
    window: int,
    profile_out: Path | None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    out: dict[str, Any] = {"latency": {}, "rate": {}, "rss": {}}
    with (
        spawn_server([PY, "-m", "bench.sigserver"]) as sig,
        spawn_server([PY, "-m", "bench.relay_server"]) as relay,
        tempfile.TemporaryDirectory(prefix="ephb-") as tmp,
    ):
        sig_url = f"http://127.0.0.1:{sig.port}"
        relay_url = f"http://127.0.0.1:{relay.port}"
        home = Path(tmp)
        for n in sizes:
            for system in SYSTEMS:
                group = make_group(system, n, sig_url, relay_url, home / f"lat-{system}-{n}")
                res = await measure_latency(group, messages)
                out["latency"].setdefault(system, {})[str(n)] = res
                log(f"latency {system:10s} n={n:2d}: p50 {res['p50_ms']} ms  p99 {res['p99_ms']} ms")
        for system in SYSTEMS:
            group = make_group(system, rate_peers, sig_url, relay_url, home / f"rate-{system}")
            pid = relay.pid if system == "ws-relay" else None
            res = await measure_rate(group, rate_messages, window, pid)
            res["peers"] = rate_peers
            out["rate"][system] = res
            log(
                f"rate    {system:10s} n={rate_peers}: {res['msgs_per_s']} msg/s to all, "
                f"{res['cpu_us_per_delivery']} us CPU/delivery"
            )
        if profile_out is not None:
            # a separate, shorter run: cProfile's overhead must not inflate the figures above
            group = make_group("ephemesh", rate_peers, sig_url, relay_url, home / "profile")
            prof = cProfile.Profile()
            prof.enable()
            await measure_rate(group, min(rate_messages, 200), window, None)
            prof.disable()
            out["profile"] = write_profile(prof, profile_out)
            log(f"profile of an ephemesh rate run written to {profile_out}")
    out["layout"] = (
        "all peers of a system in one Python process (one asyncio loop); signaling server and WebSocket "
        "relay each in their own process; 127.0.0.1 / host addresses only"
    )
    return out


def write_profile(prof: cProfile.Profile, path: Path) -> list[dict[str, Any]]:
    """Write the cProfile report (by cumulative and by own time) to ``path``; return the top-own list."""
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf)
    st.sort_stats("tottime").print_stats(30)
    st.sort_stats("cumulative").print_stats(40)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buf.getvalue())
    rows: list[tuple[float, float, int, str]] = []
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        rows.append((tt, ct, nc, f"{Path(file).name}:{line}({fn})"))
    rows.sort(reverse=True)
    return [
        {"tottime_s": round(tt, 3), "cumtime_s": round(ct, 3), "calls": nc, "where": w}
        for tt, ct, nc, w in rows[:20]
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--rate-peers", type=int, default=8)
    ap.add_argument("--rate-messages", type=int, default=2000)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument(
        "--profile", type=Path, default=None, help="cProfile the ephemesh rate run into this file"
    )
    ap.add_argument("--out", type=Path, default=None, help="results directory (default bench/results)")
    args = ap.parse_args(argv)
    res = asyncio.run(
        run(args.sizes, args.messages, args.rate_peers, args.rate_messages, args.window, args.profile)
    )
    res["rss_after_mb"] = round(rss_bytes() / 2**20, 1)
    write_result("fanout", res, args.out)
    return res


if __name__ == "__main__":
    main()
