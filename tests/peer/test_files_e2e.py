"""Attachments on real Peers (asyncio + aiortc + SQLite) through the real signaling server.

The 50 MB transfer (sender offline half way, another holder completes) runs once in the whole suite
(``test_50mb_sender_leaves_half_way``); the other tests use small files.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path

import pytest

from peer import attachments
from peer.attachments import AttachmentComplete, AttachmentError, AttachmentProgress
from peer.core.files import CHUNK_SIZE, FileLimitError, FileLimits, Sealer
from peer.core.invite import Invite
from peer.node import MessageReceived, Peer, RoomHandle
from tests.peer.homes import all_online, peers, scan

WAIT = 60.0


def make_file(path: Path, size: int, seed: bytes = b"seed") -> bytes:
    """Distinctive, incompressible content (a SHA-256 stream) written to ``path``."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(seed + i.to_bytes(8, "big")).digest()
        i += 1
    data = bytes(out[:size])
    path.write_bytes(data)
    return data


async def wait_file_message(room: RoomHandle, msg_id: str) -> None:
    await room.wait_for(lambda: any(m.id == msg_id for m in room.messages()), WAIT)


@pytest.mark.timeout(120)
async def test_send_and_save_a_file(signaling_url: str, tmp_path: Path) -> None:
    invite = Invite.new(signaling_url).url()
    async with peers(tmp_path, ["alice", "bob"]) as (alice, bob):
        aroom, broom = await alice.join(invite), await bob.join(invite)
        await all_online([aroom, broom], WAIT)
        src = tmp_path / "report.pdf"
        data = make_file(src, 5 * CHUNK_SIZE + 123)
        kinds: list[type] = []

        async def collect() -> None:
            async for ev in broom.events():
                kinds.append(type(ev))
                if isinstance(ev, AttachmentComplete):
                    return

        collector = asyncio.ensure_future(collect())
        await asyncio.sleep(0)  # subscribed
        msg = await aroom.send_file(src, ttl=3600)
        assert msg.file is not None
        assert (msg.file.name, msg.file.size, msg.file.mime) == ("report.pdf", len(data), "application/pdf")
        await wait_file_message(broom, msg.id)
        got = broom.messages()[-1]
        assert got.file is not None
        assert got.file.file_id == msg.file.file_id
        assert got.to_json()["file"] == {
            "name": "report.pdf",
            "size": len(data),
            "mime": "application/pdf",
            "id": msg.file.file_id,
        }
        seen: list[tuple[int, int]] = []
        out = await broom.attachment(msg.id).save(tmp_path / "out", progress=lambda d, t: seen.append((d, t)))
        assert out.read_bytes() == data
        assert seen[-1] == (len(data), len(data))
        await asyncio.wait_for(collector, WAIT)
        assert MessageReceived in kinds
        assert AttachmentProgress in kinds


@pytest.mark.timeout(60)
async def test_sealing_runs_off_the_event_loop_and_a_cancelled_send_leaves_nothing(
    signaling_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """send_file seals in a worker thread, a batch at a time (the store stays on the loop): chat on the
    sender is not held up while a big file is sealed. Cancelled half way, it leaves no blob behind."""
    loop, loop_thread = asyncio.get_running_loop(), threading.get_ident()
    threads: list[int] = []
    half_way = asyncio.Event()

    class Recording(Sealer):
        def seal(self, index: int, plain: bytes) -> tuple[bytes, bytes]:
            threads.append(threading.get_ident())
            if len(threads) == attachments.SEAL_BATCH + 1:
                loop.call_soon_threadsafe(half_way.set)
            return super().seal(index, plain)

    monkeypatch.setattr(attachments, "Sealer", Recording)
    invite = Invite.new(signaling_url).url()
    async with peers(tmp_path, ["alice"]) as (alice,):
        room = await alice.join(invite)
        src = tmp_path / "three-batches.bin"
        data = make_file(src, (2 * attachments.SEAL_BATCH + 5) * CHUNK_SIZE)
        msg = await room.send_file(src, ttl=3600)
        assert len(threads) == 2 * attachments.SEAL_BATCH + 5
        assert loop_thread not in threads
        out = await room.attachment(msg.id).save(tmp_path / "back.bin", timeout=WAIT)
        assert out.read_bytes() == data

        held = room.files.blobs.room_bytes(room.room_id)
        threads.clear()
        half_way.clear()
        task = asyncio.ensure_future(room.send_file(src, ttl=3600))
        await asyncio.wait_for(half_way.wait(), WAIT)  # the second batch is being sealed
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert room.files.blobs.room_bytes(room.room_id) == held  # no blob of the cancelled send
        assert len(room.messages()) == 1


@pytest.mark.timeout(60)
async def test_limits_are_refused_with_a_clear_error(signaling_url: str, tmp_path: Path) -> None:
    invite = Invite.new(signaling_url).url()
    limits = FileLimits(max_file=10_000, room_quota=15_000)
    async with peers(tmp_path, ["alice"], file_limits=limits) as (alice,):
        room = await alice.join(invite)
        big = tmp_path / "big.bin"
        make_file(big, 10_001)
        with pytest.raises(FileLimitError, match="over the 10,000-byte limit per file"):
            await room.send_file(big)
        ok = tmp_path / "ok.bin"
        make_file(ok, 9_000)
        await room.send_file(ok)
        with pytest.raises(FileLimitError, match="quota"):
            await room.send_file(ok)
        assert len(room.messages()) == 1  # nothing was sent for the refused ones


@pytest.mark.timeout(60)
async def test_unsend_erases_the_file_everywhere(signaling_url: str, tmp_path: Path) -> None:
    invite = Invite.new(signaling_url).url()
    async with peers(tmp_path, ["alice", "bob"]) as (alice, bob):
        aroom, broom = await alice.join(invite), await bob.join(invite)
        await all_online([aroom, broom], WAIT)
        src = tmp_path / "x.bin"
        make_file(src, 3 * CHUNK_SIZE)
        msg = await aroom.send_file(src, ttl=3600)
        await wait_file_message(broom, msg.id)
        att = broom.attachment(msg.id)
        await att.fetch(timeout=WAIT)
        assert bob.blobs.held(broom.room_id, att.id)
        assert await aroom.unsend(msg.id)
        await broom.wait_for(lambda: not broom.messages(), WAIT)
        assert bob.blobs.held(broom.room_id, att.id) == set()
        assert alice.blobs.held(aroom.room_id, att.id) == set()
        with pytest.raises(AttachmentError):
            await att.save(tmp_path / "nope")


@pytest.mark.timeout(120)
async def test_resume_after_a_restart_fetches_only_what_is_missing(
    signaling_url: str, tmp_path: Path
) -> None:
    invite = Invite.new(signaling_url).url()
    async with peers(tmp_path, ["alice"]) as (alice,):
        aroom = await alice.join(invite)
        src = tmp_path / "movie.bin"
        data = make_file(src, 40 * CHUNK_SIZE + 7)
        bob = Peer(home=tmp_path / "bob")
        try:
            broom = await bob.join(invite)
            await all_online([aroom, broom], WAIT)
            msg = await aroom.send_file(src, ttl=3600)
            await wait_file_message(broom, msg.id)
            att = broom.attachment(msg.id)
            half = asyncio.Event()

            def progress(done: int, total: int) -> None:
                if done >= total // 2:
                    half.set()

            task = asyncio.ensure_future(att.fetch(progress=progress))
            await asyncio.wait_for(half.wait(), WAIT)
            task.cancel()
        finally:
            await bob.close()  # the receiver goes down mid-way
        bob = Peer(home=tmp_path / "bob")
        try:
            held = bob.blobs.held(aroom.room_id, msg.file.file_id)  # type: ignore[union-attr]
            assert 20 <= len(held) < 43  # what it held survived the restart
            broom = await bob.join(invite)
            served_before = alice_served(aroom)
            out = await broom.attachment(msg.id).save(tmp_path / "out.bin", timeout=WAIT)
            assert out.read_bytes() == data
            assert alice_served(aroom) - served_before == 43 - len(held)  # only the missing blobs
        finally:
            await bob.close()


def alice_served(room: RoomHandle) -> int:
    return room.files.served


@pytest.mark.timeout(300)
async def test_50mb_sender_leaves_half_way_and_another_holder_completes(
    signaling_url: str, tmp_path: Path
) -> None:
    """The one 50 MB transfer of the suite: bob fetches it from alice; carol fetches from alice and bob
    at once; alice goes offline when carol holds half; carol completes from bob, verified."""
    invite = Invite.new(signaling_url).url()
    size = 50 * 1000 * 1000
    src = tmp_path / "big.bin"
    data = make_file(src, size)
    digest = hashlib.sha256(data).digest()
    del data
    async with peers(tmp_path, ["bob", "carol"]) as (bob, carol):
        broom, croom = await bob.join(invite), await carol.join(invite)
        alice = Peer(home=tmp_path / "alice")
        try:
            aroom = await alice.join(invite)
            await all_online([aroom, broom, croom], WAIT)
            msg = await aroom.send_file(src, ttl=3600)
            await wait_file_message(broom, msg.id)
            await broom.attachment(msg.id).fetch(timeout=WAIT * 2)
            await wait_file_message(croom, msg.id)
            half = asyncio.Event()
            task = asyncio.ensure_future(
                croom.attachment(msg.id).fetch(progress=lambda d, t: half.set() if d >= t // 2 else None)
            )
            await asyncio.wait_for(half.wait(), WAIT * 2)
            from_alice = aroom.files.served
        finally:
            await alice.close()  # the sender goes offline half way
        bob_before = broom.files.served
        await asyncio.wait_for(task, WAIT * 2)
        assert broom.files.served > bob_before  # bob served the rest
        assert from_alice > 0
        out = await croom.attachment(msg.id).save(tmp_path / "out.bin", timeout=WAIT)
        assert out.stat().st_size == size
        assert hashlib.sha256(out.read_bytes()).digest() == digest


@pytest.mark.timeout(120)
async def test_forensic_no_plaintext_chunk_and_no_file_key_after_expiry(
    signaling_url: str, tmp_path: Path
) -> None:
    from peer.core.crypto import b64u_encode

    invite = Invite.new(signaling_url).url()
    names = ["alice", "bob", "carol"]
    async with peers(tmp_path, names) as ps:
        rooms = [await p.join(invite) for p in ps]
        await all_online(rooms, WAIT)
        src = tmp_path / "ZEBRA-secret-plans.bin"
        data = make_file(src, 6 * CHUNK_SIZE + 99, seed=b"forensic")
        msg = await rooms[0].send_file(src, ttl=6)
        assert msg.file is not None
        key = msg.file.key
        for r in rooms[1:]:
            await wait_file_message(r, msg.id)
            await r.attachment(msg.id).fetch(timeout=WAIT)
        samples = [data[i * CHUNK_SIZE : i * CHUNK_SIZE + 48] for i in range(7)] + [data[-48:]]
        needles = [*samples, key, b64u_encode(key).encode(), b"ZEBRA-secret-plans"]
        for p in ps:
            p.flush()
        for n in names:
            hits = scan(tmp_path / n, needles)
            assert hits == [], (n, hits)  # ciphertext only, while the message lives too
            assert len(ps[names.index(n)].blobs.held(rooms[0].room_id, msg.file.file_id)) == 9
        for r in rooms:
            await r.wait_for(lambda r=r: not r.messages(), WAIT)  # expired everywhere
        for p, r in zip(ps, rooms, strict=True):
            p.flush()
            assert p.blobs.held(r.room_id, msg.file.file_id) == set()
            assert p.blobs.room_bytes(r.room_id) == 0
        for n in names:
            assert scan(tmp_path / n, needles) == [], n
    for n in names:
        assert scan(tmp_path / n, needles) == [], n
        assert not list((tmp_path / n).rglob("*-wal")), n


@pytest.mark.timeout(90)
async def test_hostile_member_floods_are_bounded_on_real_links(signaling_url: str, tmp_path: Path) -> None:
    """Over a real files channel: unasked BLOBs are dropped and counted, never stored; a WANT flood gets
    at most serve_window lookups (the rest BUSY); a file name is searchable; the core refuses to forward a file that
    was not re-sealed (a clear refusal, not an empty message)."""
    from peer.core.crypto import sha256
    from peer.core.files_transfer import BLOB, WANT, encode_frame

    invite = Invite.new(signaling_url).url()
    limits = FileLimits(serve_window=4, error_budget=1000)
    async with peers(tmp_path, ["alice", "bob"], file_limits=limits) as (alice, bob):
        aroom, broom = await alice.join(invite), await bob.join(invite)
        await all_online([aroom, broom], WAIT)
        src = tmp_path / "quarterly-report.bin"
        make_file(src, 2 * CHUNK_SIZE)
        msg = await aroom.send_file(src, ttl=3600)
        await wait_file_message(broom, msg.id)
        assert [m.id for m in broom.search("quarterly")] == [msg.id]
        with pytest.raises(ValueError, match="cannot forward an attachment without re-sealing"):
            broom.core.forward(msg, "alice", msg.sent_at)  # only re-sealed: tests/peer/test_forward_files.py
        # alice turns hostile: raw frames on her files channel to bob
        await aroom.wait_for(lambda: bob.peer_id in aroom.files._queues, WAIT)
        out = aroom.files._queues[bob.peer_id]

        def inject(frame: bytes) -> None:
            out.frames.append(frame)
            out.wake.set()

        junk = [bytes([i]) * 1000 for i in range(50)]
        for i, blob in enumerate(junk):
            inject(encode_frame(BLOB, 10_000 + i, sha256(blob), blob))
        await broom.wait_for(lambda: broom.files.errors.get("unsolicited", 0) == 50, WAIT)
        assert bob.blobs.room_bytes(broom.room_id) == 0  # nothing unasked was stored
        lookups_before = broom.files.served
        answered_before = aroom.files.errors.get("unsolicited", 0)
        assert msg.file is not None
        for i in range(40):
            inject(encode_frame(WANT, 20_000 + i, msg.file.manifest))
        # every request is answered exactly once (NONE, or BUSY past serve_window): alice's engine sees
        # the answers to requests it never made as unsolicited
        await aroom.wait_for(lambda: aroom.files.errors.get("unsolicited", 0) - answered_before == 40, WAIT)
        assert broom.files.served == lookups_before  # bob holds nothing of it: NONE, never a blob
        box = broom.files._queues[alice.peer_id]
        assert len(box.serve) <= 4  # never more open lookups than serve_window
