"""A keeper holds attachments (issue 15), on real Peers: aiortc, SQLite, the real signaling server.

Alice sends a file and leaves; the keeper fetched it while she was online; Bob, offline meanwhile,
comes back, sees the attachment and fetches it from the keeper, verified. The file key is never on the
keeper's disk, and after the message expires the keeper's home holds no blob of it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from peer.core.crypto import b64u_encode
from peer.core.files import CHUNK_SIZE, FileLimits
from peer.core.invite import Invite
from peer.node import Peer
from tests.peer.test_files_e2e import WAIT, all_online, make_file, scan


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
        await all_online([kroom, aroom, broom])
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
        await all_online([kroom, aroom])
        big = tmp_path / "big.bin"
        make_file(big, 150_000)
        large = await aroom.send_file(big, ttl=3600)
        assert large.file is not None
        # offered, refused over the quota: nothing stored
        await kroom.wait_for(
            lambda: large.file is not None and large.file.file_id in kroom.files._by_file, WAIT
        )
        await kroom.wait_for(lambda: not kroom.files._auto, WAIT)
        assert keeper.blobs.room_bytes(kroom.room_id) == 0
        small = tmp_path / "small.bin"
        make_file(small, 3 * CHUNK_SIZE)
        msg = await aroom.send_file(small, ttl=3600)
        assert msg.file is not None
        await kroom.wait_for(lambda: len(keeper.blobs.held(kroom.room_id, msg.file.file_id)) == 5, WAIT)
        await aroom.unsend(msg.id)
        await kroom.wait_for(lambda: keeper.blobs.room_bytes(kroom.room_id) == 0, WAIT)
        assert msg.file.file_id not in kroom.files._by_file


@pytest.mark.timeout(60)
async def test_a_keeper_with_quota_zero_holds_nothing(signaling_url: str, tmp_path: Path) -> None:
    invite = Invite.new(signaling_url).url()
    async with (
        Peer(home=tmp_path / "k", file_limits=FileLimits(room_quota=0)) as keeper,
        Peer(home=tmp_path / "a") as alice,
    ):
        kroom = await keeper.join(invite, keeper=True)
        aroom = await alice.join(invite)
        await all_online([kroom, aroom])
        assert aroom.core.keeping.keepers == set()  # it never said KEEPER
        f = tmp_path / "f.bin"
        make_file(f, 2 * CHUNK_SIZE)
        msg = await aroom.send_file(f, ttl=3600)
        await kroom.wait_for(lambda: kroom.core.sync.entry((alice.peer_id, msg.seq)) is not None, WAIT)
        assert kroom.files._by_file == {}
        assert keeper.blobs.room_bytes(kroom.room_id) == 0
