"""Attachments on real Peers (asyncio + aiortc + SQLite) through the real signaling server.

The 50 MB transfer (sender offline half way, another holder completes) runs once in the whole suite
(``test_50mb_sender_leaves_half_way``); the other tests use small files.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from peer.attachments import AttachmentComplete, AttachmentError, AttachmentProgress
from peer.core.files import CHUNK_SIZE, FileLimitError, FileLimits
from peer.core.invite import Invite
from peer.node import MessageReceived, Peer, RoomHandle

WAIT = 60.0


@contextlib.asynccontextmanager
async def peers(tmp_path: Path, names: list[str], **kw: object) -> AsyncIterator[list[Peer]]:
    ps = [Peer(home=tmp_path / n, **kw) for n in names]  # type: ignore[arg-type]
    try:
        yield ps
    finally:
        for p in ps:
            await p.close()


async def all_online(rooms: list[RoomHandle]) -> None:
    for r in rooms:
        await r.wait_for(lambda r=r: len(r.online_members()) == len(rooms) - 1, WAIT)


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
        await all_online([aroom, broom])
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
        await all_online([aroom, broom])
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
            await all_online([aroom, broom])
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
