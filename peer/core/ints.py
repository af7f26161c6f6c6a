"""The one integer range of the protocol: ``0 .. 2**53 - 1`` (JavaScript's safe integers).

Rules:
- Every integer a peer reads from remote input — envelope seq/lamport/sent_at/expires_at, membership
  lamport, tombstone and receipt seqs, pairwise counters, prekey times, sync frame fields — must lie in
  ``0 .. MAX_INT``; a u64 field above it is refused as a protocol error where it is parsed, so it can
  never reach the log, a wire encoder, a timer or the store (SQLite holds signed 64-bit integers).
- The JS core holds integers as Numbers and refuses the same values (``codec.js getU64``), so both
  cores accept exactly the same bytes.
- Locally produced values are held to the same range (encoders raise ``ValueError``).
"""

from __future__ import annotations

from typing import Final

from peer.core.errors import ProtocolError

MAX_INT: Final = 2**53 - 1


def in_range(value: int) -> bool:
    return 0 <= value <= MAX_INT


def check_int(value: int, code: str, what: str = "integer") -> int:
    """``value`` if it is in the protocol range, else ``ProtocolError(code)``."""
    if not 0 <= value <= MAX_INT:
        raise ProtocolError(code, f"{what} outside 0..2**53-1")
    return value


def read_u64(data: bytes, offset: int, code: str, what: str = "integer") -> int:
    """A big-endian u64 at ``offset`` that must be in the protocol range."""
    return check_int(int.from_bytes(data[offset : offset + 8], "big"), code, what)
