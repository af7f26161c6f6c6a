"""Received blobs are written in batches (peer/store/blobs.py): what a crash between batches loses is
fetched again on resume, an erasure drops what waits for its batch (nothing of it ever reaches the
disk), and every read sees the waiting blobs. Real SQLite files; the transfer engine of the core."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from peer.core.crypto import sha256
from peer.core.files import File, Sealer
from peer.core.files_transfer import BLOB, BlobReceived, FileComplete, Transfers, decode_frame, encode_frame
from peer.store.blobs import BATCH, BlobStore

T0 = 1_700_000_000_000
ROOM = "room"


def _sealed(chunks: int) -> tuple[File, dict[bytes, bytes]]:
    data = bytes(range(256)) * (4 * chunks)  # chunks of 1 KiB
    s = Sealer(bytes(range(32)), len(data), 1024)
    blobs: dict[bytes, bytes] = {}
    for i in range(s.chunks):
        bid, blob = s.seal(i, data[i * 1024 : (i + 1) * 1024])
        blobs[bid] = blob
    sealed = s.finish("a.bin", "application/octet-stream", hashlib.sha256(data).digest())
    blobs[sealed.content.manifest] = sealed.manifest_blob
    for b in sealed.index_blobs:
        blobs[sha256(b)] = b
    return sealed.content, blobs


def _download(
    store: BlobStore, ref: File, blobs: dict[bytes, bytes], stop_after: int | None = None
) -> tuple[int, bool]:
    """Fetch ``ref`` from a neighbour holding ``blobs``, storing what arrives with ``put(..., later=True)`` (as the
    transfer loop does); stop after ``stop_after`` blobs. Returns (blobs fetched, complete)."""
    t = Transfers()
    t.link_up("A", T0)
    events = t.fetch(ref, T0, held=store.held(ROOM, ref.file_id), meta=store.meta(ROOM, ref.file_id))
    fetched = 0
    complete = False
    while True:
        for ev in events:
            if isinstance(ev, BlobReceived):
                store.put(ROOM, ev.file, [(ev.blob_id, ev.role, ev.data)], "msg", T0 + 10**9, later=True)
                fetched += 1
            complete = complete or isinstance(ev, FileComplete)
        if stop_after is not None and fetched >= stop_after:
            return fetched, complete
        out = t.data_to_send()
        if not out:
            return fetched, complete
        events = []
        for peer, frame in out:
            _kind, req, bid, _ = decode_frame(frame)
            events += t.receive(peer, encode_frame(BLOB, req, bid, blobs[bid]), T0)


def _crash(store: BlobStore) -> None:
    """The process dies: what waits for its batch is gone, the database keeps what was committed."""
    store._db.close()  # no flush, no checkpoint


def test_a_crash_between_batches_resumes_with_what_was_committed(tmp_path: Path) -> None:
    ref, blobs = _sealed(3 * BATCH)
    path = tmp_path / "blobs.sqlite"
    store = BlobStore(path)
    fetched, complete = _download(store, ref, blobs, stop_after=BATCH + BATCH // 2)
    assert not complete
    assert 0 < store.waiting < BATCH  # the last batch is not written yet
    committed = fetched - store.waiting
    _crash(store)

    store = BlobStore(path)
    held = store.held(ROOM, ref.file_id)
    assert len(held) == committed  # exactly the committed batches survived
    assert all(sha256(store.get(ROOM, i) or b"") == i for i in held)
    again, complete = _download(store, ref, blobs)
    assert complete
    assert again == len(blobs) - committed  # only what the crash lost travels again
    store.flush()
    assert store.held(ROOM, ref.file_id) == set(blobs)
    store.close()


def test_reads_see_blobs_waiting_for_their_batch(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs.sqlite")
    store.put(ROOM, "f", [(b"\x01" * 32, "chunk", b"data")], "msg", T0, later=True)
    assert store.waiting == 1
    assert store.get(ROOM, b"\x01" * 32) == b"data"  # served from the batch, nothing written
    assert store.waiting == 1
    assert store.held(ROOM, "f") == {b"\x01" * 32}  # queries write the batch first
    assert store.waiting == 0
    assert store.file_bytes(ROOM, "f") == 4
    store.close()


def test_a_full_batch_is_written_at_once(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs.sqlite")
    store.put(ROOM, "f", [(bytes([i]) * 32, "chunk", b"x") for i in range(BATCH - 1)], "m", T0, later=True)
    assert store.waiting == BATCH - 1
    store.put(ROOM, "f", [(b"\xff" * 32, "chunk", b"x")], "m", T0, later=True)
    assert store.waiting == 0
    rows = sqlite3.connect(tmp_path / "blobs.sqlite").execute("SELECT COUNT(*) FROM blobs").fetchone()
    assert rows[0] == BATCH
    store.close()


def _on_disk(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("blobs.sqlite"))


def test_an_erasure_drops_waiting_blobs_before_they_reach_the_disk(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs.sqlite")
    marker = b"CIPHERTEXT-OF-AN-ERASED-CHUNK-" * 8
    kept = b"CIPHERTEXT-OF-A-KEPT-CHUNK----" * 8
    store.put(ROOM, "gone", [(b"\x01" * 32, "chunk", marker)], "msg-gone", T0, later=True)
    store.put(ROOM, "alive", [(b"\x02" * 32, "chunk", kept)], "msg-alive", T0 + 10**9, later=True)
    assert store.erase_message(ROOM, "msg-gone") == 1
    assert store.get(ROOM, b"\x01" * 32) is None
    store.close()  # writes what still waits
    disk = _on_disk(tmp_path)
    assert marker not in disk
    assert kept in disk


def test_every_erasure_path_drops_waiting_blobs(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs.sqlite")

    def fill() -> None:
        store.put(ROOM, "f1", [(b"\x01" * 32, "chunk", b"a")], "m1", T0, later=True)
        store.put("other", "f2", [(b"\x02" * 32, "chunk", b"b")], "m2", T0 + 10, later=True)

    fill()
    assert store.erase_file(ROOM, "f1") == 1
    assert store.waiting == 1
    store.erase_room("other")
    assert store.waiting == 0
    fill()
    assert store.purge_expired(T0 + 5) == 1  # only f1 has expired
    assert store.get(ROOM, b"\x01" * 32) is None
    assert store.get("other", b"\x02" * 32) == b"b"
    store.close()
