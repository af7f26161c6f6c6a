"""Governance between real Peers (asyncio + aiortc + SQLite) through the real signaling server: a member's
REMOVE is refused by everyone, an admin removes and readmits, announcement mode holds against a hostile
member's client."""

from __future__ import annotations

from pathlib import Path

import pytest

from peer.core.invite import Invite
from peer.core.membership import make_remove
from peer.node import Peer, RoomHandle, now_ms

WAIT = 30.0


def texts(room: RoomHandle) -> list[str]:
    return [m.text for m in room.messages()]


async def _holds(room: RoomHandle, sender: str, seq: int) -> None:
    """Wait until ``room`` stored the envelope ``(sender, seq)`` (it arrived and was validated)."""
    await room.wait_for(lambda: room.core.sync.entry((sender, seq)) is not None, WAIT)


@pytest.mark.timeout(180)
async def test_member_remove_refused_admin_removes_readmits_and_announces(
    signaling_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = Peer(home=tmp_path / "alice"), Peer(home=tmp_path / "bob")
    carol = Peer(home=tmp_path / "carol")
    try:
        invite = Invite.new(signaling_url, owner=alice.peer_id)
        assert Invite.parse(invite.url()).owner == alice.peer_id
        a, b, c = [await p.join(invite.url()) for p in (alice, bob, carol)]
        for r in (a, b, c):
            await r.wait_for(lambda r=r: len(r.online_members()) == 2 and len(r.members()) == 3, WAIT)
        assert a.owner == b.owner == c.owner == alice.peer_id
        assert b.admins() == [alice.peer_id]

        # 1. bob (a member) cannot remove carol; a hostile client's signed REMOVE is refused everywhere
        with pytest.raises(PermissionError):
            await b.remove_member(carol.peer_id)
        op = make_remove(bob.identity, invite.member_key, invite.room_id, b.core.sync.tick(), carol.peer_id)
        b._pump(b.core._publish_op(op, now_ms()))
        seq = b.core._seq
        await _holds(a, bob.peer_id, seq)
        await _holds(c, bob.peer_id, seq)
        for r in (a, b, c):
            assert carol.peer_id in r.members()
        msg = await a.send("carol is still in")
        await c.wait_for(lambda: "carol is still in" in texts(c), WAIT)
        assert await a.wait_delivered(msg.id, WAIT) == {bob.peer_id, carol.peer_id}

        # 2. alice (owner) makes bob an admin; bob removes carol; carol reads nothing new
        await a.set_admin(bob.peer_id)
        await b.wait_for(lambda: b.is_admin(bob.peer_id), WAIT)
        await b.remove_member(carol.peer_id)
        await a.wait_for(lambda: carol.peer_id not in a.members(), WAIT)
        await a.send("carol is out")
        await b.wait_for(lambda: "carol is out" in texts(b), WAIT)
        assert "carol is out" not in texts(c)
        await carol.close()

        # 3. alice readmits carol; carol comes back (a restart on her home) and chats again
        await a.readmit(carol.peer_id)
        await b.wait_for(lambda: carol.peer_id in b.members(), WAIT)
        carol = Peer(home=tmp_path / "carol")
        c = await carol.join(invite.url())
        await c.wait_for(lambda: len(c.online_members()) == 2 and carol.peer_id in c.members(), WAIT)
        await a.send("welcome back")
        await c.send("glad to be back")
        await c.wait_for(lambda: "welcome back" in texts(c), WAIT)
        await a.wait_for(lambda: "glad to be back" in texts(a), WAIT)
        assert "carol is out" not in texts(c)  # readmission does not reopen what she missed

        # 4. announcement mode: only admins post; carol's hostile client posts anyway, no one shows it
        await a.set_announce(True)
        await c.wait_for(lambda: c.announce, WAIT)
        with pytest.raises(PermissionError):
            await c.send("refused locally")
        monkeypatch.setattr(c.core.members_part, "may_post", lambda peer, lamport: True)
        await c.send("sneaked in")
        await _holds(a, carol.peer_id, c.core._seq)
        await _holds(b, carol.peer_id, c.core._seq)
        await b.send("admins still post")
        await a.wait_for(lambda: "admins still post" in texts(a), WAIT)
        await c.wait_for(lambda: "admins still post" in texts(c), WAIT)
        assert "sneaked in" not in texts(a)
        assert "sneaked in" not in texts(b)
    finally:
        for p in (alice, bob, carol):
            await p.close()
