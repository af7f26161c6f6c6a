"""The group-message envelope: binary, big-endian, signed by its sender.

Layout::

    header (90 bytes, also the AEAD associated data)
      0  version u8 = 1          1  kind u8               2  room_id (16)      18 sender (16, raw peer id)
      34 seq u64                 42 lamport u64           50 sent_at u64 ms    58 expires_at u64 ms
      66 chain_id (8)            74 chain_index u32       78 nonce (12)
    90 ct_len u32 | ciphertext (ct_len) | signature (64)

``signature = Ed25519(sender, LABEL_SIG || header || ct_len u32 || ciphertext)``.

Kinds:
- 1 ``CHAT``: chained. ``ciphertext = AES-256-GCM(HKDF(message_key, salt="", info=LABEL_KEY, 32), nonce,
  plaintext, header)``; plaintext is app content (``peer/core/content.py``).
- 2 ``MEMBERSHIP``: unchained; payload = an encoded membership op (self-authenticating).
- 3 ``SENDER_KEY``: unchained; payload = a frame sealed with ``seal_to_prekey`` carrying a
  ``SenderKeyMessage`` for one recipient.
- 4 ``TOMBSTONE``: unchained; payload = UTF-8 JSON ``{"t":"delete","seqs":[int,...]}``: the sender erases its
  own messages early. Readable by every member (even one lacking the chain) so sync never resurrects them.

Unchained kinds have ``chain_id`` = 8 zero bytes, ``chain_index`` = 0, ``nonce`` = 12 zero bytes and carry
their payload in the ciphertext field as is (at most ``MAX_ENVELOPE`` bytes overall).

Rules: ``parse_envelope`` enforces size limits and layout and raises only ``ProtocolError``;
``verify_envelope`` checks the key matches ``sender`` and the signature; ``open_envelope`` verifies under
the receiver chain's sender key, then derives the key (the chain advances only if decryption succeeds).
``expires_at >= sent_at`` always, and the four u64 fields lie in ``0..2**53-1`` (see ``ints``).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from peer.core.chains import MessageKey, ReceiverChain, SenderChain
from peer.core.crypto import Rng, aead_open, aead_seal, default_rng, ed25519_verify, hkdf, u32
from peer.core.errors import ProtocolError
from peer.core.identity import Identity
from peer.core.ids import id_from_bytes, id_to_bytes, peer_id_from_public_key
from peer.core.ints import MAX_INT, check_int

VERSION = 1
HEADER_LEN = 90
#: one envelope must fit in one sync ENVELOPES frame: MAX_FRAME (65,536) - type u8 - count u16 - length u32
MAX_ENVELOPE = 65_529
LABEL_SIG = b"ephemesh-v1 envelope\x00"
LABEL_KEY = b"ephemesh-v1 envelope-key"
_HEADER = struct.Struct(">BB16s16sQQQQ8sI12s")


class Kind(IntEnum):
    CHAT = 1
    MEMBERSHIP = 2
    SENDER_KEY = 3
    TOMBSTONE = 4


CHAINED_KINDS = frozenset({Kind.CHAT})


@dataclass(frozen=True)
class Envelope:
    """A parsed (not yet verified) envelope."""

    kind: Kind
    room_id: str
    sender: str
    seq: int
    lamport: int
    sent_at: int
    expires_at: int
    chain_id: bytes
    chain_index: int
    nonce: bytes
    ciphertext: bytes = field(repr=False)
    signature: bytes = field(repr=False)

    @property
    def header(self) -> bytes:
        return _HEADER.pack(
            VERSION,
            self.kind,
            id_to_bytes(self.room_id),
            id_to_bytes(self.sender),
            self.seq,
            self.lamport,
            self.sent_at,
            self.expires_at,
            self.chain_id,
            self.chain_index,
            self.nonce,
        )

    def signed_bytes(self) -> bytes:
        return LABEL_SIG + self.header + u32(len(self.ciphertext)) + self.ciphertext

    def to_bytes(self) -> bytes:
        return self.header + u32(len(self.ciphertext)) + self.ciphertext + self.signature

    @property
    def payload(self) -> bytes:
        """The clear payload of an unchained kind (verify first)."""
        if self.kind in CHAINED_KINDS:
            raise ProtocolError("bad-kind", "chained envelopes have no clear payload")
        return self.ciphertext


def _check_times(seq: int, lamport: int, sent_at: int, expires_at: int) -> None:
    if not all(0 <= v <= MAX_INT for v in (seq, lamport, sent_at, expires_at)) or expires_at < sent_at:
        raise ProtocolError("bad-envelope", "bad counters or times")


def _sign(identity: Identity, unsigned: Envelope) -> bytes:
    sig = identity.sign(unsigned.signed_bytes())
    data = unsigned.to_bytes() + sig
    if len(data) > MAX_ENVELOPE:
        raise ProtocolError("too-large", "envelope exceeds the size limit")
    return data


def message_key_to_aead_key(message_key: bytes) -> bytes:
    return hkdf(message_key, salt=b"", info=LABEL_KEY)


def seal_envelope(
    identity: Identity,
    room_id: str,
    chain: SenderChain,
    kind: int,
    seq: int,
    lamport: int,
    sent_at: int,
    expires_at: int,
    plaintext: bytes,
    rng: Rng = default_rng,
) -> tuple[bytes, SenderChain]:
    """Seal a chained envelope; returns (wire bytes, next chain state). Persist the state before sending."""
    data, next_chain, _ = seal_chained(
        identity, room_id, chain, kind, seq, lamport, sent_at, expires_at, plaintext, rng
    )
    return data, next_chain


def seal_chained(
    identity: Identity,
    room_id: str,
    chain: SenderChain,
    kind: int,
    seq: int,
    lamport: int,
    sent_at: int,
    expires_at: int,
    plaintext: bytes,
    rng: Rng = default_rng,
) -> tuple[bytes, SenderChain, MessageKey]:
    """:func:`seal_envelope` that also returns the message key it used (the chain advances once)."""
    if kind not in CHAINED_KINDS:
        raise ValueError("use seal_unchained_envelope for this kind")
    _check_times(seq, lamport, sent_at, expires_at)
    next_chain, mk = chain.advance()
    unsigned = Envelope(
        Kind(kind),
        room_id,
        identity.peer_id,
        seq,
        lamport,
        sent_at,
        expires_at,
        chain.chain_id,
        mk.index,
        rng(12),
        b"",
        b"",
    )
    ct = aead_seal(message_key_to_aead_key(mk.key), unsigned.nonce, plaintext, unsigned.header)
    return _sign(identity, _replace_ct(unsigned, ct)), next_chain, mk


def seal_unchained_envelope(
    identity: Identity,
    room_id: str,
    kind: int,
    seq: int,
    lamport: int,
    sent_at: int,
    expires_at: int,
    payload: bytes,
) -> bytes:
    """Sign an envelope of kind 2, 3 or 4 whose payload is self-protecting or public to members."""
    if kind in CHAINED_KINDS or kind not in Kind.__members__.values():
        raise ValueError("kind is chained or unknown")
    _check_times(seq, lamport, sent_at, expires_at)
    unsigned = Envelope(
        Kind(kind),
        room_id,
        identity.peer_id,
        seq,
        lamport,
        sent_at,
        expires_at,
        bytes(8),
        0,
        bytes(12),
        payload,
        b"",
    )
    return _sign(identity, unsigned)


def _replace_ct(env: Envelope, ct: bytes) -> Envelope:
    return Envelope(
        env.kind,
        env.room_id,
        env.sender,
        env.seq,
        env.lamport,
        env.sent_at,
        env.expires_at,
        env.chain_id,
        env.chain_index,
        env.nonce,
        ct,
        b"",
    )


def parse_envelope(data: object) -> Envelope:
    """Parse wire bytes; ``ProtocolError`` on anything malformed (never anything else)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError("bad-envelope", "expected bytes")
    data = bytes(data)
    if len(data) > MAX_ENVELOPE:
        raise ProtocolError("too-large", "envelope exceeds the size limit")
    if len(data) < HEADER_LEN + 4 + 64:
        raise ProtocolError("bad-envelope", "envelope too short")
    version, kind, room, sender, seq, lamport, sent_at, expires_at, chain_id, index, nonce = _HEADER.unpack(
        data[:HEADER_LEN]
    )
    if version != VERSION:
        raise ProtocolError("bad-version", "unsupported envelope version")
    if kind not in Kind.__members__.values():
        raise ProtocolError("bad-kind", "unknown envelope kind")
    (ct_len,) = struct.unpack(">I", data[HEADER_LEN : HEADER_LEN + 4])
    if HEADER_LEN + 4 + ct_len + 64 != len(data):
        raise ProtocolError("bad-envelope", "length mismatch")
    _check_times(seq, lamport, sent_at, expires_at)
    if kind in CHAINED_KINDS:
        if ct_len < 16:
            raise ProtocolError("bad-envelope", "ciphertext too short")
    elif chain_id != bytes(8) or index != 0 or nonce != bytes(12):
        raise ProtocolError("bad-envelope", "unchained envelope with chain fields")
    ct = data[HEADER_LEN + 4 : HEADER_LEN + 4 + ct_len]
    return Envelope(
        Kind(kind),
        id_from_bytes(room),
        id_from_bytes(sender),
        seq,
        lamport,
        sent_at,
        expires_at,
        chain_id,
        index,
        nonce,
        ct,
        data[-64:],
    )


def envelope_key(data: bytes) -> tuple[str, int]:
    """``(sender, seq)`` read from the header without verifying anything (to skip duplicates cheaply)."""
    if not isinstance(data, bytes) or len(data) < HEADER_LEN or data[0] != VERSION:
        raise ProtocolError("bad-envelope", "not an envelope")
    return id_from_bytes(data[18:34]), check_int(int.from_bytes(data[34:42], "big"), "bad-envelope", "seq")


def verify_envelope(env: Envelope, sender_public_key: bytes) -> None:
    """Raise unless ``sender_public_key`` is the sender's key and it signed the envelope."""
    if peer_id_from_public_key(sender_public_key) != env.sender:
        raise ProtocolError("wrong-sender", "key does not match the envelope sender")
    ed25519_verify(sender_public_key, env.signed_bytes(), env.signature)


def open_envelope(env: Envelope, receiver_chain: ReceiverChain) -> tuple[bytes, ReceiverChain]:
    """Verify and decrypt a chained envelope; returns (plaintext, next receiver state).

    On any failure the caller keeps its old state (the key is not consumed).
    """
    if env.kind not in CHAINED_KINDS:
        raise ProtocolError("bad-kind", "envelope is not chained")
    if receiver_chain.sender != env.sender or receiver_chain.chain_id != env.chain_id:
        raise ProtocolError("unknown-chain", "no receiver chain for this sender/chain id")
    verify_envelope(env, receiver_chain.sender_key)
    next_chain, mk = receiver_chain.message_key(env.chain_index)
    return aead_open(message_key_to_aead_key(mk), env.nonce, env.ciphertext, env.header), next_chain


# --- unsend payload (kind 4) ------------------------------------------------------------------------


def encode_tombstone(seqs: list[int]) -> bytes:
    return json.dumps({"t": "delete", "seqs": sorted(set(seqs))}).encode("utf-8")


def decode_tombstone(payload: bytes) -> list[int]:
    try:
        obj: Any = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError("bad-tombstone", "not UTF-8 JSON") from exc
    seqs = obj.get("seqs") if isinstance(obj, dict) and obj.get("t") == "delete" else None
    if not isinstance(seqs, list) or len(seqs) > 4096:
        raise ProtocolError("bad-tombstone", "malformed tombstone")
    if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_INT for s in seqs):
        raise ProtocolError("bad-tombstone", "malformed tombstone")
    return list(seqs)
