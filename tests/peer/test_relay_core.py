"""The relay part (signaling through the mesh, reach gossip) on sans-IO rooms over an in-memory net.

A chain A - B - C (no A-C link): A's sealed signaling payload reaches C through B and opens there with
A as the sender; a newcomer learns the rest from gossip; malformed, oversized, forged, replayed and
looping frames are refused, deduped or budgeted as PROTOCOL.md says.
"""

from __future__ import annotations

import pytest

from peer.core import wire
from peer.core.crypto import DeterministicRng
from peer.core.errors import ProtocolError
from peer.core.events import RemoteError
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.room import ERROR_BUDGET, Room
from peer.core.room import relay as rl
from peer.core.signal import ReplayCache, open_signal, seal_signal
from peer.testing import FakeClock
from tests.peer.room_net import Net, snapshot_of

SERVER = "http://192.0.2.1:8080"


def ident(name: str) -> Identity:
    return Identity.generate(DeterministicRng(f"relay-core/{name}".encode()))


@pytest.fixture
def chain() -> tuple[Net, Room, Room, Room]:
    """A - B - C linked in a chain, everyone a member, B and C announcing reach."""
    net = Net(Invite.new(SERVER), FakeClock())
    a, b, c = (net.add(ident(n)) for n in "abc")
    net.link(a, b)
    net.pump()
    net.link(b, c)
    net.pump()
    for room in (a, b, c):
        room.enable_reach([("server", SERVER)], net.now(room))
    net.tick(1_000)
    assert a.online() == {b.peer_id}
    assert c.online() == {b.peer_id}
    return net, a, b, c


def app(net: Net, src: Room, dst: Room, body: bytes) -> list[object]:
    """Hand ``dst`` an APP frame from ``src`` directly (as if ``src`` had sent it)."""
    frame = wire.encode_opaque(wire.FrameType.APP, body)
    return list(dst.receive(src.peer_id, frame, net.now(dst)))


def test_payload_relayed_through_b_opens_at_c_with_a_as_sender(chain: tuple[Net, Room, Room, Room]) -> None:
    net, a, b, c = chain
    now = net.now(a)
    payload = seal_signal(a.identity, net.invite, c.peer_id, "offer", {"sdp": "v=0"}, now)
    assert a.relay_signal(c.peer_id, payload, now)
    net.pump()
    got = c.take_relayed()
    assert got == [(a.peer_id, payload)]
    opened = open_signal(net.invite, c.peer_id, got[0][0], got[0][1], net.now(c), ReplayCache())
    assert opened.kind == "offer"
    assert opened.sender_bundle.peer_id == a.peer_id
    assert b.take_relayed() == []
    assert a.take_relayed() == []


def test_relay_cannot_reattribute_a_payload(chain: tuple[Net, Room, Room, Room]) -> None:
    """A relay that rewrites ``from`` (with a matching id) delivers a payload that does not open."""
    net, a, b, c = chain
    now = net.now(a)
    payload = seal_signal(a.identity, net.invite, c.peer_id, "offer", {"sdp": "v=0"}, now)
    app(net, b, c, rl.encode_relay(2, b.peer_id, c.peer_id, payload))
    ((claimed, got),) = c.take_relayed()
    assert claimed == b.peer_id
    with pytest.raises(ProtocolError):
        open_signal(net.invite, c.peer_id, claimed, got, net.now(c), ReplayCache())


def test_replayed_relayed_payload_is_refused_by_the_replay_cache(chain: tuple[Net, Room, Room, Room]) -> None:
    net, a, b, c = chain
    now = net.now(a)
    payload = seal_signal(a.identity, net.invite, c.peer_id, "offer", {"sdp": "v=0"}, now)
    replay = ReplayCache()
    open_signal(net.invite, c.peer_id, a.peer_id, payload, now, replay)  # arrived via the server first
    app(net, b, c, rl.encode_relay(2, a.peer_id, c.peer_id, payload))
    ((sender, got),) = c.take_relayed()
    with pytest.raises(ProtocolError) as err:
        open_signal(net.invite, c.peer_id, sender, got, net.now(c), replay)
    assert err.value.code == "replay"


def test_duplicate_and_looping_frames_are_dropped_silently(chain: tuple[Net, Room, Room, Room]) -> None:
    net, a, b, c = chain
    now = net.now(a)
    payload = seal_signal(a.identity, net.invite, c.peer_id, "hello", {}, now)
    body = rl.encode_relay(3, a.peer_id, c.peer_id, payload)
    app(net, b, c, body)
    assert len(c.take_relayed()) == 1
    for hops in (3, 2, 1):  # the same payload again, any hop count: the id is the same, so dropped
        assert app(net, b, c, rl.encode_relay(hops, a.peer_id, c.peer_id, payload)) == []
    assert c.take_relayed() == []
    # our own payload coming back (a loop) is dropped without blame
    mine = seal_signal(c.identity, net.invite, a.peer_id, "hello", {}, now)
    assert c.relay_signal(a.peer_id, mine, now)
    assert app(net, b, c, rl.encode_relay(1, c.peer_id, a.peer_id, mine)) == []
    assert c.error_counts(b.peer_id) == {}


def test_forged_frame_from_us_is_blamed(chain: tuple[Net, Room, Room, Room]) -> None:
    net, a, b, c = chain
    payload = seal_signal(c.identity, net.invite, a.peer_id, "hello", {}, net.now(c) - 5)
    events = app(net, b, c, rl.encode_relay(2, c.peer_id, a.peer_id, payload))
    assert [e.code for e in events if isinstance(e, RemoteError)] == ["bad-relay"]


def test_hop_limit_is_spent_not_forwarded() -> None:
    """A - B - C - D: a frame with hops 1 at B for D stops at B; hops 2 reaches D through C."""
    net = Net(Invite.new(SERVER), FakeClock())
    a, b, c, d = (net.add(ident(n)) for n in "abcd")
    for x, y in ((a, b), (b, c), (c, d)):
        net.link(x, y)
        net.pump()
    payload = seal_signal(a.identity, net.invite, d.peer_id, "hello", {}, net.now(a))
    app(net, a, b, rl.encode_relay(1, a.peer_id, d.peer_id, payload))
    net.pump()
    assert d.take_relayed() == []
    assert b.relay.dropped == 1
    payload2 = seal_signal(a.identity, net.invite, d.peer_id, "hello", {}, net.now(a) + 1)
    app(net, a, b, rl.encode_relay(3, a.peer_id, d.peer_id, payload2))
    net.pump()
    assert d.take_relayed() == [(a.peer_id, payload2)]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda body: body[:40],  # truncated
        lambda body: bytes([rl.RELAY_TAG, 0]) + body[2:],  # hops 0
        lambda body: bytes([rl.RELAY_TAG, rl.MAX_HOPS + 1]) + body[2:],  # hops too high
        lambda body: body[:2] + bytes(16) + body[18:],  # id not the hash
        lambda body: body[:-1] + b"\xff",  # payload not ASCII
        lambda body: body + b"A" * rl.MAX_RELAY_PAYLOAD,  # oversized
        lambda body: body[:18] + body[34:50] + body[34:],  # from == to
    ],
    ids=["truncated", "hops-0", "hops-high", "bad-id", "not-ascii", "oversized", "self-addressed"],
)
def test_malformed_relay_frames_are_blamed_on_the_link(
    chain: tuple[Net, Room, Room, Room], mutate: object
) -> None:
    net, a, b, c = chain
    payload = seal_signal(a.identity, net.invite, c.peer_id, "hello", {}, net.now(a))
    body = mutate(rl.encode_relay(2, a.peer_id, c.peer_id, payload))  # type: ignore[operator]
    events = app(net, b, c, body)
    assert [(e.code, e.closed) for e in events if isinstance(e, RemoteError)] == [("bad-relay", False)]
    assert c.take_relayed() == []


def test_malformed_relay_frames_past_the_budget_close_the_link(chain: tuple[Net, Room, Room, Room]) -> None:
    net, _a, b, c = chain
    closed = False
    for _ in range(ERROR_BUDGET + 1):
        events = app(net, b, c, bytes([rl.RELAY_TAG, 9]) + bytes(60))
        closed = closed or any(isinstance(e, RemoteError) and e.closed for e in events)
    assert closed
    assert b.peer_id in c.take_dead_links()


def test_relay_flood_is_paced_per_neighbour_without_closing(chain: tuple[Net, Room, Room, Room]) -> None:
    net, a, b, c = chain
    now = net.now(c)
    codes = []
    for i in range(rl.RELAY_BURST + 10):
        payload = seal_signal(a.identity, net.invite, c.peer_id, "hello", {}, now - i)
        for e in app(net, b, c, rl.encode_relay(2, a.peer_id, c.peer_id, payload)):
            assert isinstance(e, RemoteError)
            codes.append((e.code, e.closed))
    assert codes == [("relay-budget", False)] * 10
    assert len(c.take_relayed()) == rl.RELAY_BURST
    assert c.online() == {b.peer_id}


def test_inbox_is_bounded() -> None:
    relay = rl.Relay(ident("x"), "00" * 16)
    me, other = ident("x").peer_id, ident("y").peer_id
    for i in range(rl.MAX_INBOX + 20):
        relay._relay_buckets.clear()
        relay.on_relay(other, rl.encode_relay(1, other, me, f"v1.{i}"), set(), lambda p: False, 1000)
    got = relay.take_relayed()
    assert len(got) == rl.MAX_INBOX
    assert got[-1][1] == f"v1.{rl.MAX_INBOX + 19}"


def test_seen_cache_is_bounded_and_expires() -> None:
    relay = rl.Relay(ident("x"), "00" * 16)
    for i in range(rl.MAX_SEEN + 50):
        relay._remember(i.to_bytes(16, "big"), 1000)
    assert len(relay._seen) == rl.MAX_SEEN
    relay._remember(b"\xff" * 16, 1000 + rl.SEEN_TTL_MS)
    assert len(relay._seen) == 1


def test_newcomer_learns_the_rest_and_servers_from_gossip(chain: tuple[Net, Room, Room, Room]) -> None:
    net, a, b, c = chain
    assert a.reachable(net.now(a)) == [c.peer_id]
    assert c.reachable(net.now(c)) == [a.peer_id]
    assert b.reachable(net.now(b)) == []
    assert a.reach_hints() == [SERVER]
    # a newcomer D linked only to C learns A and B (B through C's hand-over of B's announcement)
    d = net.add(ident("d"))
    d.enable_reach([("server", "https://other.example")], net.now(d))
    net.link(c, d)
    net.pump()
    net.tick(3_000)
    assert set(d.reachable(net.now(d))) == {a.peer_id, b.peer_id}
    assert "https://other.example" in a.reach_hints()
    # learned servers are persisted and restored
    snap = snapshot_of(net.persisted[a.peer_id] + [a.take_persist()])
    assert rl.SERVERS_STATE in snap.states
    again = Room(a.identity, net.invite, net.now(a), snapshot=snap)
    assert again.reach_hints() == a.reach_hints()


def test_announcements_expire(chain: tuple[Net, Room, Room, Room]) -> None:
    net, a, b, c = chain
    net.unlink(b, c)  # B's next announcement no longer names C
    net.tick(rl.MIN_INTERVAL_MS + 500)
    assert a.relay._table[b.peer_id].links == (a.peer_id,)
    assert a.reachable(net.now(a)) == [c.peer_id]  # C's own announcement lives until its ttl
    net.unlink(a, b)
    net.tick(rl.TTL_S * 1000 + 1000)
    assert a.reachable(net.now(a)) == []
    assert c.relay._table == {}
    assert a.relay._table == {}


def test_reach_forgery_staleness_and_budget(chain: tuple[Net, Room, Room, Room]) -> None:
    net, a, b, c = chain
    now = net.now(c)
    mallory = ident("mallory")  # not a member
    body = rl.encode_reach(mallory, net.invite.room_id, now, 60, [a.peer_id], [])
    assert app(net, b, c, body) == []  # held in case its ADD is on its way (bounded), not stored
    assert mallory.peer_id not in c.relay._table
    assert len(c.relay._pending) <= rl.MAX_PENDING
    # a member's announcement with a signature by someone else: blamed
    fake = rl.encode_reach(a.identity, net.invite.room_id, now + 5, 60, [], [])
    forged = fake[:-64] + rl.encode_reach(b.identity, net.invite.room_id, now + 5, 60, [], [])[-64:]
    events = app(net, b, c, forged)
    assert [e.code for e in events if isinstance(e, RemoteError)] == ["bad-signature"]
    stale = rl.encode_reach(a.identity, net.invite.room_id, now + rl.MAX_SKEW_MS + 10_000, 60, [], [])
    events = app(net, b, c, stale)
    assert [e.code for e in events if isinstance(e, RemoteError)] == ["reach-stale"]
    # an older (or equal) announcement than the one held is dropped without blame
    held = c.relay._table[b.peer_id]
    old = rl.encode_reach(b.identity, net.invite.room_id, held.ts, 60, [], [])
    assert app(net, b, c, old) == []
    assert c.relay._table[b.peer_id] == held
    codes = []
    for i in range(rl.REACH_BURST + 5):
        body = rl.encode_reach(a.identity, net.invite.room_id, now + 10 + i, 60, [], [])
        codes += [e.code for e in app(net, b, c, body) if isinstance(e, RemoteError)]
    assert "reach-budget" in codes
    assert c.online() == {b.peer_id}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda body: body[:20],
        lambda body: body[:27] + bytes([9]) + body[28:],  # link count beyond what is there
        lambda body: body[:-64] + b"\x00" + body[-64:],  # trailing byte
        lambda body: bytes([rl.REACH_TAG]) + body[1:17] + body[17:25] + b"\x00\x00" + body[27:],  # ttl 0
    ],
    ids=["truncated", "bad-count", "trailing", "ttl-0"],
)
def test_malformed_reach_is_blamed(chain: tuple[Net, Room, Room, Room], mutate: object) -> None:
    net, a, b, c = chain
    body = rl.encode_reach(
        a.identity, net.invite.room_id, net.now(c) + 50, 60, [b.peer_id], [("server", SERVER)]
    )
    events = app(net, b, c, mutate(body))  # type: ignore[operator]
    assert [e.code for e in events if isinstance(e, RemoteError)] == ["bad-reach"]


def test_reach_codec_refuses_bad_hints_and_unsorted_links() -> None:
    x = ident("x")
    with pytest.raises(ValueError):
        rl.encode_reach(x, "00" * 16, 1, 60, [], [("Server", SERVER)])
    with pytest.raises(ValueError):
        rl.encode_reach(x, "00" * 16, 1, 60, [], [("server", "has space")])
    body = rl.encode_reach(x, "00" * 16, 1, 60, [ident("y").peer_id, ident("z").peer_id], [])
    ids = sorted([ident("y").peer_id, ident("z").peer_id])
    assert body[28:60] == bytes.fromhex(ids[0] + ids[1])
    swapped = body[:28] + bytes.fromhex(ids[1]) + bytes.fromhex(ids[0]) + body[60:]
    with pytest.raises(ProtocolError):
        rl.decode_reach(swapped)
    with pytest.raises(ProtocolError):
        rl.decode_reach(rl.encode_reach(x, "00" * 16, 1, 60, [], [])[:-64] + b"\x01" + bytes(64))


def test_removed_member_gets_nothing_relayed(chain: tuple[Net, Room, Room, Room]) -> None:
    net, a, b, c = chain
    payload = seal_signal(a.identity, net.invite, c.peer_id, "hello", {}, net.now(a))
    b.remove_member(a.peer_id, net.now(b))  # a legacy room (no owner): every member is an admin
    net.pump()
    assert a.peer_id in c.membership.removed
    events = app(net, b, c, rl.encode_relay(2, a.peer_id, c.peer_id, payload))
    assert [e.code for e in events if isinstance(e, RemoteError)] == ["relay-refused"]
    assert c.take_relayed() == []
    assert not b.relay_signal(a.peer_id, "v1.x", net.now(b))
    assert a.peer_id not in c.reachable(net.now(c))
