"""The room core as a package of parts, each owning its state and what it persists (see
``docs/architecture.md``): :mod:`.links` (+ :mod:`.parking`), :mod:`.members`, :mod:`.senderkeys`,
:mod:`.timeline`, :mod:`.receipts`, :mod:`.presence`, and the thin coordinator :class:`Room`."""

from peer.core.erasure import MAX_RECEIPT_SEQS, RECEIPT_TAG, ErasureReceipt
from peer.core.events import (
    Delivered,
    MemberJoined,
    MemberLeft,
    MemberOnline,
    Message,
    MessageErased,
    MessageExpired,
    MessageReceived,
    RemoteError,
    RolesChanged,
    RoomEvent,
    TimerChanged,
)
from peer.core.persist import PersistBatch, Snapshot

from .links import ERROR_BUDGET, LinkState
from .room import DEFAULT_TTL_S, Room
from .senderkeys import NEVER

__all__ = [
    "DEFAULT_TTL_S",
    "ERROR_BUDGET",
    "MAX_RECEIPT_SEQS",
    "NEVER",
    "RECEIPT_TAG",
    "Delivered",
    "ErasureReceipt",
    "LinkState",
    "MemberJoined",
    "MemberLeft",
    "MemberOnline",
    "Message",
    "MessageErased",
    "MessageExpired",
    "MessageReceived",
    "PersistBatch",
    "RemoteError",
    "RolesChanged",
    "Room",
    "RoomEvent",
    "Snapshot",
    "TimerChanged",
]
