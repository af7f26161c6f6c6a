"""Signaling through the mesh with real Peers (asyncio + aiortc + SQLite) and a real signaling server.

Three peers link through the server; the server stops; A forgets that the server ever listed C (and C
forgets A), and their link is dropped: the only way A and C can learn of each other again is B's reach
gossip, and the only way their offer/answer can travel is through B. They link again and chat directly.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from peer.core.invite import Invite
from peer.node import Link, Peer
from signaling.app import start_server
from signaling.config import SignalingConfig

WAIT = 30.0


@pytest.mark.timeout(120)
async def test_link_rebuilt_through_b_after_the_server_stopped(tmp_path: Path) -> None:
    runner, port = await start_server(SignalingConfig(host="127.0.0.1", port=0))
    server = f"http://127.0.0.1:{port}"
    invite = Invite.new(server).url()
    ps = [Peer(home=tmp_path / n, reconnect_initial=60.0) for n in "abc"]
    try:
        a, b, c = [await p.join(invite) for p in ps]
        for r in (a, b, c):
            await r.wait_for(lambda r=r: len(r.online_members()) == 2, WAIT)
        await a.wait_for(lambda: a.reach_hints() == [server], WAIT)  # learned from B's and C's gossip
        # while the server works and lists everyone, nothing goes through members (they learn nothing)
        assert [r.signals_relayed for r in (a, b, c)] == [0, 0, 0]
        assert b.core.relay.dropped == 0
        await runner.cleanup()  # the server is gone
        for r in (a, b, c):
            await r.wait_for(lambda r=r: not r.server_present, WAIT)
        assert a.mesh is not None
        assert c.mesh is not None
        a.mesh.peer_left(c.peer_id)  # as if the server had never listed them to each other
        c.mesh.peer_left(a.peer_id)
        relayed_before = a.signals_relayed + c.signals_relayed
        t0 = asyncio.get_running_loop().time()
        a.mesh.drop_link(c.peer_id)
        await a.wait_for(lambda: c.peer_id not in a.online_members(), WAIT)
        await a.wait_for(lambda: c.peer_id in a.online_members(), WAIT)
        await c.wait_for(lambda: a.peer_id in c.online_members(), WAIT)
        elapsed = asyncio.get_running_loop().time() - t0
        assert a.signals_relayed + c.signals_relayed > relayed_before
        assert a.signals_received_relayed > 0
        assert c.signals_received_relayed > 0
        info = a.link(c.peer_id)
        assert info is not None
        assert info.state == Link.DIRECT
        msg = await a.send("through the rebuilt link")
        await c.wait_for(lambda: any(m.text == msg.text for m in c.messages()), WAIT)
        print(f"\nA-C link rebuilt through B's relayed signaling in {elapsed:.2f}s")
    finally:
        for p in ps:
            await p.close()
        await runner.cleanup()


@pytest.mark.timeout(60)
async def test_learned_servers_survive_a_restart_and_go_with_the_room(tmp_path: Path) -> None:
    runner, port = await start_server(SignalingConfig(host="127.0.0.1", port=0))
    server = f"http://127.0.0.1:{port}"
    inv = Invite.new(server)
    try:
        a, b = Peer(home=tmp_path / "a"), Peer(home=tmp_path / "b")
        try:
            ra = await a.join(inv.url())
            rb = await b.join(inv.url())
            await ra.wait_for(lambda: ra.reach_hints() == [server], WAIT)
            rb.set_reach_hints([("server", server), ("server", "https://backup.example:8443")])
            await ra.wait_for(lambda: ra.reach_hints() == [server, "https://backup.example:8443"], WAIT)
            with pytest.raises(ValueError):
                rb.set_reach_hints([("server", "not a url with spaces")])
        finally:
            await b.close()
            await a.close()
        a = Peer(home=tmp_path / "a")
        try:
            # before any join: e.g. the invite's server is down
            assert a.learned_servers(inv.room_id) == [server, "https://backup.example:8443"]
            a.store.forget_room(inv.room_id)
            assert a.learned_servers(inv.room_id) == []
        finally:
            await a.close()
    finally:
        await runner.cleanup()
