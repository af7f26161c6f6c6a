"""Thin wrappers over PyNaCl / cryptography: the only primitives ephemesh uses.

Rules:
- The suite is exactly what WebCrypto offers: Ed25519, X25519, HKDF-SHA256, HMAC-SHA256, AES-256-GCM,
  SHA-256. Nothing here implements a primitive; it only validates inputs and maps failures.
- Every function that touches remote input raises :class:`ProtocolError` on bad input, never anything
  else. Fail closed.
- Public keys are validated explicitly: canonical encoding, not small order (Chromium and ``cryptography``
  accept signatures under small-order Ed25519 keys, so we must refuse them ourselves). Ed25519 signature
  ``R`` must be canonical and not small order and ``S`` must be reduced (``S < L``).
- An all-zero X25519 output is a protocol error.
- Randomness is injectable (``rng: Rng``) so that test vectors are reproducible; production code uses
  :func:`os.urandom`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import struct
from collections.abc import Callable

import nacl.bindings as sodium
import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from peer.core.errors import ProtocolError

Rng = Callable[[int], bytes]
"""A source of random bytes: ``rng(n)`` returns ``n`` bytes."""

default_rng: Rng = os.urandom

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493

# Small-order X25519 u-coordinates (libsodium's blacklist), including non-canonical encodings.
X25519_SMALL_ORDER: frozenset[bytes] = frozenset(
    bytes.fromhex(h)
    for h in (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "cdeb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
        "4c9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7",
        "d9ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "daffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "dbffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    )
)

# Encodings of the 8 small-order Ed25519 points (torsion subgroup), canonical and common non-canonical.
ED25519_SMALL_ORDER: frozenset[bytes] = frozenset(
    bytes.fromhex(h)
    for h in (
        "0100000000000000000000000000000000000000000000000000000000000000",  # identity
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
        "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
        "0000000000000000000000000000000000000000000000000000000000000080",  # order 4
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
        # non-canonical encodings of the same points
        "0100000000000000000000000000000000000000000000000000000000000080",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    )
)


# --- encodings -----------------------------------------------------------------------------------------


def b64u_encode(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64U_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def b64u_decode(text: object, *, length: int | None = None, max_len: int = 1 << 20) -> bytes:
    """Strict base64url (no padding, canonical) -> bytes, or :class:`ProtocolError`.

    ``length`` requires an exact decoded length. Non-canonical encodings (non-zero trailing bits) are
    rejected so that every byte string has exactly one text form.
    """
    if not isinstance(text, str):
        raise ProtocolError("bad-b64", "expected a base64url string")
    if len(text) > max_len or not set(text) <= _B64U_ALPHABET or len(text) % 4 == 1:
        raise ProtocolError("bad-b64", "not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError("bad-b64", "not base64url") from exc
    if b64u_encode(data) != text:
        raise ProtocolError("bad-b64", "non-canonical base64url")
    if length is not None and len(data) != length:
        raise ProtocolError("bad-length", f"expected {length} bytes")
    return data


def u64(n: int) -> bytes:
    """Big-endian unsigned 64-bit."""
    return struct.pack(">Q", n)


def u32(n: int) -> bytes:
    """Big-endian unsigned 32-bit."""
    return struct.pack(">I", n)


# --- hashes, MAC, KDF ----------------------------------------------------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def hmac_verify(key: bytes, data: bytes, tag: bytes) -> None:
    """Constant-time HMAC-SHA256 check; raises ``ProtocolError("bad-mac")``."""
    if not hmac.compare_digest(hmac_sha256(key, data), tag):
        raise ProtocolError("bad-mac", "authentication tag mismatch")


def hkdf(ikm: bytes, *, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 extract+expand (RFC 5869). An empty salt means HashLen zero bytes, as in the RFC."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt or None, info=info).derive(ikm)


# --- AES-256-GCM ---------------------------------------------------------------------------------------


def aead_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM: returns ciphertext || 16-byte tag."""
    if len(key) != 32 or len(nonce) != 12:
        raise ValueError("AES-256-GCM needs a 32-byte key and a 12-byte nonce")
    return AESGCM(key).encrypt(nonce, plaintext, aad)


def aead_open(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM open; any failure is ``ProtocolError("bad-aead")``."""
    if len(key) != 32 or len(nonce) != 12 or len(ciphertext) < 16:
        raise ProtocolError("bad-aead", "malformed ciphertext")
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, aad)
    except InvalidTag as exc:
        raise ProtocolError("bad-aead", "decryption failed") from exc


# --- Ed25519 -------------------------------------------------------------------------------------------


def _le_int(b: bytes) -> int:
    return int.from_bytes(b, "little")


def _ed25519_canonical(point: bytes) -> bool:
    """y < p, and x = 0 points (y = 1, y = -1) must not carry the sign bit."""
    y = _le_int(point) & ((1 << 255) - 1)
    if y >= _P:
        return False
    return not (point[31] & 0x80 and y in (1, _P - 1))


def validate_ed25519_public(pub: bytes) -> bytes:
    """Return ``pub`` if it is a canonical, prime-order Ed25519 point; else ``ProtocolError("bad-key")``."""
    if not isinstance(pub, bytes) or len(pub) != 32:
        raise ProtocolError("bad-key", "Ed25519 public key must be 32 bytes")
    if not _ed25519_key_ok(pub):
        raise ProtocolError("bad-key", "small-order, non-canonical or invalid Ed25519 key")
    return pub


@functools.lru_cache(maxsize=4096)
def _ed25519_key_ok(pub: bytes) -> bool:
    """The point checks, cached: members' keys are checked once, not on every signature."""
    return (
        pub not in ED25519_SMALL_ORDER
        and _ed25519_canonical(pub)
        and bool(sodium.crypto_core_ed25519_is_valid_point(pub))
    )


@functools.lru_cache(maxsize=64)
def _signing_key(seed: bytes) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(seed)


def ed25519_public_from_seed(seed: bytes) -> bytes:
    if len(seed) != 32:
        raise ValueError("Ed25519 seed must be 32 bytes")
    return bytes(_signing_key(seed).verify_key)


def ed25519_sign(seed: bytes, message: bytes) -> bytes:
    """Deterministic Ed25519 signature (RFC 8032), 64 bytes."""
    if len(seed) != 32:
        raise ValueError("Ed25519 seed must be 32 bytes")
    return bytes(_signing_key(seed).sign(message).signature)


def ed25519_verify(pub: bytes, message: bytes, signature: bytes) -> None:
    """Strict Ed25519 verification; raises ``ProtocolError`` (``bad-key`` / ``bad-signature``)."""
    validate_ed25519_public(pub)
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise ProtocolError("bad-signature", "signature must be 64 bytes")
    r, s = signature[:32], signature[32:]
    if r in ED25519_SMALL_ORDER or not _ed25519_canonical(r) or _le_int(s) >= _L:
        raise ProtocolError("bad-signature", "non-canonical or small-order signature")
    try:
        nacl.signing.VerifyKey(pub).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError) as exc:
        raise ProtocolError("bad-signature", "signature does not verify") from exc


# --- X25519 --------------------------------------------------------------------------------------------


def validate_x25519_public(pub: bytes) -> bytes:
    """Return ``pub`` if canonical (u < p, top bit clear) and not small order; else ``bad-key``."""
    if not isinstance(pub, bytes) or len(pub) != 32:
        raise ProtocolError("bad-key", "X25519 public key must be 32 bytes")
    if pub in X25519_SMALL_ORDER or _le_int(pub) >= _P:
        raise ProtocolError("bad-key", "small-order or non-canonical X25519 key")
    return pub


def x25519_public(private: bytes) -> bytes:
    if len(private) != 32:
        raise ValueError("X25519 private key must be 32 bytes")
    return bytes(sodium.crypto_scalarmult_base(private))


def x25519_unchecked(private: bytes, public: bytes) -> bytes:
    """Raw RFC 7748 X25519 without public-key validation (for RFC vectors); all-zero output still fails."""
    if len(private) != 32 or len(public) != 32:
        raise ProtocolError("bad-key", "X25519 keys must be 32 bytes")
    try:
        out = bytes(sodium.crypto_scalarmult(private, public))
    except (nacl.exceptions.CryptoError, RuntimeError, ValueError) as exc:
        raise ProtocolError("bad-dh", "X25519 failed") from exc
    if out == bytes(32):
        raise ProtocolError("bad-dh", "all-zero X25519 output")
    return out


def x25519(private: bytes, public: bytes) -> bytes:
    """X25519 with a validated peer key; all-zero output is ``ProtocolError("bad-dh")``."""
    validate_x25519_public(public)
    return x25519_unchecked(private, public)


# --- deterministic randomness for vectors --------------------------------------------------------------


class DeterministicRng:
    """A reproducible byte stream: block_i = SHA-256(seed || u32(i)), concatenated. ONLY for test vectors."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._counter = 0
        self._buffer = b""

    def __call__(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._buffer += sha256(self._seed + u32(self._counter))
            self._counter += 1
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out
