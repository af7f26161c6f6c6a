"""Regression tests for defects of the one-class room (issue 10). The first three failed on 9dbab6e.

They use only behaviour visible through the room's API, the sync engine's validator hook and the real
SQLite store, so they ran unchanged against the old code.
"""

from __future__ import annotations

import pytest

from peer.core import wire
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.room import Room
from peer.store.sqlite import Store, apply_batch
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
    assert a.online() == {b.peer_id}
    return a, b


def test_parked_envelopes_of_a_known_bundle_non_member_are_not_revalidated_and_expire(net: Net) -> None:
    """Defect 1: a sender whose bundle we learned (signaling) but whose ADD has not arrived: its parked
    envelopes were re-validated on every incoming frame and never expired."""
    a, b = _ready_pair(net)
    other = Net(net.invite, net.clock)
    c = other.add(Identity.generate())
    early = [c.send_text(f"early {i}", net.clock.now) for i in range(20)]
    entries = {e.seq: e.data for e in c.sync.log.ordered()}
    add_env = entries[1]
    a.learn_bundle(c.identity.public_bundle())  # introduced by signaling, not a member yet
    for frame in wire.encode_envelopes([entries[m.seq] for m in early]):
        a.receive(b.peer_id, frame, net.clock.now)
    calls = 0
    inner = a.sync._validate

    def counting(data: bytes):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return inner(data)

    a.sync._validate = counting
    for nonce in range(1, 11):
        a.receive(b.peer_id, wire.encode_ping(nonce), net.clock.now)
    assert calls == 0  # a PING re-validates nothing
    net.tick(31_000)  # the pair stays linked (heartbeats), the parked envelopes age
    assert calls == 0
    a.sync._validate = inner
    a.receive(b.peer_id, wire.encode_envelopes([add_env])[0], net.now(a))
    assert c.peer_id in a.members()
    # parked more than 30 s ago: dropped, not accepted now (sync fetches them again if anyone holds them)
    assert all((c.peer_id, m.seq) not in a.sync.log for m in early)


def test_removing_a_member_deletes_its_receiver_chains_from_the_store(net: Net) -> None:
    """Defect 2: removal dropped receiver chains in memory only; the rows stayed and a restart restored them."""
    a, b = _ready_pair(net)
    c = net.add(Identity.generate())
    net.link(a, c)
    net.link(b, c)
    net.pump()
    net.tick(1000)
    c.send_text("from c", net.clock.now)
    net.pump()
    net.tick(1000)
    store = Store(":memory:")

    def commit() -> None:  # what the peer's pump does after every call
        for batch in [*net.persisted[b.peer_id], b.take_persist()]:
            apply_batch(store, b.room_id, batch)
        net.persisted[b.peer_id].clear()

    commit()
    prefix = f"chain/rx/{c.peer_id}/"
    assert store.states(b.room_id, prefix)  # b holds c's chain
    a.remove_member(c.peer_id, net.clock.now)
    net.pump()
    net.tick(1000)
    assert c.peer_id not in b.members()
    commit()
    assert store.states(b.room_id, prefix) == {}
    store.close()


def test_remote_errors_are_bounded_and_close_the_link(net: Net) -> None:
    """Defect 3: every bad frame appended to an unbounded list and the link stayed up."""
    a, b = _ready_pair(net)
    events = []
    for _ in range(1000):
        events += a.receive(b.peer_id, b"\xee junk", net.clock.now)
    assert b.peer_id in a.take_dead_links()
    assert b.peer_id not in a.online()
    assert 0 < len(events) <= 100  # bounded: the link closed at its budget, later frames are ignored
    assert a.receive(b.peer_id, b"\xee junk", net.clock.now) == []


def test_one_chain_advance_per_send_and_one_parse_per_received_envelope(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The send path advanced the sender chain twice; the receive path parsed each envelope three times."""
    import peer.core.room.inbound as inbound
    from peer.core.chains import SenderChain

    a, b = _ready_pair(net)
    a.send_text("first", net.clock.now)  # the chain exists now
    net.pump()
    advances = 0
    real_advance = SenderChain.advance

    def counting_advance(self: SenderChain) -> tuple[SenderChain, object]:
        nonlocal advances
        advances += 1
        return real_advance(self)

    monkeypatch.setattr(SenderChain, "advance", counting_advance)
    a.send_text("second", net.clock.now)
    assert advances == 1
    monkeypatch.setattr(SenderChain, "advance", real_advance)
    parses = 0
    real_parse = getattr(inbound, "parse_envelope")  # noqa: B009 (not re-exported; patched below)

    def counting_parse(data: object) -> object:
        nonlocal parses
        parses += 1
        return real_parse(data)

    monkeypatch.setattr(inbound, "parse_envelope", counting_parse)
    frames = [d for to, d in a.data_to_send() if to == b.peer_id and d[0] == wire.FrameType.ENVELOPES]
    assert frames
    events = []
    for frame in frames:
        events += b.receive(a.peer_id, frame, net.clock.now)
    assert [e.message.text for e in events if hasattr(e, "message")] == ["second"]
    assert parses == 1
