"""Invite links and the keys derived from the room secret.

Rules:
- URL: ``{server}/#v1.{b64u(secret)}[.{ttl_s}][.o{b64u(owner)}][.s{b64u(servers)}]``. The secret is 32 random bytes and
  lives only in the fragment, which browsers never send to a server. ``ttl_s`` is the room's default
  message lifetime in seconds, a decimal integer 1..31_536_000 without leading zeros. ``owner`` (16
  bytes, 22 base64url characters) is the peer id of the room's creator — the hash of its Ed25519 key —
  so every invite holder can check the owner's bundle against it. Invites without it (made before
  roles) still parse: they name a *legacy* room without an owner (see ``peer/core/membership.py``).
- ``server`` is an ``http://`` or ``https://`` origin (plus optional path) without query or fragment.
  An invite usable with LAN discovery alone names no server: its URL is ``ephemesh:#v1...``.
- Several bootstraps: ``.s`` carries more signaling servers, base64url of their URLs (each like
  ``server``) joined by ``"\n"`` in UTF-8; at most ``MAX_EXTRA_SERVERS``, no duplicates, none equal to
  ``server``. The list is *not* an input of any derivation below, so adding or removing servers keeps
  the room (its id and keys); invites without ``.s`` parse as before. ``servers`` is the whole list,
  ``server`` first.
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
MAX_EXTRA_SERVERS = 8
NO_SERVER = "ephemesh:"  # the base of an invite that lists no server (LAN discovery only)
_ID = re.compile(r"[0-9a-f]{32}")

_SERVER = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~\-/%]*)?")
_FRAGMENT = re.compile(
    r"v1\.([A-Za-z0-9_\-]{43})(?:\.([1-9][0-9]{0,7}))?(?:\.o([A-Za-z0-9_\-]{22}))?(?:\.s([A-Za-z0-9_\-]{1,1800}))?"
)


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


def _check_extra(server: str | None, extra: object) -> tuple[str, ...]:
    if not isinstance(extra, tuple | list) or len(extra) > MAX_EXTRA_SERVERS:
        raise ProtocolError("bad-invite", f"at most {MAX_EXTRA_SERVERS} extra servers")
    out: list[str] = []
    for s in extra:
        if not isinstance(s, str):
            raise ProtocolError("bad-invite", "a server must be a string")
        url = _check_server(s)
        if url == server or url in out:
            raise ProtocolError("bad-invite", "a server is listed twice")
        out.append(url)
    return tuple(out)


def encode_servers(servers: tuple[str, ...]) -> str:
    """The ``.s`` component's payload: b64u of the URLs joined by newlines."""
    return b64u_encode("\n".join(servers).encode())


def decode_servers(text: str) -> tuple[str, ...]:
    try:
        raw = b64u_decode(text, max_len=1800).decode("utf-8")
    except (ProtocolError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad-invite", "malformed server list") from exc
    return tuple(raw.split("\n"))


@dataclass(frozen=True)
class Invite:
    """A room invitation: the signaling server URL (None: LAN discovery only), the room secret, an
    optional default TTL, the owner's peer id (None: a legacy room without roles) and more servers."""

    server: str | None
    secret: bytes = field(repr=False)
    ttl_s: int | None = None
    owner: str | None = None
    extra_servers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.server is not None:
            object.__setattr__(self, "server", _check_server(self.server))
        object.__setattr__(self, "extra_servers", _check_extra(self.server, self.extra_servers))
        if len(self.secret) != 32:
            raise ProtocolError("bad-invite", "room secret must be 32 bytes")
        if self.ttl_s is not None and not 1 <= self.ttl_s <= MAX_TTL_S:
            raise ProtocolError("bad-invite", "ttl out of range")
        if self.owner is not None and not _ID.fullmatch(self.owner):
            raise ProtocolError("bad-invite", "owner must be a peer id")
        object.__setattr__(self, "_keys", derive_room_keys(self.secret, self.owner))

    @classmethod
    def new(
        cls,
        server: str | None,
        ttl_s: int | None = None,
        rng: Rng = default_rng,
        *,
        owner: str | None = None,
        extra_servers: tuple[str, ...] = (),
    ) -> Invite:
        """A fresh room; ``owner`` (the creator's peer id) makes it a room with roles."""
        return cls(server, rng(32), ttl_s, owner, tuple(extra_servers))

    @property
    def servers(self) -> tuple[str, ...]:
        """Every signaling server the invite lists, ``server`` first (empty: LAN discovery only)."""
        return ((self.server,) if self.server is not None else ()) + self.extra_servers

    def with_servers(self, servers: list[str] | tuple[str, ...]) -> Invite:
        """The same room (same secret, owner, TTL: same id and keys) listing ``servers`` (first =
        ``server``; empty: no server). Duplicates are dropped; ``ProtocolError`` on a bad URL or too many."""
        unique: list[str] = []
        for s in servers:
            url = _check_server(s)
            if url not in unique:
                unique.append(url)
        first = unique[0] if unique else None
        return Invite(first, self.secret, self.ttl_s, self.owner, tuple(unique[1:]))

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
        if self.owner is not None:
            frag += f".o{b64u_encode(id_to_bytes(self.owner))}"
        if self.extra_servers:
            frag += f".s{encode_servers(self.extra_servers)}"
        return frag

    def url(self) -> str:
        base = f"{self.server}/" if self.server is not None else NO_SERVER
        return f"{base}#{self.fragment()}"

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
        extra = decode_servers(m.group(4)) if m.group(4) else ()
        ttl = int(m.group(2)) if m.group(2) else None
        server = None if base == NO_SERVER else base
        return cls(server, secret, ttl, owner, extra)
