"""Erasure receipts: who erased which of our messages, and which senders we owe a receipt.

Rules:
- When we erase another member's CHAT message (expiry or unsend) we owe its sender a signed
  :class:`ErasureReceipt`; it goes in an APP frame the next time we are linked to that sender, in chunks
  of ``MAX_RECEIPT_SEQS``. Receipts owed to someone who is not, and never was, a member are dropped.
- A receipt is accepted from a known sender (membership decides), for this room, about OUR messages;
  each (message, member) counts once and yields :class:`MessageErased` ("erased on N of M").
- Receipts travel to the message's sender only (no relay in v1).
- Persists nothing: what we owe is re-derived at restart from the tombstones kept by the store.
"""

from __future__ import annotations

from collections.abc import Callable

from peer.core.erasure import MAX_RECEIPT_SEQS, ErasureReceipt
from peer.core.errors import ProtocolError
from peer.core.events import MessageErased, RoomEvent
from peer.core.identity import Identity, PublicBundle
from peer.core.ids import message_id


class Receipts:
    def __init__(self, identity: Identity, room_id: str) -> None:
        self._identity = identity
        self.self_id = identity.peer_id
        self._room_id = room_id
        self._owed: dict[str, set[int]] = {}  # sender -> seqs we erased, not yet reported
        self._erased_by: dict[int, set[str]] = {}  # own CHAT seq -> members that reported erasing it

    def owe(self, sender: str, seq: int) -> None:
        if sender != self.self_id:
            self._owed.setdefault(sender, set()).add(seq)

    def track(self, seq: int) -> None:
        """One of our CHAT messages: receipts for it will be counted."""
        self._erased_by.setdefault(seq, set())

    def erased_on(self, seq: int) -> set[str]:
        return set(self._erased_by.get(seq, set()))

    def on_receipt(
        self, body: bytes, known: Callable[[str], PublicBundle | None], of: int, events: list[RoomEvent]
    ) -> None:
        """``known``: membership's known-sender rule. ``ProtocolError`` if the receipt is bad."""
        receipt = ErasureReceipt.decode(body)
        if receipt.room_id != self._room_id:
            raise ProtocolError("wrong-room", "receipt for another room")
        bundle = known(receipt.member)
        if bundle is None:
            raise ProtocolError("unknown-sender", "receipt from a non-member")
        receipt.verify(bundle.ed25519)
        if receipt.sender != self.self_id or receipt.member == self.self_id:
            return
        for seq in receipt.seqs:
            by = self._erased_by.get(seq)
            if by is None or receipt.member in by:
                continue
            by.add(receipt.member)
            events.append(MessageErased(message_id(self.self_id, seq), receipt.member, len(by), of))

    def flush(self, known: set[str], ready: set[str]) -> list[tuple[str, bytes]]:
        """Receipts to send now: (sender, APP body) for owed senders that are ``ready``."""
        out: list[tuple[str, bytes]] = []
        for sender in list(self._owed):
            if sender not in known:
                del self._owed[sender]
            elif sender in ready:
                seqs = sorted(self._owed.pop(sender))
                for i in range(0, len(seqs), MAX_RECEIPT_SEQS):
                    receipt = ErasureReceipt.create(
                        self._identity, self._room_id, sender, seqs[i : i + MAX_RECEIPT_SEQS]
                    )
                    out.append((sender, receipt.encode()))
        return out
