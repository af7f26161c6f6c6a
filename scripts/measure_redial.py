"""Offers per minute that a peer whose handshake always fails receives, with the default redial policy.

    .venv/bin/python scripts/measure_redial.py [seconds]     (default 60; loopback signaling server)

Prints the offers the hostile peer received and the bound ``RedialPolicy().max_attempts(seconds)``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from peer.core.invite import Invite
from peer.net.linkstate import RedialPolicy
from peer.node import Peer
from signaling.app import start_server
from signaling.config import SignalingConfig


async def main(seconds: float) -> None:
    runner, port = await start_server(SignalingConfig(port=0))
    invite = Invite.new(f"http://127.0.0.1:{port}").url()
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Peer(home=Path(tmp) / "a"), Peer(home=Path(tmp) / "b")
        honest, hostile = (a, b) if a.peer_id < b.peer_id else (b, a)
        hroom = await hostile.join(invite)
        mesh = hroom.mesh
        assert mesh is not None
        offers = 0
        opener = mesh._open

        def counting(sender: str, payload: str) -> tuple[str, dict[str, Any]]:
            nonlocal offers
            kind, body = opener(sender, payload)
            offers += kind == "offer"
            return kind, body

        mesh._open = counting
        mesh._on_up = lambda peer, link: mesh._spawn(link.close())
        mesh.policy = RedialPolicy(base_s=0.0, cap_s=0.0)
        start = time.monotonic()
        await honest.join(invite)
        await asyncio.sleep(seconds)  # the measurement window
        elapsed = time.monotonic() - start
        print(
            f"offers received by a handshake-refusing peer in {elapsed:.0f} s: {offers} "
            f"(bound {RedialPolicy().max_attempts(elapsed)}; before: ~24/s)"
        )
        await honest.close()
        await hostile.close()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0))
