"""Attachments, the file format: sealed, content-addressed chunks, the index and the manifest (sans-IO).

Owns: the ``"file"`` content item (:class:`File`), the limits (:class:`FileLimits`, :class:`FileLimitError`),
the file keys, the manifest, sealing (:class:`Sealer`) and opening (:func:`open_chunk`) of chunks, and the
index blobs. Holds no state beyond a :class:`Sealer` in progress; persists nothing (the adapters store
the blobs). The transfer protocol that moves the blobs is :mod:`peer.core.files_transfer`.

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


Limits (``FileLimits``): file size (100 MB), manifest size, thumbnail size, room quota (1 GiB) —
refused with :class:`FileLimitError`, whose message says which limit and by how much. The transfer
bounds (``window``, ``serve_window``, timeouts, ``error_budget``) live in ``FileLimits`` too, so one
configuration covers a room's attachments.
"""

from __future__ import annotations

import json
import math
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

CHUNK_INFO = b"ephemesh/file/v1/chunk"
MANIFEST_INFO = b"ephemesh/file/v1/manifest"


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
    #: ``"fwd":{"from_name":...}``: forwarded from another room (see ``peer.forwarding``); the original
    #: author's name as the forwarder saw it. Parsed by :mod:`peer.core.content` (which cleans names).
    forwarded_from: str | None = None

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
    obj: dict[str, Any] = {
        "t": "file",
        "name": content.name,
        "size": content.size,
        "mime": content.mime,
        "manifest": b64u_encode(content.manifest),
        "key": b64u_encode(content.key),
    }
    if content.forwarded_from is not None:  # only when set: other file content stays byte-identical
        obj["fwd"] = {"from_name": content.forwarded_from}
    return obj


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


__all__ = [
    "CHUNK_SIZE",
    "IDS_PER_INDEX",
    "ID_LEN",
    "MAX_BLOB",
    "MAX_CHUNK",
    "File",
    "FileLimitError",
    "FileLimits",
    "Manifest",
    "SealedFile",
    "Sealer",
    "decode_file_content",
    "file_content_obj",
    "open_chunk",
    "open_manifest",
    "parse_index",
]
