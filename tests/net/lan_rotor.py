"""Run one room's LAN announcement with a clock set ~4 s before an epoch change, until it has been
renamed once; print the clock offset (JSON). Used by ``tests/net/test_lan.py`` inside a namespace:
``python -m tests.net.lan_rotor INVITE LAN_ADDRESS``."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from peer.core.invite import Invite
from peer.core.lan import EPOCH_MS
from peer.net.lan import LanDiscovery


async def main(invite: str, host: str) -> None:
    now_ms = time.time() * 1000
    offset_ms = (EPOCH_MS - now_ms % EPOCH_MS) - 4000  # our clock: 4 s before the next epoch
    lan = LanDiscovery(lambda room, url: None, host=host, clock=lambda: time.time() + offset_ms / 1000)
    try:
        await lan.add_room(Invite.parse(invite))
        print(json.dumps({"offset_ms": offset_ms}), flush=True)
        async with asyncio.timeout(20):
            await lan.wait_announced(2)  # renamed once
        print(json.dumps({"renamed": True}), flush=True)
    finally:
        await lan.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
