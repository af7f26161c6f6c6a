"""Closed rooms with admin approval at the room level (issue 13 item 8, member cap): a flood of fake
self-ADDs after the close admits no one and gets no SENDER_KEY; an admin admits by name; a legacy room
cannot be closed."""

from __future__ import annotations

import pytest

from peer.core import wire
from peer.core.envelope import Kind
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.membership import MAX_REQUESTS
from peer.core.room import Room
from peer.core.room.admission import WINDOW_MS
from peer.testing import FakeClock
from tests.peer.room_net import Net, ready_pair, self_adds

OWNER = Identity.generate()


@pytest.fixture
def net() -> Net:
    return Net(Invite.new("http://127.0.0.1:1", owner=OWNER.peer_id), FakeClock())


def _sender_keys_by(room: Room) -> int:
    return sum(
        1 for e in room.sync.log.ordered() if e.sender == room.peer_id and e.data[1] == Kind.SENDER_KEY
    )


def flood(net: Net, a: Room, b: Room, n: int) -> int:
    """``n`` fake self-ADDs relayed by b to a, across admission windows; returns how many a admitted."""
    before = len(a.members())
    adds = self_adds(net, n)
    for i in range(0, n, 100):
        for frame in wire.encode_envelopes(adds[i : i + 100]):
            a.receive(b.peer_id, frame, net.clock.now)
        net.tick(WINDOW_MS)
    return len(a.members()) - before


def test_a_300_fake_flood_after_the_close_admits_no_one_and_gets_no_sender_key(net: Net) -> None:
    a, b = ready_pair(net, OWNER)
    a.send_text("history", net.now(a), ttl_s=3600)
    net.pump()
    a.close_admission(net.now(a))
    net.pump()
    assert a.membership.closed
    assert b.membership.closed
    keys = _sender_keys_by(a)
    assert flood(net, a, b, 300) == 0
    assert sorted(a.members()) == sorted([a.peer_id, b.peer_id])
    assert len(a.join_requests()) == MAX_REQUESTS  # visible, bounded
    a.send_text("after the flood", net.now(a), ttl_s=7300)  # a rotation: still to b only
    net.pump()
    net.tick(60_000)
    assert _sender_keys_by(a) == keys + 1
    assert len(a.distribution) == 0


def test_the_same_flood_in_an_open_room_admits_every_fake(net: Net) -> None:
    a, b = ready_pair(net, OWNER)
    assert flood(net, a, b, 300) == 300


def test_an_admin_admits_a_join_request_and_it_reads_history(net: Net) -> None:
    a, b = ready_pair(net, OWNER)
    msg = a.send_text("history", net.now(a), ttl_s=3600)
    net.pump()
    a.close_admission(net.now(a))
    net.pump()
    c = net.add(Identity.generate())
    net.link(b, c)
    net.pump()
    net.tick(1000)
    assert c.peer_id not in a.members()
    assert c.peer_id not in b.members()
    assert a.join_requests() == (c.peer_id,)
    assert msg.id not in {m.id for m in c.messages()}  # b, linked, gave c nothing
    with pytest.raises(PermissionError, match="only an admin"):
        b.admit(c.peer_id, net.now(b))
    a.admit(c.peer_id, net.now(a))
    net.pump()
    net.tick(1000)
    assert c.peer_id in a.members()
    assert c.peer_id in b.members()
    assert a.join_requests() == ()
    net.link(a, c)
    net.pump()
    net.tick(1000)
    assert msg.id in {m.id for m in c.messages()}
    a.open_admission(net.now(a))
    net.pump()
    assert not b.membership.closed
    with pytest.raises(ValueError, match="not closed"):
        a.admit(c.peer_id, net.now(a))


def test_a_legacy_room_cannot_be_closed() -> None:
    legacy = Net(Invite.new("http://127.0.0.1:1"), FakeClock())
    a = legacy.add(Identity.generate())
    with pytest.raises(PermissionError, match="legacy room"):
        a.close_admission(legacy.now(a))


def test_a_member_cannot_close_or_open(net: Net) -> None:
    a, b = ready_pair(net, OWNER)
    with pytest.raises(PermissionError, match="only an admin"):
        b.close_admission(net.now(b))
    a.close_admission(net.now(a))
    net.pump()
    with pytest.raises(PermissionError, match="only an admin"):
        b.open_admission(net.now(b))


def test_a_close_listing_1024_ids_travels_in_one_envelope(net: Net) -> None:
    """The largest ADMISSION op (16,525 bytes) goes through the log and sync like any op."""
    from peer.core.membership import MAX_CLOSE_IDS, make_admission

    a, b = ready_pair(net, OWNER)
    ids = {a.peer_id, b.peer_id} | {f"{i:032x}" for i in range(MAX_CLOSE_IDS - 2)}
    op = make_admission(a.identity, net.invite.member_key, a.room_id, a.sync.tick(), sorted(ids))
    assert len(op.encode()) == 42 + 3 + MAX_CLOSE_IDS * 16 + 96
    a._publish_op(op, net.now(a))
    net.pump()
    assert b.membership.closed
    assert sorted(b.members()) == sorted([a.peer_id, b.peer_id])
