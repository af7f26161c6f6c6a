"""Ephemeral signals between linked members: typing indicators and "seen" receipts.

They travel in APP frames over one authenticated link (the pairwise handshake proved who is at the
other end and DTLS protects the channel), are never stored or relayed, and carry no message content.

Wire (APP frame body, big-endian; the first byte is the APP tag):

    TYPING  0x02 | typing u8 (0 or 1)
    SEEN    0x03 | n u16 (1..1024) | n x seq u64   — "I have shown these messages of yours"
    LASTSEEN 0x06 | share u8 (0 or 1)              — "(do not) show when you last saw me"

Rules: a typing indicator is valid for ``TYPING_TTL_MS`` after it arrives unless renewed; a sender
renews it at most every ``TYPING_RENEW_MS`` while typing. SEEN goes only to the sender of the messages.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from peer.core.errors import ProtocolError
from peer.core.ints import in_range

TYPING_TAG = 0x02
SEEN_TAG = 0x03
TYPING_TTL_MS = 6_000
TYPING_RENEW_MS = 3_000
MAX_SEEN = 1024
LAST_SEEN_TAG = 0x06


@dataclass(frozen=True, slots=True)
class LastSeenSignal:
    """A member's last-seen preference for this room: ``share=False`` asks members not to show it."""

    share: bool


def encode_last_seen(share: bool) -> bytes:
    return bytes([LAST_SEEN_TAG, 1 if share else 0])


@dataclass(frozen=True, slots=True)
class TypingSignal:
    typing: bool


@dataclass(frozen=True, slots=True)
class SeenSignal:
    seqs: tuple[int, ...]


def encode_typing(typing: bool) -> bytes:
    return bytes([TYPING_TAG, 1 if typing else 0])


def encode_seen(seqs: list[int]) -> bytes:
    ordered = sorted(set(seqs))[:MAX_SEEN]
    if not ordered:
        raise ValueError("no seqs")
    return bytes([SEEN_TAG]) + struct.pack(f">H{len(ordered)}Q", len(ordered), *ordered)


def decode_presence(body: bytes) -> TypingSignal | SeenSignal | LastSeenSignal:
    """Parse a TYPING, SEEN or LASTSEEN APP body; ``ProtocolError`` on anything else."""
    if len(body) == 2 and body[0] == TYPING_TAG and body[1] in (0, 1):
        return TypingSignal(body[1] == 1)
    if len(body) == 2 and body[0] == LAST_SEEN_TAG and body[1] in (0, 1):
        return LastSeenSignal(body[1] == 1)
    if len(body) >= 3 and body[0] == SEEN_TAG:
        (n,) = struct.unpack(">H", body[1:3])
        if 1 <= n <= MAX_SEEN and len(body) == 3 + 8 * n:
            seqs = struct.unpack(f">{n}Q", body[3:])
            if all(in_range(q) for q in seqs):
                return SeenSignal(seqs)
    raise ProtocolError("bad-app-frame", "malformed typing/seen frame")
