"""Signaling payloads: encrypted for the room, signed by the sender, bound to DTLS fingerprints.

The signaling server relays ``payload`` strings between peers of a room; it cannot read or forge them.

Wire (``payload``): ``"v1." + b64u(nonce (12) || AES-256-GCM(signal_key, nonce, inner, aad))`` where
``aad = LABEL_AEAD || room_id (16) || from (16) || to (16)`` and ``inner`` is UTF-8 JSON::

    {"v":1, "kind":str, "from":peer_id, "to":peer_id, "ts":int_ms, "n":b64u(16 random bytes),
     "body":str (the JSON text of the body), "fp":[str,...], "bundle":PublicBundle dict, "sig":b64u(64)}

``sig`` = Ed25519 by the sender over ``signed_bytes`` =
``LABEL_SIG || room_id (16) || from (16) || to (16) || ts u64 || n (16) || u8 len(kind) || kind ||
SHA-256(body UTF-8) (32) || u8 count(fp) || (u8 len || fp ASCII)*``.

Rules on open (each failure is a ``ProtocolError``):
- the outer frame decrypts under ``signal_key`` with the relay-claimed sender and our own id as AAD;
- ``to`` is us, ``from`` equals the relay-claimed sender and ``bundle.peer_id`` (self-certifying);
- ``|now - ts| <= 120_000`` ms; ``(from, n)`` not seen before (``ReplayCache``);
- the signature verifies under ``bundle.ed25519`` (strict Ed25519);
- the ``a=fingerprint:`` lines of the body's SDP (``body["sdp"]`` or a string body), normalised to
  ``"<algo lowercase> <HEX UPPERCASE>"``, equal the signed ``fp`` list, in order.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from peer.core.crypto import (
    Rng,
    aead_open,
    aead_seal,
    b64u_decode,
    b64u_encode,
    default_rng,
    ed25519_verify,
    sha256,
    u64,
)
from peer.core.errors import ProtocolError
from peer.core.identity import Identity, PublicBundle
from peer.core.ids import check_id, id_to_bytes
from peer.core.invite import Invite

LABEL_SIG = b"ephemesh-v1 signal-sig\x00"
LABEL_AEAD = b"ephemesh-v1 signal-aead\x00"
MAX_SKEW_MS = 120_000
MAX_PAYLOAD_CHARS = 64 * 1024
MAX_FINGERPRINTS = 8
_KIND = re.compile(r"[a-z][a-z0-9-]{0,31}")
_FP_LINE = re.compile(r"^a=fingerprint:([A-Za-z0-9\-]{1,16}) ([0-9A-Fa-f:]{1,200})\s*$", re.MULTILINE)

Body = dict[str, Any] | str


@dataclass(frozen=True)
class OpenedSignal:
    """A verified signaling message."""

    kind: str
    body: Body
    sender_bundle: PublicBundle
    sent_at: int


class ReplayCache:
    """Bounded memory of ``(sender, nonce)`` pairs seen within the skew window.

    When full, the oldest entry is evicted and its timestamp becomes a floor: anything at or below the
    floor is rejected (fail closed), so eviction can never re-open a replay.
    """

    def __init__(self, capacity: int = 10_000, window_ms: int = MAX_SKEW_MS) -> None:
        self.capacity = capacity
        self.window_ms = window_ms
        self._seen: OrderedDict[tuple[str, bytes], int] = OrderedDict()
        self._floor = -1

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, sender: str, nonce: bytes, ts: int, now: int) -> None:
        """Record ``(sender, nonce)``; raise ``ProtocolError("replay")`` if seen or below the floor."""
        horizon = now - 2 * self.window_ms
        while self._seen and next(iter(self._seen.values())) < horizon:
            self._seen.popitem(last=False)
        key = (sender, nonce)
        if key in self._seen or ts <= self._floor:
            raise ProtocolError("replay", "signaling payload replayed")
        while len(self._seen) >= self.capacity:
            _, old_ts = self._seen.popitem(last=False)
            self._floor = max(self._floor, old_ts)
        self._seen[key] = ts


def sdp_fingerprints(sdp: str) -> list[str]:
    """The ``a=fingerprint:`` values of an SDP, normalised to ``"<algo lower> <HEX UPPER>"``."""
    return [f"{m.group(1).lower()} {m.group(2).upper()}" for m in _FP_LINE.finditer(sdp.replace("\r", ""))]


def _body_fingerprints(body: Body) -> list[str]:
    sdp = body.get("sdp") if isinstance(body, dict) else body
    return sdp_fingerprints(sdp) if isinstance(sdp, str) else []


def signed_bytes(
    room_id: str, sender: str, to: str, ts: int, nonce: bytes, kind: str, body_json: str, fps: Sequence[str]
) -> bytes:
    """The exact bytes the sender signs (see module docstring)."""
    kind_b = kind.encode("ascii")
    out = [
        LABEL_SIG,
        id_to_bytes(room_id),
        id_to_bytes(sender),
        id_to_bytes(to),
        u64(ts),
        nonce,
        bytes([len(kind_b)]),
        kind_b,
        sha256(body_json.encode("utf-8")),
        bytes([len(fps)]),
    ]
    for fp in fps:
        fp_b = fp.encode("ascii")
        out += [bytes([len(fp_b)]), fp_b]
    return b"".join(out)


def _aad(room_id: str, sender: str, to: str) -> bytes:
    return LABEL_AEAD + id_to_bytes(room_id) + id_to_bytes(sender) + id_to_bytes(to)


def _seal(
    identity: Identity,
    invite: Invite,
    to_peer: str,
    kind: str,
    body: Body,
    now: int,
    rng: Rng,
    fingerprints: Sequence[str] | None,
) -> str:
    if not _KIND.fullmatch(kind):
        raise ValueError("bad kind")
    body_json = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    fps = list(_body_fingerprints(body) if fingerprints is None else fingerprints)
    nonce = rng(16)
    sender = identity.peer_id
    sig = identity.sign(signed_bytes(invite.room_id, sender, to_peer, now, nonce, kind, body_json, fps))
    inner = {
        "v": 1,
        "kind": kind,
        "from": sender,
        "to": check_id(to_peer),
        "ts": now,
        "n": b64u_encode(nonce),
        "body": body_json,
        "fp": fps,
        "bundle": identity.public_bundle().to_dict(),
        "sig": b64u_encode(sig),
    }
    plaintext = json.dumps(inner, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    aead_nonce = rng(12)
    ct = aead_seal(invite.signal_key, aead_nonce, plaintext, _aad(invite.room_id, sender, to_peer))
    return "v1." + b64u_encode(aead_nonce + ct)


def seal_signal(
    identity: Identity, invite: Invite, to_peer: str, kind: str, body: Body, now: int, rng: Rng = default_rng
) -> str:
    """Encrypt and sign a signaling message for ``to_peer``; DTLS fingerprints are taken from the SDP."""
    return _seal(identity, invite, to_peer, kind, body, now, rng, None)


def _field(inner: dict[str, Any], name: str, typ: type) -> Any:
    value = inner.get(name)
    if not isinstance(value, typ) or isinstance(value, bool):
        raise ProtocolError("bad-signal", f"field {name!r} missing or mistyped")
    return value


def open_signal(
    invite: Invite, my_peer_id: str, from_peer: str, payload: object, now: int, replay: ReplayCache
) -> OpenedSignal:
    """Decrypt, verify and replay-check a payload relayed from ``from_peer``. ``ProtocolError`` on failure."""
    check_id(my_peer_id)
    check_id(from_peer, "sender")
    if not isinstance(payload, str) or len(payload) > MAX_PAYLOAD_CHARS or not payload.startswith("v1."):
        raise ProtocolError("bad-signal", "malformed payload")
    raw = b64u_decode(payload[3:])
    if len(raw) < 12 + 16:
        raise ProtocolError("bad-signal", "payload too short")
    plaintext = aead_open(invite.signal_key, raw[:12], raw[12:], _aad(invite.room_id, from_peer, my_peer_id))
    try:
        inner = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError("bad-signal", "inner payload is not JSON") from exc
    if not isinstance(inner, dict) or inner.get("v") != 1:
        raise ProtocolError("bad-signal", "unsupported inner version")
    kind = _field(inner, "kind", str)
    if not _KIND.fullmatch(kind):
        raise ProtocolError("bad-signal", "bad kind")
    if _field(inner, "to", str) != my_peer_id:
        raise ProtocolError("wrong-recipient", "payload is addressed to another peer")
    if _field(inner, "from", str) != from_peer:
        raise ProtocolError("wrong-sender", "inner sender differs from relayed sender")
    ts = _field(inner, "ts", int)
    if abs(now - ts) > MAX_SKEW_MS or ts < 0:
        raise ProtocolError("stale", "timestamp outside the allowed window")
    nonce = b64u_decode(inner.get("n"), length=16)
    body_json = _field(inner, "body", str)
    fps = _field(inner, "fp", list)
    if len(fps) > MAX_FINGERPRINTS or not all(
        isinstance(f, str) and f.isascii() and len(f) < 256 for f in fps
    ):
        raise ProtocolError("bad-signal", "bad fingerprint list")
    bundle = PublicBundle.from_dict(inner.get("bundle"))
    if bundle.peer_id != from_peer:
        raise ProtocolError("wrong-sender", "sender id does not match its public key")
    sig = b64u_decode(inner.get("sig"), length=64)
    ed25519_verify(
        bundle.ed25519,
        signed_bytes(invite.room_id, from_peer, my_peer_id, ts, nonce, kind, body_json, fps),
        sig,
    )
    try:
        body = json.loads(body_json)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("bad-signal", "body is not JSON") from exc
    if not isinstance(body, dict | str):
        raise ProtocolError("bad-signal", "body must be an object or a string")
    if _body_fingerprints(body) != fps:
        raise ProtocolError("fingerprint-mismatch", "SDP fingerprints differ from the signed list")
    replay.check_and_add(from_peer, nonce, ts, now)
    return OpenedSignal(kind=kind, body=body, sender_bundle=bundle, sent_at=ts)
