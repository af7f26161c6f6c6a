"""A keeper holds attachments (issue 15), on real Peers: aiortc, SQLite, the real signaling server.

Alice sends a file and leaves; the keeper fetched it while she was online; Bob, offline meanwhile,
comes back, sees the attachment and fetches it from the keeper, verified. The keeper is told blob ids
only: no file key or name is ever in its memory or on its disk, and after the message expires the
keeper's home holds no blob of it. A keeper given a forged id list (or whose blobs were tampered with)
never makes a member accept a wrong blob: the member completes from another holder."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import types
from pathlib import Path

import pytest

from peer.core.crypto import b64u_encode
from peer.core.files import CHUNK_SIZE, File, FileLimits
from peer.core.invite import Invite
from peer.node import Peer, RoomHandle
from tests.peer.homes import all_online, scan
from tests.peer.test_files_e2e import WAIT, make_file


def memory_hits(peer: Peer, room: RoomHandle, raw: list[bytes], text: list[str]) -> list[str]:
    """Walk everything reachable from the keeper's Peer and room (its core, files, store, links; not
    shared machinery: modules, types, code, the event loop, other Peers) for the needles."""
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType)
    seen: set[int] = set()
    todo: list[object] = [peer, room]
    hits: list[str] = []
    while todo and len(seen) < 3_000_000:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (bytes, bytearray, memoryview)):
            b = bytes(obj)
            hits += [f"bytes:{n[:8]!r}" for n in raw if n in b]
            continue
        if isinstance(obj, str):
            hits += [f"str:{n[:8]}" for n in text if n in obj]
            continue
        if isinstance(obj, File):
            hits.append("a File content item")
        if isinstance(obj, (skip, asyncio.AbstractEventLoop)):
            continue
        if (isinstance(obj, Peer) and obj is not peer) or (isinstance(obj, RoomHandle) and obj is not room):
            continue
        todo.extend(gc.get_referents(obj))
    return hits


@pytest.mark.timeout(150)
async def test_a_member_offline_while_the_sender_left_gets_the_file_from_the_keeper(
    signaling_url: str, tmp_path: Path
) -> None:
    invite = Invite.new(signaling_url).url()
    keeper = Peer(home=tmp_path / "keeper")
    alice = Peer(home=tmp_path / "alice", name="Alice")
    bob = Peer(home=tmp_path / "bob", name="Bob")
    bob2: Peer | None = None
    try:
        kroom = await keeper.join(invite, keeper=True)
        aroom, broom = await alice.join(invite), await bob.join(invite)
        await all_online([kroom, aroom, broom], WAIT)
        await aroom.wait_for(lambda: bob.peer_id in aroom.members(), WAIT)
        await bob.close()  # bob goes offline before the file is sent
        await aroom.wait_for(lambda: aroom.online_members() == [keeper.peer_id], WAIT)

        src = tmp_path / "KESTREL-minutes.pdf"
        data = make_file(src, 20 * CHUNK_SIZE + 321, seed=b"keeper")
        msg = await aroom.send_file(src, ttl=20)
        assert msg.file is not None
        file_id, key = msg.file.file_id, msg.file.key
        assert await aroom.files.wait_served(msg, WAIT)  # a whole copy left: the keeper fetched it
        await kroom.wait_for(lambda: len(keeper.blobs.held(kroom.room_id, file_id)) == 21 + 1 + 1, WAIT)
        keeper.flush()
        samples = [data[i * CHUNK_SIZE : i * CHUNK_SIZE + 48] for i in range(21)]
        needles = [key, b64u_encode(key).encode(), b"KESTREL-minutes", *samples]
        assert scan(tmp_path / "keeper", needles) == []  # ciphertext only; the key never on its disk
        assert kroom.files._by_file == {}  # the keeper holds no File (no key) ...
        assert kroom.files.kept_files() == {file_id: msg.id}  # ... only the blob ids it was offered
        assert memory_hits(keeper, kroom, [key, b"KESTREL"], [b64u_encode(key), "KESTREL"]) == []
        assert memory_hits(alice, aroom, [key], []) != []  # the scan finds the key where it is
        held = [keeper.blobs.get(kroom.room_id, i) or b"" for i in keeper.blobs.held(kroom.room_id, file_id)]
        assert all(held)
        await alice.close()  # the sender leaves

        bob2 = Peer(home=tmp_path / "bob", name="Bob")
        broom2 = await bob2.join(invite)
        await broom2.wait_for(lambda: any(m.id == msg.id for m in broom2.messages()), WAIT)
        got = next(m for m in broom2.messages() if m.id == msg.id)
        assert got.file == msg.file
        assert broom2.online_members() == [keeper.peer_id]  # nobody else to fetch from
        served = kroom.files.served
        out = await broom2.attachment(msg.id).save(tmp_path / "out.pdf", timeout=WAIT)
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
        assert kroom.files.served - served >= 23  # every blob came from the keeper

        # the message expires: the keeper's home holds nothing of the file
        await kroom.wait_for(lambda: keeper.blobs.room_bytes(kroom.room_id) == 0, WAIT)
        keeper.flush()
        assert keeper.blobs.held(kroom.room_id, file_id) == set()
        assert scan(tmp_path / "keeper", [b[:64] for b in held]) == []
        await broom2.wait_for(lambda: not broom2.messages(), WAIT)
    finally:
        for p in (keeper, alice, bob, bob2):
            if p is not None:
                await p.close()


@pytest.mark.timeout(90)
async def test_a_keeper_keeps_within_its_quota_and_erases_an_unsent_file(
    signaling_url: str, tmp_path: Path
) -> None:
    invite = Invite.new(signaling_url).url()
    limits = FileLimits(room_quota=100_000)
    async with Peer(home=tmp_path / "k", file_limits=limits) as keeper, Peer(home=tmp_path / "a") as alice:
        kroom = await keeper.join(invite, keeper=True)
        aroom = await alice.join(invite)
        await all_online([kroom, aroom], WAIT)
        big = tmp_path / "big.bin"
        make_file(big, 150_000)
        large = await aroom.send_file(big, ttl=3600)
        assert large.file is not None
        # offered, refused over the quota: nothing stored
        await kroom.wait_for(lambda: kroom.files.kept_files() != {}, WAIT)  # offered ...
        await kroom.wait_for(lambda: kroom.files.kept_files() == {}, WAIT)  # ... dropped past the quota
        assert keeper.blobs.room_bytes(kroom.room_id) == 0
        small = tmp_path / "small.bin"
        make_file(small, 3 * CHUNK_SIZE)
        msg = await aroom.send_file(small, ttl=3600)
        assert msg.file is not None
        await kroom.wait_for(lambda: len(keeper.blobs.held(kroom.room_id, msg.file.file_id)) == 5, WAIT)
        await aroom.unsend(msg.id)
        await kroom.wait_for(lambda: keeper.blobs.room_bytes(kroom.room_id) == 0, WAIT)
        assert msg.file.file_id not in kroom.files.kept_files()


@pytest.mark.timeout(60)
async def test_a_keeper_with_quota_zero_holds_nothing(signaling_url: str, tmp_path: Path) -> None:
    invite = Invite.new(signaling_url).url()
    async with (
        Peer(home=tmp_path / "k", file_limits=FileLimits(room_quota=0)) as keeper,
        Peer(home=tmp_path / "a") as alice,
    ):
        kroom = await keeper.join(invite, keeper=True)
        aroom = await alice.join(invite)
        await all_online([kroom, aroom], WAIT)
        assert aroom.core.keeping.keepers == set()  # it never said KEEPER
        f = tmp_path / "f.bin"
        make_file(f, 2 * CHUNK_SIZE)
        msg = await aroom.send_file(f, ttl=3600)
        await kroom.wait_for(lambda: kroom.core.sync.entry((alice.peer_id, msg.seq)) is not None, WAIT)
        assert kroom.files.kept_files() == {}
        assert keeper.blobs.room_bytes(kroom.room_id) == 0


@pytest.mark.timeout(150)
async def test_a_keeper_given_forged_ids_or_tampered_blobs_makes_no_member_accept_a_wrong_blob(
    signaling_url: str, tmp_path: Path
) -> None:
    invite = Invite.new(signaling_url).url()
    keeper = Peer(home=tmp_path / "keeper")
    alice = Peer(home=tmp_path / "alice", name="Alice")
    bob = Peer(home=tmp_path / "bob", name="Bob")
    alice2: Peer | None = None
    bob2: Peer | None = None
    try:
        kroom = await keeper.join(invite, keeper=True)
        aroom, broom = await alice.join(invite), await bob.join(invite)
        await all_online([kroom, aroom, broom], WAIT)
        await aroom.wait_for(lambda: bob.peer_id in aroom.members(), WAIT)
        await kroom.wait_for(lambda: bob.peer_id in kroom.members(), WAIT)
        await bob.close()  # bob goes offline before the file is sent
        await aroom.wait_for(lambda: aroom.online_members() == [keeper.peer_id], WAIT)
        real = aroom.files.own_blob_ids
        forged = [hashlib.sha256(b"forged %d" % i).digest() for i in range(4)]

        def lying(manifest: bytes) -> list[bytes] | None:  # half the chunk ids replaced by forged ones
            ids = real(manifest)
            if ids is None:
                return None
            index = set(alice.blobs.meta(aroom.room_id, b64u_encode(manifest))) - {manifest}
            return sorted(index) + sorted(set(ids) - index)[::2] + forged

        aroom.core.set_blob_ids(lying)
        src = tmp_path / "f.bin"
        data = make_file(src, 8 * CHUNK_SIZE + 5, seed=b"forged")
        msg = await aroom.send_file(src, ttl=3600)
        assert msg.file is not None
        file_id = msg.file.file_id
        every = set(real(msg.file.manifest) or []) | {msg.file.manifest}
        offered = {msg.file.manifest, *(lying(msg.file.manifest) or [])} - set(forged)
        index = set(alice.blobs.meta(aroom.room_id, file_id)) - {msg.file.manifest}
        assert len(index) == 1
        assert len(offered) == 2 + 5  # the manifest, the index and 5 of the 9 chunks
        await kroom.wait_for(lambda: keeper.blobs.held(kroom.room_id, file_id) == offered, WAIT)
        assert not set(forged) & keeper.blobs.held(kroom.room_id, file_id)  # nobody holds them
        # a broken-into keeper: one of its blobs is replaced by other bytes
        victim = sorted(offered - {msg.file.manifest} - index)[0]  # a chunk: bob asks the keeper for it
        keeper.blobs._db.execute("UPDATE blobs SET data = ? WHERE id = ?", (b"tampered" * 100, victim))
        await alice.close()

        bob2 = Peer(home=tmp_path / "bob", name="Bob")
        broom = await bob2.join(invite)
        await broom.wait_for(lambda: any(m.id == msg.id for m in broom.messages()), WAIT)
        assert broom.online_members() == [keeper.peer_id]
        fetch = asyncio.ensure_future(broom.attachment(msg.id).fetch())
        await broom.wait_for(lambda: broom.files.errors.get("bad-hash", 0) >= 1, WAIT)  # refused
        assert not fetch.done()  # the keeper alone cannot complete it: missing and bad blobs
        assert bob2.blobs.get(broom.room_id, victim) is None  # the wrong bytes were never stored

        alice2 = Peer(home=tmp_path / "alice", name="Alice")  # another holder comes back
        await alice2.join(invite)
        await asyncio.wait_for(fetch, WAIT)
        out = await broom.attachment(msg.id).save(tmp_path / "out.bin", timeout=WAIT)
        assert out.read_bytes() == data
        assert bob2.blobs.held(broom.room_id, file_id) == every
    finally:
        for p in (keeper, alice, bob, alice2, bob2):
            if p is not None:
                await p.close()
