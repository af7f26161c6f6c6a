"""Issue 15 through the Python API: real Peers (asyncio + aiortc + SQLite) and the real signaling server.

Mentions (the event flag), forward to another room (new message, capped expiry; expired refused),
search that forgets (expiry, unsend, edit), last seen with its opt-out, location, and a search index
that never reaches the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from peer.core.content import ContentTooLong
from peer.core.events import MessageExpired, MessageReceived
from peer.core.invite import Invite
from peer.node import Peer, RoomHandle

WAIT = 30.0


@contextlib.asynccontextmanager
async def pair(tmp_path: Path, invite: str) -> AsyncIterator[tuple[Peer, Peer, RoomHandle, RoomHandle]]:
    alice, bob = Peer(home=tmp_path / "alice", name="Alice"), Peer(home=tmp_path / "bob", name="Bob")
    try:
        ar, br = await alice.join(invite), await bob.join(invite)
        for r in (ar, br):
            await r.wait_for(lambda r=r: len(r.online_members()) == 1 and r.core.caught_up(), WAIT)
        await ar.wait_for(lambda: ar.display_name(bob.peer_id) == "Bob", WAIT)
        await br.wait_for(lambda: br.display_name(alice.peer_id) == "Alice", WAIT)
        yield alice, bob, ar, br
    finally:
        await alice.close()
        await bob.close()


@pytest.mark.timeout(120)
async def test_mention_event_flag_location_and_long_text(signaling_url: str, tmp_path: Path) -> None:
    async with pair(tmp_path, Invite.new(signaling_url).url()) as (alice, bob, ar, br):
        events = br.events()
        got: list[MessageReceived] = []

        async def collect() -> None:
            async for ev in events:
                if isinstance(ev, MessageReceived) and ev.message.sender == alice.peer_id:
                    got.append(ev)

        task = asyncio.create_task(collect())
        try:
            msg = await ar.send("lunch, @bob?")  # @name composes to a mention of Bob's id
            assert msg.mentions == (bob.peer_id,)
            plain = await ar.send("no mention for bob@example.org")
            assert plain.mentions == ()
            where = await ar.send_location(52.520008, 13.404954, 12)
            whole = "0123456789" * 2000  # 20,000 characters: over the old 16 KiB cap
            long = await ar.send(whole)
            await br.wait_for(lambda: len(got) == 4, WAIT)
        finally:
            task.cancel()
        by_id = {ev.message.id: ev.message for ev in got}
        assert by_id[msg.id].mentioned
        assert by_id[msg.id].to_json()["mentioned"] is True
        assert not by_id[plain.id].mentioned
        assert by_id[where.id].location == (52_520_008, 13_404_954, 12)
        assert by_id[long.id].text == whole
        with pytest.raises(ContentTooLong, match="too long"):
            await ar.send("x" * 64_001)
        with pytest.raises(ValueError, match="latitude"):
            await ar.send_location(95.0, 0.0)


@pytest.mark.timeout(150)
async def test_forward_to_another_room_and_an_expired_message_is_refused(
    signaling_url: str, tmp_path: Path
) -> None:
    one, two = Invite.new(signaling_url).url(), Invite.new(signaling_url).url()
    async with pair(tmp_path, one) as (alice, bob, ar, br):
        ar2, br2 = await alice.join(two), await bob.join(two)
        for r in (ar2, br2):
            await r.wait_for(lambda r=r: len(r.online_members()) == 1, WAIT)
        src = await ar.send("worth sharing", ttl=8)
        await br.wait_for(lambda: br.core.message(src.id) is not None, WAIT)
        fwd = await br.forward(src.id, br2, ttl=3600)
        await ar2.wait_for(lambda: ar2.core.message(fwd.id) is not None, WAIT)
        shown = ar2.core.message(fwd.id)
        assert shown is not None
        assert shown.text == "worth sharing"
        assert shown.forwarded_from == "Alice"
        assert shown.sender == bob.peer_id  # a new message of Bob's
        assert shown.expires_at <= src.expires_at  # never outlives the original
        # the forwarded copy is sealed under Bob's chain in room two, not the original's key
        assert br2.core.sync.entry((fwd.sender, fwd.seq)) is not None
        assert fwd.id != src.id
        await br.wait_for(lambda: br.core.message(src.id) is None, WAIT)  # the original expired
        with pytest.raises(ValueError, match="cannot forward"):
            await br.forward(src.id, br2)
        await ar2.wait_for(lambda: ar2.core.message(fwd.id) is None, WAIT)  # and the copy with it
        with pytest.raises(ValueError, match="not in that room"):
            await br.forward(src.id, "0" * 32)


@pytest.mark.timeout(120)
async def test_search_forgets_expired_and_unsent_and_follows_edits(
    signaling_url: str, tmp_path: Path
) -> None:
    async with pair(tmp_path, Invite.new(signaling_url).url()) as (_alice, _bob, ar, br):
        expired = asyncio.Event()
        brief_id: list[str] = []
        events = br.events()

        async def watch() -> None:  # subscribed before the short-lived message is sent: no race
            async for ev in events:
                if isinstance(ev, MessageExpired) and brief_id and ev.id == brief_id[0]:
                    assert br.search("secret") == []  # gone from the results in the same step
                    expired.set()
                    return

        task = asyncio.create_task(watch())
        keep = await ar.send("Picnic on Sunday")
        brief = await ar.send("picnic secret, self-destructs", ttl=8)
        brief_id.append(brief.id)
        regret = await ar.send("picnic gossip")
        await br.wait_for(lambda: len(br.messages()) == 3, WAIT)
        assert {m.id for m in br.search("PICNIC")} == {keep.id, brief.id, regret.id}
        await ar.unsend(regret.id)
        await br.wait_for(lambda: regret.id not in {m.id for m in br.search("picnic")}, WAIT)
        await ar.edit(keep.id, "Barbecue on Sunday")
        await br.wait_for(lambda: [m.id for m in br.search("barbecue")] == [keep.id], WAIT)
        async with asyncio.timeout(WAIT):
            await expired.wait()
        await task
        assert br.search("picnic") == []
        assert [m.id for m in br.search("sunday")] == [keep.id]


@pytest.mark.timeout(120)
async def test_search_index_never_reaches_the_disk(signaling_url: str, tmp_path: Path) -> None:
    """The store holds ciphertext only: a word found by search is in no file of either home."""
    secret = "quetzalcoatl"
    async with pair(tmp_path, Invite.new(signaling_url).url()) as (alice, bob, ar, br):
        await ar.send(f"the password is {secret}")
        await br.wait_for(lambda: len(br.search(secret)) == 1, WAIT)
        alice.flush()
        bob.flush()
        for home in (tmp_path / "alice", tmp_path / "bob"):
            for f in home.rglob("*"):
                if f.is_file() and not f.is_socket():
                    assert secret.encode() not in f.read_bytes(), f


@pytest.mark.timeout(150)
async def test_last_seen_shown_then_hidden_by_opt_out(signaling_url: str, tmp_path: Path) -> None:
    invite = Invite.new(signaling_url).url()
    async with pair(tmp_path, invite) as (_alice, bob, ar, _br):
        carol = Peer(home=tmp_path / "carol", name="Carol")
        cr = await carol.join(invite)
        await cr.wait_for(lambda: len(cr.online_members()) == 2, WAIT)
        await ar.wait_for(lambda: carol.peer_id in ar.online_members(), WAIT)
        await cr.set_share_last_seen(False)
        assert not cr.share_last_seen
        await carol.close()
        await ar.wait_for(lambda: carol.peer_id not in ar.online_members(), WAIT)
        assert carol.peer_id not in ar.last_seen()  # she opted out
        dave = Peer(home=tmp_path / "dave", name="Dave")
        await dave.join(invite)
        await ar.wait_for(lambda: dave.peer_id in ar.online_members(), WAIT)
        await dave.close()
        await ar.wait_for(lambda: dave.peer_id in ar.last_seen(), WAIT)
        assert dave.peer_id not in ar.online_members()
        assert bob.peer_id not in ar.last_seen()  # online: shown as online, not "last seen"
        await ar.set_share_last_seen(False)
        assert ar.last_seen() == {}  # opting out hides everyone's from us too
        await ar.set_share_last_seen(True)
        assert dave.peer_id in ar.last_seen()
