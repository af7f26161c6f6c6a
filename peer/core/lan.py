"""LAN discovery names: what a peer announces on the local network (DNS-SD over mDNS) for a room.

Rules (PROTOCOL.md, "LAN discovery"):
- Service type ``_ephemesh._tcp.local.``. One service instance per (peer process, room) that has opted
  in (``--lan``); its SRV/A records give the address and port of the peer's embedded signaling endpoint.
- The instance name is 32 lowercase hex characters: ``hex(nonce || tag)`` where ``nonce`` is 8 random
  bytes chosen per announcement and ``tag = HMAC-SHA256(lan_key(epoch), nonce)[:8]``, with
  ``lan_key(epoch) = HKDF-SHA256(ikm, salt="ephemesh-v1", info="ephemesh-v1 lan-token" || u64be(epoch))``
  over the same ``ikm`` as the room keys (the secret, or ``secret || owner``), and
  ``epoch = floor(unix_ms / EPOCH_MS)`` (10 minutes). The TXT record is only ``v=1``.
- A browser of the service accepts an instance whose tag matches the previous, current or next epoch
  (clock skew up to one epoch); an announcer renames its instance (fresh nonce) at each epoch change.
- So a stranger sees random names that change every 10 minutes and never repeat across peers of one
  room (each has its own nonce); it cannot tell which room, which peer, or whether two instances belong
  to one room. A member checks a name with one HMAC per epoch.

Sans-IO: the caller passes the time and the nonce.
"""

from __future__ import annotations

import hmac
import re
from typing import Final

from peer.core.crypto import hkdf, hmac_sha256, u64
from peer.core.ids import id_to_bytes
from peer.core.invite import HKDF_SALT, Invite

SERVICE_TYPE: Final = "_ephemesh._tcp.local."
INFO_LAN_TOKEN: Final = b"ephemesh-v1 lan-token"
EPOCH_MS: Final = 600_000
NONCE_LEN: Final = 8
TAG_LEN: Final = 8
TXT: Final = {"v": "1"}
_NAME = re.compile(r"[0-9a-f]{32}")


def epoch_of(now_ms: int) -> int:
    return now_ms // EPOCH_MS


def lan_key(invite: Invite, epoch: int) -> bytes:
    ikm = invite.secret if invite.owner is None else invite.secret + id_to_bytes(invite.owner)
    return hkdf(ikm, salt=HKDF_SALT, info=INFO_LAN_TOKEN + u64(epoch))


def instance_name(invite: Invite, now_ms: int, nonce: bytes) -> str:
    """The DNS-SD instance name to announce now (``nonce``: 8 fresh random bytes)."""
    if len(nonce) != NONCE_LEN:
        raise ValueError("nonce must be 8 bytes")
    tag = hmac_sha256(lan_key(invite, epoch_of(now_ms)), nonce)[:TAG_LEN]
    return (nonce + tag).hex()


class LanMatcher:
    """Tells whether an instance name announces ``invite``'s room; caches the (up to three) epoch keys."""

    def __init__(self, invite: Invite) -> None:
        self._invite = invite
        self._keys: dict[int, bytes] = {}

    def matches(self, name: object, now_ms: int) -> bool:
        """True if ``name`` (the instance label, without the service type) is this room's, for the
        previous, current or next epoch. Anything malformed is simply not a match."""
        if not isinstance(name, str) or _NAME.fullmatch(name) is None:
            return False
        raw = bytes.fromhex(name)
        nonce, tag = raw[:NONCE_LEN], raw[NONCE_LEN:]
        current = epoch_of(now_ms)
        wanted = (current - 1, current, current + 1)
        for old in [e for e in self._keys if e not in wanted]:
            del self._keys[old]
        for epoch in wanted:
            key = self._keys.get(epoch)
            if key is None:
                key = self._keys[epoch] = lan_key(self._invite, epoch)
            if hmac.compare_digest(hmac_sha256(key, nonce)[:TAG_LEN], tag):
                return True
        return False
