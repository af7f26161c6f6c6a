"""Signed membership operations and the room's membership state.

Wire (big-endian)::

    0x01 | op u8 | room_id (16) | author (16) | lamport u64 | body | mac (32) | sig (64)
    ADD       (1) body = member PublicBundle (128) | member SignedPrekey (104)
    REMOVE    (2) body = target peer id (16)
    SET_TIMER (3) body = ttl_s u32 (0 = messages do not expire) | version u32

``mac = HMAC-SHA256(member_key, LABEL_MAC || bytes before mac)`` proves the author holds the room secret;
``sig = Ed25519(author, LABEL_SIG || bytes before sig)`` proves who wrote it.

Rules (``MembershipState.apply`` — deterministic; apply ops in the order ``(lamport, author, SHA-256(op))``,
which ``MembershipState.from_ops`` does, so every member holding the same set of ops gets the same state):

==========  ======================================================================================
ADD         author is a current member, or adds itself (an invite holder is a member). The target
            must not have been removed. Re-adding a member replaces its prekey if the prekey is newer.
REMOVE      author is a current member (removing oneself = leaving). Target must be a member.
            The target is removed for good and ``epoch`` increments: every sender must rotate its chain.
SET_TIMER   author is a current member. Versions form a chain from 1: the timer is the op with the
            highest *reachable* version (one for which every lower version 1..v-1 has an op too),
            ties broken by the highest author (then ttl). A client writes ``current version + 1``.
            An op that skips versions is held, not applied, until the gap fills, so no one can pin
            the timer with a huge version (e.g. 2**32-1): the next honest change outranks any op
            an attacker could place, and reachable versions only grow by one per change. The
            winner depends on the set of accepted ops only, not on their order or lamport.
==========  ======================================================================================

Every op: right room, valid MAC under ``member_key``, valid signature by the author's key (the member's
key from the state, or the bundle of a self-add), and the author not removed. Rejections raise
``ProtocolError`` and leave the state unchanged.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any

from peer.core.crypto import (
    b64u_decode,
    b64u_encode,
    ed25519_verify,
    hmac_sha256,
    hmac_verify,
    sha256,
    u32,
)
from peer.core.errors import ProtocolError
from peer.core.handshake import SignedPrekey
from peer.core.identity import Identity, PublicBundle
from peer.core.ids import check_id, id_from_bytes, id_to_bytes
from peer.core.ints import check_int

LABEL_MAC = b"ephemesh-v1 membership-mac\x00"
LABEL_SIG = b"ephemesh-v1 membership-sig\x00"
MAX_TTL_S = 31_536_000
MAX_TIMER_VERSION = 2**32 - 1  # a u32 on the wire
_PREFIX = struct.Struct(">BB16s16sQ")  # 42 bytes


class OpType(IntEnum):
    ADD = 1
    REMOVE = 2
    SET_TIMER = 3


_BODY_LEN = {OpType.ADD: 232, OpType.REMOVE: 16, OpType.SET_TIMER: 8}


@dataclass(frozen=True)
class MembershipOp:
    op: OpType
    room_id: str
    author: str
    lamport: int
    body: bytes
    mac: bytes
    signature: bytes

    def _prefix(self) -> bytes:
        return (
            _PREFIX.pack(1, self.op, id_to_bytes(self.room_id), id_to_bytes(self.author), self.lamport)
            + self.body
        )

    def encode(self) -> bytes:
        return self._prefix() + self.mac + self.signature

    @property
    def digest(self) -> bytes:
        return sha256(self.encode())

    @property
    def sort_key(self) -> tuple[int, str, bytes]:
        return (self.lamport, self.author, self.digest)

    @property
    def bundle(self) -> PublicBundle:
        return PublicBundle.from_bytes(self.body[:128])

    @property
    def prekey(self) -> SignedPrekey:
        return SignedPrekey.from_bytes(self.body[128:])

    @property
    def target(self) -> str:
        """The member concerned (ADD: the added member, REMOVE: the removed one)."""
        if self.op == OpType.ADD:
            return self.bundle.peer_id
        return id_from_bytes(self.body)

    @property
    def timer(self) -> tuple[int, int]:
        ttl_s, version = struct.unpack(">II", self.body)
        return int(ttl_s), int(version)

    @classmethod
    def decode(cls, data: object) -> MembershipOp:
        """Parse (signature and MAC are checked by ``apply``); ``ProtocolError`` if malformed."""
        if not isinstance(data, bytes) or len(data) < _PREFIX.size + 8 + 96 or len(data) > 1024:
            raise ProtocolError("bad-op", "bad size")
        version, op, room, author, lamport = _PREFIX.unpack(data[: _PREFIX.size])
        if version != 1 or op not in OpType.__members__.values():
            raise ProtocolError("bad-op", "unknown version or op")
        check_int(lamport, "bad-op", "lamport")
        body = data[_PREFIX.size : -96]
        if len(body) != _BODY_LEN[OpType(op)]:
            raise ProtocolError("bad-op", "bad body length")
        parsed = cls(
            OpType(op), id_from_bytes(room), id_from_bytes(author), lamport, body, data[-96:-64], data[-64:]
        )
        if parsed.op == OpType.ADD:
            parsed.bundle  # noqa: B018  (validates the bundle and its certificate)
            parsed.prekey  # noqa: B018
        elif parsed.op == OpType.SET_TIMER and parsed.timer[0] > MAX_TTL_S:
            raise ProtocolError("bad-op", "ttl out of range")
        return parsed


def _make(
    identity: Identity, member_key: bytes, room_id: str, lamport: int, op: OpType, body: bytes
) -> MembershipOp:
    prefix = _PREFIX.pack(1, op, id_to_bytes(room_id), id_to_bytes(identity.peer_id), lamport) + body
    mac = hmac_sha256(member_key, LABEL_MAC + prefix)
    sig = identity.sign(LABEL_SIG + prefix + mac)
    return MembershipOp(op, room_id, identity.peer_id, lamport, body, mac, sig)


def make_add(
    identity: Identity,
    member_key: bytes,
    room_id: str,
    lamport: int,
    bundle: PublicBundle,
    prekey: SignedPrekey,
) -> MembershipOp:
    return _make(identity, member_key, room_id, lamport, OpType.ADD, bundle.to_bytes() + prekey.to_bytes())


def make_remove(
    identity: Identity, member_key: bytes, room_id: str, lamport: int, target: str
) -> MembershipOp:
    return _make(identity, member_key, room_id, lamport, OpType.REMOVE, id_to_bytes(target))


def make_set_timer(
    identity: Identity, member_key: bytes, room_id: str, lamport: int, ttl_s: int, version: int
) -> MembershipOp:
    if not 0 <= ttl_s <= MAX_TTL_S:
        raise ValueError("ttl out of range")
    if not 1 <= version <= MAX_TIMER_VERSION:
        raise ValueError("room timer version out of range")
    return _make(identity, member_key, room_id, lamport, OpType.SET_TIMER, u32(ttl_s) + u32(version))


@dataclass(frozen=True)
class Member:
    bundle: PublicBundle
    prekey: SignedPrekey


@dataclass(frozen=True)
class Timer:
    ttl_s: int
    version: int
    author: str


@dataclass(frozen=True)
class MembershipState:
    """Who is in the room, who was removed, the room timer and the epoch (number of removals)."""

    room_id: str
    members: dict[str, Member] = field(default_factory=dict)
    removed: frozenset[str] = frozenset()
    timer: Timer | None = None
    epoch: int = 0
    #: accepted SET_TIMER ops above the reachable chain (a gap below them); not part of equality
    timer_held: frozenset[Timer] = field(default=frozenset(), compare=False)

    def is_member(self, peer_id: str) -> bool:
        return peer_id in self.members

    def apply(self, op: MembershipOp, member_key: bytes) -> MembershipState:
        """Return the state after ``op``; ``ProtocolError`` (state unchanged) if the op is not allowed."""
        if op.room_id != self.room_id:
            raise ProtocolError("wrong-room", "op for another room")
        hmac_verify(member_key, LABEL_MAC + op._prefix(), op.mac)
        if op.author in self.removed:
            raise ProtocolError("removed", "author was removed from the room")
        author = self.members.get(op.author)
        if author is not None:
            author_key = author.bundle.ed25519
        elif op.op == OpType.ADD and op.target == op.author:
            author_key = op.bundle.ed25519
        else:
            raise ProtocolError("not-member", "author is not a member")
        ed25519_verify(author_key, LABEL_SIG + op._prefix() + op.mac, op.signature)
        if op.op == OpType.ADD:
            return self._add(op)
        if op.op == OpType.REMOVE:
            target = op.target
            if target not in self.members:
                raise ProtocolError("not-member", "target is not a member")
            members = {k: v for k, v in self.members.items() if k != target}
            return replace(self, members=members, removed=self.removed | {target}, epoch=self.epoch + 1)
        ttl_s, version = op.timer
        return self._with_timer(Timer(ttl_s, version, op.author))

    def _with_timer(self, new: Timer) -> MembershipState:
        """Add an accepted SET_TIMER and walk the version chain as far as it reaches (see the rules)."""
        timer, held = self.timer, self.timer_held | {new}
        while True:
            level = timer.version if timer is not None else 0
            step = [t for t in held if t.version == level + 1]
            if not step and timer is not None:  # a better op at the current level
                step = [
                    t
                    for t in held
                    if t.version == level and (t.author, t.ttl_s) > (timer.author, timer.ttl_s)
                ]
            if not step:
                break
            timer = max(step, key=lambda t: (t.author, t.ttl_s))
            held = frozenset(t for t in held if t.version >= timer.version and t != timer)
        held = frozenset(t for t in held if timer is None or t.version > timer.version)
        if timer == self.timer and held == self.timer_held:
            return self
        return replace(self, timer=timer, timer_held=held)

    def _add(self, op: MembershipOp) -> MembershipState:
        bundle, prekey = op.bundle, op.prekey
        target = bundle.peer_id
        if target in self.removed:
            raise ProtocolError("removed", "target was removed from the room")
        prekey.verify(bundle)
        current = self.members.get(target)
        if current is not None and current.prekey.created_at >= prekey.created_at:
            return self
        return replace(self, members={**self.members, target: Member(bundle, prekey)})

    @classmethod
    def from_ops(
        cls, room_id: str, ops: list[MembershipOp], member_key: bytes
    ) -> tuple[MembershipState, list[MembershipOp]]:
        """Apply a set of ops in canonical order; returns (state, rejected ops)."""
        state, rejected = cls(check_id(room_id)), []
        for op in sorted(ops, key=lambda o: o.sort_key):
            try:
                state = state.apply(op, member_key)
            except ProtocolError:
                rejected.append(op)
        return state, rejected

    def to_dict(self) -> dict[str, Any]:
        return {
            "room_id": self.room_id,
            "members": {
                pid: {"bundle": m.bundle.to_dict(), "prekey": b64u_encode(m.prekey.to_bytes())}
                for pid, m in sorted(self.members.items())
            },
            "removed": sorted(self.removed),
            "timer": None
            if self.timer is None
            else {"ttl_s": self.timer.ttl_s, "version": self.timer.version, "author": self.timer.author},
            "epoch": self.epoch,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MembershipState:
        """Load a stored state (trusted local input; still validated)."""
        try:
            members = {
                check_id(pid): Member(
                    PublicBundle.from_dict(m["bundle"]), SignedPrekey.from_bytes(b64u_decode(m["prekey"]))
                )
                for pid, m in data["members"].items()
            }
            t = data["timer"]
            timer = None if t is None else Timer(int(t["ttl_s"]), int(t["version"]), check_id(t["author"]))
            return cls(
                check_id(data["room_id"]),
                members,
                frozenset(check_id(p) for p in data["removed"]),
                timer,
                int(data["epoch"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProtocolError("bad-state", "malformed membership state") from exc
