"""Run the ephemesh signaling server for a benchmark: ``python -m bench.sigserver [--port 0]``.

Prints ``PORT <n>`` once listening. ``--rate`` raises the per-connection token bucket (default: the
server's own default, 50/s) so that a relay-rate test measures the server rather than its abuse limit;
the benchmark page says when it was raised. No web root is served.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import replace

from bench.common import raise_fd_limit
from signaling.app import start_server
from signaling.config import Limits, SignalingConfig


async def serve(host: str, port: int, rate: float | None, max_peers: int | None) -> None:
    limits = Limits()
    if rate is not None:
        limits = replace(limits, rate_per_s=rate, rate_burst=int(rate))
    if max_peers is not None:
        limits = replace(limits, max_peers_per_room=max_peers)
    config = SignalingConfig(host=host, port=port, limits=limits, idle_timeout_s=600.0)
    runner, bound = await start_server(config)
    print(f"PORT {bound}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--rate", type=float, default=None)
    ap.add_argument("--max-peers", type=int, default=None)
    args = ap.parse_args(argv)
    raise_fd_limit()
    asyncio.run(serve(args.host, args.port, args.rate, args.max_peers))


if __name__ == "__main__":
    main()
