"""The keeping part (peer/core/room/keeping.py) on its own: wire codec, bad input, and the rules that
bound what a neighbour can make us send or hold. A keeper is told blob ids only, never a key."""

from __future__ import annotations

import struct

import pytest

from peer.core.errors import ProtocolError
from peer.core.files import File
from peer.core.room.keeping import (
    KEEP_FILE_TAG,
    KEEPER_TAG,
    MAX_IDS_FRAME,
    MAX_KEEP_BODY,
    MAX_KEEP_IDS,
    MAX_KEPT,
    MAX_KEPT_IDS,
    MAX_OFFER,
    MAX_PENDING,
    MAX_PENDING_IDS,
    Keeping,
    KeptFile,
    KeptFileGone,
    decode_keep_file,
    encode_keep_file,
    encode_keeper,
)

A, B = "a" * 32, "b" * 32


def ref(n: int) -> File:
    return File(f"f{n}.bin", 1000 + n, "application/octet-stream", bytes([n % 256]) * 32, bytes([7]) * 32)


def ids_of(n: int, count: int = 3) -> list[bytes]:
    return [bytes([n % 256, j % 256, j // 256]) + bytes(29) for j in range(count)]


def member(count: int = 3) -> Keeping:
    m = Keeping(keeper=False)
    m.blob_ids = lambda manifest: ids_of(manifest[0], count)
    return m


def keeper() -> Keeping:
    k = Keeping(keeper=True)
    k.holds_files = True
    return k


def frames(seq: int, n: int, count: int = 3) -> list[bytes]:
    return encode_keep_file(seq, ref(n).manifest, ids_of(n, count))


def offer(k: Keeping, peer: str, seq: int, n: int, expiry: object, count: int = 3) -> None:
    for body in frames(seq, n, count):
        k.on_keep_file(peer, body, expiry)  # type: ignore[arg-type]


def test_codec_round_trip_and_bad_bodies_are_refused() -> None:
    ids = ids_of(1, 300)
    out = encode_keep_file(5, ref(1).manifest, ids)
    assert len(out) == 3
    assert all(len(b) <= MAX_KEEP_BODY for b in out)
    got = [decode_keep_file(b) for b in out]
    assert [(g.seq, g.manifest, g.total, g.offset) for g in got] == [
        (5, ref(1).manifest, 300, off) for off in (0, MAX_IDS_FRAME, 2 * MAX_IDS_FRAME)
    ]
    assert [i for g in got for i in g.ids] == ids
    assert ref(1).key not in b"".join(out)
    assert b"f1.bin" not in b"".join(out)

    def head(seq: int, total: int, offset: int) -> bytes:
        return bytes([KEEP_FILE_TAG]) + struct.pack(">Q", seq) + bytes(32) + struct.pack(">II", total, offset)

    bad = [
        b"",
        head(5, 3, 0)[:-1],  # short head
        head(5, 3, 0) + bytes(31),  # a partial id
        head(0, 3, 0) + bytes(32),  # seq 0
        head(2**53, 3, 0) + bytes(32),  # past 2^53
        head(5, 3, 2) + bytes(64),  # past its total
        head(5, MAX_KEEP_IDS + 1, 0) + bytes(32),  # more than a 100 MB file needs
        head(5, 3, 0),  # no ids though the list is not empty
        head(5, 200, 0) + bytes(32 * (MAX_IDS_FRAME + 1)),  # over MAX_KEEP_BODY
        bytes([KEEPER_TAG]) + head(5, 3, 0)[1:] + bytes(32),  # wrong tag
    ]
    for b in bad:
        with pytest.raises(ProtocolError) as err:
            decode_keep_file(b)
        assert err.value.code == "bad-app-frame"
    with pytest.raises(ValueError):
        encode_keep_file(5, ref(1).manifest, ids_of(1, MAX_KEEP_IDS + 1))
    with pytest.raises(ProtocolError):
        Keeping(keeper=False).on_keeper(B, bytes([KEEPER_TAG, 1]), [])  # the old version


def test_a_member_offers_its_files_once_per_link_and_only_to_keepers() -> None:
    m = member()
    assert m.on_sent(3, ref(3)) == []  # no keeper linked: nothing sent
    own = [(1, ref(1)), (4, ref(4))]
    out = m.on_keeper(B, encode_keeper(), own)
    assert [(p, decode_keep_file(b).seq, decode_keep_file(b).ids) for p, b in out] == [
        (B, 1, tuple(ids_of(1))),
        (B, 4, tuple(ids_of(4))),
    ]
    assert m.on_keeper(B, encode_keeper(), own) == []  # a KEEPER flood re-offers nothing
    assert [p for p, _ in m.on_sent(5, ref(5))] == [B]
    m.on_down(B)
    assert m.on_sent(6, ref(6)) == []
    assert len(m.on_keeper(B, encode_keeper(), own)) == 2  # a new link: offered again
    assert m.on_ready(B) == []  # a member never says KEEPER
    m.on_down(B)
    many = [(seq, ref(seq)) for seq in range(1, MAX_OFFER + 20)]
    offered = [decode_keep_file(b).seq for _, b in m.on_keeper(B, encode_keeper(), many)]
    assert offered == list(range(20, MAX_OFFER + 20))  # the newest MAX_OFFER only


def test_a_member_offers_only_what_its_adapter_holds_without_the_manifest_twice() -> None:
    m = Keeping(keeper=False)  # no lookup: nothing offered
    assert m.on_keeper(B, encode_keeper(), [(1, ref(1))]) == []
    m.blob_ids = lambda manifest: (
        [manifest, *ids_of(manifest[0]), ids_of(manifest[0])[0]] if manifest[0] == 2 else None
    )
    m.on_down(B)
    out = m.on_keeper(B, encode_keeper(), [(1, ref(1)), (2, ref(2))])
    assert [decode_keep_file(b).ids for _, b in out] == [tuple(ids_of(2))]  # deduplicated, manifest apart
    m.blob_ids = lambda manifest: ids_of(1, MAX_KEEP_IDS + 1)  # too big to keep: not offered
    assert m.on_sent(3, ref(3)) == []
    m.blob_ids = lambda manifest: ids_of(1, 260)
    assert len(m.on_sent(3, ref(3))) == 3  # one file, 3 frames


def test_a_keeper_holds_only_its_authors_live_chat_and_forgets_it_with_the_envelope() -> None:
    k = keeper()
    assert k.on_ready(A) == [(A, encode_keeper())]
    live = {(A, 1): 9_000}
    offer(k, A, 1, 1, live.get)
    offer(k, A, 1, 2, live.get)  # a second offer for the message: ignored
    offer(k, B, 1, 3, live.get)  # B names (B, 1): not a live CHAT of B's
    assert k.take() == [KeptFile(A, 1, 9_000, ref(1).manifest, tuple(ids_of(1)))]
    k.on_chat((B, 1), 5_000)  # B's envelope arrives after its offer: taken then
    assert k.take() == [KeptFile(B, 1, 5_000, ref(3).manifest, tuple(ids_of(3)))]
    k.erased((A, 1), "expired")
    k.erased((A, 1), "expired")  # once
    k.erased((A, 2), "unsent")  # never kept: nothing
    assert k.take() == [KeptFileGone(f"{A}:1", "expired")]
    off = Keeping(keeper=True)  # a keeper that does not hold files says nothing and keeps nothing
    assert off.on_ready(A) == []
    offer(off, A, 1, 1, live.get)
    assert off.take() == []
    m = Keeping(keeper=False)
    m.holds_files = True
    offer(m, A, 1, 1, live.get)
    assert m.take() == []


def test_a_keeper_assembles_a_list_only_from_consecutive_frames_of_one_link() -> None:
    k = keeper()
    live = lambda _key: 9_000  # noqa: E731
    f = frames(1, 1, 300)
    k.on_keep_file(A, f[0], live)
    k.on_keep_file(A, f[2], live)  # a gap: the list under way is dropped
    k.on_keep_file(A, f[1], live)
    assert k.take() == []
    assert A not in k._partial
    k.on_keep_file(A, f[0], live)
    k.on_keep_file(B, frames(1, 2, 300)[1], live)  # another link's frame does not continue A's list
    k.on_keep_file(A, frames(2, 1, 300)[1], live)  # nor does another message's
    assert k.take() == []
    assert A not in k._partial
    k.on_keep_file(A, f[0], live)
    k.on_down(A)  # a link that goes down forgets its list
    assert A not in k._partial
    for body in f:
        k.on_keep_file(A, body, live)
    (kept,) = k.take()
    assert isinstance(kept, KeptFile)
    assert kept.ids == tuple(ids_of(1, 300))
    assert kept.file_id == ref(1).file_id
    assert "key" not in kept.to_json()
    assert kept.to_json()["blobs"] == 300


def test_what_a_keeper_holds_for_offers_is_bounded() -> None:
    k = keeper()
    for seq in range(1, MAX_PENDING + 50):  # offers for envelopes that never come
        offer(k, A, seq, seq, lambda _key: None)
    assert len(k._pending) == MAX_PENDING
    k.on_chat((A, 1), 10)  # the oldest were dropped
    assert k.take() == []
    k = keeper()
    for seq in range(1, 10):  # big lists waiting: bounded by ids too
        offer(k, A, seq, seq, lambda _key: None, count=MAX_KEEP_IDS)
    assert k._pending_ids <= MAX_PENDING_IDS
    assert len(k._pending) == MAX_PENDING_IDS // MAX_KEEP_IDS
    k = keeper()
    for seq in range(1, MAX_KEPT + 10):
        offer(k, B, seq, seq, lambda _key: 10, count=1)
    assert len(k.take()) == MAX_KEPT
    k = keeper()
    n = MAX_KEPT_IDS // MAX_KEEP_IDS
    for seq in range(1, n + 5):
        offer(k, B, seq, seq, lambda _key: 10, count=MAX_KEEP_IDS)
    assert len(k.take()) == n
    assert k._kept_ids <= MAX_KEPT_IDS
    k.erased((B, 1), "expired")  # room again once one goes
    offer(k, B, n + 10, 7, lambda _key: 10, count=MAX_KEEP_IDS)
    assert [type(x) for x in k.take()] == [KeptFileGone, KeptFile]


def test_a_raw_download_fetches_exactly_the_ids_each_verified_by_its_hash() -> None:
    """Transfers.fetch_blobs, what a keeper fetches with: no File, no key; nothing is opened."""
    from peer.core.crypto import sha256
    from peer.core.files import FileLimitError, FileLimits
    from peer.core.files_transfer import (
        BLOB,
        WANT,
        BlobReceived,
        FileComplete,
        TransferError,
        Transfers,
        decode_frame,
        encode_frame,
    )

    blobs = {sha256(b"blob %d" % i): b"blob %d" % i for i in range(6)}
    ids = list(blobs)
    t = Transfers(FileLimits(max_downloads=1))
    assert t.fetch_blobs("F", ids, 0, held=[ids[0]]) == []
    with pytest.raises(FileLimitError):
        t.fetch_blobs("G", ids, 0)
    t.link_up("S", 0)
    first = [decode_frame(f) for _, f in t.data_to_send()]
    assert {w[0] for w in first} == {WANT}
    assert {w[2] for w in first} == set(ids[1:])  # exactly the ids, not the held one
    _, req, bad_id, _ = first[0]
    events = t.receive("S", encode_frame(BLOB, req, bad_id, b"other bytes"), 1)
    assert [e.code for e in events if isinstance(e, TransferError)] == ["bad-hash"]
    assert not [e for e in events if isinstance(e, BlobReceived)]  # a wrong blob is never handed out
    got: list[BlobReceived] = []
    done: list[FileComplete] = []
    pending, now = first[1:], 1
    for _ in range(10):
        for _, req, blob_id, _ in pending:
            for ev in t.receive("S", encode_frame(BLOB, req, blob_id, blobs[blob_id]), now):
                got += [ev] if isinstance(ev, BlobReceived) else []
                done += [ev] if isinstance(ev, FileComplete) else []
        if done:
            break
        pending = [decode_frame(f) for _, f in t.data_to_send()]
        if not pending:
            now += 3_000  # the blob S answered wrongly is asked again after retry_ms
            t.handle_timer(now)
            pending = [decode_frame(f) for _, f in t.data_to_send()]
    assert done == [FileComplete("F")]
    assert sorted(e.blob_id for e in got) == sorted(ids[1:])
    assert {e.role for e in got} == {"raw"}
    assert all(blobs[e.blob_id] == e.data for e in got)
    assert t.downloading() == []
