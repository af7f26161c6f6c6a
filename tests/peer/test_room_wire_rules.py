"""The room's numbering rules that PROTOCOL.md states and tests/vectors/room.json assumes.

seq starts at 1 and goes up by one for every envelope of any kind; a membership op's lamport is its
envelope's lamport - 1; room-state envelopes never expire (NEVER = 2^52); an unsend doubles as a proof.
"""

from __future__ import annotations

import json
from pathlib import Path

from peer.core import wire
from peer.core.envelope import Kind, parse_envelope
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.membership import MembershipOp
from peer.core.room import NEVER, Room

ROOM_VECTOR = Path(__file__).resolve().parents[1] / "vectors" / "room.json"


def test_seq_lamport_and_op_lamport_as_documented() -> None:
    now = 1_700_000_000_000
    alice = Identity.generate()
    room = Room(alice, Invite.new("http://127.0.0.1:1", ttl_s=3600), now)
    sent = room.send_text("hello", now + 10)
    room.unsend(sent.id, now + 20)
    envs = [parse_envelope(e.data) for e in room.take_persist().envelopes]
    assert [e.kind for e in envs] == [Kind.MEMBERSHIP, Kind.MEMBERSHIP, Kind.CHAT, Kind.TOMBSTONE]
    assert [e.seq for e in envs] == [1, 2, 3, 4]
    lamports = [e.lamport for e in envs]
    assert lamports == sorted(set(lamports))
    for env in envs[:2]:
        assert MembershipOp.decode(env.payload).lamport == env.lamport - 1
        assert env.expires_at == NEVER
    assert envs[0].lamport == 2  # the first op is tick 1, its envelope tick 2
    assert envs[2].expires_at == now + 10 + 3_600_000
    assert len(envs[3].to_bytes()) <= wire.MAX_PROOF
    # the vector file was made with the same constants
    assert json.loads(ROOM_VECTOR.read_text())["never"] == NEVER
