"""CPU per MB of aiortc's data channels alone: both ends in this process, files-channel frames a -> b.

    python -m bench.sctp_loop --mb 16 [--no-tuning] [--repeat 3]

No room, no store, no chat: what one DATA packet costs in SCTP, DTLS, ICE and the event loop (both
ends together, so MB per CPU-second here is about half what one end of a two-process transfer gets).
``--repeat`` runs several transfers on one connection and prints each: compare variants in pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time
from typing import Any

from peer.net import sctp_tuning


async def _one(a: Any, b: Any, frames: int, size: int) -> tuple[float, float]:
    got = 0
    frame = hashlib.sha256(b"x").digest() * (size // 32)

    async def receive() -> None:
        nonlocal got
        async for f in b.files:
            got += len(f)
            if got >= frames * len(frame):
                return

    t0, c0 = time.perf_counter(), time.process_time()
    task = asyncio.ensure_future(receive())
    for _ in range(frames):
        await a.files.send(frame)
    await asyncio.wait_for(task, 300)
    return time.perf_counter() - t0, time.process_time() - c0


async def _run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from peer.net.rtc import rtc_pair

    a, b = await rtc_pair("a" * 8, "b" * 8)
    assert a.files is not None
    assert b.files is not None
    assert await a.files.wait_open()
    assert await b.files.wait_open()
    out = []
    try:
        await _one(a, b, 64, args.frame)  # warm-up: the congestion window opens
        keys = [k for k in args.ab.split(",") if k]
        flags = [k for k in keys if k.isupper()]  # a module switch (PLAIN_SACK) rather than a method
        keys = [k for k in keys if not k.isupper()]
        patched = {k: getattr(*sctp_tuning._targets()[k]) for k in keys}
        for i in range(args.repeat * (2 if keys or flags else 1)):
            on = not (keys or flags) or i % 2 == 0
            for f in flags:
                setattr(sctp_tuning, f, on)
            for k in keys:  # A/B on one connection: the patch in, then aiortc's code, in turns
                cls, name = sctp_tuning._targets()[k]
                setattr(cls, name, patched[k] if on else sctp_tuning._originals[k])
            frames = int(args.mb * 1e6 / args.frame)
            wall, cpu = await _one(a, b, frames, args.frame)
            mb = frames * args.frame / 1e6
            out.append(
                {
                    **({"patched": on} if keys or flags else {}),
                    "MB": round(mb, 1),
                    "wall_s": round(wall, 3),
                    "cpu_s": round(cpu, 3),
                    "MB_per_cpu_s": round(mb / cpu, 2),
                }
            )
            print(json.dumps(out[-1]), flush=True)
        for k in keys:
            setattr(*sctp_tuning._targets()[k], patched[k])
    finally:
        await a.close(0.5)
        await b.close(0.5)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=16.0)
    ap.add_argument("--frame", type=int, default=16384)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-tuning", action="store_true")
    ap.add_argument(
        "--ab",
        default="",
        help="sctp_tuning patch keys (e.g. dtls_send,dtls_recv) to switch on and off in turns",
    )
    ap.add_argument("--no-dtls-direct", action="store_true", help="without sctp_tuning's patch 7")
    ap.add_argument("--no-one-chunk", action="store_true", help="without sctp_tuning's patch 8")
    args = ap.parse_args(argv)
    if args.no_tuning:
        sctp_tuning.ENABLED = False
    if args.no_dtls_direct:
        sctp_tuning.DTLS_DIRECT = False
    if args.no_one_chunk:
        sctp_tuning.ONE_CHUNK = False
    asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
