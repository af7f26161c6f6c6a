"""Erasure receipts: a member's signed statement that it erased some of a sender's messages.

They travel in APP frames over a direct link to the sender, which counts "erased on N of M members".
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from peer.core.crypto import ed25519_verify
from peer.core.errors import ProtocolError
from peer.core.identity import Identity
from peer.core.ids import id_from_bytes, id_to_bytes, peer_id_from_public_key
from peer.core.ints import in_range

RECEIPT_TAG = 0x01  # first byte of an APP frame body that carries an erasure receipt
RECEIPT_VERSION = 1
MAX_RECEIPT_SEQS = 1024
LABEL_RECEIPT = b"ephemesh-v1 erasure-receipt\x00"
_RECEIPT_HEAD = struct.Struct(">BB16s16s16sH")


@dataclass(frozen=True, slots=True)
class ErasureReceipt:
    """``member`` states it erased messages ``seqs`` of ``sender`` in ``room_id``.

    Wire (an APP frame body): ``tag u8 = 1 | version u8 = 1 | room_id (16) | member (16) | sender (16) |
    n u16 (1..1024) | n x seq u64 (strictly ascending) | Ed25519(member, LABEL_RECEIPT || bytes before sig)``.
    """

    room_id: str
    member: str
    sender: str
    seqs: tuple[int, ...]
    signature: bytes = field(default=b"", repr=False)

    def _body(self) -> bytes:
        head = _RECEIPT_HEAD.pack(
            RECEIPT_TAG,
            RECEIPT_VERSION,
            id_to_bytes(self.room_id),
            id_to_bytes(self.member),
            id_to_bytes(self.sender),
            len(self.seqs),
        )
        return head + b"".join(struct.pack(">Q", q) for q in self.seqs)

    @classmethod
    def create(cls, identity: Identity, room_id: str, sender: str, seqs: Iterable[int]) -> ErasureReceipt:
        ordered = tuple(sorted(set(seqs)))
        if not 1 <= len(ordered) <= MAX_RECEIPT_SEQS:
            raise ValueError("a receipt names 1..1024 seqs")
        unsigned = cls(room_id, identity.peer_id, sender, ordered)
        return cls(
            room_id, identity.peer_id, sender, ordered, identity.sign(LABEL_RECEIPT + unsigned._body())
        )

    def encode(self) -> bytes:
        return self._body() + self.signature

    @classmethod
    def decode(cls, data: object) -> ErasureReceipt:
        """Parse (not verify); ``ProtocolError`` on anything malformed, never anything else."""
        if not isinstance(data, bytes) or len(data) < _RECEIPT_HEAD.size + 8 + 64:
            raise ProtocolError("bad-receipt", "malformed erasure receipt")
        tag, version, room, member, sender, n = _RECEIPT_HEAD.unpack(data[: _RECEIPT_HEAD.size])
        if tag != RECEIPT_TAG or version != RECEIPT_VERSION:
            raise ProtocolError("bad-receipt", "unknown receipt tag or version")
        if not 1 <= n <= MAX_RECEIPT_SEQS or len(data) != _RECEIPT_HEAD.size + 8 * n + 64:
            raise ProtocolError("bad-receipt", "malformed erasure receipt")
        seqs = struct.unpack(f">{n}Q", data[_RECEIPT_HEAD.size : _RECEIPT_HEAD.size + 8 * n])
        if not in_range(seqs[-1]) or any(b <= a for a, b in itertools.pairwise(seqs)):
            raise ProtocolError("bad-receipt", "receipt seqs not strictly ascending in 0..2**53-1")
        return cls(id_from_bytes(room), id_from_bytes(member), id_from_bytes(sender), seqs, data[-64:])

    def verify(self, member_public_key: bytes) -> None:
        """Raise ``ProtocolError`` unless ``member_public_key`` is ``member``'s key and signed this."""
        if peer_id_from_public_key(member_public_key) != self.member:
            raise ProtocolError("wrong-sender", "key does not match the receipt member")
        ed25519_verify(member_public_key, LABEL_RECEIPT + self._body(), self.signature)
