"""Issue 15 in the sans-IO room (real crypto, in-memory network, fake clock): mentions, location,
forward (keys and expiry), search that forgets, last seen with opt-out, long text."""

from __future__ import annotations

import pytest

from peer.core.content import ContentTooLong, location
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.room import Room
from peer.testing import FakeClock
from tests.peer.room_net import Net, snapshot_of


@pytest.fixture
def net() -> Net:
    return Net(Invite.new("http://127.0.0.1:1", ttl_s=600), FakeClock())


def _three(net: Net) -> tuple[Room, Room, Room]:
    a, b, c = (net.add(Identity.generate()) for _ in range(3))
    for x, y in ((a, b), (b, c), (a, c)):
        net.link(x, y)
    net.pump()
    net.tick(1000)
    return a, b, c


def _shown(room: Room, msg_id: str) -> object:
    return room.message(msg_id)


def test_mention_flags_only_the_mentioned_member(net: Net) -> None:
    a, b, c = _three(net)
    sent = a.send_text("hi @b", net.clock.now, mentions=[b.peer_id, b.peer_id])
    net.pump()
    assert sent.mentions == (b.peer_id,)
    assert not sent.mentioned
    at_b, at_c = b.message(sent.id), c.message(sent.id)
    assert at_b is not None
    assert at_b.mentioned
    assert at_b.to_json()["mentioned"] is True
    assert at_c is not None
    assert not at_c.mentioned
    assert at_c.mentions == (b.peer_id,)
    with pytest.raises(ValueError, match="current members"):
        a.send_text("hi stranger", net.clock.now, mentions=["f" * 32])


def test_location_message_and_bad_ranges(net: Net) -> None:
    a, b, _ = _three(net)
    msg = a.send_location(location(52.520008, 13.404954, 25.4), net.clock.now)
    net.pump()
    got = b.message(msg.id)
    assert got is not None
    assert got.location == (52_520_008, 13_404_954, 25)
    assert got.text == ""
    for bad in ((91.0, 0.0, None), (0.0, 180.5, None), (0.0, 0.0, -1.0), (float("nan"), 0.0, None)):
        with pytest.raises(ValueError):
            location(*bad)
    with pytest.raises(ValueError, match="text messages"):
        a.edit(msg.id, "not a place", net.clock.now)


def test_forward_new_keys_capped_expiry_and_expired_refused() -> None:
    clock = FakeClock()
    one, two = Net(Invite.new("http://127.0.0.1:1"), clock), Net(Invite.new("http://127.0.0.1:1"), clock)
    alice_id, bob_id = Identity.generate(), Identity.generate()
    a1, b1 = one.add(alice_id), one.add(bob_id)
    b2, a2 = two.add(bob_id), two.add(alice_id)
    one.link(a1, b1)
    two.link(a2, b2)
    one.pump()
    two.pump()
    a1.set_profile("Alice", clock.now)
    src = a1.send_text("original words", clock.now, ttl_s=30)
    one.pump()
    seen = b1.message(src.id)
    assert seen is not None
    fwd = b2.forward(seen, b1.display_name(a1.peer_id) or "", clock.now, ttl_s=3600)
    two.pump()
    got = a2.message(fwd.id)
    assert got is not None
    assert got.text == "original words"
    assert got.forwarded_from == "Alice"
    assert got.sender == bob_id.peer_id
    assert got.expires_at == src.expires_at
    src_entry = b1.sync.entry((src.sender, src.seq))
    fwd_entry = b2.sync.entry((fwd.sender, fwd.seq))
    assert src_entry is not None
    assert fwd_entry is not None
    assert src_entry.data[66:90] != fwd_entry.data[66:90]  # another chain, index and nonce: new keys
    one.tick(31_000)
    assert b1.message(src.id) is None  # expired: gone, nothing to forward
    with pytest.raises(ValueError, match="expired"):
        b2.forward(seen, "Alice", clock.now)  # a copy of it held by the app is refused too


def test_search_follows_edits_and_forgets_expired_and_unsent(net: Net) -> None:
    a, b, _ = _three(net)
    keep = a.send_text("Lunch at noon", net.clock.now, ttl_s=600)
    short = a.send_text("lunch vanishes", net.clock.now, ttl_s=5)
    unsent = b.send_text("lunch, never mind", net.clock.now, ttl_s=600)
    net.pump()
    assert {m.id for m in b.search("LUNCH")} == {keep.id, short.id, unsent.id}
    a.edit(keep.id, "dinner at eight", net.clock.now)
    net.pump()
    assert [m.id for m in b.search("dinner")] == [keep.id]
    assert keep.id not in [m.id for m in b.search("lunch")]
    b.unsend(unsent.id, net.clock.now)
    net.pump()
    assert [m.id for m in a.search("lunch")] == [short.id]
    net.tick(6000)
    assert a.search("lunch") == []
    assert b.search("vanishes") == []
    assert len(a.timeline.search) == 1  # only the kept (edited) message is indexed


def test_last_seen_opt_out_and_forgotten_after_room_timer(net: Net) -> None:
    a, b, c = _three(net)
    c.set_share_last_seen(False, net.clock.now)
    net.pump()
    assert not c.share_last_seen
    down_at = net.clock.now
    net.unlink(a, b)
    net.unlink(a, c)
    net.pump()
    seen = a.last_seen(net.clock.now)
    assert seen == {b.peer_id: down_at}  # C opted out: not shown
    assert c.last_seen(net.clock.now) == {}  # and C sees no one's
    net.tick(601_000, step=10_000)  # past the room timer (600 s)
    assert a.last_seen(net.clock.now) == {}


def test_last_seen_opt_out_survives_a_restart(net: Net) -> None:
    a, b, c = _three(net)
    c.set_share_last_seen(False, net.clock.now)
    net.pump()
    ident = c.identity
    net.remove(c)
    net.pump()
    assert c.peer_id not in a.last_seen(net.clock.now)  # hidden since it said so
    c2 = net.add(ident, snapshot=snapshot_of(net.persisted[ident.peer_id]))
    assert not c2.share_last_seen  # our preference is persisted (state presence/last_seen)
    fresh = net.add(Identity.generate())
    net.link(fresh, b)
    net.link(fresh, c2)  # a member that never heard the preference: told on the new link
    net.pump()
    net.tick(2000)
    net.unlink(fresh, c2)
    net.unlink(fresh, b)
    net.pump()
    assert list(fresh.last_seen(net.clock.now)) == [b.peer_id]
    c2.set_share_last_seen(True, net.clock.now)
    assert "presence/last_seen" in c2.take_persist().deleted  # opting in again forgets the state


def test_long_text_refused_not_cut(net: Net) -> None:
    a, b, _ = _three(net)
    whole = "word " * 4000  # 20,000 characters
    msg = a.send_text(whole, net.clock.now)
    net.pump()
    got = b.message(msg.id)
    assert got is not None
    assert got.text == whole
    with pytest.raises(ContentTooLong, match="too long"):
        a.send_text("é" * 40_000, net.clock.now)  # 80,000 bytes
    assert [m.text for m in a.messages()] == [whole]
