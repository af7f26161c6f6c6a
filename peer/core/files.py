"""Attachments: sealed, content-addressed chunks, a manifest, and the chunk transfer protocol (sans-IO).

A file is sent in two parts (PROTOCOL.md "Attachments"):

1. **The blobs.** The sender draws a fresh 32-byte file key ``K`` and splits the file into chunks of
   ``chunk_size`` bytes (16 KiB by default, at most 64 KiB). Chunk ``i`` is sealed with AES-256-GCM under
   ``HKDF(K, info="ephemesh/file/v1/chunk")``, nonce ``u32(0) || u64(i)``, AAD
   ``"ephemesh/file/v1/chunk" || u64(i) || u8(last)``. Every blob is addressed by the SHA-256 of its
   bytes (its *id*). The chunk ids, in order, fill *index* blobs (2,048 ids = 64 KiB each, raw bytes).
   The *manifest* (name, size, mime, chunk size, chunk count, index ids, SHA-256 of the whole plaintext,
   optional thumbnail and duration) is JSON sealed under ``HKDF(K, info="ephemesh/file/v1/manifest")``
   with a zero nonce (the key is used once), AAD ``"ephemesh/file/v1/manifest"``.
2. **The message.** A ``"file"`` content item (name, size, mime, manifest id, ``K``) goes in a normal
   signed CHAT envelope, so it rides the log's order, expiry and unsend. Whoever erases the message
   erases ``K``; the blobs it leaves are then ciphertext under a key nobody holds.

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
- Limits (``FileLimits``): file size (100 MB), manifest size, thumbnail size, room quota (1 GiB) —
  refused with :class:`FileLimitError`, whose message says which limit and by how much.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from peer.core.crypto import aead_open, aead_seal, b64u_decode, b64u_encode, hkdf, sha256, u32, u64
from peer.core.errors import ProtocolError

FILE_VERSION = 1
CHUNK_SIZE = 16 * 1024  # the default: small frames keep chat fast behind a transfer (aiortc has one FIFO)
MAX_CHUNK = 64 * 1024
MIN_CHUNK = 1024
TAG = 16
MAX_BLOB = MAX_CHUNK + TAG  # a chunk's ciphertext; index and manifest blobs are smaller
IDS_PER_INDEX = 2048  # 64 KiB of ids per index blob
MAX_MANIFEST = 48 * 1024  # sealed manifest bytes
MAX_THUMB = 32 * 1024
MAX_FILE_NAME = 255
MAX_MIME = 127
MAX_DURATION_MS = 24 * 3600 * 1000
MAX_FILE_SIZE_HARD = 1 << 40  # no limit configuration may go beyond this (index count stays bounded)
ID_LEN = 32

WANT, BLOB, NONE, BUSY = 1, 2, 3, 4
HEAD = 1 + 4 + ID_LEN
MAX_FRAME = HEAD + MAX_BLOB

CHUNK_INFO = b"ephemesh/file/v1/chunk"
MANIFEST_INFO = b"ephemesh/file/v1/manifest"
MAX_REQ = 2**32 - 1


class FileLimitError(ValueError):
    """A file (or the room's total) is over a configured limit; ``code`` names it, the message says by
    how much. Raised to the application before anything is sent or fetched."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class FileLimits:
    max_file: int = 100 * 1000 * 1000  # 100 MB per file
    room_quota: int = 1000 * 1000 * 1000  # 1 GB of attachments held per room
    window: int = 16  # open requests per neighbour per downloader
    serve_window: int = 32  # open requests a neighbour may have with us
    request_timeout_ms: int = 10_000
    retry_ms: int = 2_000
    error_budget: int = 64
    max_downloads: int = 64

    def check_file(self, size: int) -> None:
        if size > min(self.max_file, MAX_FILE_SIZE_HARD):
            raise FileLimitError(
                "file-too-large", f"file of {size:,} bytes is over the {self.max_file:,}-byte limit per file"
            )

    def check_quota(self, used: int, size: int) -> None:
        if used + size > self.room_quota:
            raise FileLimitError(
                "room-quota",
                f"this room already holds {used:,} bytes of attachments; {size:,} more would pass its"
                f" {self.room_quota:,}-byte quota",
            )


# --- the content item -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class File:
    """``{"t":"file","name","size","mime","manifest":b64u(id),"key":b64u(K)}`` inside a CHAT envelope."""

    name: str
    size: int
    mime: str
    manifest: bytes = field(repr=False)
    key: bytes = field(repr=False)

    @property
    def file_id(self) -> str:
        """How the adapters name this file: the manifest id, base64url."""
        return b64u_encode(self.manifest)

    def info_json(self) -> dict[str, Any]:
        """What ``listen --json`` shows (never the key)."""
        return {"name": self.name, "size": self.size, "mime": self.mime, "id": self.file_id}


def _name(value: object) -> str:
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= MAX_FILE_NAME
        or any(ch in value for ch in "/\\\x00")
        or value in (".", "..")
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in value)
    ):
        raise ProtocolError("bad-content", "bad file name")
    return value


def _mime(value: object) -> str:
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= MAX_MIME
        or not value.isascii()
        or value.count("/") != 1
        or any(not (ch.isalnum() or ch in "/.+-_") for ch in value)
    ):
        raise ProtocolError("bad-content", "bad mime type")
    return value


def _size(value: object, limit: int = MAX_FILE_SIZE_HARD) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise ProtocolError("bad-content", "bad size")
    return value


def file_content_obj(content: File) -> dict[str, Any]:
    return {
        "t": "file",
        "name": content.name,
        "size": content.size,
        "mime": content.mime,
        "manifest": b64u_encode(content.manifest),
        "key": b64u_encode(content.key),
    }


def decode_file_content(obj: dict[str, Any]) -> File:
    try:
        manifest = b64u_decode(obj.get("manifest"), length=ID_LEN, max_len=64)
        key = b64u_decode(obj.get("key"), length=32, max_len=64)
    except ProtocolError as exc:
        raise ProtocolError("bad-content", "bad file reference") from exc
    return File(_name(obj.get("name")), _size(obj.get("size")), _mime(obj.get("mime")), manifest, key)


# --- sealing and opening --------------------------------------------------------------------------------


def chunk_key(file_key: bytes) -> bytes:
    return hkdf(file_key, salt=b"", info=CHUNK_INFO)


def manifest_key(file_key: bytes) -> bytes:
    return hkdf(file_key, salt=b"", info=MANIFEST_INFO)


def _chunk_nonce(i: int) -> bytes:
    return u32(0) + u64(i)


def _chunk_aad(i: int, last: bool) -> bytes:
    return CHUNK_INFO + u64(i) + (b"\x01" if last else b"\x00")


def chunk_count(size: int, chunk_size: int) -> int:
    return math.ceil(size / chunk_size)


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    size: int
    mime: str
    chunk_size: int
    chunks: int
    index: tuple[bytes, ...] = field(repr=False)
    digest: bytes = field(repr=False)  # SHA-256 of the whole plaintext
    thumb: bytes | None = field(default=None, repr=False)
    thumb_mime: str | None = None
    duration_ms: int | None = None

    def to_obj(self) -> dict[str, Any]:
        return {
            "v": FILE_VERSION,
            "name": self.name,
            "size": self.size,
            "mime": self.mime,
            "chunk": self.chunk_size,
            "n": self.chunks,
            "index": [b64u_encode(i) for i in self.index],
            "sha256": b64u_encode(self.digest),
            "thumb": None if self.thumb is None else b64u_encode(self.thumb),
            "thumb_mime": self.thumb_mime,
            "duration_ms": self.duration_ms,
        }

    def info_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "mime": self.mime,
            "chunks": self.chunks,
            "thumb_mime": self.thumb_mime,
            "thumb": None if self.thumb is None else b64u_encode(self.thumb),
            "duration_ms": self.duration_ms,
        }


def seal_manifest(file_key: bytes, manifest: Manifest) -> bytes:
    plaintext = json.dumps(manifest.to_obj(), separators=(",", ":"), ensure_ascii=False).encode()
    blob = aead_seal(manifest_key(file_key), bytes(12), plaintext, MANIFEST_INFO)
    if len(blob) > MAX_MANIFEST:
        raise FileLimitError("manifest-too-large", f"manifest of {len(blob):,} bytes over {MAX_MANIFEST:,}")
    return blob


def open_manifest(file_key: bytes, blob: bytes, ref: File | None = None) -> Manifest:
    """Open and validate a sealed manifest (against the message's ``ref`` when given); ProtocolError."""
    if len(blob) > MAX_MANIFEST:
        raise ProtocolError("bad-manifest", "manifest too large")
    try:
        plaintext = aead_open(manifest_key(file_key), bytes(12), blob, MANIFEST_INFO)
    except ProtocolError as exc:
        raise ProtocolError("bad-manifest", "manifest does not open under the message's key") from exc
    try:
        obj: Any = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError("bad-manifest", "not UTF-8 JSON") from exc
    if not isinstance(obj, dict) or obj.get("v") != FILE_VERSION:
        raise ProtocolError("bad-manifest", "unknown manifest version")
    try:
        name, mime = _name(obj.get("name")), _mime(obj.get("mime"))
        size = _size(obj.get("size"))
        chunk = _size(obj.get("chunk"), MAX_CHUNK)
        n = _size(obj.get("n"), MAX_FILE_SIZE_HARD)
        index_raw = obj.get("index")
        if chunk < MIN_CHUNK or n != chunk_count(size, chunk):
            raise ProtocolError("bad-manifest", "chunk count does not match the size")
        if not isinstance(index_raw, list) or len(index_raw) != math.ceil(n / IDS_PER_INDEX):
            raise ProtocolError("bad-manifest", "index count does not match the chunks")
        index = tuple(b64u_decode(i, length=ID_LEN, max_len=64) for i in index_raw)
        digest = b64u_decode(obj.get("sha256"), length=32, max_len=64)
        thumb_raw, thumb_mime, duration = obj.get("thumb"), obj.get("thumb_mime"), obj.get("duration_ms")
        thumb = None if thumb_raw is None else b64u_decode(thumb_raw, max_len=MAX_THUMB * 2)
        if thumb is not None and (len(thumb) > MAX_THUMB or thumb_mime is None):
            raise ProtocolError("bad-manifest", "bad thumbnail")
        thumb_mime = None if thumb_mime is None else _mime(thumb_mime)
        duration = None if duration is None else _size(duration, MAX_DURATION_MS)
    except ProtocolError as exc:
        if exc.code == "bad-manifest":
            raise
        raise ProtocolError("bad-manifest", exc.message) from exc
    m = Manifest(name, size, mime, chunk, n, index, digest, thumb, thumb_mime, duration)
    if ref is not None and (m.name, m.size, m.mime) != (ref.name, ref.size, ref.mime):
        raise ProtocolError("bad-manifest", "manifest does not match the message")
    return m


def parse_index(blob: bytes, position: int, manifest: Manifest) -> list[bytes]:
    """The chunk ids in index blob number ``position``; ProtocolError if its length is wrong."""
    want = min(IDS_PER_INDEX, manifest.chunks - position * IDS_PER_INDEX)
    if want <= 0 or len(blob) != want * ID_LEN:
        raise ProtocolError("bad-index", "index blob of the wrong length")
    return [blob[i : i + ID_LEN] for i in range(0, len(blob), ID_LEN)]


@dataclass(frozen=True, slots=True)
class SealedFile:
    """What a sender stores and serves: every blob by id, and the content item to send."""

    content: File
    manifest: Manifest
    manifest_blob: bytes = field(repr=False)
    index_blobs: tuple[bytes, ...] = field(repr=False)
    chunk_ids: tuple[bytes, ...] = field(repr=False)


class Sealer:
    """Seal a file chunk by chunk (streaming: the caller feeds ``chunk_size`` bytes at a time, the last
    piece shorter), then :meth:`finish` with the plaintext's SHA-256."""

    def __init__(self, file_key: bytes, size: int, chunk_size: int = CHUNK_SIZE) -> None:
        if len(file_key) != 32 or not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
            raise ValueError("bad file key or chunk size")
        self.file_key, self.size, self.chunk_size = file_key, size, chunk_size
        self.chunks = chunk_count(size, chunk_size)
        self._key = chunk_key(file_key)
        self.ids: list[bytes] = []

    def seal(self, i: int, plaintext: bytes) -> tuple[bytes, bytes]:
        """``(id, blob)`` of chunk ``i`` (in order)."""
        last = i == self.chunks - 1
        expected = self.size - i * self.chunk_size if last else self.chunk_size
        if i != len(self.ids) or len(plaintext) != expected:
            raise ValueError("chunks must be sealed in order, each chunk_size bytes but the last")
        blob = aead_seal(self._key, _chunk_nonce(i), plaintext, _chunk_aad(i, last))
        blob_id = sha256(blob)
        self.ids.append(blob_id)
        return blob_id, blob

    def finish(
        self,
        name: str,
        mime: str,
        digest: bytes,
        *,
        thumb: bytes | None = None,
        thumb_mime: str | None = None,
        duration_ms: int | None = None,
    ) -> SealedFile:
        if len(self.ids) != self.chunks:
            raise ValueError("not every chunk was sealed")
        if thumb is not None and len(thumb) > MAX_THUMB:
            raise FileLimitError("thumb-too-large", f"thumbnail of {len(thumb):,} bytes over {MAX_THUMB:,}")
        index_blobs = tuple(
            b"".join(self.ids[i : i + IDS_PER_INDEX]) for i in range(0, len(self.ids), IDS_PER_INDEX)
        )
        manifest = Manifest(
            name,
            self.size,
            mime,
            self.chunk_size,
            self.chunks,
            tuple(sha256(b) for b in index_blobs),
            digest,
            thumb,
            thumb_mime if thumb is not None else None,
            duration_ms,
        )
        blob = seal_manifest(self.file_key, manifest)
        content = File(_name(name), self.size, _mime(mime), sha256(blob), self.file_key)
        open_manifest(self.file_key, blob, content)  # never send what we would refuse
        return SealedFile(content, manifest, blob, index_blobs, tuple(self.ids))


def open_chunk(file_key: bytes, manifest: Manifest, i: int, blob: bytes) -> bytes:
    """Decrypt chunk ``i`` (AEAD-verified, position- and end-bound); ProtocolError."""
    last = i == manifest.chunks - 1
    try:
        plaintext = aead_open(chunk_key(file_key), _chunk_nonce(i), blob, _chunk_aad(i, last))
    except ProtocolError as exc:
        raise ProtocolError("bad-chunk", "chunk does not open") from exc
    expected = manifest.size - i * manifest.chunk_size if last else manifest.chunk_size
    if len(plaintext) != expected:
        raise ProtocolError("bad-chunk", "chunk of the wrong length")
    return plaintext


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
        self.lacking: dict[bytes, set[str]] = {}
        self.retry_at: int | None = None

    def chunks_held(self) -> int:
        return len(self.held & self.chunk_ids)


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
            d.held.add(blob_id)
        if d.manifest is not None:
            events.append(FileProgress(d.file, d.chunks_held(), d.manifest.chunks, self._bytes(d)))
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
        if role == "manifest":
            try:
                manifest = open_manifest(d.ref.key, data, d.ref)
                self.limits.check_file(manifest.size)
            except (ProtocolError, FileLimitError) as exc:
                self._fail(d, exc.code, events)
                return
            d.manifest = manifest
            d.held.add(blob_id)
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
            d.held.add(blob_id)
            if store:
                events.append(BlobReceived(d.file, blob_id, data, role))
            for chunk_id in ids:
                if chunk_id not in d.role:
                    d.role[chunk_id] = "chunk"
                    d.chunk_ids.add(chunk_id)
                    if chunk_id not in d.held:
                        d.pending[chunk_id] = None
        else:
            d.held.add(blob_id)
            events.append(BlobReceived(d.file, blob_id, data, role))
            assert d.manifest is not None
            events.append(FileProgress(d.file, d.chunks_held(), d.manifest.chunks, self._bytes(d)))

    def _fail(self, d: _Download, code: str, events: list[TransferEvent]) -> None:
        self.cancel(d.file)
        events.append(FileFailed(d.file, code))

    def _maybe_done(self, d: _Download, events: list[TransferEvent]) -> None:
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
    "CHUNK_SIZE",
    "MAX_CHUNK",
    "NONE",
    "WANT",
    "BlobReceived",
    "File",
    "FileComplete",
    "FileFailed",
    "FileLimitError",
    "FileLimits",
    "FileProgress",
    "Manifest",
    "ManifestReady",
    "Sealer",
    "ServeRequest",
    "TransferError",
    "TransferEvent",
    "Transfers",
    "decode_frame",
    "encode_frame",
    "open_chunk",
    "open_manifest",
    "parse_index",
]
