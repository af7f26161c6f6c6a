"""Fake members (issue 13 item 8): self-ADDs from fresh identities, relayed by a hostile member.

Before: 300 self-ADDs cost the victim 1.1, 3.2, 5.3 s of CPU per batch of 100, because every op re-ran
the whole membership from scratch with every signature checked again (~45,000 Ed25519 checks).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from peer.core import membership, wire
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.room import Room
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
    adds = _self_adds(net, 60)
    calls = _counting(monkeypatch)
    for data in reversed(adds):
        a.receive(b.peer_id, wire.encode_envelopes([data])[0], net.clock.now)
    assert len(a.members()) == 62
    assert calls() <= 60
