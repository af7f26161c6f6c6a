"""Disappearing messages on real Peers (asyncio + aiortc + SQLite files) through the real signaling server.

The forensic test scans every byte of every file under each member's home directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from peer.core.invite import Invite
from peer.node import Peer
from tests.peer.homes import all_online, peers, scan

WAIT = 30.0
TTL_S = 6  # short, with margin for a loaded 2-core machine to deliver before expiry


@pytest.mark.timeout(120)
async def test_forensic_nothing_readable_on_disk_after_expiry_or_unsend(
    signaling_url: str, tmp_path: Path
) -> None:
    invite = Invite.new(signaling_url).url()
    names = ["alice", "bob", "carol"]
    async with peers(tmp_path, names) as ps:
        rooms = [await p.join(invite) for p in ps]
        await all_online(rooms, WAIT)
        secrets = [f"ZEBRA-QUOKKA-{i}-distinctive plaintext" for i in range(4)]
        sent = [await rooms[i % 3].send(s, ttl=TTL_S) for i, s in enumerate(secrets[:3])]
        regret = await rooms[0].send(secrets[3], ttl=3600)
        for r in rooms:
            await r.wait_for(lambda r=r: len(r.messages()) == 4, WAIT)
        keys = sorted({k for r in rooms for k in r.core.keys.message_keys.values()})
        assert len(keys) == 4  # every member holds the same four message keys
        regret_key = rooms[0].core.keys.message_keys[(regret.sender, regret.seq)]
        plain = [s.encode() for s in secrets]
        for p in ps:
            p.flush()  # events are published before the group commit of the same loop turn
        for name in names:
            assert scan(tmp_path / name, plain) == [], name  # ciphertext only, before expiry too
            assert scan(tmp_path / name, [regret_key]), name  # keys are kept (crypto-shredding) until erased

        assert await rooms[0].unsend(regret.id)
        for r in rooms:
            await r.wait_for(lambda r=r: len(r.messages()) == 0, WAIT)  # expiry + unsend everywhere
        for m, r in zip(sent, rooms, strict=False):  # every sender hears every other member erased
            await r.wait_for(lambda m=m, r=r: r.core.erasure(m.id) == (2, 2), WAIT)
        await rooms[0].wait_for(lambda: rooms[0].core.erasure(regret.id) == (2, 2), WAIT)
        for p in ps:
            p.flush()
        for name in names:
            assert scan(tmp_path / name, plain + keys) == [], name
    for name in names:  # and after a clean shutdown (no journal left behind)
        assert scan(tmp_path / name, plain + keys) == [], name
        assert not list((tmp_path / name).rglob("*-wal")), name
        assert not list((tmp_path / name).rglob("*-journal")), name


@pytest.mark.timeout(120)
async def test_member_offline_at_expiry_purges_at_startup_and_never_shows_it(
    signaling_url: str, tmp_path: Path
) -> None:
    invite = Invite.new(signaling_url).url()
    async with peers(tmp_path, ["alice", "bob"]) as (alice, bob):
        aroom, broom = await alice.join(invite), await bob.join(invite)
        carol = Peer(home=tmp_path / "carol")
        try:
            croom = await carol.join(invite)
            await all_online([aroom, broom, croom], WAIT)
            msg = await aroom.send("OFFLINE-AT-EXPIRY marker", ttl=TTL_S)
            await croom.wait_for(lambda: len(croom.messages()) == 1, WAIT)
            key = croom.core.keys.message_keys[(msg.sender, msg.seq)]
        finally:
            await carol.close()
        assert scan(tmp_path / "carol", [key])  # its store holds the key while it is away
        for r in (aroom, broom):
            await r.wait_for(lambda r=r: not r.messages(), WAIT)

        carol = Peer(home=tmp_path / "carol")  # restart after expiry: purged before any network
        try:
            assert scan(tmp_path / "carol", [key]) == []
            croom = await carol.join(invite)
            assert croom.messages() == []
            await croom.wait_for(lambda: len(croom.online_members()) == 2, WAIT)
            # its (startup-purge) tombstone becomes a signed receipt to the sender on return
            await aroom.wait_for(lambda: carol.peer_id in aroom.erased_on(msg.id), WAIT)
            assert croom.messages() == []
            assert all(m.id != msg.id for m in croom.messages())
        finally:
            await carol.close()
