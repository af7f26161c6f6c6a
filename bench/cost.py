"""Memory cost: RSS per peer and per connection, ephemesh vs a raw aiortc mesh.

``python -m bench.cost [--peers 8]``

Layout: each measurement runs in a fresh child process (RSS never shrinks, so one process per figure);
the peers of a room all live in that child; the signaling server in its own process. Figure = growth of
the child's RSS from "imports done" to "room fully meshed", divided by peers (per peer) or by
connections n(n-1)/2 (per connection; a connection has both its ends in the child).
CPU time per delivered message is measured by :mod:`bench.fanout` (rate run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.common import PY, ROOT, rss_bytes, spawn_server, write_result
from bench.groups import EphemeshGroup, Group, RawMeshGroup, Tracker


async def one(system: str, n: int, server: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ephb-cost-") as tmp:
        group: Group = EphemeshGroup(n, server, Path(tmp)) if system == "ephemesh" else RawMeshGroup(n)
        rss0 = rss_bytes()
        await group.start(Tracker(n))
        rss1 = rss_bytes()
        await group.close()
    return {"system": system, "peers": n, "rss_before": rss0, "rss_after": rss1}


def measure(system: str, n: int, server: str) -> dict[str, Any]:
    out = subprocess.run(
        [PY, "-m", "bench.cost", "--child", system, "--peers", str(n), "--server", server],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=True,
    ).stdout
    r: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    growth = r["rss_after"] - r["rss_before"]
    conns = n * (n - 1) // 2
    return {
        "peers": n,
        "connections": conns,
        "rss_growth_mb": round(growth / 2**20, 2),
        "mb_per_peer": round(growth / n / 2**20, 2),
        "mb_per_connection": round(growth / conns / 2**20, 3),
    }


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", type=int, default=8)
    ap.add_argument("--child", choices=["ephemesh", "raw-aiortc"], default=None)
    ap.add_argument("--server", default="")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(one(args.child, args.peers, args.server))), flush=True)
        return None
    res: dict[str, Any] = {
        "layout": "one child process per figure, all its peers inside; signaling server separate"
    }
    with spawn_server([PY, "-m", "bench.sigserver"]) as sig:
        server = f"http://127.0.0.1:{sig.port}"
        for system in ("ephemesh", "raw-aiortc"):
            res[system] = measure(system, args.peers, server)
            print(f"cost {system:10s} n={args.peers}: {res[system]}")
    write_result("cost", res, args.out)
    return res


if __name__ == "__main__":
    main()
