"""Membership: the signed ops in the log, the state they give, and THE rule for "who is a known sender".

Rules:
- State is recomputed from every MEMBERSHIP op held, in canonical order, so every member agrees.
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


class Members:
    def __init__(self, room_id: str, member_key: bytes, own: PublicBundle, owner: str | None = None) -> None:
        self.room_id = room_id
        self._member_key = member_key
        self._owner = owner
        self.self_id = own.peer_id
        self.state = MembershipState(room_id, owner=owner)
        self._ops: dict[Key, MembershipOp] = {}
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

    def others(self) -> list[str]:
        return sorted(p for p in self.state.members if p != self.self_id)

    def count_others(self) -> int:
        return len(self.state.members) - 1

    # -- updates -----------------------------------------------------------------------------------

    def add_op(self, key: Key, op: MembershipOp) -> None:
        self._ops[key] = op

    def forget_op(self, key: Key) -> bool:
        """Drop the op held under ``key``; True if there was one."""
        return self._ops.pop(key, None) is not None

    def recompute(self) -> MembershipChange:
        before = self.state
        state, rejected = MembershipState.from_ops(
            self.room_id, list(self._ops.values()), self._member_key, self._owner
        )
        self.state = state
        refused = {id(op) for op in rejected}
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
        return MembershipChange(joined, left, timer, roles)


def _admins(state: MembershipState) -> tuple[str, ...]:
    return tuple(sorted(p for p in state.members if state.is_admin(p)))
