"""Issue 13, item 3, in whole rooms: a hostile author gives Alice "meet at 10:00" and Bob "meet at 18:00"
under one (sender, seq), each straight from the author, in a full mesh. Nobody relays and the HELLO
marks agree, so before the equivocation check the room stayed split for good. Now both members find the
other version (digests, then hashes), void the key and report the author's equivocation."""

from __future__ import annotations

from peer.core import wire
from peer.core.content import Text, encode_content
from peer.core.envelope import Kind, seal_chained
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.room import Room
from peer.testing import FakeClock
from tests.peer.room_net import Net, texts


def _versions(net: Net, mallory: Room, a: str, b: str) -> tuple[bytes, bytes]:
    """Two CHAT envelopes under mallory's next seq, both sealed with its current chain (both open)."""
    chain = mallory.keys._chain  # the hostile client reuses its chain position for two texts
    assert chain is not None
    seq = max(q for s, q in (e.key for e in mallory.sync.log.ordered()) if s == mallory.peer_id) + 1
    lamport = max(r.sync.lamport for r in net.rooms.values()) + 1
    now = net.clock.now
    out = []
    for text in (a, b):
        data, _, _ = seal_chained(
            mallory.identity, mallory.room_id, chain, Kind.CHAT, seq, lamport, now, now + 3_600_000,
            encode_content(Text(text)),
        )  # fmt: skip
        out.append(data)
    return out[0], out[1]


def test_a_chat_message_split_across_a_full_mesh_is_voided_on_every_member() -> None:
    net = Net(Invite.new("http://127.0.0.1:1"), FakeClock())
    alice, bob, mallory = (net.add(Identity.generate()) for _ in range(3))
    for x, y in ((alice, bob), (alice, mallory), (bob, mallory)):
        net.link(x, y)
    net.tick(2_000)
    mallory.send_text("hello", net.now(mallory))  # its chain reaches both
    net.tick(2_000)
    va, vb = _versions(net, mallory, "meet at 10:00", "meet at 18:00")
    for target, data in ((alice, va), (bob, vb)):
        for frame in wire.encode_envelopes([data]):
            net.events[target.peer_id] += target.receive(mallory.peer_id, frame, net.now(target))
    net.pump()
    assert texts(alice)[-1] == (mallory.peer_id, "meet at 10:00")
    assert texts(bob)[-1] == (mallory.peer_id, "meet at 18:00")  # split: same marks, other contents
    net.tick(6_000)  # one resync round
    for r in (alice, bob):
        assert [t for _, t in texts(r)] == ["hello"], r.peer_id
        assert r.error_counts(mallory.peer_id).get("equivocation") == 1
