"""Governance in the sans-IO room (real crypto, in-memory network, fake clock): who may do what."""

from __future__ import annotations

import pytest

from peer.core.envelope import Kind
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.membership import make_remove
from peer.core.room import RolesChanged, Room
from peer.testing import FakeClock
from tests.peer.room_net import Net, texts


def _net_of_three() -> tuple[Net, Room, Room, Room]:
    owner = Identity.generate()
    net = Net(Invite.new("http://127.0.0.1:1", owner=owner.peer_id), FakeClock())
    a, b, c = net.add(owner), net.add(Identity.generate()), net.add(Identity.generate())
    for x, y in ((a, b), (b, c), (a, c)):
        net.link(x, y)
    net.pump()
    net.tick(1000)
    return net, a, b, c


def test_a_members_remove_is_refused_by_everyone() -> None:
    net, a, b, c = _net_of_three()
    with pytest.raises(PermissionError):
        b.remove_member(c.peer_id, net.clock.now)
    # a hostile client signs the REMOVE anyway: every member (b included) keeps c
    op = make_remove(b.identity, net.invite.member_key, net.invite.room_id, b.sync.tick(), c.peer_id)
    b._publish_unchained(Kind.MEMBERSHIP, op.encode(), net.clock.now)
    net.pump()
    net.tick(1000)
    for room in (a, b, c):
        assert c.peer_id in room.members()
        assert c.peer_id not in room.membership.removed
    a.send_text("still here?", net.clock.now)
    net.pump()
    net.tick(1000)
    assert [t for _, t in texts(c)] == ["still here?"]


def test_admin_removes_then_readmits_and_the_member_reads_again() -> None:
    net, a, b, c = _net_of_three()
    a.set_admin(b.peer_id, True, net.clock.now)
    net.pump()
    assert all(r.is_admin(b.peer_id) for r in (a, b, c))
    assert any(isinstance(e, RolesChanged) and b.peer_id in e.admins for e in net.events[c.peer_id])
    b.remove_member(c.peer_id, net.clock.now)
    net.pump()
    net.tick(1000)
    a.send_text("while c is out", net.clock.now)
    net.pump()
    net.tick(1000)
    assert "while c is out" not in [t for _, t in texts(c)]  # a removed member gets no new chain
    with pytest.raises(PermissionError):  # a member cannot readmit
        c.readmit(c.peer_id, net.clock.now)
    b.readmit(c.peer_id, net.clock.now)
    net.pump()
    net.link(a, c)
    net.link(b, c)
    net.pump()
    net.tick(2000)
    assert all(c.peer_id in r.members() for r in (a, b, c))
    a.send_text("welcome back", net.clock.now)
    c.send_text("thanks", net.clock.now)
    net.pump()
    net.tick(2000)
    assert "welcome back" in [t for _, t in texts(c)]
    assert "thanks" in [t for _, t in texts(a)]
    assert "while c is out" not in [t for _, t in texts(c)]  # readmission does not reopen the past chain


def test_only_admins_change_the_timer_and_the_owner_stays() -> None:
    net, a, b, c = _net_of_three()
    with pytest.raises(PermissionError):
        b.set_timer(60, net.clock.now)
    with pytest.raises(PermissionError):
        b.set_admin(c.peer_id, True, net.clock.now)
    a.set_admin(b.peer_id, True, net.clock.now)
    net.pump()
    with pytest.raises(PermissionError):
        b.remove_member(a.peer_id, net.clock.now)
    b.set_timer(60, net.clock.now)
    net.pump()
    assert a.timer_s == b.timer_s == c.timer_s == 60


def test_announcement_mode_only_admins_post_and_anyone_leaves(monkeypatch: pytest.MonkeyPatch) -> None:
    net, a, b, c = _net_of_three()
    b.send_text("before", net.clock.now)
    net.pump()
    a.set_announce(True, net.clock.now)
    net.pump()
    with pytest.raises(PermissionError):
        b.send_text("refused locally", net.clock.now)
    with pytest.raises(PermissionError):
        b.set_announce(False, net.clock.now)
    # a hostile client posts anyway: no member shows it
    monkeypatch.setattr(b.members_part, "may_post", lambda peer, lamport: True)
    b.send_text("sneaked in", net.clock.now)
    net.pump()
    net.tick(1000)
    a.send_text("announcement", net.clock.now)
    net.pump()
    net.tick(1000)
    for room in (a, c):
        assert [t for _, t in texts(room)] == ["before", "announcement"]
    c.leave(net.clock.now)
    net.pump()
    assert c.peer_id not in a.members()
    assert c.peer_id in a.membership.removed
