"""Disappearing messages in the sans-IO room: expiry, clock skew, unsend, no resurrection, receipts."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peer.core import wire
from peer.core.chains import SenderChain
from peer.core.envelope import Kind, encode_tombstone, seal_unchained_envelope
from peer.core.errors import ProtocolError
from peer.core.events import RemoteError
from peer.core.identity import Identity
from peer.core.ids import id_to_bytes
from peer.core.invite import Invite
from peer.core.log import Tombstone
from peer.core.room import (
    ErasureReceipt,
    MessageErased,
    MessageExpired,
    MessageReceived,
    Room,
)
from peer.store.sqlite import Store, apply_batch, snapshot
from peer.testing import FakeClock
from tests.peer.room_net import Net, snapshot_of

SKEW_30S = 30_000


@pytest.fixture
def net() -> Net:
    return Net(Invite.new("http://127.0.0.1:1"), FakeClock())


def mesh(net: Net, *rooms: Room) -> None:
    for i, x in enumerate(rooms):
        for y in rooms[i + 1 :]:
            net.link(x, y)
    net.pump()
    net.tick(1000)


def ids_of(room: Room) -> set[str]:
    return {m.id for m in room.messages()}


def received(net: Net, room: Room, msg_id: str) -> bool:
    return any(isinstance(e, MessageReceived) and e.message.id == msg_id for e in net.events[room.peer_id])


def expired(net: Net, room: Room, msg_id: str) -> list[MessageExpired]:
    return [e for e in net.events[room.peer_id] if isinstance(e, MessageExpired) and e.id == msg_id]


def tick_until(net: Net, cond: object, limit_ms: int, step: int = 250) -> int:
    """Advance the fake clock until ``cond()`` holds; returns the true time when it first did."""
    assert callable(cond)
    end = net.clock.now + limit_ms
    while not cond():
        assert net.clock.now < end, "condition not reached"
        net.tick(step, step)
    return net.clock.now


def test_clock_skew_of_30s_either_way_converges_on_erasure(net: Net) -> None:
    a = net.add(Identity.generate())
    ahead = net.add(Identity.generate(), offset_ms=SKEW_30S)
    behind = net.add(Identity.generate(), offset_ms=-SKEW_30S)
    mesh(net, a, ahead, behind)
    m1 = a.send_text("from the true clock", net.now(a), ttl_s=120)
    m2 = behind.send_text("from the slow clock", net.now(behind), ttl_s=120)
    net.pump()
    rooms = (a, ahead, behind)
    assert all(ids_of(r) == {m1.id, m2.id} for r in rooms)
    # expires_at is in each sender's clock; the member whose clock runs ahead expires first and its
    # (proof-less) expiry tombstones make everyone else erase within the skew bound
    erased_at = tick_until(net, lambda: all(not r.messages() for r in rooms), 200_000)
    true_expiry_m2 = m2.expires_at + SKEW_30S  # behind's clock is 30 s slow
    assert erased_at <= true_expiry_m2
    assert erased_at >= m1.expires_at - SKEW_30S
    for r in rooms:
        assert len(expired(net, r, m1.id)) == 1
        assert len(expired(net, r, m2.id)) == 1
    # anti-entropy for minutes afterwards brings nothing back
    net.tick(180_000, 1000)
    assert all(not r.messages() for r in rooms)
    for r in rooms:
        shown = [e.message.id for e in net.events[r.peer_id] if isinstance(e, MessageReceived)]
        assert sorted(shown) == sorted({m1.id, m2.id} - {m.id for m in (m1, m2) if m.sender == r.peer_id})


def test_slow_clock_member_erases_when_a_correct_peer_expires_it(net: Net) -> None:
    a = net.add(Identity.generate())
    slow = net.add(Identity.generate(), offset_ms=-SKEW_30S)
    mesh(net, a, slow)
    msg = a.send_text("bye", net.now(a), ttl_s=5)
    net.pump()
    assert received(net, slow, msg.id)
    erased_at = tick_until(net, lambda: not slow.messages(), 60_000)
    assert erased_at <= msg.expires_at + 250  # at a's expiry, not 30 s later on slow's own timer


def test_offline_member_at_expiry_never_shows_it_and_reports_erasure(net: Net) -> None:
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    c = net.add(Identity.generate())
    mesh(net, a, b, c)
    msg = a.send_text("you will not see me twice", net.now(a), ttl_s=10)
    net.pump()
    assert received(net, c, msg.id)
    c_ident = c.identity
    net.remove(c)  # offline, holding the message on disk
    net.tick(15_000)
    assert msg.id not in ids_of(a)
    assert msg.id not in ids_of(b)
    old = snapshot_of(net.persisted[c_ident.peer_id])
    assert (a.peer_id, msg.seq) in {e.key for e in old.envelopes}  # still in its store
    net.events[c_ident.peer_id] = []  # only what the returning instance sees
    c2 = net.add(c_ident, snapshot=old)
    assert msg.id not in ids_of(c2)  # restore drops what expired while offline
    batch = c2.take_persist()
    assert (a.peer_id, msg.seq) in {(s, q) for s, q, _ in batch.erased}
    net.persisted[c2.peer_id].append(batch)
    net.link(c2, a)
    net.link(c2, b)
    net.pump()
    net.tick(12_000)
    assert msg.id not in ids_of(c2)
    assert not received(net, c2, msg.id)
    assert c2.peer_id in a.erased_on(msg.id)  # its receipt reached the sender on return
    assert a.erasure(msg.id) == (2, 2)


def test_stale_copy_cannot_be_reintroduced_after_expiry(net: Net) -> None:
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    mesh(net, a, b)
    msg = a.send_text("stale", net.now(a), ttl_s=5)
    net.pump()
    entry = a.sync.log.get((a.peer_id, msg.seq))
    assert entry is not None
    stale_bytes = entry.data
    net.tick(6_000)
    assert not a.messages()
    assert not b.messages()
    # a late joiner d is linked only to a stale member that pushes the old envelope at everyone
    d = net.add(Identity.generate())
    net.link(d, b)
    net.pump()
    net.tick(2_000)
    for target in (a, b, d):
        src = b if target is not b else a
        for frame in wire.encode_envelopes([stale_bytes]):
            net.events[target.peer_id] += target.receive(src.peer_id, frame, net.now(target))
    net.pump()
    net.tick(6_000)
    for r in (a, b, d):
        assert msg.id not in ids_of(r)
    assert not received(net, d, msg.id)


def test_unsend_reaches_everyone_including_offline_and_stale_members(net: Net) -> None:
    a, b, c = (net.add(Identity.generate()) for _ in range(3))
    keeper = net.add(Identity.generate(), keeper=True)
    mesh(net, a, b, c, keeper)
    gone = a.send_text("regret", net.now(a), ttl_s=3600)
    kept = a.send_text("fine", net.now(a), ttl_s=3600)
    net.pump()
    net.tick(1000)
    assert all(ids_of(r) == {gone.id, kept.id} for r in (a, b, c))
    c_ident = c.identity
    net.remove(c)  # offline during the unsend: its disk still holds the message
    events = a.unsend(gone.id, net.now(a))
    assert [(e.id, e.reason) for e in events if isinstance(e, MessageExpired)] == [(gone.id, "unsent")]
    net.pump()
    assert ids_of(a) == ids_of(b) == {kept.id}
    assert [e.reason for e in expired(net, b, gone.id)] == ["unsent"]
    assert keeper.sync.log.get((a.peer_id, gone.seq)) is None  # buffered copy purged
    kb = keeper.take_persist()
    net.persisted[keeper.peer_id].append(kb)
    assert any(
        (s, q) == (a.peer_id, gone.seq) for batch in net.persisted[keeper.peer_id] for s, q, _ in batch.erased
    )
    assert not a.unsend(gone.id, net.now(a))  # already gone
    assert not a.unsend(f"{b.peer_id}:1", net.now(a))  # not ours

    # c returns from its stale disk, talking only to the keeper
    c2 = net.add(c_ident, snapshot=snapshot_of(net.persisted[c_ident.peer_id]))
    assert gone.id in ids_of(c2)  # shown from its own disk until it syncs
    net.link(c2, keeper)
    net.pump()
    net.tick(2_000)
    assert ids_of(c2) == {kept.id}
    assert [e.reason for e in expired(net, c2, gone.id)] == ["unsent"]
    # and it does not hand the old copy to anyone: b never sees it again
    net.link(c2, b)
    net.pump()
    net.tick(6_000)
    assert ids_of(b) == {kept.id}
    assert (
        sum(1 for e in net.events[b.peer_id] if isinstance(e, MessageReceived) and e.message.id == gone.id)
        == 1
    )
    # a late joiner never receives it
    d = net.add(Identity.generate())
    net.link(d, c2)
    net.pump()
    net.tick(6_000)
    assert ids_of(d) == {kept.id}
    # restart of a member that applied the unsend: still refuses the stale envelope
    b_ident = b.identity
    net.remove(b)
    b2 = net.add(b_ident, snapshot=snapshot_of(net.persisted[b_ident.peer_id]))
    assert ids_of(b2) == {kept.id}


def forged_proof(forger: Identity, victim: str, room_id: str, seq: int) -> bytes:
    """A TOMBSTONE envelope signed by ``forger`` whose sender field claims ``victim``."""
    data = bytearray(
        seal_unchained_envelope(
            forger, room_id, Kind.TOMBSTONE, seq + 10, 10**6, 0, 2**40, encode_tombstone([seq])
        )
    )
    data[18:34] = id_to_bytes(victim)
    return bytes(data)


def test_forged_unsend_is_rejected(net: Net) -> None:
    a, b, c = (net.add(Identity.generate()) for _ in range(3))
    mesh(net, a, b, c)
    msg = a.send_text("keep me", net.now(a), ttl_s=3600)
    net.pump()
    until = msg.expires_at + 60_000
    own = seal_unchained_envelope(
        b.identity, c.room_id, Kind.TOMBSTONE, 99, 10**6, 0, 2**40, encode_tombstone([msg.seq])
    )
    attempts = [
        Tombstone(a.peer_id, msg.seq, until, forged_proof(b.identity, a.peer_id, c.room_id, msg.seq)),
        Tombstone(a.peer_id, msg.seq, until, own),  # b's valid unsend of *its own* seq, replayed for a's
        Tombstone(a.peer_id, msg.seq, until, b"\x00" * 200),
    ]
    errors_before = len(net.events[c.peer_id])
    for frame in wire.encode_tombstones(attempts):
        net.events[c.peer_id] += c.receive(b.peer_id, frame, net.now(c))
    # the forged envelope itself is refused by validation too
    for frame in wire.encode_envelopes([forged_proof(b.identity, a.peer_id, c.room_id, msg.seq)]):
        net.events[c.peer_id] += c.receive(b.peer_id, frame, net.now(c))
    net.pump()
    assert msg.id in ids_of(c)
    codes = [e.code for e in net.events[c.peer_id][errors_before:] if isinstance(e, RemoteError)]
    assert codes.count("unauthorized-tombstone") == 3
    assert "bad-signature" in codes
    assert not expired(net, c, msg.id)


def test_unsend_for_a_message_not_yet_received_blocks_it(net: Net) -> None:
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    mesh(net, a, b)
    net.unlink(a, b)
    msg = a.send_text("never mind", net.now(a), ttl_s=600)
    a.unsend(msg.id, net.now(a))
    net.pump()
    net.link(a, b)
    net.pump()
    net.tick(6_000)
    assert msg.id not in ids_of(b)
    assert b.sync.log.seen((a.peer_id, msg.seq))


def test_erasure_receipts_count_members_including_keepers(net: Net) -> None:
    a, b, c = (net.add(Identity.generate()) for _ in range(3))
    keeper = net.add(Identity.generate(), keeper=True)
    mesh(net, a, b, c, keeper)
    msg = a.send_text("count me out", net.now(a), ttl_s=3)
    net.pump()
    tick_until(net, lambda: a.erasure(msg.id)[0] == 3, 20_000)
    assert a.erasure(msg.id) == (3, 3)
    assert a.erased_on(msg.id) == {b.peer_id, c.peer_id, keeper.peer_id}
    reports = [e for e in net.events[a.peer_id] if isinstance(e, MessageErased)]
    assert sorted(e.count for e in reports) == [1, 2, 3]
    assert all(e.of == 3 and e.id == msg.id for e in reports)
    assert reports[0].to_json()["event"] == "erased"
    assert b.erasure(msg.id) == (0, 3)  # only the sender tracks its messages


def test_forged_or_misdirected_receipt_is_ignored(net: Net) -> None:
    a, b, c = (net.add(Identity.generate()) for _ in range(3))
    mesh(net, a, b, c)
    msg = a.send_text("x", net.now(a), ttl_s=3600)
    net.pump()
    good = ErasureReceipt.create(c.identity, a.room_id, a.peer_id, [msg.seq]).encode()
    tampered = good[:-1] + bytes([good[-1] ^ 1])
    # b claims to be c: signature by b over a receipt naming c
    claim = ErasureReceipt(a.room_id, c.peer_id, a.peer_id, (msg.seq,))
    forged = ErasureReceipt(
        a.room_id, c.peer_id, a.peer_id, (msg.seq,), b.identity.sign(b"x" + claim.encode())
    ).encode()
    for body in (tampered, forged, b"\x01\x01junk"):
        net.events[a.peer_id] += a.receive(
            b.peer_id, wire.encode_opaque(wire.FrameType.APP, body), net.now(a)
        )
    assert a.erased_on(msg.id) == set()
    codes = [e.code for e in net.events[a.peer_id] if isinstance(e, RemoteError)]
    assert codes[-3:] == ["bad-signature", "bad-signature", "bad-receipt"]
    # a genuine receipt relayed by b counts (receipts are signed by the member, not the link)
    net.events[a.peer_id] += a.receive(b.peer_id, wire.encode_opaque(wire.FrameType.APP, good), net.now(a))
    assert a.erased_on(msg.id) == {c.peer_id}


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(lambda b: b"\x01\x01" + b)))
def test_receipt_decoder_fails_closed(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        ErasureReceipt.decode(data)


def test_sender_keeps_no_state_that_rederives_erased_keys(net: Net) -> None:
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    mesh(net, a, b)
    short = [a.send_text(f"s{i}", net.now(a), ttl_s=5) for i in range(3)]
    keys = {a.keys.message_keys[(a.peer_id, m.seq)] for m in short}
    long = a.send_text("long", net.now(a), ttl_s=3600)
    net.pump()
    net.tick(6_000)
    assert ids_of(a) == {long.id}
    states: dict[str, bytes] = {}
    for batch in net.persisted[a.peer_id] + [a.take_persist()]:
        states.update(batch.states)
        for name in batch.deleted:
            states.pop(name, None)
    (initial,) = [SenderChain.from_bytes(v[:57]) for n, v in states.items() if n.startswith("chain/initial/")]
    derived = set()
    chain = initial
    for _ in range(5):
        chain, mk = chain.advance()
        derived.add(mk.key)
    assert not keys & derived  # the stored initial state starts after the erased messages
    assert (
        a.keys.message_keys[(a.peer_id, long.seq)] in derived
    )  # ...and still serves late joiners for live ones


def test_store_round_trip_erases_rows_on_restore_and_at_startup(net: Net, tmp_path: Path) -> None:
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    mesh(net, a, b)
    msg = a.send_text("on disk", net.now(a), ttl_s=5)
    long = a.send_text("stays", net.now(a), ttl_s=3600)
    net.pump()
    store = Store(tmp_path / "b.sqlite3")
    for batch in net.persisted[b.peer_id]:
        apply_batch(store, b.room_id, batch)
    assert store.message_key(b.room_id, a.peer_id, msg.seq) is not None
    net.remove(b)
    net.tick(6_000)
    # restore path: the room erases what expired while it was down
    b2 = Room(b.identity, net.invite, net.now(a), snapshot=snapshot(store, b.room_id))
    assert ids_of(b2) == {long.id}
    apply_batch(store, b.room_id, b2.take_persist())
    assert {e.seq for e in store.envelopes(b.room_id) if e.sender == a.peer_id} >= {long.seq}
    assert msg.seq not in {e.seq for e in store.envelopes(b.room_id) if e.sender == a.peer_id}
    assert store.message_key(b.room_id, a.peer_id, msg.seq) is None
    assert store.message_key(b.room_id, a.peer_id, long.seq) is not None
    # startup purge: rows of a room never re-joined go too
    assert store.purge_expired(long.expires_at, 60_000) >= 1
    assert store.message_key(b.room_id, a.peer_id, long.seq) is None
    store.close()
