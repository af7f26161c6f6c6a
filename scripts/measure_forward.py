"""How fast a held attachment is re-sealed when it is forwarded (issue 15, peer/forwarding.py).

One Peer in two rooms (a real signaling server on 127.0.0.1, port 0; no other member, so no transfer):
it sends a file of SIZE_MB in room one, then forwards it to room two and reports the time the forward
took (open and verify every chunk, re-seal under a fresh key, store, send) and the throughput.

    .venv/bin/python scripts/measure_forward.py [SIZE_MB]
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import tempfile
import time
from pathlib import Path

from peer.core.invite import Invite
from peer.node import Peer
from signaling.app import start_server
from signaling.config import SignalingConfig


async def main(size_mb: int) -> None:
    runner, port = await start_server(SignalingConfig(host="127.0.0.1", port=0))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "big.bin"
            with src.open("wb") as f:
                for i in range(size_mb * 1_000_000 // 32):
                    f.write(hashlib.sha256(i.to_bytes(8, "big")).digest())
            url = f"http://127.0.0.1:{port}"
            async with Peer(home=Path(tmp) / "home") as peer:
                one = await peer.join(Invite.new(url).url())
                two = await peer.join(Invite.new(url).url())
                t0 = time.perf_counter()
                msg = await one.send_file(src, ttl=3600)
                t1 = time.perf_counter()
                await one.forward(msg.id, two, ttl=3600)
                t2 = time.perf_counter()
            mb = size_mb
            print(f"send_file  {mb} MB: {t1 - t0:.2f} s ({mb / (t1 - t0):.1f} MB/s sealing)")
            print(f"forward    {mb} MB: {t2 - t1:.2f} s ({mb / (t2 - t1):.1f} MB/s open + verify + re-seal)")
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))
