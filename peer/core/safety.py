"""Safety numbers: 60 digits two members compare out of band.

Rules (Signal-style, SHA-256 only so that WebCrypto reproduces it):
- For each Ed25519 public key ``k``: ``h_0 = SHA-256(LABEL || k)``, ``h_{i+1} = SHA-256(h_i || k)`` for
  ``ITERATIONS`` rounds; the first 30 bytes of the result give six 5-byte big-endian integers, each taken
  ``mod 100000`` and written as 5 digits: 30 digits per key.
- The two 30-digit halves are sorted as strings and concatenated (so the number is symmetric), then shown
  in 12 groups of 5 digits separated by single spaces.
"""

from __future__ import annotations

from peer.core.crypto import sha256, validate_ed25519_public

LABEL = b"ephemesh-v1 safety-number\x00"
ITERATIONS = 5200


def key_digits(ed25519_public: bytes) -> str:
    """The 30-digit half for one key."""
    validate_ed25519_public(ed25519_public)
    h = sha256(LABEL + ed25519_public)
    for _ in range(ITERATIONS):
        h = sha256(h + ed25519_public)
    return "".join(f"{int.from_bytes(h[i : i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5))


def safety_number(pub_a: bytes, pub_b: bytes) -> str:
    """Symmetric 60-digit safety number of two Ed25519 public keys, grouped by 5."""
    digits = "".join(sorted([key_digits(pub_a), key_digits(pub_b)]))
    return " ".join(digits[i : i + 5] for i in range(0, 60, 5))
