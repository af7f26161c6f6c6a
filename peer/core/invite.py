"""Invite links and the keys derived from the room secret.

Rules:
- URL: ``{server}/#v1.{b64u(secret)}`` or ``{server}/#v1.{b64u(secret)}.{ttl_s}``. The secret is 32
  random bytes and lives only in the fragment, which browsers never send to a server. ``ttl_s`` is the
  room's default message lifetime in seconds, a decimal integer 1..31_536_000 without leading zeros.
- ``server`` is an ``http://`` or ``https://`` origin (plus optional path) without query or fragment.
- Derivations (HKDF-SHA256, ikm = secret, salt = ``"ephemesh-v1"``, 32 bytes out):
  ``room_id`` = hex(first 16 bytes of info ``"ephemesh-v1 room-id"``),
  ``signal_key`` = info ``"ephemesh-v1 signal-key"``, ``member_key`` = info ``"ephemesh-v1 member-key"``.
- ``Invite.parse`` raises ``ProtocolError("bad-invite")`` on anything malformed; ``repr`` hides the secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from peer.core.crypto import Rng, b64u_decode, b64u_encode, default_rng, hkdf
from peer.core.errors import ProtocolError

HKDF_SALT = b"ephemesh-v1"
INFO_ROOM_ID = b"ephemesh-v1 room-id"
INFO_SIGNAL_KEY = b"ephemesh-v1 signal-key"
INFO_MEMBER_KEY = b"ephemesh-v1 member-key"
MAX_TTL_S = 31_536_000
MAX_URL_LEN = 2048

_SERVER = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~\-/%]*)?")
_FRAGMENT = re.compile(r"v1\.([A-Za-z0-9_\-]{43})(?:\.([1-9][0-9]{0,7}))?")


@dataclass(frozen=True)
class RoomKeys:
    """Everything derived from a room secret."""

    room_id: str
    signal_key: bytes = field(repr=False)
    member_key: bytes = field(repr=False)


def derive_room_keys(secret: bytes) -> RoomKeys:
    if len(secret) != 32:
        raise ValueError("room secret must be 32 bytes")
    return RoomKeys(
        room_id=hkdf(secret, salt=HKDF_SALT, info=INFO_ROOM_ID)[:16].hex(),
        signal_key=hkdf(secret, salt=HKDF_SALT, info=INFO_SIGNAL_KEY),
        member_key=hkdf(secret, salt=HKDF_SALT, info=INFO_MEMBER_KEY),
    )


def _check_server(server: str) -> str:
    server = server.rstrip("/")
    if len(server) > 1024 or not _SERVER.fullmatch(server):
        raise ProtocolError("bad-invite", "server must be an http(s) URL without query or fragment")
    return server


@dataclass(frozen=True)
class Invite:
    """A room invitation: the signaling server URL, the room secret and an optional default TTL."""

    server: str
    secret: bytes = field(repr=False)
    ttl_s: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "server", _check_server(self.server))
        if len(self.secret) != 32:
            raise ProtocolError("bad-invite", "room secret must be 32 bytes")
        if self.ttl_s is not None and not 1 <= self.ttl_s <= MAX_TTL_S:
            raise ProtocolError("bad-invite", "ttl out of range")
        object.__setattr__(self, "_keys", derive_room_keys(self.secret))

    @classmethod
    def new(cls, server: str, ttl_s: int | None = None, rng: Rng = default_rng) -> Invite:
        return cls(server, rng(32), ttl_s)

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
        return frag if self.ttl_s is None else f"{frag}.{self.ttl_s}"

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
        except ProtocolError as exc:
            raise ProtocolError("bad-invite", "malformed secret") from exc
        ttl = int(m.group(2)) if m.group(2) else None
        return cls(base, secret, ttl)
