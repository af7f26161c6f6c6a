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
from peer.core.identity import Identity, PublicBundle
from peer.core.invite import Invite
from peer.core.room import RemoteError, Room
from peer.core.room.admission import PER_WINDOW, WINDOW_MS, AddBudget
from peer.testing import FakeClock
from tests.peer.room_net import Net


@pytest.fixture
def net() -> Net:
    return Net(Invite.new("http://127.0.0.1:1"), FakeClock())


def _ready_pair(net: Net) -> tuple[Room, Room]:
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    net.link(a, b)
    net.pump()
    net.tick(1000)
    return a, b


def _self_adds(net: Net, n: int) -> list[bytes]:
    """The self-ADD envelopes of ``n`` fresh identities holding the invite (never linked to anyone)."""
    other = Net(net.invite, net.clock)
    out = []
    for _ in range(n):
        room = other.add(Identity.generate())
        (entry,) = [e for e in room.sync.log.ordered() if e.sender == room.peer_id]
        out.append(entry.data)
    return out


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
    a, b = _ready_pair(net)
    a.admission = AddBudget(per_window=1000)  # this test counts crypto; the budget is tested below
    adds = _self_adds(net, 300)
    calls = _counting(monkeypatch)
    for i in range(0, 300, 100):
        for frame in wire.encode_envelopes(adds[i : i + 100]):
            a.receive(b.peer_id, frame, net.clock.now)
    assert len(a.members()) == 302
    assert calls() <= 300  # was ~45,000: every op replayed every op's signature


def test_one_op_at_a_time_out_of_order_stays_linear(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ops arriving one per frame in an order that sorts each before the last (forcing replays)."""
    a, b = _ready_pair(net)
    adds = _self_adds(net, 60)  # within one window's budget
    calls = _counting(monkeypatch)
    for data in reversed(adds):
        a.receive(b.peer_id, wire.encode_envelopes([data])[0], net.clock.now)
    assert len(a.members()) == 62
    assert calls() <= 60


def test_a_replay_parses_each_op_bundle_once(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    """An op's bundle (a certificate check) is parsed once per op object, not on every replay (was ~5,000
    parses for 60 out-of-order ops, 25 s of CPU for 300 fakes; now 1.5 s: scripts/measure_fake_members.py)."""
    a, b = _ready_pair(net)
    adds = _self_adds(net, 60)
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
    a, b = _ready_pair(net)
    c = net.add(Identity.generate())
    net.link(a, c)
    net.pump()
    net.tick(1000)
    assert len(a.members()) == 3
    adds = _self_adds(net, 300)
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
    a, b = _ready_pair(net)
    a.admission = AddBudget(per_window=1)
    adds = _self_adds(net, 3)
    now = net.clock.now
    a.receive(b.peer_id, wire.encode_envelopes(adds[:1])[0], now)
    assert len(a.members()) == 3
    events = a.receive(b.peer_id, wire.encode_envelopes(adds[1:])[0], now)
    assert len(a.members()) == 3
    assert [e.code for e in events if isinstance(e, RemoteError)] == ["add-budget", "add-budget"]
    assert a.admission.charge(b.peer_id, now) is False  # b's window is spent; our own peer id never was
    assert len(a.admission) == 1
