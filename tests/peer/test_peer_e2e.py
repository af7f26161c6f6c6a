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
async def test_five_peers_concurrent_messages_same_order_everywhere(
    signaling_url: str, tmp_path: Path
) -> None:
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


@pytest.mark.timeout(180)
async def test_offline_members_get_100_missed_messages_from_members_then_keeper(
    signaling_url: str, tmp_path: Path
) -> None:
    invite = Invite.new(signaling_url).url()
    homes = {name: tmp_path / name for name in ("alice", "bob", "carol", "dave", "keeper")}
    keeper = Peer(home=homes["keeper"])
    bob = Peer(home=homes["bob"])
    try:
        await keeper.join(invite, keeper=True)
        broom = await bob.join(invite)
        # carol and dave join once, so the room knows them, then go offline
        for name in ("carol", "dave"):
            p = Peer(home=homes[name])
            r = await p.join(invite)
            await r.wait_for(lambda r=r: len(r.online_members()) == 2 and r.core.sync.caught_up(), WAIT)
            await p.close()

        alice = Peer(home=homes["alice"])
        aroom = await alice.join(invite)
        await aroom.wait_connected(WAIT)
        await aroom.wait_for(lambda: len(aroom.core.members()) == 5, WAIT)  # carol's and dave's ADDs
        sent = [await aroom.send(f"missed {i}") for i in range(100)]
        await broom.wait_for(lambda: len(broom.messages()) == 100, WAIT)
        for m in sent[-1:]:
            await aroom.wait_delivered(m.id, WAIT)
        await alice.close()  # the sender leaves

        # carol returns while bob and the keeper are online
        carol = Peer(home=homes["carol"])
        try:
            croom = await carol.join(invite)
            await croom.wait_for(lambda: len(croom.messages()) == 100, WAIT)
            assert [m.text for m in croom.messages()] == [f"missed {i}" for i in range(100)]
        finally:
            await carol.close()

        # dave returns when only the keeper is online
        await bob.close()
        dave = Peer(home=homes["dave"])
        try:
            droom = await dave.join(invite)
            await droom.wait_for(lambda: len(droom.messages()) == 100, WAIT)
            assert droom.online_members() == [keeper.peer_id]
            assert [m.text for m in droom.messages()] == [f"missed {i}" for i in range(100)]
        finally:
            await dave.close()
    finally:
        await keeper.close()
        await bob.close()


@pytest.mark.timeout(120)
async def test_garbage_on_a_real_data_channel_is_dropped_and_the_session_survives(
    signaling_url: str, tmp_path: Path
) -> None:
    invite = Invite.new(signaling_url).url()
    async with peers(tmp_path, 2) as (a, b):
        ra, rb = await a.join(invite), await b.join(invite)
        await ra.wait_connected(WAIT)
        await rb.wait_connected(WAIT)
        assert ra.mesh is not None
        link = ra.mesh.links[b.peer_id]
        for junk in (b"", b"\xff\x00garbage", b"\x02" + bytes(60000), b"\x01" + b"\x00" * 17):
            await link.send(junk)
        msg = await ra.send("after the garbage")
        assert await ra.wait_delivered(msg.id, WAIT) == {b.peer_id}
        await rb.wait_for(lambda: [m.text for m in rb.messages()] == ["after the garbage"], WAIT)
        assert rb.core.errors_total >= 3
        assert rb.online_members() == [a.peer_id]


@pytest.mark.timeout(120)
async def test_peers_survive_a_signaling_server_restart(tmp_path: Path) -> None:
    from signaling.app import start_server
    from signaling.config import SignalingConfig

    runner, port = await start_server(SignalingConfig(host="127.0.0.1", port=0))
    url = f"http://127.0.0.1:{port}"
    invite = Invite.new(url).url()
    async with peers(tmp_path, 3) as (a, b, c):
        ra, _rb = await a.join(invite), await b.join(invite)
        await ra.wait_for(lambda: ra.online_members() == [b.peer_id], WAIT)
        await runner.cleanup()  # the server goes away; the mesh link does not need it
        msg = await ra.send("while the server is down")
        assert await ra.wait_delivered(msg.id, WAIT) == {b.peer_id}

        runner, _ = await start_server(SignalingConfig(host="127.0.0.1", port=port))
        try:
            # a newcomer meets both through the restarted server once they have reconnected
            rc = await c.join(invite)
            await rc.wait_for(lambda: set(rc.online_members()) == {a.peer_id, b.peer_id}, WAIT)
            await rc.wait_for(lambda: [m.text for m in rc.messages()] == ["while the server is down"], WAIT)
        finally:
            await runner.cleanup()
