"""The sans-IO room with real crypto, pumped over an in-memory network on a fake clock."""

from __future__ import annotations

import pytest

from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.room import MessageExpired, MessageReceived
from peer.testing import FakeClock
from tests.peer.room_net import Net, snapshot_of, texts


@pytest.fixture
def net() -> Net:
    return Net(Invite.new("http://127.0.0.1:1"), FakeClock())


def test_three_members_chat_in_one_order(net: Net) -> None:
    a, b, c = (net.add(Identity.generate()) for _ in range(3))
    net.link(a, b)
    net.link(b, c)
    net.link(a, c)
    net.pump()
    net.tick(1000)
    assert a.online() == {b.peer_id, c.peer_id}
    a.send_text("hello from a", net.clock.now)
    b.send_text("hello from b", net.clock.now)
    c.send_text("hello from c", net.clock.now)
    net.pump()
    net.tick(3000)
    assert texts(a) == texts(b) == texts(c)
    assert len(texts(a)) == 3
    assert sorted(a.members()) == sorted([a.peer_id, b.peer_id, c.peer_id])


def test_relay_through_a_middle_member_and_late_joiner_reads_current_chain(net: Net) -> None:
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    net.link(a, b)
    net.pump()
    a.send_text("before c", net.clock.now)
    net.pump()
    c = net.add(Identity.generate())
    net.link(b, c)  # c only talks to b
    net.pump()
    net.tick(8000)
    assert "before c" in [t for _, t in texts(c)]
    c.send_text("c here", net.clock.now)
    net.pump()
    net.tick(8000)
    assert texts(a) == texts(b) == texts(c)


def test_offline_member_catches_up_from_keeper_after_sender_left(net: Net) -> None:
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    keeper = net.add(Identity.generate(), keeper=True)
    for x, y in ((a, b), (a, keeper), (b, keeper)):
        net.link(x, y)
    net.pump()
    net.tick(2000)
    net.unlink(a, b)
    net.unlink(b, keeper)
    bob_batches = net.persisted[b.peer_id]
    b_identity = b.identity
    del net.rooms[b.peer_id]  # b goes offline
    for i in range(100):
        a.send_text(f"m{i}", net.clock.now)
    net.pump()
    net.remove(a)  # the sender leaves too
    assert keeper.messages() == []  # the keeper holds ciphertext only
    b2 = net.add(b_identity, snapshot=snapshot_of(bob_batches))
    net.link(b2, keeper)
    net.pump()
    net.tick(10000)
    assert [t for _, t in texts(b2)] == [f"m{i}" for i in range(100)]


def test_restart_from_persisted_state_keeps_history_and_chats(net: Net) -> None:
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    net.link(a, b)
    net.pump()
    a.send_text("one", net.clock.now)
    b.send_text("two", net.clock.now)
    net.pump()
    net.tick(2000)
    before = texts(a)
    ident = a.identity
    net.remove(a)
    a2 = net.add(ident, snapshot=snapshot_of(net.persisted[ident.peer_id]))
    assert texts(a2) == before
    net.link(a2, b)
    net.pump()
    a2.send_text("three", net.clock.now)
    net.pump()
    net.tick(2000)
    assert texts(a2) == texts(b)
    assert [t for _, t in texts(b)][-1] == "three"


def test_messages_expire_everywhere(net: Net) -> None:
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    net.link(a, b)
    net.pump()
    msg = a.send_text("short lived", net.clock.now, ttl_s=5)
    a.send_text("long lived", net.clock.now, ttl_s=3600)
    net.pump()
    net.tick(1000)
    assert len(b.messages()) == 2
    net.tick(5000)
    assert [m.text for m in a.messages()] == [m.text for m in b.messages()] == ["long lived"]
    assert any(isinstance(e, MessageExpired) and e.id == msg.id for e in net.events[b.peer_id])


def test_bad_frames_are_dropped_and_the_session_survives(net: Net) -> None:
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    net.link(a, b)
    net.pump()
    net.tick(1000)
    for junk in (b"", b"\xff" * 10, b"\x02" + b"\x00" * 70000, bytes(range(256))):
        b.receive(a.peer_id, junk, net.clock.now)
    assert b.errors_total
    a.send_text("still works", net.clock.now)
    net.pump()
    assert any(
        isinstance(e, MessageReceived) and e.message.text == "still works" for e in net.events[b.peer_id]
    )


def test_removed_member_cannot_read_what_is_sent_after_removal(net: Net) -> None:
    a, b, c = (net.add(Identity.generate()) for _ in range(3))
    for x, y in ((a, b), (b, c), (a, c)):
        net.link(x, y)
    net.pump()
    net.tick(1000)
    b.send_text("before removal", net.clock.now)
    net.pump()
    net.tick(1000)
    assert [t for _, t in texts(c)] == ["before removal"]
    a.remove_member(c.peer_id, net.clock.now)
    net.pump()
    net.tick(1000)
    assert c.peer_id not in b.members()
    # members drop their links to the removed member
    assert c.peer_id not in a.online()
    assert c.peer_id not in b.online()
    b.send_text("after removal", net.clock.now)
    net.pump()
    net.tick(2000)
    assert [t for _, t in texts(a)] == ["before removal", "after removal"]
    assert [t for _, t in texts(c)] == ["before removal"]
    # even handed the new envelopes directly, c has no key for the rotated chain
    for entry in b.sync.log.ordered():
        c.sync.log.add(entry, net.clock.now)
    assert "after removal" not in [t for _, t in texts(c)]


def test_member_learned_after_a_full_chain_still_gets_its_key(net: Net) -> None:
    """Regression (found by bench.mesh): a chain due to rotate must still be handed to new members."""
    from peer.core.chains import ChainPolicy

    a = net.add(Identity.generate())
    a.policy = ChainPolicy(max_messages=5)
    for i in range(5):
        a.send_text(f"m{i}", net.clock.now)  # fills the chain: the next send would rotate
    b = net.add(Identity.generate())
    net.link(a, b)
    net.pump()
    net.tick(3000)
    assert [t for _, t in texts(b)] == [f"m{i}" for i in range(5)]


def test_an_envelope_that_overtakes_its_authors_add_is_parked_then_accepted(net: Net) -> None:
    from peer.core import wire

    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    net.link(a, b)
    net.pump()
    net.tick(1000)
    # c lives elsewhere for now: a and b have never heard of it
    other = Net(net.invite, net.clock)
    c = other.add(Identity.generate())
    msg = c.send_text("early bird", net.clock.now)
    entries = {e.seq: e.data for e in c.sync.log.ordered()}
    add_env = entries[1]  # c's self-ADD is its first envelope
    chat_env = entries[msg.seq]
    # the chat envelope reaches a (through b) before c's ADD does
    events = a.receive(b.peer_id, wire.encode_envelopes([chat_env])[0], net.clock.now)
    assert (c.peer_id, msg.seq) not in a.sync.log
    assert len(a.parking) == 1
    assert events == []  # a transient, not a remote error
    a.receive(b.peer_id, wire.encode_envelopes([add_env])[0], net.clock.now)
    assert (c.peer_id, msg.seq) in a.sync.log  # fed back in as soon as c became known
    assert len(a.parking) == 0
