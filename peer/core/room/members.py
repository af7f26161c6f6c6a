"""Membership: the signed ops in the log, the state they give, and THE rule for "who is a known sender".

Rules:
- State is recomputed from every MEMBERSHIP op held, in canonical order, so every member agrees. The
  common case (a new op sorting after every op applied) is applied on top of the current state; only an
  op that sorts earlier, or a forgotten op, replays the whole set, and a replay re-checks no crypto
  (``verified``): n ops cost O(n) signature checks in total, not O(n²).
- A sender is *known* iff it is, or was, a member (its ADD is in our log): :meth:`Members.known_sender`
  is the only place that decides it. Validation, parking, receipts and sender keys all ask here.
- Who may do what (roles, announcement mode) is decided by ``MembershipState`` (owner from the invite);
  this part asks it: :meth:`Members.is_admin`, :meth:`Members.may_post`.
- A bundle learned from a signed signaling payload only lets us *link* with a peer (handshake); it never
  makes that peer a known sender.
- Persists nothing of its own: ops are envelopes in the log, recomputed on restore.
- Placement (PROTOCOL.md, "Order"): an envelope of S other than S's self-ADD must have a lamport above
  the lowest lamport of an accepted ADD of S (:meth:`Members.check_placement`, else ``backdated``).
"""

from __future__ import annotations

from dataclasses import dataclass

from peer.core.errors import ProtocolError
from peer.core.identity import PublicBundle
from peer.core.log import Key
from peer.core.membership import Member, MembershipOp, MembershipState, OpType, Timer


@dataclass(frozen=True)
class MembershipChange:
    joined: list[str]
    left: list[str]
    timer: Timer | None  # the new timer, if it changed
    roles: bool = False  # admins or announcement mode changed
    admission: bool = False  # closed/open or the pending join requests changed


class Members:
    def __init__(self, room_id: str, member_key: bytes, own: PublicBundle, owner: str | None = None) -> None:
        self.room_id = room_id
        self._member_key = member_key
        self._owner = owner
        self.self_id = own.peer_id
        self.state = MembershipState(room_id, owner=owner)
        self._ops: dict[Key, MembershipOp] = {}
        self._verified: set[bytes] = set()  # digests of ops whose MAC/signature/prekey passed
        self._last: tuple[int, str, bytes] | None = None  # sort key of the last op applied
        self._new: list[MembershipOp] = []  # added since the last recompute
        self._replay = False
        self._refused: set[int] = set()  # id() of held ops that the state refused
        self._bundles: dict[str, PublicBundle] = {own.peer_id: own}  # every member ever (ADD seen)
        self._learned: dict[str, PublicBundle] = {}  # from signaling: for links only
        self._admitted_at: dict[str, int] = {}  # member -> lowest lamport of an accepted ADD of it

    # -- the one rule ------------------------------------------------------------------------------

    def known_sender(self, peer: str) -> PublicBundle | None:
        """The bundle of ``peer`` iff it is or was a member of this room, else None."""
        if peer in self.state.members or peer in self.state.removed:
            return self._bundles.get(peer)
        return None

    def check_placement(self, sender: str, lamport: int) -> None:
        """``backdated`` unless ``lamport`` is above the lowest accepted ADD of ``sender`` (its ADD is
        always known first: envelopes that overtake it are parked)."""
        floor = self._admitted_at.get(sender)
        if floor is not None and lamport <= floor:
            raise ProtocolError("backdated", "envelope placed before its author's ADD")

    def link_bundle(self, peer: str) -> PublicBundle | None:
        """The bundle to authenticate a link with ``peer`` (member or introduced); None if removed/unknown."""
        if peer in self.state.removed:
            return None
        return self._bundles.get(peer) or self._learned.get(peer)

    def learn(self, bundle: PublicBundle) -> None:
        self._learned.setdefault(bundle.peer_id, bundle)

    # -- queries -----------------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        return self.state.epoch

    @property
    def timer(self) -> Timer | None:
        return self.state.timer

    def member(self, peer: str) -> Member | None:
        return self.state.members.get(peer)

    def is_member(self, peer: str) -> bool:
        return peer in self.state.members

    def is_removed(self, peer: str) -> bool:
        return peer in self.state.removed

    def is_admin(self, peer: str) -> bool:
        return self.state.is_admin(peer)

    def may_post(self, peer: str, lamport: int) -> bool:
        """Announcement mode: a non-admin's chat envelope after the switch is not shown."""
        return self.state.may_post(peer, lamport)

    def admins(self) -> tuple[str, ...]:
        return _admins(self.state)

    def requests(self) -> tuple[str, ...]:
        """Closed room: peer ids that asked to join (their ADD admitted no one), ascending."""
        return tuple(sorted(self.state.requests))

    def others(self) -> list[str]:
        return sorted(p for p in self.state.members if p != self.self_id)

    def count_others(self) -> int:
        return len(self.state.members) - 1

    # -- updates -----------------------------------------------------------------------------------

    def add_op(self, key: Key, op: MembershipOp) -> None:
        if key in self._ops:
            self._replay = True
        self._ops[key] = op
        self._new.append(op)

    def forget_op(self, key: Key) -> bool:
        """Drop the op held under ``key``; True if there was one."""
        if self._ops.pop(key, None) is None:
            return False
        self._replay = True
        return True

    def recompute(self) -> MembershipChange:
        before = self.state
        new = sorted(self._new, key=lambda o: o.sort_key)
        self._new = []
        if not self._replay and new and (self._last is None or new[0].sort_key > self._last):
            state = before
            for op in new:  # all sort after what was applied: the same result as a replay
                try:
                    state = state.apply(op, self._member_key, self._verified)
                except ProtocolError:  # a refused op leaves the state as it was
                    self._refused.add(id(op))
            self._last = new[-1].sort_key
        elif self._replay or new:
            ops = list(self._ops.values())
            state, rejected = MembershipState.from_ops(
                self.room_id, ops, self._member_key, self._owner, self._verified
            )
            self._refused = {id(op) for op in rejected}
            self._last = max((o.sort_key for o in ops), default=None)
            self._replay = False
        else:
            state = before
        self.state = state
        refused = self._refused
        admitted: dict[str, int] = {}
        for op in self._ops.values():
            if op.op == OpType.ADD and id(op) not in refused:
                admitted[op.target] = min(admitted.get(op.target, op.lamport), op.lamport)
        self._admitted_at = admitted
        for pid, member in state.members.items():
            self._bundles[pid] = member.bundle
        joined = sorted(p for p in set(state.members) - set(before.members) if p != self.self_id)
        left = sorted(set(before.members) - set(state.members))
        timer = state.timer if state.timer is not None and before.timer != state.timer else None
        if state.owner is None:  # legacy room: everyone is an admin, only the mode can change
            roles = before.announce != state.announce
        else:
            roles = (_admins(before), before.announce) != (_admins(state), state.announce)
        admission = (before.closed, sorted(before.requests)) != (state.closed, sorted(state.requests))
        return MembershipChange(joined, left, timer, roles, admission)


def _admins(state: MembershipState) -> tuple[str, ...]:
    return tuple(sorted(p for p in state.members if state.is_admin(p)))
