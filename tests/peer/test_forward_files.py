"""Forwarding an attachment to another room (issue 15) on real Peers: aiortc, SQLite, the real signaling
server. Two rooms: alice and bob in ``one``, bob and carol in ``two``; bob forwards."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from peer.core.crypto import b64u_encode
from peer.core.files import CHUNK_SIZE, open_manifest, parse_index
from peer.core.invite import Invite
from peer.forwarding import ForwardError
from peer.node import Peer, RoomHandle
from tests.peer.homes import all_online, peers, scan
from tests.peer.test_files_e2e import WAIT, make_file, wait_file_message


def chunk_ids(p: Peer, room: RoomHandle, msg_id: str) -> set[bytes]:
    """Every blob id (manifest, index, chunks) of the attachment of ``msg_id``, from ``p``'s store."""
    ref = room.attachment(msg_id).file
    m = open_manifest(ref.key, p.blobs.get(room.room_id, ref.manifest) or b"", ref)
    ids = {ref.manifest, *m.index}
    for pos, ix in enumerate(m.index):
        ids |= set(parse_index(p.blobs.get(room.room_id, ix) or b"", pos, m))
    return ids


async def two_rooms(
    signaling_url: str, ps: list[Peer]
) -> tuple[RoomHandle, RoomHandle, RoomHandle, RoomHandle]:
    alice, bob, carol = ps
    one, two = Invite.new(signaling_url).url(), Invite.new(signaling_url).url()
    a1, b1 = await alice.join(one), await bob.join(one)
    b2, c2 = await bob.join(two), await carol.join(two)
    await a1.set_name("Alice")
    await all_online([a1, b1], WAIT)
    await all_online([b2, c2], WAIT)
    await b1.wait_for(lambda: b1.display_name(alice.peer_id) == "Alice", WAIT)
    return a1, b1, b2, c2


@pytest.mark.timeout(120)
async def test_a_forwarded_attachment_is_resealed_under_a_fresh_key(
    signaling_url: str, tmp_path: Path
) -> None:
    """Bob does not hold the file: the forward fetches it first, then re-seals it. The copy in room two
    shares no key, manifest, file id or blob id with the original; name, mime, size, thumbnail and
    duration carry over; carol fetches it from bob and it verifies byte for byte."""
    async with peers(tmp_path, ["alice", "bob", "carol"]) as ps:
        _alice, bob, carol = ps
        a1, b1, b2, c2 = await two_rooms(signaling_url, ps)
        src = tmp_path / "voice.ogg"
        data = make_file(src, 40 * CHUNK_SIZE + 77, seed=b"fwd")
        thumb = b"\xff\xd8 a tiny thumbnail"
        msg = await a1.send_file(src, ttl=3600, thumb=thumb, thumb_mime="image/jpeg", duration_ms=4321)
        await wait_file_message(b1, msg.id)
        assert bob.blobs.room_bytes(b1.room_id) == 0  # bob holds nothing of it yet
        before = time.time() * 1000
        fwd = await b1.forward(msg.id, b2, ttl=600)
        after = time.time() * 1000
        orig, new = msg.file, fwd.file
        assert orig is not None
        assert new is not None
        assert (
            (new.name, new.size, new.mime)
            == (orig.name, orig.size, orig.mime)
            == ("voice.ogg", len(data), "audio/ogg")
        )
        assert new.key != orig.key
        assert new.manifest != orig.manifest
        assert new.file_id != orig.file_id
        assert fwd.forwarded_from == "Alice"
        assert fwd.sender == bob.peer_id
        assert before + 600_000 <= fwd.expires_at <= min(msg.expires_at, after + 600_000)
        old_ids, new_ids = chunk_ids(bob, b1, msg.id), chunk_ids(bob, b2, fwd.id)
        assert len(new_ids) == len(old_ids) == 40 + 1 + 2
        assert not old_ids & new_ids
        for blob_id in new_ids:  # the new blobs are bound to the forwarded message and its expiry
            assert bob.blobs._db.execute(
                "SELECT msg_id, expires_at FROM blobs WHERE room_id = ? AND id = ?", (b2.room_id, blob_id)
            ).fetchone() == (fwd.id, fwd.expires_at)
        await wait_file_message(c2, fwd.id)
        got = next(m for m in c2.messages() if m.id == fwd.id)
        assert got.forwarded_from == "Alice"
        assert got.file == new
        assert got.to_json()["forwarded_from"] == "Alice"
        out = await c2.attachment(fwd.id).save(tmp_path / "out.ogg", timeout=WAIT)
        assert out.read_bytes() == data
        m = open_manifest(new.key, carol.blobs.get(c2.room_id, new.manifest) or b"", new)
        assert (m.thumb, m.thumb_mime, m.duration_ms) == (thumb, "image/jpeg", 4321)
        assert [x.id for x in c2.search("Alice")] == [fwd.id]  # found by who it came from
        assert carol.blobs.held(c2.room_id, orig.file_id) == set()  # nothing of the original there
        # forwarding the forward keeps the first author's name; an expiry never grows
        again = await b2.forward(fwd.id, b1, ttl=0)
        assert again.forwarded_from == "Alice"
        assert again.expires_at == fwd.expires_at


@pytest.mark.timeout(120)
async def test_forwarding_an_expired_unsent_or_unfetchable_attachment_is_refused(
    signaling_url: str, tmp_path: Path
) -> None:
    async with peers(tmp_path, ["alice", "bob", "carol"]) as ps:
        alice, bob, _carol = ps
        a1, b1, b2, _c2 = await two_rooms(signaling_url, ps)
        f = tmp_path / "a.bin"
        make_file(f, 3 * CHUNK_SIZE)
        # expired: refused before any work, even with the Message object still in hand
        short = await a1.send_file(f, ttl=2)
        await wait_file_message(b1, short.id)
        held = next(m for m in b1.messages() if m.id == short.id)
        await b1.wait_for(lambda: b1.core.message(short.id) is None, WAIT)
        with pytest.raises(ValueError, match="no such message"):
            await b1.forward(short.id, b2)
        with pytest.raises(ValueError, match="has expired"):
            b2.core.forward_expiry(held, int(time.time() * 1000))
        # unsent
        gone = await a1.send_file(f, ttl=3600)
        await wait_file_message(b1, gone.id)
        await a1.unsend(gone.id)
        await b1.wait_for(lambda: b1.core.message(gone.id) is None, WAIT)
        with pytest.raises(ValueError, match="no such message"):
            await b1.forward(gone.id, b2)
        # nobody online holds it: a clear error, nothing sent, nothing left
        lost = await a1.send_file(f, ttl=3600)
        await wait_file_message(b1, lost.id)
        await alice.close()
        await b1.wait_for(lambda: not b1.online_members(), WAIT)
        with pytest.raises(ForwardError, match="could not be fetched within 1s") as info:
            await b1.forward(lost.id, b2, timeout=1)
        assert info.value.code == "timeout"
        assert b2.messages() == []
        assert bob.blobs.room_bytes(b2.room_id) == 0
        # a core forward of an attachment that was not re-sealed is refused
        lost_msg = b1.core.message(lost.id)
        assert lost_msg is not None
        assert lost_msg.file is not None
        with pytest.raises(ValueError, match="without re-sealing"):
            b2.core.forward(lost_msg, "x", int(time.time() * 1000))
        with pytest.raises(ValueError, match="fresh key"):
            b2.core.forward_file(lost_msg, lost_msg.file, "x", int(time.time() * 1000))
        assert b2.messages() == []


@pytest.mark.timeout(120)
async def test_an_original_erased_mid_forward_fails_cleanly_and_leaves_no_blobs(
    signaling_url: str, tmp_path: Path
) -> None:
    """Alice unsends the original while bob is re-sealing it: the forward fails ("erased"), nothing is
    sent in room two, and room two's store holds no blob of the half-made copy."""
    async with peers(tmp_path, ["alice", "bob", "carol"]) as ps:
        _alice, bob, _carol = ps
        a1, b1, b2, c2 = await two_rooms(signaling_url, ps)
        f = tmp_path / "big.bin"
        make_file(f, 300 * CHUNK_SIZE)
        msg = await a1.send_file(f, ttl=3600)
        await wait_file_message(b1, msg.id)
        await b1.attachment(msg.id).fetch(timeout=WAIT)
        calls: list[int] = []

        async def unsend_at_first_batch(done: int, total: int) -> None:
            calls.append(done)
            if len(calls) == 1:
                assert 0 < done < total
                assert bob.blobs.room_bytes(b2.room_id) > 0
                await a1.unsend(msg.id)
                await b1.wait_for(lambda: b1.core.message(msg.id) is None, WAIT)

        with pytest.raises(ForwardError, match="original was erased") as info:
            await b1.forward(msg.id, b2, progress=unsend_at_first_batch)
        assert info.value.code == "erased"
        assert len(calls) == 1
        assert b2.messages() == []
        assert bob.blobs.room_bytes(b2.room_id) == 0
        assert bob.blobs.files(b2.room_id) == {}
        assert bob.blobs.room_bytes(b1.room_id) == 0  # the original's blobs went with it
        await asyncio.sleep(0)
        assert c2.messages() == []


@pytest.mark.timeout(120)
async def test_forensic_a_forward_leaves_nothing_after_it_expires(signaling_url: str, tmp_path: Path) -> None:
    """The forward expires long before the original: then room two's homes hold no blob, chunk or key
    of the forwarded copy (the original, still alive, is untouched)."""
    async with peers(tmp_path, ["alice", "bob", "carol"]) as ps:
        _alice, bob, carol = ps
        a1, b1, b2, c2 = await two_rooms(signaling_url, ps)
        f = tmp_path / "PELICAN-report.bin"
        make_file(f, 5 * CHUNK_SIZE + 5, seed=b"pelican")
        msg = await a1.send_file(f, ttl=3600)
        await wait_file_message(b1, msg.id)
        fwd = await b1.forward(msg.id, b2, ttl=4)
        assert fwd.file is not None
        await wait_file_message(c2, fwd.id)
        await c2.attachment(fwd.id).fetch(timeout=WAIT)
        ids = chunk_ids(carol, c2, fwd.id)
        blobs = [bob.blobs.get(b2.room_id, i) or b"" for i in ids]
        assert all(blobs)
        assert len(ids) == 5 + 1 + 1 + 1
        key = fwd.file.key
        needles = [key, b64u_encode(key).encode(), *[b[:48] for b in blobs], *ids]
        for room in (b2, c2):
            await room.wait_for(lambda room=room: room.core.message(fwd.id) is None, WAIT)
        for p, room in ((bob, b2), (carol, c2)):
            p.flush()
            assert p.blobs.room_bytes(room.room_id) == 0
        for n in ("bob", "carol"):
            assert scan(tmp_path / n, needles) == [], n
        assert b1.core.message(msg.id) is not None  # the original lives on
        assert msg.file is not None
        assert bob.blobs.held(b1.room_id, msg.file.file_id)
