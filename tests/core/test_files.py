"""Attachments core (peer/core/files.py): sealing, manifest rules, the transfer engine on a fake clock,
and bad input (oversized manifest, wrong chunk hash, chunk flood, request flood)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import pytest

from peer.core.content import decode_content, encode_content
from peer.core.crypto import DeterministicRng, aead_seal, b64u_encode, sha256
from peer.core.errors import ProtocolError
from peer.core.files import (
    IDS_PER_INDEX,
    MANIFEST_INFO,
    MAX_MANIFEST,
    File,
    FileLimitError,
    FileLimits,
    Manifest,
    Sealer,
    manifest_key,
    open_chunk,
    open_manifest,
    parse_index,
)
from peer.core.files_transfer import (
    BLOB,
    BUSY,
    WANT,
    BlobReceived,
    FileComplete,
    FileFailed,
    FileProgress,
    ManifestReady,
    ServeRequest,
    TransferError,
    Transfers,
    decode_frame,
    encode_frame,
)

T0 = 1_700_000_000_000


def seal(
    data: bytes, chunk: int = 1024, name: str = "a.bin", key: bytes | None = None
) -> tuple[object, dict[bytes, bytes]]:
    key = key or DeterministicRng(b"file-key")(32)
    s = Sealer(key, len(data), chunk)
    blobs: dict[bytes, bytes] = {}
    for i in range(s.chunks):
        bid, blob = s.seal(i, data[i * chunk : (i + 1) * chunk])
        blobs[bid] = blob
    sealed = s.finish(name, "application/octet-stream", hashlib.sha256(data).digest())
    blobs[sealed.content.manifest] = sealed.manifest_blob
    for b in sealed.index_blobs:
        blobs[sha256(b)] = b
    return sealed, blobs


def test_seal_and_open_round_trip() -> None:
    data = bytes(range(256)) * 20  # 5,120 bytes: 5 chunks of 1 KiB
    sealed, blobs = seal(data)
    ref = sealed.content  # type: ignore[attr-defined]
    m = open_manifest(ref.key, blobs[ref.manifest], ref)
    assert (m.size, m.chunks, m.chunk_size) == (5120, 5, 1024)
    ids = parse_index(blobs[m.index[0]], 0, m)
    plain = b"".join(open_chunk(ref.key, m, i, blobs[cid]) for i, cid in enumerate(ids))
    assert plain == data
    assert hashlib.sha256(plain).digest() == m.digest
    # the content item round-trips and never carries plaintext
    raw = encode_content(ref)
    assert decode_content(raw) == ref
    assert b"\x00\x01\x02" not in raw


def test_chunk_is_bound_to_its_position_and_the_end() -> None:
    data = b"x" * 3000
    sealed, blobs = seal(data)
    ref = sealed.content  # type: ignore[attr-defined]
    m = open_manifest(ref.key, blobs[ref.manifest], ref)
    ids = parse_index(blobs[m.index[0]], 0, m)
    with pytest.raises(ProtocolError):
        open_chunk(ref.key, m, 1, blobs[ids[0]])  # chunk 0 presented as chunk 1
    short = Manifest(m.name, 2048, m.mime, 1024, 2, m.index, m.digest)
    with pytest.raises(ProtocolError):
        open_chunk(ref.key, short, 1, blobs[ids[1]])  # truncation: chunk 1 is not the last one


def test_manifest_must_match_the_message_and_its_own_counts() -> None:
    sealed, blobs = seal(b"y" * 2500)
    ref = sealed.content  # type: ignore[attr-defined]
    other = File("b.bin", ref.size, ref.mime, ref.manifest, ref.key)
    with pytest.raises(ProtocolError, match="bad-manifest"):
        open_manifest(ref.key, blobs[ref.manifest], other)
    bad = sealed.manifest.to_obj()  # type: ignore[attr-defined]
    bad["n"] = 7
    blob = aead_seal(manifest_key(ref.key), bytes(12), json.dumps(bad).encode(), MANIFEST_INFO)
    with pytest.raises(ProtocolError, match="bad-manifest"):
        open_manifest(ref.key, blob)
    with pytest.raises(ProtocolError, match="bad-manifest"):
        open_manifest(ref.key, bytes(MAX_MANIFEST + 1))  # oversized: refused before decrypting
    with pytest.raises(ProtocolError, match="bad-manifest"):
        open_manifest(bytes(32), blobs[ref.manifest])


def test_limits_are_refused_with_a_clear_error() -> None:
    with pytest.raises(FileLimitError, match="over the 1,000-byte limit per file"):
        FileLimits(max_file=1000).check_file(1001)
    with pytest.raises(FileLimitError, match="quota"):
        FileLimits(room_quota=10).check_quota(8, 3)
    sealed, _ = seal(b"z" * 5000)
    t = Transfers(FileLimits(max_file=4096))
    with pytest.raises(FileLimitError):
        t.fetch(sealed.content, T0)  # type: ignore[attr-defined]


def test_bad_content_items_are_refused() -> None:
    sealed, _ = seal(b"q" * 10)
    obj = json.loads(encode_content(sealed.content))  # type: ignore[attr-defined]
    for field, value in [("name", "../x"), ("name", ""), ("size", -1), ("mime", "no-slash"), ("key", "AA")]:
        bad = {**obj, field: value}
        with pytest.raises(ProtocolError, match="bad-content"):
            decode_content(json.dumps(bad).encode())


def test_frames_round_trip_and_bad_frames_are_refused() -> None:
    bid = sha256(b"x")
    assert decode_frame(encode_frame(WANT, 7, bid)) == (WANT, 7, bid, b"")
    assert decode_frame(encode_frame(BLOB, 2**32 - 1, bid, b"data")) == (BLOB, 2**32 - 1, bid, b"data")
    for frame in [
        b"",
        b"\x01" * 10,
        b"\x09" + bytes(36),
        encode_frame(WANT, 1, bid) + b"x",
        b"\x02" + bytes(36 + 65536 + 17),
    ]:
        with pytest.raises(ProtocolError, match="bad-frame"):
            decode_frame(frame)


class Net:
    """Transfers engines wired together on a fake clock: frames are delivered in order, ServeRequests are
    answered from each node's blob store (a dict)."""

    def __init__(self, *names: str, limits: FileLimits | None = None) -> None:
        self.nodes = {n: Transfers(limits) for n in names}
        self.stores: dict[str, dict[bytes, bytes]] = {n: {} for n in names}
        self.events: dict[str, list[object]] = {n: [] for n in names}
        self.now = T0
        self.links: set[frozenset[str]] = set()
        self.frames = 0

    def link(self, a: str, b: str) -> None:
        self.links.add(frozenset((a, b)))
        self.handle(a, self.nodes[a].link_up(b, self.now))
        self.handle(b, self.nodes[b].link_up(a, self.now))

    def unlink(self, a: str, b: str) -> None:
        self.links.discard(frozenset((a, b)))
        self.handle(a, self.nodes[a].link_down(b, self.now))
        self.handle(b, self.nodes[b].link_down(a, self.now))

    def handle(self, name: str, events: Sequence[object]) -> None:
        for ev in events:
            self.events[name].append(ev)
            if isinstance(ev, ServeRequest):
                self.nodes[name].serve(ev.peer, ev.req, ev.blob_id, self.stores[name].get(ev.blob_id))
            elif isinstance(ev, BlobReceived):
                self.stores[name][ev.blob_id] = ev.data

    def run(self, limit: int = 100_000, stop: object = None) -> None:
        queue: list[tuple[str, str, bytes]] = []
        for _ in range(limit):
            for name, node in self.nodes.items():
                queue += [(name, to, f) for to, f in node.data_to_send()]
            if not queue:
                return
            src, dst, frame = queue.pop(0)
            if frozenset((src, dst)) in self.links:
                self.frames += 1
                self.handle(dst, self.nodes[dst].receive(src, frame, self.now))
            if stop is not None and stop():  # type: ignore[operator]
                return
        raise AssertionError("did not settle")


def test_a_file_is_fetched_from_several_holders_and_completes() -> None:
    data = DeterministicRng(b"data")(40_000)
    sealed, blobs = seal(data)
    ref = sealed.content  # type: ignore[attr-defined]
    net = Net("A", "B", "C")
    net.stores["A"] = dict(blobs)
    net.stores["B"] = dict(blobs)
    net.link("C", "A")
    net.link("C", "B")
    net.handle("C", net.nodes["C"].fetch(ref, net.now))
    net.run()
    evs = net.events["C"]
    assert any(isinstance(e, ManifestReady) for e in evs)
    assert isinstance(evs[-1], FileComplete)
    assert set(net.stores["C"]) == set(blobs)
    served = {n: sum(isinstance(e, ServeRequest) for e in net.events[n]) for n in "AB"}
    assert served["A"] > 5
    assert served["B"] > 5
    progress = [e for e in evs if isinstance(e, FileProgress)]
    assert progress[-1].have == progress[-1].total == 40


def test_the_sender_leaves_half_way_and_another_holder_completes() -> None:
    data = DeterministicRng(b"data2")(30_000)
    sealed, blobs = seal(data)
    ref = sealed.content  # type: ignore[attr-defined]
    net = Net("A", "B", "C")
    net.stores["A"] = dict(blobs)
    net.link("B", "A")
    net.handle("B", net.nodes["B"].fetch(ref, net.now))
    net.run()
    net.link("C", "A")
    net.handle("C", net.nodes["C"].fetch(ref, net.now))
    net.run(stop=lambda: len(net.stores["C"]) >= 15)
    net.unlink("C", "A")  # the sender goes offline half way
    net.run()
    assert not any(isinstance(e, FileComplete) for e in net.events["C"])
    net.link("C", "B")
    net.run()
    assert isinstance(net.events["C"][-1], FileComplete)
    assert set(net.stores["C"]) == set(blobs)


def test_resume_fetches_only_what_is_missing() -> None:
    data = DeterministicRng(b"data3")(20_000)
    sealed, blobs = seal(data)
    ref = sealed.content  # type: ignore[attr-defined]
    net = Net("A", "C")
    net.stores["A"] = dict(blobs)
    net.link("C", "A")
    net.handle("C", net.nodes["C"].fetch(ref, net.now))
    net.run(stop=lambda: len(net.stores["C"]) >= 12)
    kept = dict(net.stores["C"])
    # restart: a new engine, told what the store holds
    net.nodes["C"] = Transfers()
    net.nodes["A"].link_down("C", net.now)
    net.events["C"] = []
    net.link("C", "A")
    meta = {k: v for k, v in kept.items() if k == ref.manifest or len(v) == 32 * 20}
    before = net.frames
    net.handle("C", net.nodes["C"].fetch(ref, net.now, held=kept, meta=meta))
    net.run()
    assert isinstance(net.events["C"][-1], FileComplete)
    assert set(net.stores["C"]) == set(blobs)
    # only the missing chunks travelled again (one WANT and one BLOB each)
    assert net.frames - before == 2 * (len(blobs) - len(kept))


def test_wrong_chunk_hash_is_refused_and_fetched_elsewhere() -> None:
    data = DeterministicRng(b"data4")(8_000)
    sealed, blobs = seal(data)
    ref = sealed.content  # type: ignore[attr-defined]
    net = Net("A", "M", "C")
    net.stores["A"] = dict(blobs)
    net.stores["M"] = {
        k: (v if len(v) != 1040 else b"\x00" * len(v)) for k, v in blobs.items()
    }  # garbage chunks
    net.link("C", "M")
    net.link("C", "A")
    net.handle("C", net.nodes["C"].fetch(ref, net.now))
    net.run()
    errors = [e for e in net.events["C"] if isinstance(e, TransferError)]
    assert errors
    assert all(e.peer == "M" and e.code == "bad-hash" for e in errors)
    assert isinstance(net.events["C"][-1], FileComplete)
    assert all(sha256(v) == k for k, v in net.stores["C"].items())


def test_chunk_flood_is_dropped_and_counted_until_the_budget() -> None:
    t = Transfers(FileLimits(error_budget=10))
    events = []
    for i in range(20):
        blob = bytes([i]) * 1000
        events += t.receive("M", encode_frame(BLOB, i, sha256(blob), blob), T0)
    errs = [e for e in events if isinstance(e, TransferError)]
    assert len(errs) == 10
    assert errs[-1].closed
    assert all(e.code == "unsolicited" for e in errs)
    assert not any(isinstance(e, BlobReceived) for e in events)  # nothing unasked is ever stored


def test_request_flood_is_bounded_per_neighbour() -> None:
    t = Transfers(FileLimits(serve_window=4, error_budget=1000))
    events = []
    for i in range(10):
        events += t.receive("M", encode_frame(WANT, i, sha256(bytes([i]))), T0)
    assert sum(isinstance(e, ServeRequest) for e in events) == 4  # only 4 lookups are ever open
    busy = [f for _, f in t.data_to_send() if f[0] == BUSY]
    assert len(busy) == 6
    t.serve("M", 0, sha256(b"\x00"), None)
    assert (
        sum(isinstance(e, ServeRequest) for e in t.receive("M", encode_frame(WANT, 11, sha256(b"a")), T0))
        == 1
    )


def test_downloader_window_and_timeouts() -> None:
    data = DeterministicRng(b"data5")(20_000)
    sealed, blobs = seal(data)
    ref = sealed.content  # type: ignore[attr-defined]
    t = Transfers(FileLimits(window=3, request_timeout_ms=1000))
    t.link_up("A", T0)
    t.link_up("B", T0)
    t.fetch(ref, T0)
    sent = t.data_to_send()
    assert len(sent) == 1  # only the manifest is wanted at first
    peer = sent[0][0]
    _kind, req, bid, _ = decode_frame(sent[0][1])
    t.receive(peer, encode_frame(BLOB, req, bid, blobs[bid]), T0)
    t.data_to_send()  # the index
    # nobody answers: after the timeout it is asked of the other neighbour
    assert t.next_timer() == T0 + 1000
    t.handle_timer(T0 + 1000)
    again = t.data_to_send()
    assert len(again) == 1
    assert again[0][0] != peer
    _kind, req, bid, _ = decode_frame(again[0][1])
    t.receive(again[0][0], encode_frame(BLOB, req, bid, blobs[bid]), T0 + 1000)
    wants = t.data_to_send()
    per_peer = {p: sum(1 for q, _ in wants if q == p) for p in ("A", "B")}
    assert per_peer == {"A": 3, "B": 3}  # the window per neighbour


def test_a_bad_manifest_fails_the_download() -> None:
    sealed, blobs = seal(b"w" * 3000)
    ref = sealed.content  # type: ignore[attr-defined]
    forged = File(ref.name, ref.size, ref.mime, sha256(b"forged"), ref.key)
    net = Net("A", "C")
    net.stores["A"] = {**blobs, sha256(b"forged"): b"forged"}
    net.link("C", "A")
    net.handle("C", net.nodes["C"].fetch(forged, net.now))
    net.run()
    assert isinstance(net.events["C"][-1], FileFailed)
    assert net.events["C"][-1].code == "bad-manifest"
    assert net.nodes["C"].downloading() == []


def test_large_files_use_several_index_blobs() -> None:
    n = IDS_PER_INDEX + 3
    s = Sealer(bytes(32), n * 1024, 1024)
    for i in range(n):
        s.seal(i, b"\x00" * 1024)
    sealed = s.finish("big", "application/octet-stream", bytes(32))
    assert len(sealed.index_blobs) == 2
    assert len(sealed.index_blobs[1]) == 3 * 32
    m = open_manifest(bytes(32), sealed.manifest_blob)
    assert parse_index(sealed.index_blobs[1], 1, m) == list(sealed.chunk_ids[IDS_PER_INDEX:])
    assert b64u_encode(sealed.content.manifest) == sealed.content.file_id


def _download_cpu_s(chunks: int) -> float:
    """CPU seconds the engine spends downloading a ``chunks``-chunk file from one neighbour (answered
    at once, a window of 16), verification included."""
    import time

    data = bytes(range(256)) * (chunks * 4)  # chunks KiB (DeterministicRng is slow for megabytes)
    sealed, blobs = seal(data)
    ref = sealed.content  # type: ignore[attr-defined]
    t = Transfers(FileLimits(window=16))
    t.link_up("A", T0)
    t0 = time.process_time()
    events = t.fetch(ref, T0)
    done = 0
    while True:
        out = t.data_to_send()
        if not out:
            break
        for peer, frame in out:
            _kind, req, bid, _ = decode_frame(frame)
            events = t.receive(peer, encode_frame(BLOB, req, bid, blobs[bid]), T0)
            done += sum(isinstance(e, FileComplete) for e in events)
    spent = time.process_time() - t0
    assert done == 1
    assert t.progress(ref.file_id) is None
    return spent


def test_receiving_n_chunks_costs_linear_work() -> None:
    """Regression: ``chunks_held`` intersected two sets per received chunk, so a download cost O(n²)
    (23.5% of the receiver's CPU on a 80 MB file). Per chunk, a 10,000-chunk download must cost about
    what a 1,000-chunk one does (quadratic: ~10x); 4x leaves room for a noisy machine."""
    small = min(_download_cpu_s(1_000) for _ in range(3)) / 1_000
    big = _download_cpu_s(10_000) / 10_000
    assert big < 4 * small, f"per chunk: {big * 1e6:.1f} µs at 10k chunks vs {small * 1e6:.1f} µs at 1k"
