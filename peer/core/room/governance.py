"""The governance API of the room coordinator: the admin actions (timer, removal and readmission,
roles, announcement mode) and the closed-room admission actions (close, open, admit, join requests).

Each action checks the local role rules, then publishes one signed membership op; applying it is the
receive side's (:mod:`inbound`) and the state is ``members``'. Owns no state. A base class of
:class:`peer.core.room.room.Room`, which provides ``identity``, ``invite`` and ``_publish_unchained``.
"""

from __future__ import annotations

from peer.core.envelope import Kind
from peer.core.events import RoomEvent
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.log import LogEntry
from peer.core.membership import (
    MAX_CLOSE_IDS,
    MembershipOp,
    Role,
    make_admission,
    make_readmit,
    make_remove,
    make_role,
    make_set_timer,
    make_settings,
)

from .inbound import Inbound
from .senderkeys import NEVER


class Governance(Inbound):
    identity: Identity
    invite: Invite

    def _publish_unchained(
        self,
        kind: Kind,
        payload: bytes,
        now: int,
        *,
        expires_at: int = NEVER,
        events: list[RoomEvent] | None = None,
    ) -> LogEntry:
        raise NotImplementedError

    def set_timer(self, ttl_s: int, now: int) -> list[RoomEvent]:
        """Set the room's default message lifetime (admins only; a signed, versioned op)."""
        if not self.members_part.is_admin(self.peer_id):
            raise PermissionError("only an admin may change the room timer")
        timer = self.members_part.timer
        version = timer.version + 1 if timer else 1
        op = make_set_timer(
            self.identity, self.invite.member_key, self.room_id, self.sync.tick(), ttl_s, version
        )
        events: list[RoomEvent] = []
        self._publish_unchained(Kind.MEMBERSHIP, op.encode(), now, events=events)
        return events

    def remove_member(self, peer: str, now: int) -> list[RoomEvent]:
        """Remove ``peer`` (admins only; the owner cannot be removed) or leave, if it is us. Every
        sender rotates its chain. An admin can readmit a removed member (:meth:`readmit`)."""
        if peer != self.peer_id and not self.members_part.is_admin(self.peer_id):
            raise PermissionError("only an admin may remove another member")
        if not self.members_part.is_member(peer):
            raise ValueError("not a member")
        if peer != self.peer_id and peer == self.members_part.state.owner:
            raise PermissionError("the owner cannot be removed")
        op = make_remove(self.identity, self.invite.member_key, self.room_id, self.sync.tick(), peer)
        return self._publish_op(op, now)

    def leave(self, now: int) -> list[RoomEvent]:
        """Leave the room for good (a REMOVE of ourselves); only an admin can readmit us."""
        return self.remove_member(self.peer_id, now)

    def set_admin(self, peer: str, admin: bool, now: int) -> list[RoomEvent]:
        """Appoint (or demote) an admin: admins only, in a room with an owner; the owner's role is fixed."""
        if self.members_part.state.owner is None:
            raise PermissionError("this room has no roles (its invite names no owner)")
        if not self.members_part.is_admin(self.peer_id):
            raise PermissionError("only an admin may change roles")
        if not self.members_part.is_member(peer) or peer == self.members_part.state.owner:
            raise ValueError("not a member whose role can change")
        role = Role.ADMIN if admin else Role.MEMBER
        op = make_role(self.identity, self.invite.member_key, self.room_id, self.sync.tick(), peer, role)
        return self._publish_op(op, now)

    def readmit(self, peer: str, now: int) -> list[RoomEvent]:
        """Let a removed member back in (admins only); every sender rotates so it gets the new chains."""
        if not self.members_part.is_admin(self.peer_id):
            raise PermissionError("only an admin may readmit")
        if not self.members_part.is_removed(peer):
            raise ValueError("not a removed member")
        op = make_readmit(self.identity, self.invite.member_key, self.room_id, self.sync.tick(), peer)
        return self._publish_op(op, now)

    def close_admission(self, now: int) -> list[RoomEvent]:
        """Close the room (admins only, a room with an owner): from now on only the current members and
        those an admin admits (:meth:`admit`) are members; other joiners become join requests."""
        if self.members_part.state.owner is None:
            raise PermissionError("a legacy room (its invite names no owner) cannot be closed")
        if not self.members_part.is_admin(self.peer_id):
            raise PermissionError("only an admin may close the room")
        members = sorted(self.members_part.state.members)
        if len(members) > MAX_CLOSE_IDS:
            raise ValueError(f"a room of more than {MAX_CLOSE_IDS} members cannot be closed")
        op = make_admission(self.identity, self.invite.member_key, self.room_id, self.sync.tick(), members)
        return self._publish_op(op, now)

    def open_admission(self, now: int) -> list[RoomEvent]:
        """Reopen a closed room (admins only): anyone with the invite joins; pending requests are admitted."""
        if not self.members_part.is_admin(self.peer_id):
            raise PermissionError("only an admin may open the room")
        if not self.members_part.state.closed:
            raise ValueError("the room is not closed")
        op = make_admission(self.identity, self.invite.member_key, self.room_id, self.sync.tick(), None)
        return self._publish_op(op, now)

    def admit(self, peer: str, now: int) -> list[RoomEvent]:
        """Admit ``peer`` into a closed room (admins only): a join request, or a name ahead of its ADD."""
        if not self.members_part.is_admin(self.peer_id):
            raise PermissionError("only an admin may admit")
        if not self.members_part.state.closed:
            raise ValueError("the room is not closed")
        if self.members_part.is_member(peer) or self.members_part.is_removed(peer):
            raise ValueError("already a member, or removed (readmit a removed member)")
        op = make_readmit(self.identity, self.invite.member_key, self.room_id, self.sync.tick(), peer)
        return self._publish_op(op, now)

    def join_requests(self) -> tuple[str, ...]:
        """Closed room: peer ids that asked to join and wait for an admin."""
        return self.members_part.requests()

    def set_announce(self, on: bool, now: int) -> list[RoomEvent]:
        """Announcement mode on/off: while on, only admins' messages are shown (admins only)."""
        if not self.members_part.is_admin(self.peer_id):
            raise PermissionError("only an admin may change room settings")
        op = make_settings(self.identity, self.invite.member_key, self.room_id, self.sync.tick(), announce=on)
        return self._publish_op(op, now)

    def is_admin(self, peer: str) -> bool:
        return self.members_part.is_admin(peer)

    def admins(self) -> tuple[str, ...]:
        return self.members_part.admins()

    def _publish_op(self, op: MembershipOp, now: int) -> list[RoomEvent]:
        events: list[RoomEvent] = []
        self._publish_unchained(Kind.MEMBERSHIP, op.encode(), now, events=events)
        return events
