"""Long-term identity: an Ed25519 signing key and an X25519 key certified by it.

Rules:
- The X25519 public key is certified by the Ed25519 key: ``cert = Sign(LABEL_X25519_CERT || x25519_pub)``.
- ``Identity.to_bytes()`` = ``0x01 | ed25519 seed (32) | x25519 private (32)`` (65 bytes). The lead stores
  it in a 0600 file; it is the only secret here. ``repr`` never shows key material.
- ``PublicBundle.from_dict`` validates both keys and the certificate: a bundle that parses is verified.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peer.core.crypto import (
    Rng,
    b64u_decode,
    b64u_encode,
    default_rng,
    ed25519_public_from_seed,
    ed25519_sign,
    ed25519_verify,
    sha256,
    validate_ed25519_public,
    validate_x25519_public,
    x25519,
    x25519_public,
)
from peer.core.errors import ProtocolError
from peer.core.ids import peer_id_from_public_key

LABEL_X25519_CERT = b"ephemesh-v1 x25519-cert\x00"
IDENTITY_VERSION = 1
BUNDLE_VERSION = 1


@dataclass(frozen=True)
class PublicBundle:
    """A member's public keys: Ed25519 identity key, certified X25519 key and the certificate."""

    ed25519: bytes
    x25519: bytes
    cert: bytes

    @property
    def peer_id(self) -> str:
        return peer_id_from_public_key(self.ed25519)

    def verify(self) -> None:
        """Raise ``ProtocolError`` unless both keys are valid and ``cert`` signs the X25519 key."""
        validate_ed25519_public(self.ed25519)
        validate_x25519_public(self.x25519)
        ed25519_verify(self.ed25519, LABEL_X25519_CERT + self.x25519, self.cert)

    def to_bytes(self) -> bytes:
        """``ed25519 (32) | x25519 (32) | cert (64)`` = 128 bytes."""
        return self.ed25519 + self.x25519 + self.cert

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicBundle:
        if len(data) != 128:
            raise ProtocolError("bad-bundle", "bundle must be 128 bytes")
        bundle = cls(data[:32], data[32:64], data[64:])
        bundle.verify()
        return bundle

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": BUNDLE_VERSION,
            "ed25519": b64u_encode(self.ed25519),
            "x25519": b64u_encode(self.x25519),
            "cert": b64u_encode(self.cert),
        }

    @classmethod
    def from_dict(cls, data: object) -> PublicBundle:
        """Parse and verify; raises ``ProtocolError`` on anything malformed or forged."""
        if not isinstance(data, dict) or data.get("v") != BUNDLE_VERSION:
            raise ProtocolError("bad-bundle", "expected a v1 bundle object")
        bundle = cls(
            b64u_decode(data.get("ed25519"), length=32),
            b64u_decode(data.get("x25519"), length=32),
            b64u_decode(data.get("cert"), length=64),
        )
        bundle.verify()
        return bundle


def fingerprint(ed25519_public: bytes) -> str:
    """Human-comparable fingerprint: SHA-256 of the key, hex, in 16 groups of 4."""
    h = sha256(ed25519_public).hex()
    return " ".join(h[i : i + 4] for i in range(0, 64, 4))


@dataclass(frozen=True)
class Identity:
    """A peer's long-term secret keys."""

    seed: bytes = field(repr=False)
    x25519_private: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.seed) != 32 or len(self.x25519_private) != 32:
            raise ValueError("identity keys must be 32 bytes")

    @classmethod
    def generate(cls, rng: Rng = default_rng) -> Identity:
        return cls(rng(32), rng(32))

    def to_bytes(self) -> bytes:
        return bytes([IDENTITY_VERSION]) + self.seed + self.x25519_private

    @classmethod
    def from_bytes(cls, data: bytes) -> Identity:
        if len(data) != 65 or data[0] != IDENTITY_VERSION:
            raise ProtocolError("bad-identity", "expected a v1 identity (65 bytes)")
        return cls(data[1:33], data[33:65])

    @property
    def public_key(self) -> bytes:
        """The Ed25519 public key (32 bytes)."""
        return ed25519_public_from_seed(self.seed)

    @property
    def x25519_public(self) -> bytes:
        return x25519_public(self.x25519_private)

    @property
    def peer_id(self) -> str:
        return peer_id_from_public_key(self.public_key)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return ed25519_sign(self.seed, message)

    def dh(self, peer_x25519_public: bytes) -> bytes:
        """X25519 of our static key with a validated peer key."""
        return x25519(self.x25519_private, peer_x25519_public)

    def public_bundle(self) -> PublicBundle:
        xpub = self.x25519_public
        return PublicBundle(self.public_key, xpub, self.sign(LABEL_X25519_CERT + xpub))
