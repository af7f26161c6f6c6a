"""Self-certifying identifiers.

Rules:
- Peer id = lowercase hex of the first 16 bytes of SHA-256(Ed25519 public key): 32 hex chars. On the
  binary wire it travels as those 16 raw bytes.
- Room id = 32 lowercase hex chars (16 bytes) derived from the room secret (see ``invite``); opaque to the
  signaling server.
- Parsing an id from remote input either returns it or raises ``ProtocolError("bad-id")``.
"""

from __future__ import annotations

import re

from peer.core.crypto import sha256
from peer.core.errors import ProtocolError

ID_BYTES = 16
_HEX32 = re.compile(r"[0-9a-f]{32}")


def peer_id_from_public_key(ed25519_public: bytes) -> str:
    """The peer id of an Ed25519 public key."""
    return sha256(ed25519_public)[:ID_BYTES].hex()


def is_id(text: object) -> bool:
    """True for exactly 32 lowercase hex characters."""
    return isinstance(text, str) and _HEX32.fullmatch(text) is not None


def check_id(text: object, what: str = "id") -> str:
    """Return ``text`` if it is a well-formed peer/room id; else ``ProtocolError("bad-id")``."""
    if not is_id(text):
        raise ProtocolError("bad-id", f"malformed {what}")
    assert isinstance(text, str)
    return text


def id_to_bytes(text: str) -> bytes:
    """32 hex chars -> 16 raw bytes (validated)."""
    return bytes.fromhex(check_id(text))


def id_from_bytes(raw: bytes) -> str:
    """16 raw bytes -> 32 hex chars."""
    if len(raw) != ID_BYTES:
        raise ProtocolError("bad-id", "id must be 16 bytes")
    return raw.hex()


def message_id(sender: str, seq: int) -> str:
    """A message's stable id: ``<sender peer id>:<seq>`` (the log keys envelopes by (sender, seq))."""
    return f"{check_id(sender)}:{seq}"
