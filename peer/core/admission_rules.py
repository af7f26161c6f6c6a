"""Closed-room admission rules: the ADMISSION op's body and what it does to the membership state.

Owns the closed-room part of :class:`peer.core.membership.MembershipState` (``closed``, ``allowed``,
``requests``): closing and reopening the room, an ADD that becomes a join request while the room is
closed, and an admin's admission (READMIT) of a not-yet-member. The rules themselves (ADMISSION and
"(closed)") are in the table of :mod:`peer.core.membership`, which applies ops and calls these
functions; they are pure (a state in, a new state out) and raise ``ProtocolError`` on a refused op.
Not :mod:`peer.core.room.admission` (the pacing of self-ADDs on a link). Mirrored by
``web/js/core/admission_rules.js``.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import replace
from typing import TYPE_CHECKING

from peer.core.errors import ProtocolError
from peer.core.ids import check_id, id_to_bytes

if TYPE_CHECKING:
    from peer.core.membership import Member, MembershipOp, MembershipState

MAX_CLOSE_IDS = 1024  # peer ids one ADMISSION (close) op lists
MAX_REQUESTS = 256  # join requests (and names admitted ahead of their ADD) a closed room records


def check_admission_body(body: bytes) -> None:
    if len(body) < 3 or body[0] not in (0, 1):
        raise ProtocolError("bad-op", "bad admission mode")
    n = int.from_bytes(body[1:3], "big")
    if len(body) != 3 + 16 * n:
        raise ProtocolError("bad-op", "bad body length")
    if body[0] == 0 and n != 0:
        raise ProtocolError("bad-op", "an open op lists no ids")
    if body[0] == 1 and not 1 <= n <= MAX_CLOSE_IDS:
        raise ProtocolError("bad-op", "a close lists 1..1024 ids")
    ids = [body[3 + 16 * i : 19 + 16 * i] for i in range(n)]
    if any(a >= b for a, b in itertools.pairwise(ids)):
        raise ProtocolError("bad-op", "close ids not strictly ascending")


def admission_body(admits: list[str] | frozenset[str] | tuple[str, ...] | None) -> bytes:
    """The body of a close admitting ``admits`` (sorted here, 1..1024 ids), or of an open (None)."""
    if admits is None:
        return b"\x00\x00\x00"
    ids = sorted({id_to_bytes(check_id(p)) for p in admits})
    if not 1 <= len(ids) <= MAX_CLOSE_IDS:
        raise ValueError("a close lists 1..1024 peer ids")
    return b"\x01" + struct.pack(">H", len(ids)) + b"".join(ids)


def apply_admission(state: MembershipState, op: MembershipOp) -> MembershipState:
    """ADMISSION (the author is an admin: checked by the caller): close or reopen the room."""
    if state.owner is None:
        raise ProtocolError("not-allowed", "a legacy room cannot be closed")
    if not op.closing:
        members = {**state.members, **state.requests}
        return replace(state, closed=False, allowed=frozenset(), requests={}, members=members)
    listed = set(op.admits) | {op.author, state.owner}
    keep = {p: m for p, m in state.members.items() if p in listed}
    requests = dict(state.requests)
    for pid in sorted(set(state.members) - set(keep)):
        if len(requests) < MAX_REQUESTS:
            requests[pid] = state.members[pid]
    # no epoch change: a self-ADD sorting before the close (any late joiner's, at lamport 1) would
    # otherwise make every sender rotate and cut admitted members off the live chains; REMOVE rotates
    return replace(
        state,
        members=keep,
        closed=True,
        allowed=frozenset(),
        requests=requests,
        admins=state.admins & set(keep),
    )


def admit_ahead(state: MembershipState, target: str) -> MembershipState:
    """READMIT of a not-yet-member (neither member nor removed): a join request becomes a member at
    once; otherwise, in a closed room, ``target`` joins ``allowed`` and its next ADD admits it."""
    asked = state.requests.get(target)
    if asked is not None:
        requests = {k: v for k, v in state.requests.items() if k != target}
        return replace(state, members={**state.members, target: asked}, requests=requests)
    if not state.closed:
        raise ProtocolError("not-removed", "target is not a removed member or a join request")
    if target in state.allowed:
        return state
    if len(state.allowed) >= MAX_REQUESTS:
        raise ProtocolError("too-many", "too many names admitted ahead of their ADD")
    return replace(state, allowed=state.allowed | {target})


def request_instead(
    state: MembershipState, op: MembershipOp, member: Member, *, by_admin: bool
) -> MembershipState | None:
    """An ADD of a not-yet-member: while closed, unless ``allowed`` or an admin's ADD of another identity,
    it admits no one and records a join request (the new state); None = the ADD admits its target."""
    target = member.bundle.peer_id
    if not state.closed or target in state.allowed or (by_admin and op.author != target):
        return None
    asked = state.requests.get(target)
    if asked is not None and asked.prekey.created_at >= member.prekey.created_at:
        return state
    if asked is None and len(state.requests) >= MAX_REQUESTS:
        return state
    return replace(state, requests={**state.requests, target: member})
