"""Sender chains (symmetric ratchets) for group messages.

Rules:
- A chain state is ``(chain_id 8B, index u32, chain_key 32B)``. One step:
  ``message_key_i = HMAC-SHA256(ck_i, 0x01)``, ``ck_{i+1} = HMAC-SHA256(ck_i, 0x02)``; ``ck_i`` is then
  dropped, so a stolen state reveals no earlier message key (forward secrecy).
- States are immutable: ``advance()`` / ``message_key()`` return ``(next_state, key)``. Persist the next
  state *before* using the key, so a crash can never reuse a key.
- A receiver starts from a distributed ``SenderKeyMessage`` (index, chain key) and cannot derive keys
  before that index. It keeps at most ``MAX_SKIP`` skipped keys, deletes each key once used, and rejects
  an index already used (replay) or more than ``MAX_SKIP`` ahead.
- ``ChainPolicy`` says when a sender must start a new chain: every ``max_messages`` messages, every
  ``max_age_ms``, and whenever the membership epoch changed (a member was removed).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from peer.core.crypto import Rng, default_rng, ed25519_verify, hmac_sha256, u32, u64
from peer.core.errors import ProtocolError
from peer.core.identity import Identity
from peer.core.ids import id_from_bytes, id_to_bytes, peer_id_from_public_key

MAX_SKIP = 1000
MAX_INDEX = 2**32 - 1
LABEL_SENDER_KEY = b"ephemesh-v1 sender-key\x00"
SENDER_KEY_MESSAGE_LEN = 145


def ratchet_step(chain_key: bytes) -> tuple[bytes, bytes]:
    """``(next chain key, message key)`` for one step."""
    return hmac_sha256(chain_key, b"\x02"), hmac_sha256(chain_key, b"\x01")


@dataclass(frozen=True)
class MessageKey:
    index: int
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class SenderChain:
    """Our own sending chain in a room."""

    chain_id: bytes
    index: int
    chain_key: bytes = field(repr=False)
    epoch: int = 0
    created_at: int = 0

    @classmethod
    def new(
        cls, chain_id: bytes | None = None, *, epoch: int = 0, created_at: int = 0, rng: Rng = default_rng
    ) -> SenderChain:
        cid = rng(8) if chain_id is None else chain_id
        if len(cid) != 8:
            raise ValueError("chain id must be 8 bytes")
        return cls(cid, 0, rng(32), epoch, created_at)

    def advance(self) -> tuple[SenderChain, MessageKey]:
        if self.index >= MAX_INDEX:
            raise ProtocolError("exhausted", "chain exhausted; rotate")
        nxt, mk = ratchet_step(self.chain_key)
        return SenderChain(self.chain_id, self.index + 1, nxt, self.epoch, self.created_at), MessageKey(
            self.index, mk
        )

    def to_bytes(self) -> bytes:
        """``0x01 | chain_id (8) | index u32 | chain_key (32) | epoch u32 | created_at u64`` (57 bytes)."""
        return (
            b"\x01"
            + self.chain_id
            + u32(self.index)
            + self.chain_key
            + u32(self.epoch)
            + u64(self.created_at)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SenderChain:
        if len(data) != 57 or data[0] != 1:
            raise ProtocolError("bad-state", "malformed sender chain")
        (index,) = struct.unpack(">I", data[9:13])
        epoch, created_at = struct.unpack(">IQ", data[45:57])
        return cls(data[1:9], index, data[13:45], epoch, created_at)


@dataclass(frozen=True)
class ReceiverChain:
    """What we hold of another member's chain: its public key, next index/key and skipped keys."""

    sender_key: bytes  # the sender's Ed25519 public key (envelopes are verified with it)
    chain_id: bytes
    index: int  # index of chain_key, i.e. the next key not yet derived
    chain_key: bytes = field(repr=False)
    skipped: tuple[tuple[int, bytes], ...] = field(default=(), repr=False)

    @property
    def sender(self) -> str:
        return peer_id_from_public_key(self.sender_key)

    @classmethod
    def from_sender_key_message(cls, msg: SenderKeyMessage, sender_key: bytes) -> ReceiverChain:
        """Start from a decoded message; verifies it under ``sender_key`` first."""
        msg.verify(sender_key)
        return cls(sender_key, msg.chain_id, msg.index, msg.chain_key)

    def message_key(self, index: int) -> tuple[ReceiverChain, bytes]:
        """The key for ``index`` and the state without it; ``ProtocolError`` on replay or too far ahead."""
        skipped = dict(self.skipped)
        if index < self.index:
            key = skipped.pop(index, None)
            if key is None:
                raise ProtocolError("replay", "message key already used or expired")
            return ReceiverChain(
                self.sender_key, self.chain_id, self.index, self.chain_key, tuple(skipped.items())
            ), key
        if index - self.index > MAX_SKIP or index > MAX_INDEX:
            raise ProtocolError("too-far-ahead", "chain index too far ahead")
        ck, i = self.chain_key, self.index
        while i < index:
            ck, mk = ratchet_step(ck)
            skipped[i] = mk
            i += 1
        ck, key = ratchet_step(ck)
        kept = sorted(skipped.items())[-MAX_SKIP:]
        return ReceiverChain(self.sender_key, self.chain_id, index + 1, ck, tuple(kept)), key

    def to_bytes(self) -> bytes:
        """``0x01 | sender_key (32) | chain_id (8) | index u32 | chain_key (32) | n u16 | (i u32 | key 32)*n``."""
        out = [
            b"\x01",
            self.sender_key,
            self.chain_id,
            u32(self.index),
            self.chain_key,
            struct.pack(">H", len(self.skipped)),
        ]
        for i, k in self.skipped:
            out += [u32(i), k]
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> ReceiverChain:
        if len(data) < 79 or data[0] != 1:
            raise ProtocolError("bad-state", "malformed receiver chain")
        (index,) = struct.unpack(">I", data[41:45])
        (n,) = struct.unpack(">H", data[77:79])
        if len(data) != 79 + 36 * n or n > MAX_SKIP:
            raise ProtocolError("bad-state", "malformed receiver chain")
        skipped = tuple(
            (struct.unpack(">I", data[o : o + 4])[0], data[o + 4 : o + 36]) for o in range(79, len(data), 36)
        )
        return cls(data[1:33], data[33:41], index, data[45:77], skipped)


@dataclass(frozen=True)
class ChainPolicy:
    """When to start a new sender chain."""

    max_messages: int = 1000
    max_age_ms: int = 7 * 24 * 3600 * 1000

    def must_rotate(self, chain: SenderChain, *, now: int, epoch: int) -> bool:
        """True if the chain is too used, too old, or predates the current membership epoch."""
        return (
            chain.index >= self.max_messages
            or now - chain.created_at >= self.max_age_ms
            or chain.epoch != epoch
        )


@dataclass(frozen=True)
class SenderKeyMessage:
    """Distribution of a sender chain state, signed by its owner.

    Wire: ``0x01 | room_id (16) | sender (16) | epoch u32 | chain_id (8) | index u32 | chain_key (32) |
    Ed25519 sig (64)`` = 145 bytes; the signature covers ``LABEL_SENDER_KEY || bytes[0:81]``. It carries a
    chain key, so it only ever travels sealed (to a prekey or in a pairwise session).
    """

    room_id: str
    sender: str
    epoch: int
    chain_id: bytes
    index: int
    chain_key: bytes = field(repr=False)
    signature: bytes = b""

    def _body(self) -> bytes:
        return (
            b"\x01"
            + id_to_bytes(self.room_id)
            + id_to_bytes(self.sender)
            + u32(self.epoch)
            + self.chain_id
            + u32(self.index)
            + self.chain_key
        )

    @classmethod
    def create(cls, identity: Identity, room_id: str, chain: SenderChain) -> SenderKeyMessage:
        unsigned = cls(room_id, identity.peer_id, chain.epoch, chain.chain_id, chain.index, chain.chain_key)
        return cls(
            room_id,
            identity.peer_id,
            chain.epoch,
            chain.chain_id,
            chain.index,
            chain.chain_key,
            identity.sign(LABEL_SENDER_KEY + unsigned._body()),
        )

    def encode(self) -> bytes:
        return self._body() + self.signature

    @classmethod
    def decode(cls, data: object) -> SenderKeyMessage:
        """Parse (not verify); ``ProtocolError`` on anything malformed."""
        if not isinstance(data, bytes) or len(data) != SENDER_KEY_MESSAGE_LEN or data[0] != 1:
            raise ProtocolError("bad-sender-key", "malformed sender key message")
        (epoch,) = struct.unpack(">I", data[33:37])
        (index,) = struct.unpack(">I", data[45:49])
        return cls(
            id_from_bytes(data[1:17]),
            id_from_bytes(data[17:33]),
            epoch,
            data[37:45],
            index,
            data[49:81],
            data[81:],
        )

    def verify(self, sender_key: bytes) -> None:
        """Raise unless ``sender_key`` belongs to ``sender`` and signed this message."""
        if peer_id_from_public_key(sender_key) != self.sender:
            raise ProtocolError("wrong-sender", "key does not match sender id")
        ed25519_verify(sender_key, LABEL_SENDER_KEY + self._body(), self.signature)
