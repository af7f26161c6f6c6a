"""Fake members (issue 13 item 8): self-ADDs from fresh identities, relayed by a hostile member.

Before: 300 self-ADDs cost the victim 1.1, 3.2, 5.3 s of CPU per batch of 100, because every op re-ran
the whole membership from scratch with every signature checked again (~45,000 Ed25519 checks). And one
neighbour could bring any number of new identities at once; now at most ``admission.PER_WINDOW`` per
window (``peer/core/room/admission.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from peer.core import membership, wire
from peer.core.envelope import Kind
from peer.core.identity import Identity, PublicBundle
from peer.core.invite import Invite
from peer.core.room import RemoteError, Room
from peer.core.room.admission import PER_WINDOW, WINDOW_MS, AddBudget
from peer.core.room.distribution import PER_WINDOW as SERVE_PER_WINDOW
from peer.core.room.distribution import WINDOW_MS as SERVE_WINDOW_MS
from peer.core.room.distribution import Distribution
from peer.testing import FakeClock
from tests.peer.room_net import Net, ready_pair, self_adds, snapshot_of


@pytest.fixture
def net() -> Net:
    return Net(Invite.new("http://127.0.0.1:1"), FakeClock())


def _counting(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    calls = 0
    inner = membership.ed25519_verify  # type: ignore[attr-defined]

    def counted(*args: bytes) -> None:
        nonlocal calls
        calls += 1
        inner(*args)

    monkeypatch.setattr(membership, "ed25519_verify", counted)
    return lambda: calls


def test_fake_member_adds_cost_one_signature_check_each(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = ready_pair(net)
    a.admission = AddBudget(per_window=1000)  # this test counts crypto; the budget is tested below
    adds = self_adds(net, 300)
    calls = _counting(monkeypatch)
    for i in range(0, 300, 100):
        for frame in wire.encode_envelopes(adds[i : i + 100]):
            a.receive(b.peer_id, frame, net.clock.now)
    assert len(a.members()) == 302
    assert calls() <= 300  # was ~45,000: every op replayed every op's signature


def test_one_op_at_a_time_out_of_order_stays_linear(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ops arriving one per frame in an order that sorts each before the last (forcing replays)."""
    a, b = ready_pair(net)
    adds = self_adds(net, 60)  # within one window's budget
    calls = _counting(monkeypatch)
    for data in reversed(adds):
        a.receive(b.peer_id, wire.encode_envelopes([data])[0], net.clock.now)
    assert len(a.members()) == 62
    assert calls() <= 60


def test_a_replay_parses_each_op_bundle_once(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    """An op's bundle (a certificate check) is parsed once per op object, not on every replay (was ~5,000
    parses for 60 out-of-order ops, 25 s of CPU for 300 fakes; now 1.5 s: scripts/measure_fake_members.py)."""
    a, b = ready_pair(net)
    adds = self_adds(net, 60)
    parses = 0
    inner = PublicBundle.from_bytes.__func__  # type: ignore[attr-defined]

    def counted(cls: type[PublicBundle], data: bytes) -> PublicBundle:
        nonlocal parses
        parses += 1
        return inner(cls, data)  # type: ignore[no-any-return]

    monkeypatch.setattr(PublicBundle, "from_bytes", classmethod(counted))
    for data in reversed(adds):
        a.receive(b.peer_id, wire.encode_envelopes([data])[0], net.clock.now)
    assert len(a.members()) == 62
    assert parses <= 5 * 60


def test_one_neighbour_brings_at_most_its_budget_of_new_members_per_window(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 fresh self-ADDs from one neighbour in one window: 256 get in, 44 are refused before any crypto
    (counted ``add-budget`` errors, the link stays up); they get in through another neighbour at once and
    through the same one in its next window."""
    a, b = ready_pair(net)
    c = net.add(Identity.generate())
    net.link(a, c)
    net.pump()
    net.tick(1000)
    assert len(a.members()) == 3
    adds = self_adds(net, 300)
    calls = _counting(monkeypatch)
    now = net.clock.now + WINDOW_MS  # a fresh window (C's own ADD may have been charged to B)
    events = []
    for frame in wire.encode_envelopes(adds):
        events += a.receive(b.peer_id, frame, now)
    assert len(a.members()) == 3 + PER_WINDOW
    assert calls() <= PER_WINDOW  # the refused ones cost no signature check
    refused = [e for e in events if isinstance(e, RemoteError) and e.code == "add-budget"]
    assert len(refused) == 300 - PER_WINDOW
    assert not any(e.closed for e in refused)
    assert a.links.is_ready(b.peer_id)
    # the same neighbour, still in its window: still refused; another neighbour: its own budget
    a.receive(b.peer_id, wire.encode_envelopes(adds[PER_WINDOW : PER_WINDOW + 1])[0], now)
    assert len(a.members()) == 3 + PER_WINDOW
    a.receive(c.peer_id, wire.encode_envelopes(adds[PER_WINDOW : PER_WINDOW + 10])[0], now)
    assert len(a.members()) == 3 + PER_WINDOW + 10
    # the first neighbour's next window
    for frame in wire.encode_envelopes(adds[PER_WINDOW + 10 :]):
        a.receive(b.peer_id, frame, now + WINDOW_MS)
    assert len(a.members()) == 303


def test_known_members_and_our_own_publishing_are_not_charged(net: Net) -> None:
    """Only new identities from a neighbour count: a re-sent ADD of a known member and our own ops are free."""
    a, b = ready_pair(net)
    a.admission = AddBudget(per_window=1)
    adds = self_adds(net, 3)
    now = net.clock.now
    a.receive(b.peer_id, wire.encode_envelopes(adds[:1])[0], now)
    assert len(a.members()) == 3
    events = a.receive(b.peer_id, wire.encode_envelopes(adds[1:])[0], now)
    assert len(a.members()) == 3
    assert [e.code for e in events if isinstance(e, RemoteError)] == ["add-budget", "add-budget"]
    assert a.admission.charge(b.peer_id, now) is False  # b's window is spent; our own peer id never was
    assert len(a.admission) == 1


def _sender_keys_by(room: Room) -> int:
    return sum(
        1 for e in room.sync.log.ordered() if e.sender == room.peer_id and e.data[1] == Kind.SENDER_KEY
    )


def test_fake_members_get_sealed_sender_keys_only_at_the_paced_rate(net: Net) -> None:
    """Before: every admitted fake member got a sealed SENDER_KEY of every live chain from every member at
    once (200 fakes: 200 envelopes from A, replicated to everyone). Now a member we have not linked with is
    served paced, ``distribution.PER_WINDOW`` per window, members that showed life (an envelope other than
    an ADD) before silent ones; a linked member at once."""
    a, b = ready_pair(net)
    msg = a.send_text("history", net.now(a), ttl_s=3600)
    net.pump()
    assert _sender_keys_by(a) == 1  # to b
    now = net.clock.now
    for frame in wire.encode_envelopes(self_adds(net, 200)):
        a.receive(b.peer_id, frame, now)
    assert len(a.members()) == 202
    assert _sender_keys_by(a) == 1 + SERVE_PER_WINDOW  # was 1 + 200
    assert len(a.distribution) == 200 - SERVE_PER_WINDOW
    # a rotation reaches at once b (linked) and the members already served (they hold a live chain)
    a.send_text("a new window", now, ttl_s=7300)
    assert _sender_keys_by(a) == 1 + SERVE_PER_WINDOW + 1 + SERVE_PER_WINDOW
    assert len(a.distribution) == 200 - SERVE_PER_WINDOW
    base = _sender_keys_by(a)
    # an honest newcomer linked only to b, silent at first: queued behind the fakes at a
    c = net.add(Identity.generate())
    net.link(b, c)
    net.pump()
    net.tick(1000)
    assert c.peer_id in a.members()
    assert a.distribution.waiting(c.peer_id)
    c.send_text("hi, I am real", net.now(c), ttl_s=3600)  # shows life: first in a's queue
    net.pump()
    net.tick(SERVE_WINDOW_MS)
    assert not a.distribution.waiting(c.peer_id)
    assert msg.id in {m.id for m in c.messages()}
    assert _sender_keys_by(a) == base + 2 * SERVE_PER_WINDOW  # 32 served, each gets both live chains
    # a link is served at once
    d = net.add(Identity.generate())
    net.link(b, d)
    net.pump()
    net.tick(1000)
    assert d.peer_id in a.members()
    assert a.distribution.waiting(d.peer_id)
    net.link(a, d)
    net.pump()
    assert not a.distribution.waiting(d.peer_id)
    assert msg.id in {m.id for m in d.messages()}


def test_members_still_owed_chains_are_queued_again_after_a_restart(net: Net) -> None:
    """The queue is not persisted: a restart queues again exactly the members still missing a live chain."""
    a, b = ready_pair(net)
    a.distribution = Distribution(per_window=1)
    a.send_text("history", net.now(a), ttl_s=3600)
    net.pump()
    for frame in wire.encode_envelopes(self_adds(net, 3)):
        a.receive(b.peer_id, frame, net.clock.now)
    assert len(a.distribution) == 2  # one served in this window
    waiting = [p for p in a.members() if a.distribution.waiting(p)]
    net.remove(a)
    again = net.add(a.identity, snapshot=snapshot_of(net.persisted[a.peer_id]))
    assert [p for p in again.members() if again.distribution.waiting(p)] == waiting
    assert not again.distribution.waiting(b.peer_id)  # b and the first fake got their chain before
