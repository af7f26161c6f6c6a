"""Pairwise handshake, pairwise AEAD sessions and prekey sealing.

Handshake (symmetric, no roles; run over an established data channel):

1. each side sends HELLO = ``0x01 | 0x01 | room_id (16) | from (16) | to (16) | ephemeral X25519 (32)``;
2. on HELLO each side computes ``transcript = LABEL_TRANSCRIPT || room_id || id_lo || id_hi || ed_lo ||
   ed_hi || eph_lo || eph_hi`` (lo/hi = the two peers ordered by peer id) and sends FINISH =
   ``0x01 | 0x02 | room_id | from | to | Ed25519 signature over the transcript (64)``;
3. on FINISH it verifies the peer's signature over the same transcript. Session keys:
   ``okm = HKDF(ikm = X25519(eph_mine, eph_peer), salt = SHA-256(transcript), info = LABEL_SESSION, 64)``;
   ``okm[:32]`` protects lo->hi traffic, ``okm[32:]`` hi->lo.

Pairwise frames: ``counter u64 || AES-256-GCM(key, nonce = 0x00000000 || counter u64, pt, aad)``.
Counters start at 0 and strictly increase; a frame whose counter is not above the last accepted one is a
replay. Sessions are immutable: ``seal``/``open`` return the next state (persist it before sending).

Prekeys: a member publishes ``SignedPrekey = public (32) | created_at u64 | Sign(LABEL_PREKEY || ed25519 ||
public || created_at) (64)``. ``seal_to_prekey`` frames are::

    header = 0x01 | sender (16) | recipient (16) | prekey public (32) | ephemeral (32) | msg_id (16)
             | sent_at u64 | nonce (12)                                              (133 bytes)
    frame  = header | u32 len(ct) | ct | Sign(LABEL_PREKEY_MSG || header || u32 len(aad) || aad
             || u32 len(ct) || ct) (64)

with ``key = HKDF(X25519(ephemeral, prekey), salt = "", info = LABEL_PREKEY_KEY || header[:-12], 32)`` and
``ct = AES-256-GCM(key, nonce, plaintext, header || aad)``. The caller's ``aad`` is not transmitted; the
caller rejects a ``msg_id`` it has already accepted (replay).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from peer.core.crypto import (
    Rng,
    aead_open,
    aead_seal,
    default_rng,
    ed25519_verify,
    hkdf,
    sha256,
    u32,
    u64,
    validate_x25519_public,
    x25519,
    x25519_public,
)
from peer.core.errors import ProtocolError
from peer.core.identity import Identity, PublicBundle
from peer.core.ids import id_from_bytes, id_to_bytes
from peer.core.ints import MAX_INT, check_int

LABEL_TRANSCRIPT = b"ephemesh-v1 handshake\x00"
LABEL_SESSION = b"ephemesh-v1 pairwise-keys"
LABEL_PREKEY = b"ephemesh-v1 prekey\x00"
LABEL_PREKEY_MSG = b"ephemesh-v1 prekey-msg\x00"
LABEL_PREKEY_KEY = b"ephemesh-v1 prekey-key"
HELLO, FINISH = 1, 2
MAX_COUNTER = MAX_INT
MAX_PREKEY_FRAME = 64 * 1024
PREKEY_FUTURE_SKEW_MS = 120_000


# --- handshake -----------------------------------------------------------------------------------------


def transcript(room_id: str, a: PublicBundle, b: PublicBundle, eph_a: bytes, eph_b: bytes) -> bytes:
    """The signed handshake transcript (order-independent in its arguments)."""
    (lo, eph_lo), (hi, eph_hi) = sorted([(a, eph_a), (b, eph_b)], key=lambda t: t[0].peer_id)
    return b"".join(
        [
            LABEL_TRANSCRIPT,
            id_to_bytes(room_id),
            id_to_bytes(lo.peer_id),
            id_to_bytes(hi.peer_id),
            lo.ed25519,
            hi.ed25519,
            eph_lo,
            eph_hi,
        ]
    )


@dataclass(frozen=True)
class PairwiseSession:
    """Directional keys and counters of one pairwise session."""

    peer_id: str
    send_key: bytes = field(repr=False)
    recv_key: bytes = field(repr=False)
    send_counter: int = 0
    recv_counter: int = -1  # last accepted counter

    def to_bytes(self) -> bytes:
        """``0x01 | peer (16) | send_key | recv_key | send_counter u64 | recv_counter+1 u64``."""
        return (
            b"\x01"
            + id_to_bytes(self.peer_id)
            + self.send_key
            + self.recv_key
            + u64(self.send_counter)
            + u64(self.recv_counter + 1)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> PairwiseSession:
        if len(data) != 97 or data[0] != 1:
            raise ProtocolError("bad-state", "malformed pairwise session")
        send_c, recv_c = struct.unpack(">QQ", data[81:97])
        return cls(id_from_bytes(data[1:17]), data[17:49], data[49:81], send_c, recv_c - 1)


def _nonce(counter: int) -> bytes:
    return bytes(4) + u64(counter)


def seal_pairwise(
    session: PairwiseSession, plaintext: bytes, aad: bytes = b""
) -> tuple[PairwiseSession, bytes]:
    """Encrypt the next frame; returns (next state, frame)."""
    c = session.send_counter
    if c >= MAX_COUNTER:
        raise ProtocolError("exhausted", "pairwise counter exhausted; re-handshake")
    frame = u64(c) + aead_seal(session.send_key, _nonce(c), plaintext, aad)
    return PairwiseSession(
        session.peer_id, session.send_key, session.recv_key, c + 1, session.recv_counter
    ), frame


def open_pairwise(session: PairwiseSession, frame: bytes, aad: bytes = b"") -> tuple[PairwiseSession, bytes]:
    """Decrypt a frame; rejects replays (counter not above the last accepted). Returns (next state, pt)."""
    if len(frame) < 8 + 16:
        raise ProtocolError("bad-frame", "pairwise frame too short")
    (c,) = struct.unpack(">Q", frame[:8])
    check_int(c, "bad-frame", "pairwise counter")
    if c <= session.recv_counter:
        raise ProtocolError("replay", "pairwise counter not increasing")
    pt = aead_open(session.recv_key, _nonce(c), frame[8:], aad)
    return PairwiseSession(session.peer_id, session.send_key, session.recv_key, session.send_counter, c), pt


class Handshake:
    """Sans-IO state of one pairwise handshake: ``hello()``, ``on_hello()``, ``on_finish()``."""

    def __init__(self, identity: Identity, peer: PublicBundle, room_id: str, rng: Rng = default_rng) -> None:
        self.identity = identity
        self.peer = peer
        self.room_id = room_id
        self._eph_private = rng(32)
        self.ephemeral = x25519_public(self._eph_private)
        self._transcript: bytes | None = None
        self._shared: bytes | None = None

    def _prefix(self, msg_type: int) -> bytes:
        return (
            bytes([1, msg_type])
            + id_to_bytes(self.room_id)
            + id_to_bytes(self.identity.peer_id)
            + id_to_bytes(self.peer.peer_id)
        )

    def _check_prefix(self, data: bytes, msg_type: int, length: int) -> None:
        expected = bytes([1, msg_type]) + id_to_bytes(self.room_id) + id_to_bytes(self.peer.peer_id)
        expected += id_to_bytes(self.identity.peer_id)
        if len(data) != length or data[:50] != expected:
            raise ProtocolError("bad-handshake", "unexpected handshake message")

    def hello(self) -> bytes:
        return self._prefix(HELLO) + self.ephemeral

    def on_hello(self, data: bytes) -> bytes:
        """Process the peer's HELLO and return our FINISH."""
        if self._transcript is not None:
            raise ProtocolError("bad-handshake", "duplicate hello")
        self._check_prefix(data, HELLO, 82)
        peer_eph = validate_x25519_public(data[50:82])
        self._shared = x25519(self._eph_private, peer_eph)
        self._transcript = transcript(
            self.room_id, self.identity.public_bundle(), self.peer, self.ephemeral, peer_eph
        )
        return self._prefix(FINISH) + self.identity.sign(self._transcript)

    def on_finish(self, data: bytes) -> PairwiseSession:
        """Verify the peer's FINISH and return the established session."""
        if self._transcript is None or self._shared is None:
            raise ProtocolError("bad-handshake", "finish before hello")
        self._check_prefix(data, FINISH, 114)
        ed25519_verify(self.peer.ed25519, self._transcript, data[50:114])
        okm = hkdf(self._shared, salt=sha256(self._transcript), info=LABEL_SESSION, length=64)
        lo_to_hi, hi_to_lo = okm[:32], okm[32:]
        if self.identity.peer_id < self.peer.peer_id:
            return PairwiseSession(self.peer.peer_id, lo_to_hi, hi_to_lo)
        return PairwiseSession(self.peer.peer_id, hi_to_lo, lo_to_hi)


# --- prekeys -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedPrekey:
    """A member's published X25519 prekey, signed by its identity key."""

    public: bytes
    created_at: int
    signature: bytes

    def signed_message(self, owner_ed25519: bytes) -> bytes:
        return LABEL_PREKEY + owner_ed25519 + self.public + u64(self.created_at)

    def verify(self, owner: PublicBundle) -> None:
        validate_x25519_public(self.public)
        ed25519_verify(owner.ed25519, self.signed_message(owner.ed25519), self.signature)

    def to_bytes(self) -> bytes:
        """``public (32) | created_at u64 | signature (64)`` = 104 bytes."""
        return self.public + u64(self.created_at) + self.signature

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedPrekey:
        if len(data) != 104:
            raise ProtocolError("bad-prekey", "prekey must be 104 bytes")
        (created_at,) = struct.unpack(">Q", data[32:40])
        check_int(created_at, "bad-prekey", "prekey created_at")
        return cls(validate_x25519_public(data[:32]), created_at, data[40:])


@dataclass(frozen=True)
class PrekeyPrivate:
    """The secret half of a prekey (kept by its owner until rotated)."""

    private: bytes = field(repr=False)
    signed: SignedPrekey


def generate_prekey(identity: Identity, now: int, rng: Rng = default_rng) -> PrekeyPrivate:
    private = rng(32)
    public = x25519_public(private)
    unsigned = SignedPrekey(public, now, b"")
    sig = identity.sign(unsigned.signed_message(identity.public_key))
    return PrekeyPrivate(private, SignedPrekey(public, now, sig))


@dataclass(frozen=True)
class OpenedPrekeyMessage:
    msg_id: bytes
    sent_at: int
    plaintext: bytes = field(repr=False)


def _signed_prekey_msg(header: bytes, aad: bytes, ct: bytes) -> bytes:
    return LABEL_PREKEY_MSG + header + u32(len(aad)) + aad + u32(len(ct)) + ct


def seal_to_prekey(
    sender: Identity,
    recipient: PublicBundle,
    prekey: SignedPrekey,
    plaintext: bytes,
    aad: bytes,
    now: int,
    rng: Rng = default_rng,
) -> bytes:
    """Seal ``plaintext`` to ``recipient``'s (verified) prekey; only its owner can open it."""
    prekey.verify(recipient)
    eph_private = rng(32)
    eph_public = x25519_public(eph_private)
    msg_id, nonce = rng(16), rng(12)
    header = (
        b"\x01"
        + id_to_bytes(sender.peer_id)
        + id_to_bytes(recipient.peer_id)
        + prekey.public
        + eph_public
        + msg_id
        + u64(now)
        + nonce
    )
    key = hkdf(x25519(eph_private, prekey.public), salt=b"", info=LABEL_PREKEY_KEY + header[:-12])
    ct = aead_seal(key, nonce, plaintext, header + aad)
    return header + u32(len(ct)) + ct + sender.sign(_signed_prekey_msg(header, aad, ct))


def prekey_frame_sender(frame: bytes) -> str:
    """The claimed sender of a prekey frame (to look up its bundle before opening)."""
    if len(frame) < 133 + 4 + 16 + 64:
        raise ProtocolError("bad-prekey-msg", "frame too short")
    return id_from_bytes(frame[1:17])


def open_from_prekey(
    recipient: Identity,
    prekey: PrekeyPrivate,
    sender: PublicBundle,
    frame: bytes,
    aad: bytes,
    now: int,
) -> OpenedPrekeyMessage:
    """Verify and open a prekey frame. The caller must reject an ``msg_id`` it has seen before."""
    if not isinstance(frame, bytes) or len(frame) > MAX_PREKEY_FRAME or len(frame) < 133 + 4 + 16 + 64:
        raise ProtocolError("bad-prekey-msg", "bad frame size")
    header = frame[:133]
    (ct_len,) = struct.unpack(">I", frame[133:137])
    if header[0] != 1 or 137 + ct_len + 64 != len(frame):
        raise ProtocolError("bad-prekey-msg", "bad frame layout")
    ct, sig = frame[137 : 137 + ct_len], frame[137 + ct_len :]
    if header[1:17] != id_to_bytes(sender.peer_id) or header[17:33] != id_to_bytes(recipient.peer_id):
        raise ProtocolError("wrong-peer", "frame is not from this sender to us")
    if header[33:65] != prekey.signed.public:
        raise ProtocolError("unknown-prekey", "frame sealed to another prekey")
    (sent_at,) = struct.unpack(">Q", header[113:121])
    check_int(sent_at, "bad-prekey-msg", "sent_at")
    if sent_at > now + PREKEY_FUTURE_SKEW_MS:
        raise ProtocolError("stale", "frame from the future")
    ed25519_verify(sender.ed25519, _signed_prekey_msg(header, aad, ct), sig)
    key = hkdf(x25519(prekey.private, header[65:97]), salt=b"", info=LABEL_PREKEY_KEY + header[:-12])
    pt = aead_open(key, header[121:133], ct, header + aad)
    return OpenedPrekeyMessage(header[97:113], sent_at, pt)
