"""Signaling wire protocol v1: frame parsing, authentication and server frame builders.

Rules:
- Every client frame is a JSON text frame holding an object with a string ``type``. Unknown members are
  ignored (forward compatibility); missing or mistyped members are ``bad-frame``.
- Every string in a frame (member names included) must be valid Unicode: a ``\\uD800``-style escape
  that leaves a lone surrogate makes the whole frame ``bad-json``. Anything the server accepts it can
  therefore encode as UTF-8 again, to relay it or to quote it back in an error.
- :func:`parse_frame` either returns a typed frame or raises :class:`FrameError` (a
  :class:`~peer.core.errors.ProtocolError`) whose ``code`` is the stable error code the server sends
  back and whose ``ref`` is the offending frame's type when it could be read. Nothing else escapes it.
- ``b64u`` is base64url without padding; decoding rejects padding, other alphabets and non-canonical
  trailing bits (re-encoding must give back the same text).
- Peer id = lowercase hex of the first 16 bytes of SHA-256(Ed25519 public key). Room ids are 32
  lowercase hex characters and are opaque to the server.
- Authentication signs ``AUTH_CONTEXT + nonce`` with the identity key. The key must be a canonical
  point of the prime-order subgroup (small-order and mixed-order keys are refused: some verifiers
  accept any signature under them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

from peer.core.crypto import b64u_decode as _core_b64u_decode
from peer.core.crypto import b64u_encode as b64u_encode  # re-exported for the server and its tests
from peer.core.crypto import ed25519_verify, validate_ed25519_public
from peer.core.errors import ProtocolError
from peer.core.ids import peer_id_from_public_key as peer_id_from_public_key

PROTOCOL_VERSION: Final = 1
AUTH_CONTEXT: Final = b"ephemesh-signaling-auth-v1\x00"
NONCE_BYTES: Final = 32

_HEX32 = re.compile(r"[0-9a-f]{32}")

# Encodings (y coordinate, sign bit masked off) of the 8 small-order points, including the
# non-canonical encodings p, p+1 and p-1; each was checked to satisfy [8]P = identity.
_SMALL_ORDER_Y: Final = frozenset(
    bytes.fromhex(h)
    for h in (
        "00" * 32,
        "01" + "00" * 31,
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "ec" + "ff" * 30 + "7f",
        "ed" + "ff" * 30 + "7f",
        "ee" + "ff" * 30 + "7f",
    )
)


class FrameError(ProtocolError):
    """A client frame was refused. ``code`` is the wire error code, ``ref`` the frame type if known."""

    def __init__(self, code: str, message: str = "", ref: str | None = None) -> None:
        super().__init__(code, message)
        self.ref = ref


# --------------------------------------------------------------------------------------------------
# encodings and identities


def b64u_decode(text: str) -> bytes:
    """Strict base64url (no padding, canonical); raises ``ProtocolError('bad-frame')``."""
    try:
        return _core_b64u_decode(text)
    except ProtocolError as exc:
        raise ProtocolError("bad-frame", "invalid base64url") from exc


def is_valid_id(value: object) -> bool:
    """True for a 32-character lowercase hex string (room ids and peer ids)."""
    return isinstance(value, str) and _HEX32.fullmatch(value) is not None


def is_small_order(public_key: bytes) -> bool:
    """True if ``public_key`` encodes one of the 8 small-order Ed25519 points (any encoding)."""
    if len(public_key) != 32:
        return False
    masked = public_key[:31] + bytes([public_key[31] & 0x7F])
    return masked in _SMALL_ORDER_Y


def is_acceptable_public_key(public_key: bytes) -> bool:
    """A 32-byte canonical point of the prime-order subgroup that is not small-order (the core's rule)."""
    try:
        validate_ed25519_public(public_key)
    except ProtocolError:
        return False
    return not is_small_order(public_key)


def auth_message(nonce: bytes) -> bytes:
    """The exact bytes a client signs to answer a challenge."""
    return AUTH_CONTEXT + nonce


def verify_auth(public_key: bytes, signature: bytes, nonce: bytes) -> str:
    """Check an ``auth`` answer; return the peer id or raise ``ProtocolError('auth-failed')``."""
    if not is_acceptable_public_key(public_key):
        raise ProtocolError("auth-failed", "unacceptable public key")
    try:
        ed25519_verify(public_key, auth_message(nonce), signature)  # strict: canonical R and S too
    except ProtocolError as exc:
        raise ProtocolError("auth-failed", "bad signature") from exc
    return peer_id_from_public_key(public_key)


# --------------------------------------------------------------------------------------------------
# client frames


@dataclass(frozen=True, slots=True)
class Auth:
    pubkey: bytes
    sig: bytes


@dataclass(frozen=True, slots=True)
class Join:
    room: str


@dataclass(frozen=True, slots=True)
class Leave:
    room: str


@dataclass(frozen=True, slots=True)
class Signal:
    room: str
    to: str
    payload: str


@dataclass(frozen=True, slots=True)
class Ping:
    pass


ClientFrame = Auth | Join | Leave | Signal | Ping


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def decode_json_object(text: str) -> dict[str, Any]:
    """Parse a JSON object; raise ``FrameError('bad-json')`` for anything that is not one."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise FrameError("bad-json", "frame is not valid JSON") from exc
    if not isinstance(value, dict):
        raise FrameError("bad-json", "frame is not a JSON object")
    if not _all_text_encodable(value):
        raise FrameError("bad-json", "frame holds a lone surrogate (not Unicode text)")
    return value


def _all_text_encodable(value: object) -> bool:
    """True if every string in the decoded JSON ``value`` (keys too) encodes as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _field_str(obj: dict[str, Any], name: str, ref: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        raise FrameError("bad-frame", f"'{name}' must be a string", ref)
    return value


def _field_room(obj: dict[str, Any], ref: str) -> str:
    room = obj.get("room")
    if not is_valid_id(room):
        if isinstance(room, str):
            raise FrameError("bad-room", "room must be 32 lowercase hex characters", ref)
        raise FrameError("bad-frame", "'room' must be a string", ref)
    assert isinstance(room, str)
    return room


def _field_b64(obj: dict[str, Any], name: str, ref: str) -> bytes:
    try:
        return b64u_decode(_field_str(obj, name, ref))
    except FrameError:
        raise
    except ProtocolError as exc:
        raise FrameError("bad-frame", f"'{name}' is not base64url", ref) from exc


def parse_frame(data: str | bytes, max_frame_bytes: int, max_payload_chars: int) -> ClientFrame:
    """Parse one client WebSocket message (``bytes`` = a binary frame, always refused)."""
    if isinstance(data, bytes):
        raise FrameError("bad-frame", "binary frames are not accepted")
    if len(data) > max_frame_bytes or len(data.encode("utf-8", "surrogatepass")) > max_frame_bytes:
        raise FrameError("too-large", f"frame exceeds {max_frame_bytes} bytes")
    obj = decode_json_object(data)
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise FrameError("bad-frame", "'type' must be a string")
    if kind == "auth":
        return Auth(_field_b64(obj, "pubkey", kind), _field_b64(obj, "sig", kind))
    if kind == "join":
        return Join(_field_room(obj, kind))
    if kind == "leave":
        return Leave(_field_room(obj, kind))
    if kind == "signal":
        room = _field_room(obj, kind)
        to = obj.get("to")
        if not is_valid_id(to):
            raise FrameError("bad-frame", "'to' must be a peer id", kind)
        assert isinstance(to, str)
        payload = _field_str(obj, "payload", kind)
        if len(payload) > max_payload_chars:
            raise FrameError("too-large", f"payload exceeds {max_payload_chars} characters", kind)
        return Signal(room, to, payload)
    if kind == "ping":
        return Ping()
    raise FrameError("unknown-type", "unknown frame type", kind[:32])


# --------------------------------------------------------------------------------------------------
# server frames (plain dicts, serialised by the transport)

ServerFrame = dict[str, Any]


def _num(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def challenge(nonce: bytes, heartbeat_s: float, idle_timeout_s: float) -> ServerFrame:
    return {
        "type": "challenge",
        "v": PROTOCOL_VERSION,
        "nonce": b64u_encode(nonce),
        "heartbeat_s": _num(heartbeat_s),
        "idle_timeout_s": _num(idle_timeout_s),
    }


def error(code: str, message: str, ref: str | None = None, room: str | None = None) -> ServerFrame:
    frame: ServerFrame = {"type": "error", "code": code, "message": message}
    if ref is not None:
        frame["ref"] = ref
    if room is not None:
        frame["room"] = room
    return frame


def joined(room: str, peers: list[str]) -> ServerFrame:
    return {"type": "joined", "room": room, "peers": peers}


def left(room: str) -> ServerFrame:
    return {"type": "left", "room": room}


def peer_joined(room: str, peer: str) -> ServerFrame:
    return {"type": "peer-joined", "room": room, "peer": peer}


def peer_left(room: str, peer: str) -> ServerFrame:
    return {"type": "peer-left", "room": room, "peer": peer}


def signal(room: str, sender: str, payload: str) -> ServerFrame:
    return {"type": "signal", "room": room, "from": sender, "payload": payload}


def pong(now_ms: int) -> ServerFrame:
    return {"type": "pong", "t": now_ms}
