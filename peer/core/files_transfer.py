"""Attachments, the transfer protocol: the frame codec, transfer events and the :class:`Transfers` engine.

Owns: one room's transfers, both sides — the downloads under way (what each still needs, holds, and which
neighbour lacks what), the requests in flight with their deadlines, the per-neighbour bounds (``window``
requests we keep open, ``serve_window`` requests we answer), the per-neighbour remote-error counters and
the neighbours ignored past their budget. Persists nothing: the adapters store the verified blobs it
hands out (:class:`BlobReceived`) and resume a download with them. The file format it verifies against
(manifest, index, limits) is :mod:`peer.core.files`.

The transfer protocol runs on its own data channel (``ephemesh-files``), one :class:`Transfers` per room.
Frames (big-endian):

=========  ==========================================================================
0x01 WANT  ``u8 type, u32 req, id[32]`` — send me the blob ``id``
0x02 BLOB  ``u8 type, u32 req, id[32], bytes`` — the blob (``sha256(bytes) == id``)
0x03 NONE  ``u8 type, u32 req, id[32]`` — I do not hold it
0x04 BUSY  ``u8 type, u32 req, id[32]`` — too many of your requests are open; ask later
=========  ==========================================================================

Rules:
- A downloader keeps at most ``window`` requests open per neighbour and asks every linked neighbour
  (several holders at once); a request unanswered after ``request_timeout_ms``, a NONE or a BUSY sends
  that blob to another neighbour; when nobody has it, it waits for a new link or ``retry_ms``.
- Every blob is verified on arrival (its hash is the id we asked for, the id is listed by something
  already verified: the manifest id is in the signed message, index ids in the manifest, chunk ids in an
  index); the whole plaintext is verified against the manifest's SHA-256 at save (:class:`Opener`).
- A server answers at most ``serve_window`` open requests per neighbour; more are answered BUSY and
  counted. A BLOB we did not ask that neighbour for, a wrong hash, a malformed frame are remote errors,
  counted per neighbour; past ``error_budget`` that neighbour is ignored until its link goes down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from peer.core.crypto import b64u_encode, sha256, u32
from peer.core.errors import ProtocolError
from peer.core.files import (
    ID_LEN,
    MAX_BLOB,
    File,
    FileLimitError,
    FileLimits,
    Manifest,
    open_manifest,
    parse_index,
)

WANT, BLOB, NONE, BUSY = 1, 2, 3, 4
HEAD = 1 + 4 + ID_LEN
MAX_FRAME = HEAD + MAX_BLOB
MAX_REQ = 2**32 - 1


# --- frames ---------------------------------------------------------------------------------------------


def encode_frame(kind: int, req: int, blob_id: bytes, data: bytes = b"") -> bytes:
    if kind not in (WANT, BLOB, NONE, BUSY) or not 0 <= req <= MAX_REQ or len(blob_id) != ID_LEN:
        raise ValueError("bad frame")
    if (kind != BLOB and data) or len(data) > MAX_BLOB:
        raise ValueError("bad frame payload")
    return bytes([kind]) + u32(req) + blob_id + data


def decode_frame(frame: bytes) -> tuple[int, int, bytes, bytes]:
    """``(kind, req, id, data)``; ProtocolError("bad-frame") on anything malformed."""
    if len(frame) < HEAD or len(frame) > MAX_FRAME:
        raise ProtocolError("bad-frame", "transfer frame of a bad length")
    kind = frame[0]
    if kind not in (WANT, BLOB, NONE, BUSY) or (kind != BLOB and len(frame) != HEAD):
        raise ProtocolError("bad-frame", "unknown transfer frame")
    return kind, int.from_bytes(frame[1:5], "big"), bytes(frame[5:HEAD]), bytes(frame[HEAD:])


# --- events ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServeRequest:
    """``peer`` asks for blob ``blob_id``: look it up and answer with :meth:`Transfers.serve`."""

    peer: str
    req: int
    blob_id: bytes

    def to_json(self) -> dict[str, Any]:
        return {"event": "serve", "peer": self.peer, "req": self.req, "id": b64u_encode(self.blob_id)}


@dataclass(frozen=True, slots=True)
class BlobReceived:
    """A verified blob of ``file`` arrived: store it (``role``: manifest / index / chunk)."""

    file: str
    blob_id: bytes
    data: bytes = field(repr=False)
    role: str

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "blob",
            "file": self.file,
            "id": b64u_encode(self.blob_id),
            "role": self.role,
            "len": len(self.data),
        }


@dataclass(frozen=True, slots=True)
class FileProgress:
    file: str
    have: int
    total: int
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "progress",
            "file": self.file,
            "have": self.have,
            "total": self.total,
            "bytes": self.bytes,
        }


@dataclass(frozen=True, slots=True)
class ManifestReady:
    file: str
    manifest: Manifest

    def to_json(self) -> dict[str, Any]:
        return {"event": "manifest", "file": self.file, **self.manifest.info_json()}


@dataclass(frozen=True, slots=True)
class FileComplete:
    file: str

    def to_json(self) -> dict[str, Any]:
        return {"event": "complete", "file": self.file}


@dataclass(frozen=True, slots=True)
class FileFailed:
    file: str
    code: str

    def to_json(self) -> dict[str, Any]:
        return {"event": "failed", "file": self.file, "code": self.code}


@dataclass(frozen=True, slots=True)
class TransferError:
    """``peer`` sent something malformed or unasked on the transfer channel; ``closed``: past its budget,
    ignored from now on until its link goes down."""

    peer: str
    code: str
    count: int
    closed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "transfer-error",
            "peer": self.peer,
            "code": self.code,
            "count": self.count,
            "closed": self.closed,
        }


TransferEvent = (
    ServeRequest | BlobReceived | FileProgress | ManifestReady | FileComplete | FileFailed | TransferError
)


# --- the engine -----------------------------------------------------------------------------------------


class _Download:
    def __init__(self, ref: File) -> None:
        self.ref = ref
        self.file = ref.file_id
        self.manifest: Manifest | None = None
        self.role: dict[bytes, str] = {ref.manifest: "manifest"}
        self.position: dict[bytes, int] = {}  # index id -> its position
        self.pending: dict[bytes, None] = {ref.manifest: None}  # needed, not in flight (ordered)
        self.held: set[bytes] = set()
        self.chunk_ids: set[bytes] = set()
        self._chunks_held = 0  # len(held & chunk_ids), kept as both grow: O(1) per blob, not O(n)
        self.lacking: dict[bytes, set[str]] = {}
        self.retry_at: int | None = None

    def hold(self, blob_id: bytes) -> None:
        if blob_id not in self.held:
            self.held.add(blob_id)
            self._chunks_held += blob_id in self.chunk_ids

    def add_chunk_id(self, blob_id: bytes) -> None:
        if blob_id not in self.chunk_ids:
            self.chunk_ids.add(blob_id)
            self._chunks_held += blob_id in self.held

    def chunks_held(self) -> int:
        return self._chunks_held


class _RawDownload(_Download):
    """A download of blobs named by id only (a keeper: no key, nothing opened; each blob verified by its
    hash, as every blob is). ``ref`` is never read: role is "raw" for every id."""

    def __init__(self, file: str, ids: Iterable[bytes], held: set[bytes]) -> None:  # no File, no key
        self.file = file
        self.manifest = None
        self.role = dict.fromkeys(ids, "raw")
        self.position = {}
        self.pending = {i: None for i in self.role if i not in held}
        self.held = held & set(self.role)
        self.chunk_ids = set()
        self.lacking = {}
        self.retry_at = None


class Transfers:
    """One room's transfers, both sides: serving what we hold and fetching what we want.

    Call ``link_up``/``link_down`` as file channels open and close, ``receive`` with every frame,
    ``serve`` to answer each :class:`ServeRequest`, ``fetch`` to start (or resume) a download,
    ``handle_timer`` at ``next_timer()``; send ``data_to_send()`` after each call.
    """

    def __init__(self, limits: FileLimits | None = None) -> None:
        self.limits = limits or FileLimits()
        self._peers: list[str] = []  # linked, in link order (round robin starts here)
        self._serving: dict[str, int] = {}
        self._downloads: dict[str, _Download] = {}
        self._inflight: dict[
            tuple[str, int], tuple[str, bytes, int]
        ] = {}  # (peer, req) -> file, id, deadline
        self._per_peer: dict[str, int] = {}
        self._next_req = 0
        self._errors: dict[str, dict[str, int]] = {}
        self._ignored: set[str] = set()
        self._out: list[tuple[str, bytes]] = []
        self._turn = 0

    # -- queries ---------------------------------------------------------------------------------------

    def downloading(self) -> list[str]:
        return sorted(self._downloads)

    def progress(self, file: str) -> tuple[int, int] | None:
        d = self._downloads.get(file)
        if d is None:
            return None
        return d.chunks_held(), d.manifest.chunks if d.manifest else 0

    def open_requests(self, peer: str) -> int:
        return self._per_peer.get(peer, 0)

    def data_to_send(self) -> list[tuple[str, bytes]]:
        out, self._out = self._out, []
        return out

    def next_timer(self) -> int | None:
        times = [deadline for _, _, deadline in self._inflight.values()]
        times += [d.retry_at for d in self._downloads.values() if d.retry_at is not None]
        return min(times) if times else None

    # -- links -----------------------------------------------------------------------------------------

    def link_up(self, peer: str, now: int) -> list[TransferEvent]:
        if peer not in self._peers:
            self._peers.append(peer)
        for d in self._downloads.values():
            for lacking in d.lacking.values():
                lacking.discard(peer)
        events: list[TransferEvent] = []
        self._schedule(now, events)
        return events

    def link_down(self, peer: str, now: int) -> list[TransferEvent]:
        if peer in self._peers:
            self._peers.remove(peer)
        self._serving.pop(peer, None)
        self._ignored.discard(peer)
        self._errors.pop(peer, None)
        for key in [k for k in self._inflight if k[0] == peer]:
            self._requeue(key)
        events: list[TransferEvent] = []
        self._schedule(now, events)
        return events

    # -- downloads -------------------------------------------------------------------------------------

    def fetch(
        self, ref: File, now: int, held: Iterable[bytes] = (), meta: Mapping[bytes, bytes] | None = None
    ) -> list[TransferEvent]:
        """Start (or resume) fetching ``ref``. ``held``: ids of blobs of this file already stored; ``meta``:
        the stored manifest and index blobs (by id), so a resumed download need not fetch them again.
        Raises :class:`FileLimitError` for a file over the size limit."""
        self.limits.check_file(ref.size)
        events: list[TransferEvent] = []
        if ref.file_id in self._downloads:
            return events
        if len(self._downloads) >= self.limits.max_downloads:
            raise FileLimitError("too-many-downloads", f"{self.limits.max_downloads} downloads are under way")
        d = _Download(ref)
        self._downloads[d.file] = d
        held_set = set(held)
        meta = meta or {}
        if ref.manifest in meta and sha256(meta[ref.manifest]) == ref.manifest:
            self._accept(d, ref.manifest, meta[ref.manifest], events, store=False)
            for index_id in list(d.position):
                blob = meta.get(index_id)
                if d.file in self._downloads and blob is not None and sha256(blob) == index_id:
                    self._accept(d, index_id, blob, events, store=False)
        if d.file not in self._downloads:
            return events
        for blob_id in held_set & d.chunk_ids:
            d.pending.pop(blob_id, None)
            d.hold(blob_id)
        if d.manifest is not None:
            events.append(FileProgress(d.file, d.chunks_held(), d.manifest.chunks, self._bytes(d)))
        self._maybe_done(d, events)
        self._schedule(now, events)
        return events

    def fetch_blobs(
        self, file: str, ids: Iterable[bytes], now: int, held: Iterable[bytes] = ()
    ) -> list[TransferEvent]:
        """Fetch exactly the blobs ``ids`` (raw: no manifest is opened; each verified by its hash) as the
        download ``file``; :class:`BlobReceived` with role ``raw``, :class:`FileComplete` when all are
        held. ``held``: those already stored. Raises :class:`FileLimitError` past ``max_downloads``."""
        events: list[TransferEvent] = []
        if file in self._downloads:
            return events
        if len(self._downloads) >= self.limits.max_downloads:
            raise FileLimitError("too-many-downloads", f"{self.limits.max_downloads} downloads are under way")
        d = _RawDownload(file, ids, set(held))
        self._downloads[file] = d
        self._maybe_done(d, events)
        self._schedule(now, events)
        return events

    def cancel(self, file: str) -> None:
        """Stop fetching ``file`` (e.g. its message expired); its open requests are forgotten."""
        if self._downloads.pop(file, None) is None:
            return
        for key in [k for k, v in self._inflight.items() if v[0] == file]:
            del self._inflight[key]
            self._per_peer[key[0]] -= 1

    def _bytes(self, d: _Download) -> int:
        if d.manifest is None:
            return 0
        return min(d.manifest.size, d.chunks_held() * d.manifest.chunk_size)

    def _accept(
        self, d: _Download, blob_id: bytes, data: bytes, events: list[TransferEvent], *, store: bool
    ) -> None:
        role = d.role.get(blob_id, "chunk")
        d.pending.pop(blob_id, None)
        d.lacking.pop(blob_id, None)
        if role == "raw":
            d.held.add(blob_id)
            events.append(BlobReceived(d.file, blob_id, data, role))
            return
        if role == "manifest":
            try:
                manifest = open_manifest(d.ref.key, data, d.ref)
                self.limits.check_file(manifest.size)
            except (ProtocolError, FileLimitError) as exc:
                self._fail(d, exc.code, events)
                return
            d.manifest = manifest
            d.hold(blob_id)
            if store:
                events.append(BlobReceived(d.file, blob_id, data, role))
            events.append(ManifestReady(d.file, manifest))
            for pos, index_id in enumerate(manifest.index):
                if index_id not in d.role:
                    d.role[index_id] = "index"
                    d.position[index_id] = pos
                    d.pending[index_id] = None
        elif role == "index":
            assert d.manifest is not None
            try:
                ids = parse_index(data, d.position[blob_id], d.manifest)
            except ProtocolError as exc:
                self._fail(d, exc.code, events)
                return
            d.hold(blob_id)
            if store:
                events.append(BlobReceived(d.file, blob_id, data, role))
            for chunk_id in ids:
                if chunk_id not in d.role:
                    d.role[chunk_id] = "chunk"
                    d.add_chunk_id(chunk_id)
                    if chunk_id not in d.held:
                        d.pending[chunk_id] = None
        else:
            d.hold(blob_id)
            events.append(BlobReceived(d.file, blob_id, data, role))
            assert d.manifest is not None
            events.append(FileProgress(d.file, d.chunks_held(), d.manifest.chunks, self._bytes(d)))

    def _fail(self, d: _Download, code: str, events: list[TransferEvent]) -> None:
        self.cancel(d.file)
        events.append(FileFailed(d.file, code))

    def _maybe_done(self, d: _Download, events: list[TransferEvent]) -> None:
        if isinstance(d, _RawDownload):
            if (
                not d.pending
                and d.file in self._downloads
                and not any(v[0] == d.file for v in self._inflight.values())
            ):
                del self._downloads[d.file]
                events.append(FileComplete(d.file))
            return
        if (
            d.manifest is not None
            and not d.pending
            and d.file in self._downloads
            and (len(d.position) == len(d.manifest.index) and d.chunks_held() == d.manifest.chunks)
        ) and not any(v[0] == d.file for v in self._inflight.values()):
            del self._downloads[d.file]
            events.append(FileComplete(d.file))

    def _requeue(self, key: tuple[str, int]) -> None:
        file, blob_id, _ = self._inflight.pop(key)
        self._per_peer[key[0]] -= 1
        d = self._downloads.get(file)
        if d is not None and blob_id not in d.held:
            d.pending[blob_id] = None
            d.lacking.setdefault(blob_id, set()).add(key[0])

    def _schedule(self, now: int, events: list[TransferEvent]) -> None:
        """Fill every neighbour's window, round robin over neighbours and downloads."""
        peers = [p for p in self._peers if p not in self._ignored]
        if not peers or not self._downloads:
            return
        progress = True
        while progress:
            progress = False
            for k in range(len(peers)):
                peer = peers[(self._turn + k) % len(peers)]
                if self._per_peer.get(peer, 0) >= self.limits.window:
                    continue
                pick = self._pick(peer)
                if pick is None:
                    continue
                d, blob_id = pick
                del d.pending[blob_id]
                req = self._next_req
                self._next_req = (self._next_req + 1) & MAX_REQ
                self._inflight[(peer, req)] = (d.file, blob_id, now + self.limits.request_timeout_ms)
                self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
                self._out.append((peer, encode_frame(WANT, req, blob_id)))
                progress = True
            self._turn += 1
        for d in self._downloads.values():
            if (
                d.pending
                and d.retry_at is None
                and not any(p not in d.lacking.get(b, ()) for b in d.pending for p in peers)
            ):
                d.retry_at = now + self.limits.retry_ms

    def _pick(self, peer: str) -> tuple[_Download, bytes] | None:
        for d in self._downloads.values():
            for blob_id in d.pending:
                if peer not in d.lacking.get(blob_id, ()):
                    return d, blob_id
        return None

    def handle_timer(self, now: int) -> list[TransferEvent]:
        for key, (_, _, deadline) in list(self._inflight.items()):
            if deadline <= now:
                self._requeue(key)
        for d in self._downloads.values():
            if d.retry_at is not None and d.retry_at <= now:
                d.retry_at = None
                d.lacking.clear()
        events: list[TransferEvent] = []
        self._schedule(now, events)
        return events

    # -- frames ----------------------------------------------------------------------------------------

    def _error(self, peer: str, code: str, events: list[TransferEvent]) -> None:
        codes = self._errors.setdefault(peer, {})
        codes[code] = codes.get(code, 0) + 1
        total = sum(codes.values())
        closed = total >= self.limits.error_budget
        if closed:
            self._ignored.add(peer)
            for key in [k for k in self._inflight if k[0] == peer]:
                self._requeue(key)
        events.append(TransferError(peer, code, codes[code], closed))

    def receive(self, peer: str, frame: bytes, now: int) -> list[TransferEvent]:
        events: list[TransferEvent] = []
        if peer in self._ignored:
            return events
        try:
            kind, req, blob_id, data = decode_frame(frame)
        except ProtocolError as exc:
            self._error(peer, exc.code, events)
            return events
        if kind == WANT:
            if self._serving.get(peer, 0) >= self.limits.serve_window:
                self._out.append((peer, encode_frame(BUSY, req, blob_id)))
                self._error(peer, "want-flood", events)
                return events
            self._serving[peer] = self._serving.get(peer, 0) + 1
            events.append(ServeRequest(peer, req, blob_id))
            return events
        open_req = self._inflight.get((peer, req))
        if open_req is None or open_req[1] != blob_id:
            self._error(peer, "unsolicited", events)
            return events
        file = open_req[0]
        d = self._downloads.get(file)
        if kind == BLOB:
            if sha256(data) != blob_id:
                self._requeue((peer, req))
                self._error(peer, "bad-hash", events)
            else:
                del self._inflight[(peer, req)]
                self._per_peer[peer] -= 1
                if d is not None and blob_id not in d.held:
                    self._accept(d, blob_id, data, events, store=True)
                    self._maybe_done(d, events)
        else:
            self._requeue((peer, req))
        self._schedule(now, events)
        return events

    def serve(self, peer: str, req: int, blob_id: bytes, data: bytes | None) -> None:
        """Answer a :class:`ServeRequest` (``data`` None: we do not hold it)."""
        if self._serving.get(peer, 0) <= 0:
            return  # its link went down meanwhile
        self._serving[peer] -= 1
        if data is not None and len(data) <= MAX_BLOB:
            self._out.append((peer, encode_frame(BLOB, req, blob_id, data)))
        else:
            self._out.append((peer, encode_frame(NONE, req, blob_id)))


__all__ = [
    "BLOB",
    "BUSY",
    "NONE",
    "WANT",
    "BlobReceived",
    "FileComplete",
    "FileFailed",
    "FileProgress",
    "ManifestReady",
    "ServeRequest",
    "TransferError",
    "TransferEvent",
    "Transfers",
    "decode_frame",
    "encode_frame",
]
