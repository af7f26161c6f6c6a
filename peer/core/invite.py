"""Invite links and the keys derived from the room secret.

Rules:
- URL: ``{server}/#v1.{b64u(secret)}[.{ttl_s}][.o{b64u(owner)}]``. The secret is 32 random bytes and
  lives only in the fragment, which browsers never send to a server. ``ttl_s`` is the room's default
  message lifetime in seconds, a decimal integer 1..31_536_000 without leading zeros. ``owner`` (16
  bytes, 22 base64url characters) is the peer id of the room's creator — the hash of its Ed25519 key —
  so every invite holder can check the owner's bundle against it. Invites without it (made before
  roles) still parse: they name a *legacy* room without an owner (see ``peer/core/membership.py``).
- ``server`` is an ``http://`` or ``https://`` origin (plus optional path) without query or fragment.
- Derivations (HKDF-SHA256, ikm = secret, or ``secret || owner`` (32 + 16 bytes) when the invite names
  an owner, salt = ``"ephemesh-v1"``, 32 bytes out). The owner is thus bound unforgeably: an invite with
  another owner id derives another room id and other keys, i.e. it is another room, and a holder of
  the invite cannot make itself owner of this one.
  ``room_id`` = hex(first 16 bytes of info ``"ephemesh-v1 room-id"``),
  ``signal_key`` = info ``"ephemesh-v1 signal-key"``, ``member_key`` = info ``"ephemesh-v1 member-key"``.
- ``Invite.parse`` raises ``ProtocolError("bad-invite")`` on anything malformed; ``repr`` hides the secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from peer.core.crypto import Rng, b64u_decode, b64u_encode, default_rng, hkdf
from peer.core.errors import ProtocolError
from peer.core.ids import id_from_bytes, id_to_bytes

HKDF_SALT = b"ephemesh-v1"
INFO_ROOM_ID = b"ephemesh-v1 room-id"
INFO_SIGNAL_KEY = b"ephemesh-v1 signal-key"
INFO_MEMBER_KEY = b"ephemesh-v1 member-key"
MAX_TTL_S = 31_536_000
MAX_URL_LEN = 2048
_ID = re.compile(r"[0-9a-f]{32}")

_SERVER = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~\-/%]*)?")
_FRAGMENT = re.compile(r"v1\.([A-Za-z0-9_\-]{43})(?:\.([1-9][0-9]{0,7}))?(?:\.o([A-Za-z0-9_\-]{22}))?")


@dataclass(frozen=True)
class RoomKeys:
    """Everything derived from a room secret."""

    room_id: str
    signal_key: bytes = field(repr=False)
    member_key: bytes = field(repr=False)


def derive_room_keys(secret: bytes, owner: str | None = None) -> RoomKeys:
    if len(secret) != 32:
        raise ValueError("room secret must be 32 bytes")
    ikm = secret if owner is None else secret + id_to_bytes(owner)
    return RoomKeys(
        room_id=hkdf(ikm, salt=HKDF_SALT, info=INFO_ROOM_ID)[:16].hex(),
        signal_key=hkdf(ikm, salt=HKDF_SALT, info=INFO_SIGNAL_KEY),
        member_key=hkdf(ikm, salt=HKDF_SALT, info=INFO_MEMBER_KEY),
    )


def _check_server(server: str) -> str:
    server = server.rstrip("/")
    if len(server) > 1024 or not _SERVER.fullmatch(server):
        raise ProtocolError("bad-invite", "server must be an http(s) URL without query or fragment")
    return server


@dataclass(frozen=True)
class Invite:
    """A room invitation: the signaling server URL, the room secret, an optional default TTL and the
    owner's peer id (None: a legacy room without roles)."""

    server: str
    secret: bytes = field(repr=False)
    ttl_s: int | None = None
    owner: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "server", _check_server(self.server))
        if len(self.secret) != 32:
            raise ProtocolError("bad-invite", "room secret must be 32 bytes")
        if self.ttl_s is not None and not 1 <= self.ttl_s <= MAX_TTL_S:
            raise ProtocolError("bad-invite", "ttl out of range")
        if self.owner is not None and not _ID.fullmatch(self.owner):
            raise ProtocolError("bad-invite", "owner must be a peer id")
        object.__setattr__(self, "_keys", derive_room_keys(self.secret, self.owner))

    @classmethod
    def new(
        cls, server: str, ttl_s: int | None = None, rng: Rng = default_rng, *, owner: str | None = None
    ) -> Invite:
        """A fresh room; ``owner`` (the creator's peer id) makes it a room with roles."""
        return cls(server, rng(32), ttl_s, owner)

    @property
    def keys(self) -> RoomKeys:
        keys = self.__dict__["_keys"]
        assert isinstance(keys, RoomKeys)
        return keys

    @property
    def room_id(self) -> str:
        return self.keys.room_id

    @property
    def signal_key(self) -> bytes:
        return self.keys.signal_key

    @property
    def member_key(self) -> bytes:
        return self.keys.member_key

    def fragment(self) -> str:
        frag = "v1." + b64u_encode(self.secret)
        if self.ttl_s is not None:
            frag += f".{self.ttl_s}"
        return frag if self.owner is None else f"{frag}.o{b64u_encode(id_to_bytes(self.owner))}"

    def url(self) -> str:
        return f"{self.server}/#{self.fragment()}"

    @classmethod
    def parse(cls, url: object) -> Invite:
        """Parse an invite URL; ``ProtocolError("bad-invite")`` on anything malformed."""
        if not isinstance(url, str) or len(url) > MAX_URL_LEN or url.count("#") != 1:
            raise ProtocolError("bad-invite", "expected one URL with a fragment")
        base, _, frag = url.partition("#")
        m = _FRAGMENT.fullmatch(frag)
        if m is None:
            raise ProtocolError("bad-invite", "malformed fragment")
        try:
            secret = b64u_decode(m.group(1), length=32)
            owner = id_from_bytes(b64u_decode(m.group(3), length=16)) if m.group(3) else None
        except ProtocolError as exc:
            raise ProtocolError("bad-invite", "malformed secret or owner") from exc
        ttl = int(m.group(2)) if m.group(2) else None
        return cls(base, secret, ttl, owner)
