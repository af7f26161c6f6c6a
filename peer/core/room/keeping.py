"""Keepers hold attachments (issue 15): who is a keeper on our links, which of our files we offer it,
and, in a keeper, which offered files it holds (PROTOCOL.md "Keepers hold attachments").

A keeper opens no CHAT envelope and never learns a file key: it holds and serves ciphertext blobs named
by their SHA-256. The author tells it, over their authenticated link, which blobs make up its file:

    KEEPER     0x22 | version u8 (2)                            — keeper -> member: "I keep this room"
    KEEP_FILE  0x23 | seq u64 | manifest id (32) | total u32 | offset u32 | n x blob id (32)
                                                                — author -> keeper: "my message seq
                                                                  carries the file of these blobs"

A file's list (every index blob and chunk id, never the manifest id itself; ``total`` ids) goes in
consecutive frames of at most ``MAX_IDS_FRAME`` ids, offsets ascending from 0; ``total`` is at most
``MAX_KEEP_IDS`` (what a 100 MB file needs at the default chunk size, with its index blobs). No key,
name, size, mime or other plaintext metadata travels.

Rules:
- A keeper that holds files (its adapter turns it on: ``Room.set_keep_files``; the Python keeper does
  unless its quota is 0) sends KEEPER once on every link that becomes ready. A member that is not a keeper answers
  the first KEEPER of a link (later ones on that link are ignored: no amplification) with the KEEP_FILE
  frames of every live file message of its OWN (the newest ``MAX_OFFER``) whose blob ids its adapter
  knows (``Room.set_blob_ids``), and sends them to each linked keeper when it sends or forwards a file.
  Nothing is sent to a neighbour that did not say KEEPER.
- A keeper accepts a KEEP_FILE only from the author of the message it names (the link's peer is the
  sender), assembles one list per link at a time (a frame that does not continue it — other message,
  manifest, total, or an offset that is not the next — drops it; offset 0 starts a new one), and takes a
  complete list only for a CHAT envelope it holds (live; an offer that arrives before its envelope waits
  for it, at most ``MAX_PENDING`` offers and ``MAX_PENDING_IDS`` ids, the oldest dropped first), at most
  once per message, at most ``MAX_KEPT`` messages and ``MAX_KEPT_IDS`` ids at once; the expiry is the
  envelope's own (from the log), never the frame's. It then hands the adapter a :class:`KeptFile`
  (fetch exactly those blobs, each verified by its hash, store them as ciphertext bound to that message)
  and, when the envelope is erased (expiry, unsend, equivocation), a :class:`KeptFileGone` (erase them).
- Members ignore KEEP_FILE; keepers ignore KEEPER. A malformed body is a ``bad-app-frame`` fault.

This part owns: the set of linked keepers (members), the lists being assembled, the kept messages
(keepers) and the queue of kept-file notices the adapter drains (:meth:`take`). It persists nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from peer.core.crypto import b64u_encode
from peer.core.errors import ProtocolError
from peer.core.files import CHUNK_SIZE, ID_LEN, IDS_PER_INDEX, File, chunk_count
from peer.core.log import Key

KEEPER_TAG = 0x22
KEEP_FILE_TAG = 0x23
KEEPER_VERSION = 2
MAX_KEEP_BODY = 4096
KEEP_HEAD = 1 + 8 + ID_LEN + 4 + 4
MAX_IDS_FRAME = (MAX_KEEP_BODY - KEEP_HEAD) // ID_LEN  # 126
_CHUNKS_100MB = chunk_count(100 * 1000 * 1000, CHUNK_SIZE)
MAX_KEEP_IDS = _CHUNKS_100MB + -(-_CHUNKS_100MB // IDS_PER_INDEX)  # 6,107: a 100 MB file's chunks + index
MAX_KEPT = 4096
MAX_KEPT_IDS = 1 << 17  # ids of every kept file at once (2 GiB of 16 KiB chunks)
MAX_PENDING = 256
MAX_PENDING_IDS = 4 * MAX_KEEP_IDS
MAX_OFFER = 256  # files offered to a keeper when a link comes up: the newest (chat shares the link)

BlobIds = Callable[[bytes], list[bytes] | None]
"""The adapter's lookup: manifest id of one of OUR files -> its index and chunk ids (None: not held)."""


@dataclass(frozen=True, slots=True)
class KeptFile:
    """A keeper: the author of message ``sender:seq`` (a live CHAT envelope) says its file is the blobs
    ``ids`` (index blobs and chunks) under the manifest ``manifest`` — ids only, no key."""

    sender: str
    seq: int
    expires_at: int
    manifest: bytes
    ids: tuple[bytes, ...] = field(repr=False)

    @property
    def message_id(self) -> str:
        return f"{self.sender}:{self.seq}"

    @property
    def file_id(self) -> str:
        return b64u_encode(self.manifest)

    def to_json(self) -> dict[str, object]:
        return {
            "kept": self.message_id,
            "expires_at": self.expires_at,
            "file": self.file_id,
            "blobs": len(self.ids),
        }


@dataclass(frozen=True, slots=True)
class KeptFileGone:
    """A keeper: the envelope of a kept file's message was erased; erase the file's blobs."""

    message_id: str
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"gone": self.message_id, "reason": self.reason}


KeepNotice = KeptFile | KeptFileGone


@dataclass(frozen=True, slots=True)
class KeepFileFrame:
    seq: int
    manifest: bytes
    total: int
    offset: int
    ids: tuple[bytes, ...]


def encode_keeper() -> bytes:
    return bytes([KEEPER_TAG, KEEPER_VERSION])


def encode_keep_file(seq: int, manifest: bytes, ids: list[bytes]) -> list[bytes]:
    """The KEEP_FILE frames of one file (at least one; ``ids``: its index and chunk ids)."""
    if len(manifest) != ID_LEN or len(ids) > MAX_KEEP_IDS or any(len(i) != ID_LEN for i in ids):
        raise ValueError("bad KEEP_FILE list")
    head = bytes([KEEP_FILE_TAG]) + struct.pack(">Q", seq) + manifest + struct.pack(">I", len(ids))
    return [
        head + struct.pack(">I", off) + b"".join(ids[off : off + MAX_IDS_FRAME])
        for off in range(0, max(1, len(ids)), MAX_IDS_FRAME)
    ]


def decode_keep_file(body: bytes) -> KeepFileFrame:
    n, rest = divmod(len(body) - KEEP_HEAD, ID_LEN)
    if len(body) < KEEP_HEAD or len(body) > MAX_KEEP_BODY or body[0] != KEEP_FILE_TAG or rest:
        raise ProtocolError("bad-app-frame", "malformed KEEP_FILE frame")
    (seq,) = struct.unpack(">Q", body[1:9])
    total, offset = struct.unpack(">II", body[9 + ID_LEN : KEEP_HEAD])
    if seq < 1 or seq >= 2**53 or total > MAX_KEEP_IDS or offset + n > total:
        raise ProtocolError("bad-app-frame", "KEEP_FILE out of bounds")
    if n == 0 and not (total == 0 and offset == 0):
        raise ProtocolError("bad-app-frame", "KEEP_FILE without ids")
    ids = tuple(body[KEEP_HEAD + k * ID_LEN : KEEP_HEAD + (k + 1) * ID_LEN] for k in range(n))
    return KeepFileFrame(seq, bytes(body[9 : 9 + ID_LEN]), total, offset, ids)


@dataclass(slots=True)
class _Partial:
    seq: int
    manifest: bytes
    total: int
    ids: list[bytes]


class Keeping:
    def __init__(self, keeper: bool) -> None:
        self.keeper = keeper
        self.holds_files = False  # a keeper: announce KEEPER (the adapter turns it on, with a quota)
        self.blob_ids: BlobIds = lambda manifest: None  # members: the adapter's lookup (Room.set_blob_ids)
        self.keepers: set[str] = set()  # members: neighbours that said KEEPER on their current link
        self._kept: dict[Key, int] = {}  # keepers: message key -> its id count
        self._kept_ids = 0
        self._partial: dict[str, _Partial] = {}  # keepers: per link, the list being assembled
        self._pending: dict[Key, tuple[bytes, tuple[bytes, ...]]] = {}  # offers whose envelope is not here
        self._pending_ids = 0
        self._notices: list[KeepNotice] = []

    # -- links -----------------------------------------------------------------------------------------

    def on_ready(self, peer: str) -> list[tuple[str, bytes]]:
        """A link became ready: a keeper says so (frames to send)."""
        self.keepers.discard(peer)
        self._partial.pop(peer, None)
        return [(peer, encode_keeper())] if self.keeper and self.holds_files else []

    def on_down(self, peer: str) -> None:
        self.keepers.discard(peer)
        self._partial.pop(peer, None)

    def _frames(self, peer: str, seq: int, ref: File) -> list[tuple[str, bytes]]:
        ids = self.blob_ids(ref.manifest)
        if ids is None:
            return []
        ids = [i for i in dict.fromkeys(ids) if i != ref.manifest]
        if len(ids) > MAX_KEEP_IDS:
            return []
        return [(peer, f) for f in encode_keep_file(seq, ref.manifest, ids)]

    def on_keeper(self, peer: str, body: bytes, own_files: list[tuple[int, File]]) -> list[tuple[str, bytes]]:
        """KEEPER from ``peer``: offer it our live files, on the first KEEPER of the link only."""
        if len(body) != 2 or body[1] != KEEPER_VERSION:
            raise ProtocolError("bad-app-frame", "malformed KEEPER frame")
        if self.keeper or peer in self.keepers:
            return []
        self.keepers.add(peer)
        return [f for seq, ref in own_files[-MAX_OFFER:] for f in self._frames(peer, seq, ref)]

    def on_sent(self, seq: int, ref: File) -> list[tuple[str, bytes]]:
        """We sent (or forwarded) a file as message ``seq``: tell the linked keepers."""
        if self.keeper:
            return []
        return [f for k in sorted(self.keepers) for f in self._frames(k, seq, ref)]

    # -- a keeper --------------------------------------------------------------------------------------

    def on_keep_file(self, peer: str, body: bytes, chat_expiry: Callable[[Key], int | None]) -> None:
        """KEEP_FILE from ``peer`` naming its own message; ``chat_expiry(key)``: the expiry of the live
        CHAT envelope ``key`` we hold (None if we hold none). Parsed by everyone, kept by keepers."""
        fr = decode_keep_file(body)
        key = (peer, fr.seq)
        if not (self.keeper and self.holds_files):
            return
        part = self._partial.get(peer)
        if fr.offset == 0:
            part = _Partial(fr.seq, fr.manifest, fr.total, [])
        elif part is None or (part.seq, part.manifest, part.total, len(part.ids)) != (
            fr.seq,
            fr.manifest,
            fr.total,
            fr.offset,
        ):
            self._partial.pop(peer, None)  # not the continuation of the list under way: both dropped
            return
        part.ids.extend(fr.ids)
        if len(part.ids) < part.total:
            self._partial[peer] = part
            return
        self._partial.pop(peer, None)
        ids = tuple(part.ids)
        if key in self._kept or len(self._kept) >= MAX_KEPT or self._kept_ids + len(ids) > MAX_KEPT_IDS:
            return
        expires_at = chat_expiry(key)
        if expires_at is None:  # the envelope may still be on its way (it rides the log, this does not)
            self._drop_pending(key)
            self._pending[key] = (part.manifest, ids)
            self._pending_ids += len(ids)
            while len(self._pending) > MAX_PENDING or self._pending_ids > MAX_PENDING_IDS:
                self._drop_pending(next(iter(self._pending)))
            return
        self._keep(key, expires_at, part.manifest, ids)

    def _drop_pending(self, key: Key) -> tuple[bytes, tuple[bytes, ...]] | None:
        offer = self._pending.pop(key, None)
        if offer is not None:
            self._pending_ids -= len(offer[1])
        return offer

    def on_chat(self, key: Key, expires_at: int) -> None:
        """A keeper: a CHAT envelope entered the log; an offer that came before it is taken now."""
        offer = self._drop_pending(key)
        if (
            offer is not None
            and self.keeper
            and self.holds_files
            and key not in self._kept
            and len(self._kept) < MAX_KEPT
            and self._kept_ids + len(offer[1]) <= MAX_KEPT_IDS
        ):
            self._keep(key, expires_at, *offer)

    def _keep(self, key: Key, expires_at: int, manifest: bytes, ids: tuple[bytes, ...]) -> None:
        self._kept[key] = len(ids)
        self._kept_ids += len(ids)
        self._notices.append(KeptFile(key[0], key[1], expires_at, manifest, ids))

    def erased(self, key: Key, reason: str) -> None:
        self._drop_pending(key)
        count = self._kept.pop(key, None)
        if count is not None:
            self._kept_ids -= count
            self._notices.append(KeptFileGone(f"{key[0]}:{key[1]}", reason))

    def take(self) -> list[KeepNotice]:
        out, self._notices = self._notices, []
        return out


__all__ = [
    "KEEPER_TAG",
    "KEEP_FILE_TAG",
    "MAX_IDS_FRAME",
    "MAX_KEEP_IDS",
    "MAX_KEPT",
    "BlobIds",
    "KeepFileFrame",
    "KeepNotice",
    "Keeping",
    "KeptFile",
    "KeptFileGone",
    "decode_keep_file",
    "encode_keep_file",
    "encode_keeper",
]
