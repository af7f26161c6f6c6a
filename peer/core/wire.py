"""Data-channel frame codec (binary, big-endian). See PROTOCOL.md, "Sync", for the normative layout.

Rules:
- A frame is ``u8 type`` followed by a type-specific body; a whole frame is at most ``MAX_FRAME``
  (65,536) bytes. Encoders split batches so that every frame fits; decoders refuse anything larger.
- ``decode_frame`` returns one of the frame dataclasses or raises ``ProtocolError``; never anything else.
  It is strict: unknown types, truncation, trailing bytes, zero counts, unsorted or overlapping ranges,
  non-canonical ids and integers above 2**53-1 are all refused (fail closed).
- Peer and room ids travel as 16 raw bytes and decode to 32 lowercase hex characters.
- HANDSHAKE, PAIRWISE and APP bodies are opaque bytes handed to the room layer.
- DIGESTS, HASH_WANT and HASHES carry the equivocation check (see :mod:`peer.core.sync_check`): digests
  and hashes are exactly ``DIGEST_BYTES`` (32) bytes, levels are 0 (seqs) or 1 (blocks of
  ``log.DIGEST_BLOCK`` seqs), ``lo <= hi``, a HASHES page lists at most ``MAX_HASH_PAGE`` strictly
  ascending indices within ``[lo, hi]`` (possibly none), DIGESTS senders are strictly ascending.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

from peer.core import ints
from peer.core.errors import ProtocolError
from peer.core.log import Range, RangeMap, Tombstone

MAX_FRAME = 65_536
VERSION = 1
MAX_INT = ints.MAX_INT
MAX_PROOF = 1_024
ID_BYTES = 16
DIGEST_BYTES = 32
MAX_HASH_PAGE = 1_024
LEVEL_SEQ = 0
LEVEL_BLOCK = 1

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_RANGE = struct.Struct(">QQ")
_TOMB_HEAD = struct.Struct(">16sQQH")
_SENDER_HEAD = struct.Struct(">16sH")
_DIGEST_ITEM = struct.Struct(">16sQ32s")
_HASH_HEAD = struct.Struct(">16sBQQ")
_HASH_ITEM = struct.Struct(">Q32s")


class FrameType(IntEnum):
    HELLO = 0x01
    ENVELOPES = 0x02
    WANT = 0x03
    ACK = 0x04
    PING = 0x05
    PONG = 0x06
    TOMBSTONES = 0x07
    DIGESTS = 0x08
    HASH_WANT = 0x09
    HASHES = 0x0A
    HANDSHAKE = 0x10
    PAIRWISE = 0x11
    APP = 0x12


OPAQUE_TYPES = frozenset({FrameType.HANDSHAKE, FrameType.PAIRWISE, FrameType.APP})


@dataclass(frozen=True, slots=True)
class Hello:
    room_id: str
    have: RangeMap
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class Envelopes:
    items: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Want:
    ranges: RangeMap


@dataclass(frozen=True, slots=True)
class Ack:
    ranges: RangeMap


@dataclass(frozen=True, slots=True)
class Ping:
    nonce: int


@dataclass(frozen=True, slots=True)
class Pong:
    nonce: int


@dataclass(frozen=True, slots=True)
class Tombstones:
    items: tuple[Tombstone, ...]


@dataclass(frozen=True, slots=True)
class Digests:
    """Per sender: our highest seen seq and the digest of what we hold of it (see sync_check)."""

    items: tuple[tuple[str, int, bytes], ...]


@dataclass(frozen=True, slots=True)
class HashWant:
    sender: str
    level: int
    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class Hashes:
    """All our hashes of ``sender`` at ``level`` with index in ``[lo, hi]`` (a complete page)."""

    sender: str
    level: int
    lo: int
    hi: int
    items: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True)
class Opaque:
    type: FrameType
    body: bytes


Frame = Hello | Envelopes | Want | Ack | Ping | Pong | Tombstones | Digests | HashWant | Hashes | Opaque


# -- ids ------------------------------------------------------------------------------------------------


def id_to_bytes(ident: str) -> bytes:
    """32 lowercase hex chars -> 16 bytes (ValueError otherwise: ids we send are ours to get right)."""
    if len(ident) != 2 * ID_BYTES or ident != ident.lower():
        raise ValueError("id must be 32 lowercase hex characters")
    return bytes.fromhex(ident)


# -- encoding -------------------------------------------------------------------------------------------


def _check_int(v: int) -> None:
    if not 0 <= v <= MAX_INT:
        raise ValueError("integer out of wire range")


def _sender_block(sender: str, ranges: Sequence[Range]) -> bytes:
    parts = [_SENDER_HEAD.pack(id_to_bytes(sender), len(ranges))]
    prev = -2
    for a, b in ranges:
        _check_int(a)
        _check_int(b)
        if a > b or a < prev + 2:
            raise ValueError("ranges must be sorted, disjoint and non-adjacent")
        prev = b
        parts.append(_RANGE.pack(a, b))
    return b"".join(parts)


def _split_rangemap(ranges: Mapping[str, Sequence[Range]], budget: int) -> list[list[bytes]]:
    """Split a range map into groups of sender blocks, each group's total size within ``budget``."""
    max_ranges = (budget - _SENDER_HEAD.size) // _RANGE.size
    groups: list[list[bytes]] = [[]]
    size = 0
    for sender in sorted(ranges):
        rs = list(ranges[sender])
        for i in range(0, len(rs), max_ranges):
            block = _sender_block(sender, rs[i : i + max_ranges])
            if size + len(block) > budget and groups[-1]:
                groups.append([])
                size = 0
            groups[-1].append(block)
            size += len(block)
    return groups if groups[0] else []


def _rangemap_frames(ftype: FrameType, ranges: Mapping[str, Sequence[Range]]) -> list[bytes]:
    budget = MAX_FRAME - 1 - _U16.size
    nonempty = {s: r for s, r in ranges.items() if r}
    return [
        bytes([ftype]) + _U16.pack(len(group)) + b"".join(group)
        for group in _split_rangemap(nonempty, budget)
    ]


def encode_hello(room_id: str, have: Mapping[str, Sequence[Range]]) -> bytes:
    """One HELLO frame. Senders that do not fit are omitted: a HELLO may under-claim, never over-claim."""
    head = bytes([FrameType.HELLO, VERSION]) + id_to_bytes(room_id)
    budget = MAX_FRAME - len(head) - _U16.size
    blocks: list[bytes] = []
    size = 0
    for sender in sorted(have):
        rs = list(have[sender])
        if not rs:
            continue
        max_ranges = (budget - size - _SENDER_HEAD.size) // _RANGE.size
        if max_ranges <= 0:
            break
        block = _sender_block(sender, rs[:max_ranges])
        blocks.append(block)
        size += len(block)
    return head + _U16.pack(len(blocks)) + b"".join(blocks)


def encode_want(ranges: Mapping[str, Sequence[Range]]) -> list[bytes]:
    """WANT frames (empty list if there is nothing to want)."""
    return _rangemap_frames(FrameType.WANT, ranges)


def encode_ack(ranges: Mapping[str, Sequence[Range]]) -> list[bytes]:
    """ACK frames (empty list if there is nothing to ack)."""
    return _rangemap_frames(FrameType.ACK, ranges)


def encode_envelopes(items: Sequence[bytes]) -> list[bytes]:
    """Coalesce envelopes into as few ENVELOPES frames as fit in ``MAX_FRAME`` each, keeping order."""
    limit = MAX_FRAME - 1 - _U16.size - _U32.size
    frames: list[bytes] = []
    batch: list[bytes] = []
    size = 1 + _U16.size
    for item in items:
        if not 0 < len(item) <= limit:
            raise ValueError("envelope empty or too large for one frame")
        need = _U32.size + len(item)
        if size + need > MAX_FRAME or len(batch) == 0xFFFF:
            frames.append(_envelopes_frame(batch))
            batch, size = [], 1 + _U16.size
        batch.append(item)
        size += need
    if batch:
        frames.append(_envelopes_frame(batch))
    return frames


def _envelopes_frame(batch: list[bytes]) -> bytes:
    parts = [bytes([FrameType.ENVELOPES]), _U16.pack(len(batch))]
    for item in batch:
        parts.append(_U32.pack(len(item)))
        parts.append(item)
    return b"".join(parts)


def encode_tombstones(items: Iterable[Tombstone]) -> list[bytes]:
    """TOMBSTONES frames, split to fit."""
    frames: list[bytes] = []
    batch: list[bytes] = []
    size = 1 + _U16.size
    for t in items:
        _check_int(t.seq)
        _check_int(t.until)
        if len(t.proof) > MAX_PROOF:
            raise ValueError("tombstone proof too large")
        rec = _TOMB_HEAD.pack(id_to_bytes(t.sender), t.seq, t.until, len(t.proof)) + t.proof
        if size + len(rec) > MAX_FRAME or len(batch) == 0xFFFF:
            frames.append(bytes([FrameType.TOMBSTONES]) + _U16.pack(len(batch)) + b"".join(batch))
            batch, size = [], 1 + _U16.size
        batch.append(rec)
        size += len(rec)
    if batch:
        frames.append(bytes([FrameType.TOMBSTONES]) + _U16.pack(len(batch)) + b"".join(batch))
    return frames


def encode_digests(items: Iterable[tuple[str, int, bytes]]) -> list[bytes]:
    """DIGESTS frames (sorted by sender, split to fit; empty list if there is nothing)."""
    per_frame = (MAX_FRAME - 1 - _U16.size) // _DIGEST_ITEM.size
    recs: list[bytes] = []
    prev = ""
    for sender, hi, digest in sorted(items):
        _check_int(hi)
        if len(digest) != DIGEST_BYTES or sender == prev:
            raise ValueError("one 32-byte digest per sender")
        prev = sender
        recs.append(_DIGEST_ITEM.pack(id_to_bytes(sender), hi, digest))
    return [
        bytes([FrameType.DIGESTS])
        + _U16.pack(len(recs[i : i + per_frame]))
        + b"".join(recs[i : i + per_frame])
        for i in range(0, len(recs), per_frame)
    ]


def _check_page(level: int, lo: int, hi: int) -> None:
    _check_int(lo)
    _check_int(hi)
    if level not in (LEVEL_SEQ, LEVEL_BLOCK) or lo > hi:
        raise ValueError("bad level or range")


def encode_hash_want(sender: str, level: int, lo: int, hi: int) -> bytes:
    _check_page(level, lo, hi)
    return bytes([FrameType.HASH_WANT]) + _HASH_HEAD.pack(id_to_bytes(sender), level, lo, hi)


def encode_hashes(sender: str, level: int, lo: int, hi: int, items: Sequence[tuple[int, bytes]]) -> bytes:
    _check_page(level, lo, hi)
    if len(items) > MAX_HASH_PAGE:
        raise ValueError("hash page too large")
    parts = [
        bytes([FrameType.HASHES]),
        _HASH_HEAD.pack(id_to_bytes(sender), level, lo, hi),
        _U16.pack(len(items)),
    ]
    prev = -1
    for index, h in items:
        if not lo <= index <= hi or index <= prev or len(h) != DIGEST_BYTES:
            raise ValueError("hash items must ascend within [lo, hi] and be 32 bytes")
        prev = index
        parts.append(_HASH_ITEM.pack(index, h))
    return b"".join(parts)


def encode_ping(nonce: int) -> bytes:
    _check_int(nonce)
    return bytes([FrameType.PING]) + _U64.pack(nonce)


def encode_pong(nonce: int) -> bytes:
    _check_int(nonce)
    return bytes([FrameType.PONG]) + _U64.pack(nonce)


def encode_opaque(ftype: FrameType, body: bytes) -> bytes:
    """A HANDSHAKE, PAIRWISE or APP frame (ValueError if the type is not opaque or it does not fit)."""
    if ftype not in OPAQUE_TYPES:
        raise ValueError("not an opaque frame type")
    if 1 + len(body) > MAX_FRAME:
        raise ValueError("opaque body too large")
    return bytes([ftype]) + body


# -- decoding -------------------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self._data = data
        self._pos = pos

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise ProtocolError("truncated", "frame ends early")
        out = self._data[self._pos : end]
        self._pos = end
        return out

    def u16(self) -> int:
        v: int = _U16.unpack(self.take(2))[0]
        return v

    def u32(self) -> int:
        v: int = _U32.unpack(self.take(4))[0]
        return v

    def u64(self) -> int:
        v: int = _U64.unpack(self.take(8))[0]
        if v > MAX_INT:
            raise ProtocolError("bad-integer", "integer above 2**53-1")
        return v

    def ident(self) -> str:
        return self.take(ID_BYTES).hex()

    def end(self) -> None:
        if self._pos != len(self._data):
            raise ProtocolError("trailing-bytes", "bytes after the end of the frame")


def _read_rangemap(r: _Reader, allow_empty: bool) -> RangeMap:
    n = r.u16()
    if n == 0 and not allow_empty:
        raise ProtocolError("empty", "no ranges")
    out: RangeMap = {}
    prev_sender = ""
    for _ in range(n):
        sender = r.ident()
        if sender <= prev_sender:
            raise ProtocolError("bad-ranges", "senders not strictly ascending")
        prev_sender = sender
        count = r.u16()
        if count == 0:
            raise ProtocolError("bad-ranges", "sender without ranges")
        ranges: list[Range] = []
        prev = -2
        for _ in range(count):
            a, b = r.u64(), r.u64()
            if a > b or a < prev + 2:
                raise ProtocolError("bad-ranges", "ranges not sorted, disjoint and non-adjacent")
            prev = b
            ranges.append((a, b))
        out[sender] = ranges
    return out


def decode_frame(data: bytes) -> Frame:
    """Parse one frame. Raises ``ProtocolError`` on anything malformed or oversized."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError("bad-frame", "frame is not bytes")
    data = bytes(data)
    if len(data) > MAX_FRAME:
        raise ProtocolError("too-large", "frame above 64 KiB")
    if not data:
        raise ProtocolError("bad-frame", "empty frame")
    try:
        ftype = FrameType(data[0])
    except ValueError:
        raise ProtocolError("unknown-type", "unknown frame type") from None
    if ftype in OPAQUE_TYPES:
        return Opaque(ftype, data[1:])
    r = _Reader(data, 1)
    frame: Frame
    if ftype is FrameType.HELLO:
        version = r.take(1)[0]
        if version != VERSION:
            raise ProtocolError("bad-version", "unsupported sync version")
        room = r.ident()
        frame = Hello(room, _read_rangemap(r, allow_empty=True), version)
    elif ftype is FrameType.ENVELOPES:
        n = r.u16()
        if n == 0:
            raise ProtocolError("empty", "empty envelope batch")
        items = []
        for _ in range(n):
            length = r.u32()
            if length == 0:
                raise ProtocolError("bad-envelope", "empty envelope")
            items.append(r.take(length))
        frame = Envelopes(tuple(items))
    elif ftype is FrameType.WANT:
        frame = Want(_read_rangemap(r, allow_empty=False))
    elif ftype is FrameType.ACK:
        frame = Ack(_read_rangemap(r, allow_empty=False))
    elif ftype is FrameType.PING:
        frame = Ping(r.u64())
    elif ftype is FrameType.PONG:
        frame = Pong(r.u64())
    elif ftype is FrameType.DIGESTS:
        n = r.u16()
        if n == 0:
            raise ProtocolError("empty", "no digests")
        digests = []
        prev_sender = ""
        for _ in range(n):
            sender = r.ident()
            if sender <= prev_sender:
                raise ProtocolError("bad-digests", "senders not strictly ascending")
            prev_sender = sender
            digests.append((sender, r.u64(), r.take(DIGEST_BYTES)))
        frame = Digests(tuple(digests))
    elif ftype is FrameType.HASH_WANT or ftype is FrameType.HASHES:
        sender = r.ident()
        level = r.take(1)[0]
        lo, hi = r.u64(), r.u64()
        if level not in (LEVEL_SEQ, LEVEL_BLOCK):
            raise ProtocolError("bad-level", "unknown hash level")
        if lo > hi:
            raise ProtocolError("bad-range", "lo above hi")
        if ftype is FrameType.HASH_WANT:
            frame = HashWant(sender, level, lo, hi)
        else:
            n = r.u16()
            if n > MAX_HASH_PAGE:
                raise ProtocolError("too-large", "hash page above 1,024 items")
            hashes = []
            prev = -1
            for _ in range(n):
                index = r.u64()
                if not lo <= index <= hi or index <= prev:
                    raise ProtocolError("bad-hashes", "indices not ascending within [lo, hi]")
                prev = index
                hashes.append((index, r.take(DIGEST_BYTES)))
            frame = Hashes(sender, level, lo, hi, tuple(hashes))
    else:  # TOMBSTONES
        n = r.u16()
        if n == 0:
            raise ProtocolError("empty", "empty tombstone batch")
        tombs = []
        for _ in range(n):
            sender = r.ident()
            seq, until = r.u64(), r.u64()
            plen = r.u16()
            if plen > MAX_PROOF:
                raise ProtocolError("too-large", "tombstone proof too large")
            tombs.append(Tombstone(sender, seq, until, r.take(plen)))
        frame = Tombstones(tuple(tombs))
    r.end()
    return frame
