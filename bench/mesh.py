"""Mesh formation and catch-up.

``python -m bench.mesh [--sizes 2 4 8 16] [--backlog 1000] [--repeat 3]``

Layout: all peers in this one process; the signaling server in its own process on 127.0.0.1.

- Formation: ``n`` Peers (identities already on disk) call ``join`` at once; the figure is the time
  until every one of them lists all ``n - 1`` others in ``online_members()`` (authenticated link and
  sync hello done). Baseline: the same number of raw aiortc connections (offer/answer handed over in
  memory, no signaling server, no handshake) until every data channel is open.
- Catch-up: A and B are linked; A leaves; B sends ``--backlog`` 200-byte messages; A comes back (a new
  Peer on the same home directory). The figure is ``join()`` until A shows all of them. Baseline: the
  same number of 200-byte frames pushed over one already-open raw aiortc data channel until the last
  arrives (the transport's floor).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import PY, payload_text, spawn_server, write_result
from bench.groups import RawMeshGroup, Tracker, wait_formed
from peer.core.invite import Invite
from peer.node import Peer

FORM_TIMEOUT = 60.0


async def formation(n: int, server: str, home: Path) -> float:
    invite = Invite.new(server).url()
    peers = [Peer(home=home / f"p{i}") for i in range(n)]
    try:
        t0 = time.perf_counter()
        rooms = await asyncio.gather(*(p.join(invite) for p in peers))
        await wait_formed(list(rooms), FORM_TIMEOUT)
        return time.perf_counter() - t0
    finally:
        for p in peers:
            await p.close()


async def raw_formation(n: int) -> float:
    group = RawMeshGroup(n)
    try:
        await group.start(Tracker(n))
        return group.formation_s
    finally:
        await group.close()


async def catch_up(backlog: int, server: str, home: Path) -> dict[str, Any]:
    invite = Invite.new(server).url()
    bob = Peer(home=home / "bob")
    try:
        broom = await bob.join(invite)
        alice = Peer(home=home / "alice")
        try:
            aroom = await alice.join(invite)
            await wait_formed([aroom, broom], FORM_TIMEOUT)
        finally:
            await alice.close()
        await broom.wait_for(lambda: not broom.online_members(), FORM_TIMEOUT)
        t_send = time.perf_counter()
        for k in range(backlog):
            await broom.send(payload_text(k), ttl=3600)
        send_s = time.perf_counter() - t_send
        want = len(broom.messages())
        alice = Peer(home=home / "alice")
        try:
            t0 = time.perf_counter()
            aroom = await alice.join(invite)
            try:
                await aroom.wait_for(lambda: len(aroom.messages()) >= want, FORM_TIMEOUT)
            except TimeoutError:  # a failed run is a figure too: how far it got, and whether it was linked
                return {
                    "catch_up_s": None,
                    "sender_wrote_s": send_s,
                    "shown": len(aroom.messages()),
                    "want": want,
                    "linked": bool(aroom.online_members()),
                }
            return {
                "catch_up_s": time.perf_counter() - t0,
                "sender_wrote_s": send_s,
                "shown": want,
                "want": want,
            }
        finally:
            await alice.close()
    finally:
        await bob.close()


async def raw_catch_up(backlog: int) -> float:
    group = RawMeshGroup(2)
    got = asyncio.Event()
    count = 0

    class Counting(Tracker):
        def received(self, tag: int) -> None:
            nonlocal count
            count += 1
            if count >= backlog:
                got.set()

    try:
        await group.start(Counting(2))
        t0 = time.perf_counter()
        for k in range(backlog):
            await group.send(0, k)
        async with asyncio.timeout(FORM_TIMEOUT):
            await got.wait()
        return time.perf_counter() - t0
    finally:
        await group.close()


async def run(sizes: list[int], backlog: int, repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {"formation": {}, "catch_up": {}}
    with (
        spawn_server([PY, "-m", "bench.sigserver"]) as sig,
        tempfile.TemporaryDirectory(prefix="ephb-") as tmp,
    ):
        server = f"http://127.0.0.1:{sig.port}"
        home = Path(tmp)
        for n in sizes:
            ours = [await formation(n, server, home / f"f{n}-{r}") for r in range(repeat)]
            raw = [await raw_formation(n) for _ in range(repeat)]
            out["formation"][str(n)] = {
                "connections": n * (n - 1) // 2,
                "ephemesh_s": [round(x, 3) for x in ours],
                "ephemesh_median_s": round(statistics.median(ours), 3),
                "raw_aiortc_s": [round(x, 3) for x in raw],
                "raw_aiortc_median_s": round(statistics.median(raw), 3),
            }
            print(
                f"formation n={n:2d}: ephemesh {statistics.median(ours):.3f} s  "
                f"raw aiortc {statistics.median(raw):.3f} s (median of {repeat})"
            )
        runs = [await catch_up(backlog, server, home / f"c{r}") for r in range(repeat)]
        raw_c = [await raw_catch_up(backlog) for _ in range(repeat)]
        ok = [r["catch_up_s"] for r in runs if r["catch_up_s"] is not None]
        out["catch_up"] = {
            "backlog": backlog,
            "ephemesh_s": [None if r["catch_up_s"] is None else round(r["catch_up_s"], 3) for r in runs],
            # a run that timed out counts as the timeout: the median never hides a failure
            "ephemesh_median_s": round(statistics.median([*ok, *[FORM_TIMEOUT] * (len(runs) - len(ok))]), 3),
            "failed_runs": [r for r in runs if r["catch_up_s"] is None],
            "sender_wrote_median_s": round(statistics.median(r["sender_wrote_s"] for r in runs), 3),
            "raw_aiortc_s": [round(x, 3) for x in raw_c],
            "raw_aiortc_median_s": round(statistics.median(raw_c), 3),
        }
        c = out["catch_up"]
        print(
            f"catch-up {backlog}: ephemesh {c['ephemesh_median_s']} s  raw aiortc {c['raw_aiortc_median_s']} s  "
            f"(sender took {c['sender_wrote_median_s']} s to write them)"
        )
    out["layout"] = (
        "all peers in one Python process; signaling server in its own process; loopback/host addresses"
    )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 8, 16])
    ap.add_argument("--backlog", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    res = asyncio.run(run(args.sizes, args.backlog, args.repeat))
    write_result("mesh", res, args.out)
    return res


if __name__ == "__main__":
    main()
