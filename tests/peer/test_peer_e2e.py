"""Real Peers (asyncio + aiortc + SQLite) in rooms through the real signaling server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from peer.core.invite import Invite
from peer.node import Peer, RoomHandle

WAIT = 30.0


@contextlib.asynccontextmanager
async def peers(tmp_path: Path, n: int, prefix: str = "p") -> AsyncIterator[list[Peer]]:
    ps = [Peer(home=tmp_path / f"{prefix}{i}") for i in range(n)]
    try:
        yield ps
    finally:
        for p in ps:
            await p.close()


def order(room: RoomHandle) -> list[tuple[str, str]]:
    return [(m.sender, m.text) for m in room.messages()]


@pytest.mark.timeout(120)
async def test_five_peers_concurrent_messages_same_order_everywhere(signaling_url: str, tmp_path: Path) -> None:
    invite = Invite.new(signaling_url).url()
    async with peers(tmp_path, 5) as ps:
        rooms = [await p.join(invite) for p in ps]
        for r in rooms:
            await r.wait_for(lambda r=r: len(r.online_members()) == 4, WAIT)
        await asyncio.gather(*(r.send(f"{i}-{k}") for i, r in enumerate(rooms) for k in range(4)))
        for r in rooms:
            await r.wait_for(lambda r=r: len(r.messages()) == 20, WAIT)
        first = order(rooms[0])
        assert len(first) == 20
        for r in rooms[1:]:
            assert order(r) == first


@pytest.mark.timeout(120)
async def test_restarted_peer_resumes_history_and_keeps_chatting(signaling_url: str, tmp_path: Path) -> None:
    invite = Invite.new(signaling_url).url()
    async with peers(tmp_path, 1, "stay") as (bob,):
        broom = await bob.join(invite)
        alice = Peer(home=tmp_path / "alice")
        aroom = await alice.join(invite)
        await aroom.wait_for(lambda: len(aroom.online_members()) == 1, WAIT)
        msg = await aroom.send("before restart")
        assert await aroom.wait_delivered(msg.id, WAIT) == {bob.peer_id}
        await broom.send("reply")
        await aroom.wait_for(lambda: len(aroom.messages()) == 2, WAIT)
        before = order(aroom)
        await alice.close()

        alice = Peer(home=tmp_path / "alice")
        try:
            aroom = await alice.join(invite)
            assert order(aroom) == before  # from disk, before any network
            await aroom.wait_for(lambda: len(aroom.online_members()) == 1, WAIT)
            await aroom.send("after restart")
            await broom.wait_for(lambda: len(broom.messages()) == 3, WAIT)
            assert order(broom) == order(aroom)
        finally:
            await alice.close()
