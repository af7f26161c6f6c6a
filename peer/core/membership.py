"""Signed membership operations and the room's membership state (the closed-room rules: :mod:`peer.core.admission_rules`).

Wire (big-endian)::

    0x01 | op u8 | room_id (16) | author (16) | lamport u64 | body | mac (32) | sig (64)
    ADD       (1) body = member PublicBundle (128) | member SignedPrekey (104)
    REMOVE    (2) body = target peer id (16)
    SET_TIMER (3) body = ttl_s u32 (0 = messages do not expire) | version u32
    ROLE      (4) body = target peer id (16) | role u8 (0 = member, 1 = admin)
    READMIT   (5) body = target peer id (16)
    SETTINGS  (6) body = flags u32 (bit 0 = announcement mode: only admins post; other bits 0)
    ADMISSION (7) body = mode u8 (0 = open, 1 = closed) | n u16 | n x peer id (16), strictly ascending;
                  open: n = 0; closed: 1 <= n <= 1,024 (the ids the closing admin admits)

``mac = HMAC-SHA256(member_key, LABEL_MAC || bytes before mac)`` proves the author holds the room secret;
``sig = Ed25519(author, LABEL_SIG || bytes before sig)`` proves who wrote it.

Roles. A room has an **owner**, **admins** and **members**. The owner is bound by the invite (an owned
invite carries the owner's peer id, the hash of its key, and the room's keys are derived from it, so
changing it makes another room): ``MembershipState.owner``. The owner is always an admin; admins are
appointed (and demoted) by the owner or any admin with ROLE. A room whose invite names no owner (invites
made before roles) is a *legacy* room: every member is an admin there, as before, and ROLE is refused.

Rules (``MembershipState.apply`` — deterministic; apply ops in the canonical order ``(lamport, author,
SHA-256(op))``, which ``MembershipState.from_ops`` does; an op is valid iff its author had the role it
needs in the state just before it, so every member holding the same set of ops gets the same state):

==========  ======================================================================================
ADD         author is a current member, or adds itself (an invite holder is a member). The target
            must not be removed. Re-adding a member replaces its prekey if the prekey is newer.
REMOVE      target must be a member. Removing oneself (leaving) is open to everyone; removing
            another needs an admin author, and the owner cannot be removed by anyone else. The
            target joins ``removed`` (it cannot self-ADD back), loses its admin role, and ``epoch``
            increments: every sender rotates its chain, the removed member never gets the new one.
ROLE        author is an admin; target is a current member other than the owner; sets the target's
            role (admin or member). Refused in a legacy room.
READMIT     author is an admin; target is in ``removed``. The target is a member again (with its
            last bundle and prekey, as a plain member) and ``epoch`` increments, so every sender
            rotates and hands the readmitted member its new chain.
SET_TIMER   author is an admin. Versions form a chain from 1: the timer is the op with the
            highest *reachable* version (one for which every lower version 1..v-1 has an op too),
            ties broken by the highest author (then ttl). A client writes ``current version + 1``.
            An op that skips versions is held, not applied, until the gap fills, so no one can pin
            the timer with a huge version (e.g. 2**32-1): the next honest change outranks any op
            an attacker could place, and reachable versions only grow by one per change. The
            winner depends on the set of accepted ops only, not on their order or lamport.
SETTINGS    author is an admin; the flags of the latest valid SETTINGS op in canonical order hold.
            ``announce_since`` is the lamport of the op that turned announcement mode on (0 = off):
            while it is on, a chat envelope of a non-admin with a later lamport is not shown.
ADMISSION   author is an admin; refused in a legacy room (no owner). *Close* (mode 1): the members
            become the listed ids that are members at that point, plus the author and the owner; the
            others leave the member set (not ``removed``: they become join requests an admin can
            admit); ``epoch`` does not change (a late self-ADD sorts before the close: counting it
            would rotate every sender at each join; REMOVE is what rotates). Earlier names admitted (``allowed``) are
            dropped: a later close replaces the list. *Open* (mode 0): open admission again; every
            pending join request becomes a member.
(closed)    while closed, an ADD admits only a current member (prekey refresh), an id in ``allowed``,
            or (an admin's ADD of another identity) the target; any other ADD, whatever its lamport,
            is valid but admits no one: its target becomes a *join request* (``requests``, at most
            ``MAX_REQUESTS``; later ones beyond that are not recorded).
            READMIT (*admit*) of a not-yet-member: author is an admin; a join request becomes a member
            at once, otherwise (closed room) the id joins ``allowed`` and its next ADD admits it.
==========  ======================================================================================

Concurrent ops are ordered by the canonical order, nothing else: if admin A demotes admin B while B
removes C, B's REMOVE stands iff it sorts before A's ROLE (lower lamport, then lower author id, then
digest); otherwise B was no longer an admin when it applied and it is rejected everywhere. Two admins
demoting each other: the first in canonical order wins, the second is rejected (its author is no longer an
admin). Every member holding the same ops computes the same winner; ops that arrive later recompute it.

Cost: an op's MAC, signature and prekey are checked once (``verified`` remembers the digests of ops that
passed; a peer id is the hash of its key, so the check does not depend on the state): recomputing n ops
costs n crypto checks in all, never O(n²).

Every op: right room, valid MAC under ``member_key``, valid signature by the author's key (the member's
key from the state, or the bundle of a self-add), and the author not removed. Rejections raise
``ProtocolError`` and leave the state unchanged.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from enum import IntEnum
from functools import cached_property
from typing import Any

from peer.core.admission_rules import MAX_CLOSE_IDS as MAX_CLOSE_IDS  # re-exported (op bounds)
from peer.core.admission_rules import MAX_REQUESTS as MAX_REQUESTS  # re-exported
from peer.core.admission_rules import (
    admission_body,
    admit_ahead,
    apply_admission,
    check_admission_body,
    request_instead,
)
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
MAX_OP = 42 + 3 + MAX_CLOSE_IDS * 16 + 96  # the largest op (a close listing MAX_CLOSE_IDS ids)
_PREFIX = struct.Struct(">BB16s16sQ")  # 42 bytes


class OpType(IntEnum):
    ADD = 1
    REMOVE = 2
    SET_TIMER = 3
    ROLE = 4
    READMIT = 5
    SETTINGS = 6
    ADMISSION = 7


class Role(IntEnum):
    MEMBER = 0
    ADMIN = 1


ANNOUNCE = 1  # SETTINGS flag bit 0: only admins post
_BODY_LEN = {
    OpType.ADD: 232,
    OpType.REMOVE: 16,
    OpType.SET_TIMER: 8,
    OpType.ROLE: 17,
    OpType.READMIT: 16,
    OpType.SETTINGS: 4,
    # ADMISSION: 3 + 16 n (checked in decode)
}


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

    @cached_property  # parsed once per op (a replay reads it again for every op)
    def digest(self) -> bytes:
        return sha256(self.encode())

    @property
    def sort_key(self) -> tuple[int, str, bytes]:
        return (self.lamport, self.author, self.digest)

    @cached_property  # parsed once per op (a replay reads it again for every op)
    def bundle(self) -> PublicBundle:
        return PublicBundle.from_bytes(self.body[:128])

    @cached_property  # parsed once per op (a replay reads it again for every op)
    def prekey(self) -> SignedPrekey:
        return SignedPrekey.from_bytes(self.body[128:])

    @property
    def target(self) -> str:
        """The member concerned (ADD: the added member, REMOVE/ROLE/READMIT: the one named)."""
        if self.op == OpType.ADD:
            return self.bundle.peer_id
        return id_from_bytes(self.body[:16])

    @property
    def role(self) -> Role:
        return Role(self.body[16])

    @property
    def flags(self) -> int:
        return int.from_bytes(self.body[:4], "big")

    @property
    def closing(self) -> bool:
        """ADMISSION: True = close, False = open."""
        return self.body[0] == 1

    @cached_property
    def admits(self) -> tuple[str, ...]:
        """ADMISSION (close): the listed peer ids, ascending."""
        return tuple(id_from_bytes(self.body[3 + 16 * i : 19 + 16 * i]) for i in range(len(self.body) // 16))

    @property
    def timer(self) -> tuple[int, int]:
        ttl_s, version = struct.unpack(">II", self.body)
        return int(ttl_s), int(version)

    @classmethod
    def decode(cls, data: object) -> MembershipOp:
        """Parse (signature and MAC are checked by ``apply``); ``ProtocolError`` if malformed."""
        if not isinstance(data, bytes) or len(data) < _PREFIX.size + 3 + 96 or len(data) > MAX_OP:
            raise ProtocolError("bad-op", "bad size")
        version, op, room, author, lamport = _PREFIX.unpack(data[: _PREFIX.size])
        if version != 1 or op not in OpType.__members__.values():
            raise ProtocolError("bad-op", "unknown version or op")
        if op != OpType.ADMISSION and len(data) > 1024:
            raise ProtocolError("bad-op", "bad size")
        check_int(lamport, "bad-op", "lamport")
        body = data[_PREFIX.size : -96]
        if op == OpType.ADMISSION:
            check_admission_body(body)
        elif len(body) != _BODY_LEN[OpType(op)]:
            raise ProtocolError("bad-op", "bad body length")
        parsed = cls(
            OpType(op), id_from_bytes(room), id_from_bytes(author), lamport, body, data[-96:-64], data[-64:]
        )
        if parsed.op == OpType.ADD:
            parsed.bundle  # noqa: B018  (validates the bundle and its certificate)
            parsed.prekey  # noqa: B018
        elif parsed.op == OpType.SET_TIMER and parsed.timer[0] > MAX_TTL_S:
            raise ProtocolError("bad-op", "ttl out of range")
        elif parsed.op == OpType.ROLE and parsed.body[16] not in (Role.MEMBER, Role.ADMIN):
            raise ProtocolError("bad-op", "unknown role")
        elif parsed.op == OpType.SETTINGS and parsed.flags & ~ANNOUNCE:
            raise ProtocolError("bad-op", "unknown settings flag")
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


def make_role(
    identity: Identity, member_key: bytes, room_id: str, lamport: int, target: str, role: Role
) -> MembershipOp:
    return _make(
        identity, member_key, room_id, lamport, OpType.ROLE, id_to_bytes(target) + bytes([Role(role)])
    )


def make_readmit(
    identity: Identity, member_key: bytes, room_id: str, lamport: int, target: str
) -> MembershipOp:
    return _make(identity, member_key, room_id, lamport, OpType.READMIT, id_to_bytes(target))


def make_settings(
    identity: Identity, member_key: bytes, room_id: str, lamport: int, *, announce: bool
) -> MembershipOp:
    return _make(identity, member_key, room_id, lamport, OpType.SETTINGS, u32(ANNOUNCE if announce else 0))


def make_admission(
    identity: Identity,
    member_key: bytes,
    room_id: str,
    lamport: int,
    admits: list[str] | frozenset[str] | tuple[str, ...] | None,
) -> MembershipOp:
    """Close the room admitting ``admits`` (sorted here; must include no more than 1,024 ids), or open
    it (``admits`` None)."""
    return _make(identity, member_key, room_id, lamport, OpType.ADMISSION, admission_body(admits))


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
    """Who is in the room, who was removed, roles, settings, the room timer and the epoch (number of
    removals and readmissions)."""

    room_id: str
    members: dict[str, Member] = field(default_factory=dict)
    removed: frozenset[str] = frozenset()
    timer: Timer | None = None
    epoch: int = 0
    owner: str | None = None  # from the invite; None = a legacy room (every member is an admin)
    admins: frozenset[str] = frozenset()  # appointed admins (the owner is one without appointment)
    announce_since: int = 0  # lamport of the SETTINGS op that turned announcement mode on; 0 = off
    closed: bool = False  # admission closed by an ADMISSION op (admins admit by name)
    allowed: frozenset[str] = frozenset()  # closed: ids an admin admitted ahead of their ADD
    requests: dict[str, Member] = field(default_factory=dict)  # closed: ADDs that admitted no one
    #: the last member record of each removed member (what READMIT restores); not part of equality
    former: dict[str, Member] = field(default_factory=dict, compare=False)
    #: accepted SET_TIMER ops above the reachable chain (a gap below them); not part of equality
    timer_held: frozenset[Timer] = field(default=frozenset(), compare=False)

    def is_member(self, peer_id: str) -> bool:
        return peer_id in self.members

    def is_admin(self, peer_id: str) -> bool:
        """A current member with the admin role (the owner, an appointed admin, anyone in a legacy room)."""
        if peer_id not in self.members:
            return False
        return self.owner is None or peer_id == self.owner or peer_id in self.admins

    @property
    def announce(self) -> bool:
        return self.announce_since > 0

    def may_post(self, peer_id: str, lamport: int) -> bool:
        """May a chat envelope of ``peer_id`` at ``lamport`` be shown (announcement mode)."""
        return not self.announce or lamport <= self.announce_since or self.is_admin(peer_id)

    def apply(
        self, op: MembershipOp, member_key: bytes, verified: set[bytes] | None = None
    ) -> MembershipState:
        """Return the state after ``op``; ``ProtocolError`` (state unchanged) if the op is not allowed.

        ``verified``: digests of ops whose MAC/signature/prekey already passed (skipped, and filled in)."""
        digest = op.digest if verified is not None else b""
        checked = verified is not None and digest in verified
        if op.room_id != self.room_id:
            raise ProtocolError("wrong-room", "op for another room")
        if not checked:
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
        if not checked:
            ed25519_verify(author_key, LABEL_SIG + op._prefix() + op.mac, op.signature)
        if op.op == OpType.ADD:
            state = self._add(op, checked, author is not None and self.is_admin(op.author))
            if verified is not None:
                verified.add(digest)
            return state
        if verified is not None:
            verified.add(digest)  # the op's own crypto passed; role checks below are state-dependent
        if op.op == OpType.REMOVE:
            return self._remove(op)
        if not self.is_admin(op.author):
            raise ProtocolError("not-admin", "only an admin may do this")
        if op.op == OpType.ROLE:
            return self._role(op)
        if op.op == OpType.READMIT:
            return self._readmit(op)
        if op.op == OpType.ADMISSION:
            return self._admission(op)
        if op.op == OpType.SETTINGS:
            announce_since = (self.announce_since or max(op.lamport, 1)) if op.flags & ANNOUNCE else 0
            return replace(self, announce_since=announce_since)
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

    def _remove(self, op: MembershipOp) -> MembershipState:
        target = op.target
        if target not in self.members:
            raise ProtocolError("not-member", "target is not a member")
        if target != op.author:  # leaving is open to everyone; removing another is not
            if not self.is_admin(op.author):
                raise ProtocolError("not-admin", "only an admin may remove another member")
            if target == self.owner:
                raise ProtocolError("not-allowed", "the owner cannot be removed by another member")
        members = {k: v for k, v in self.members.items() if k != target}
        return replace(
            self,
            members=members,
            removed=self.removed | {target},
            admins=self.admins - {target},
            former={**self.former, target: self.members[target]},
            epoch=self.epoch + 1,
        )

    def _role(self, op: MembershipOp) -> MembershipState:
        target = op.target
        if self.owner is None:
            raise ProtocolError("not-allowed", "a legacy room has no roles")
        if target not in self.members:
            raise ProtocolError("not-member", "target is not a member")
        if target == self.owner:
            raise ProtocolError("not-allowed", "the owner's role cannot change")
        admins = self.admins | {target} if op.role == Role.ADMIN else self.admins - {target}
        return self if admins == self.admins else replace(self, admins=admins)

    def _admission(self, op: MembershipOp) -> MembershipState:
        return apply_admission(self, op)

    def _readmit(self, op: MembershipOp) -> MembershipState:
        target = op.target
        record = self.former.get(target)
        if target not in self.removed and target not in self.members:  # admit a not-yet-member
            return admit_ahead(self, target)
        if target not in self.removed or record is None:
            raise ProtocolError("not-removed", "target is not a removed member")
        return replace(
            self,
            members={**self.members, target: record},
            allowed=self.allowed - {target},
            removed=self.removed - {target},
            former={k: v for k, v in self.former.items() if k != target},
            epoch=self.epoch + 1,
        )

    def _add(self, op: MembershipOp, checked: bool = False, by_admin: bool = False) -> MembershipState:
        bundle, prekey = op.bundle, op.prekey
        target = bundle.peer_id
        if target in self.removed:
            raise ProtocolError("removed", "target was removed from the room")
        if not checked:
            prekey.verify(bundle)
        current = self.members.get(target)
        if current is not None and current.prekey.created_at >= prekey.created_at:
            return self
        if current is None:  # closed: valid, admits no one; a join request an admin can admit
            request = request_instead(self, op, Member(bundle, prekey), by_admin=by_admin)
            if request is not None:
                return request
        return replace(
            self,
            members={**self.members, target: Member(bundle, prekey)},
            allowed=self.allowed - {target},
            requests={k: v for k, v in self.requests.items() if k != target},
        )

    @classmethod
    def from_ops(
        cls,
        room_id: str,
        ops: list[MembershipOp],
        member_key: bytes,
        owner: str | None = None,
        verified: set[bytes] | None = None,
    ) -> tuple[MembershipState, list[MembershipOp]]:
        """Apply a set of ops in canonical order; returns (state, rejected ops). ``owner``: the invite's."""
        state = cls(check_id(room_id), owner=None if owner is None else check_id(owner))
        rejected: list[MembershipOp] = []
        for op in sorted(ops, key=lambda o: o.sort_key):
            try:
                state = state.apply(op, member_key, verified)
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
            "owner": self.owner,
            "admins": sorted(self.admins),
            "announce_since": self.announce_since,
            **(
                {
                    "closed": self.closed,
                    "allowed": sorted(self.allowed),
                    "requests": {
                        pid: {"bundle": m.bundle.to_dict(), "prekey": b64u_encode(m.prekey.to_bytes())}
                        for pid, m in sorted(self.requests.items())
                    },
                }
                if self.closed or self.requests or self.allowed
                else {}
            ),
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
            owner = data.get("owner")
            requests = {
                check_id(pid): Member(
                    PublicBundle.from_dict(m["bundle"]), SignedPrekey.from_bytes(b64u_decode(m["prekey"]))
                )
                for pid, m in data.get("requests", {}).items()
            }
            return cls(
                check_id(data["room_id"]),
                members,
                frozenset(check_id(p) for p in data["removed"]),
                timer,
                int(data["epoch"]),
                None if owner is None else check_id(owner),
                frozenset(check_id(p) for p in data.get("admins", [])),
                int(data.get("announce_since", 0)),
                bool(data.get("closed", False)),
                frozenset(check_id(p) for p in data.get("allowed", [])),
                requests,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProtocolError("bad-state", "malformed membership state") from exc
