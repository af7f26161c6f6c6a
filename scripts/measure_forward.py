"""How fast a held attachment is re-sealed when it is forwarded (issue 15, peer/forwarding.py).

One Peer in two rooms (a real signaling server on 127.0.0.1, port 0; no other member, so no transfer):
it sends a file of SIZE_MB in room one, then forwards it to room two and reports the time the forward
took (open and verify every chunk, re-seal under a fresh key, store, send) and the throughput, and for
each the event loop's longest stall and its total lag (what chat on that peer waits meanwhile: a ticker
asks for 5 ms sleeps and counts what they overshoot).

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


class _Ticker:
    """The event loop's longest stall and total lag while it runs (5 ms sleeps, what they overshoot)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.lag = 0.0
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            over = time.perf_counter() - t - 0.005
            self.worst = max(self.worst, over)
            self.lag += max(0.0, over)

    def stop(self) -> str:
        self._task.cancel()
        return f"loop: longest stall {self.worst * 1000:.0f} ms, total lag {self.lag:.2f} s"


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
                t0, ticker = time.perf_counter(), _Ticker()
                msg = await one.send_file(src, ttl=3600)
                t1, sending = time.perf_counter(), ticker.stop()
                ticker = _Ticker()
                await one.forward(msg.id, two, ttl=3600)
                t2, forwarding = time.perf_counter(), ticker.stop()
            mb = size_mb
            print(f"send_file  {mb} MB: {t1 - t0:.2f} s ({mb / (t1 - t0):.1f} MB/s sealing); {sending}")
            print(
                f"forward    {mb} MB: {t2 - t1:.2f} s ({mb / (t2 - t1):.1f} MB/s open + verify + re-seal);"
                f" {forwarding}"
            )
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))
