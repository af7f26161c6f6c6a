"""One integer range on every path (issue 13, items 1 and 5): out-of-range input is a protocol error
where it is parsed, so it never poisons the engine or the store."""

from __future__ import annotations

import pytest

from peer.core import wire
from peer.core.clock import LamportClock
from peer.core.envelope import Envelope, Kind, seal_unchained_envelope
from peer.core.handshake import generate_prekey
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.log import LogEntry
from peer.core.membership import make_add, make_set_timer
from peer.core.room import NEVER, PersistBatch, Room
from peer.store.sqlite import Store, apply_batches, snapshot
from peer.testing import FakeClock
from tests.peer.room_net import Net, snapshot_of, texts


@pytest.fixture
def net() -> Net:
    return Net(Invite.new("http://127.0.0.1:1"), FakeClock())


def hostile_self_add(net: Net, seq: int, sent_at: int, expires_at: int) -> bytes:
    """A validly signed self-ADD of a fresh invite holder with any header integers."""
    evil = Identity.generate()
    now = net.clock.now
    op = make_add(
        evil,
        net.invite.member_key,
        net.invite.room_id,
        1,
        evil.public_bundle(),
        generate_prekey(evil, now).signed,
    )
    env = Envelope(
        Kind.MEMBERSHIP, net.invite.room_id, evil.peer_id, seq, 1, sent_at, expires_at, bytes(8), 0, bytes(12),
        op.encode(), b"",
    )  # fmt: skip
    return env.to_bytes() + evil.sign(env.signed_bytes())


@pytest.mark.parametrize(
    ("seq", "sent_at", "expires_at"),
    [
        (2**53, 0, 2**40),  # item 1: the sync wire cannot carry this seq
        (2**64 - 1, 0, 2**40),
        (1, 2**63, 2**63),  # item 5: SQLite cannot hold these times
        (1, 0, 2**53),
    ],
)
def test_out_of_range_envelope_is_refused_and_the_engine_keeps_running(
    net: Net, seq: int, sent_at: int, expires_at: int
) -> None:
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    net.link(a, b)
    net.pump()
    errors_before = a.error_counts(b.peer_id).get("bad-envelope", 0)
    for frame in wire.encode_envelopes([hostile_self_add(net, seq, sent_at, expires_at)]):
        net.events[a.peer_id] += a.receive(b.peer_id, frame, net.now(a))
    assert a.error_counts(b.peer_id).get("bad-envelope", 0) == errors_before + 1
    assert len(a.members()) == 2
    net.tick(5_000)  # every timer and data_to_send still runs (it used to raise forever)
    b.send_text("still here", net.now(b))
    net.pump()
    assert texts(a)[-1] == (b.peer_id, "still here")


def _entry(sender: str, seq: int, expires_at: int = 2**40) -> LogEntry:
    return LogEntry(sender, seq, seq, 0, expires_at, b"env-%d" % seq)


def test_one_unstorable_row_never_rolls_back_the_group_commit(tmp_path: object) -> None:
    """The store keeps the one range too: a bad row is dropped alone, everyone else's writes land."""
    store = Store(":memory:")
    me, other = "a" * 32, "b" * 32
    own = PersistBatch(envelopes=[_entry(me, q) for q in range(1, 31)], states={"seq": b"30"})
    hostile = PersistBatch(
        envelopes=[_entry(other, 1, 2**63), _entry(other, 2)],
        message_keys=[(other, 3, 2**63, b"k" * 32), (other, 2, 2**40, b"k" * 32)],
        erased=[(other, 4, 2**64)],
    )
    apply_batches(store, [("r" * 32, own), ("s" * 32, hostile)])
    assert len(store.envelopes("r" * 32)) == 30  # was 0: the OverflowError rolled everything back
    assert [e.seq for e in store.envelopes("s" * 32)] == [2]
    assert list(snapshot(store, "s" * 32).message_keys) == [(other, 2)]
    assert store.get_state("r" * 32, "seq") == b"30"
    assert store.rejected_rows == 3


def test_room_timer_cannot_be_pinned_and_the_next_change_just_works(net: Net) -> None:
    """Issue 13, item 13: SET_TIMER with version 2**32-1 used to win every later change, and the next
    honest change raised struct.error (the CLI's traceback)."""
    a, mallory = net.add(Identity.generate()), net.add(Identity.generate())
    net.link(a, mallory)
    net.pump()
    now = net.now(a)
    op = make_set_timer(mallory.identity, net.invite.member_key, net.invite.room_id, 5, 1, 2**32 - 1)
    env = seal_unchained_envelope(
        mallory.identity, net.invite.room_id, Kind.MEMBERSHIP, 10_000, a.sync.clock.value + 1, now, NEVER,
        op.encode(),
    )  # fmt: skip
    for frame in wire.encode_envelopes([env]):
        net.events[a.peer_id] += a.receive(mallory.peer_id, frame, now)
    net.pump()
    a.set_timer(600, net.now(a))  # raised struct.error: version 2**32 does not fit a u32
    net.pump()
    assert a.timer_s == mallory.timer_s == 600


def test_an_author_cannot_backdate_before_its_add_or_its_previous_message(net: Net) -> None:
    """Issue 13, item 12: lamport 0 used to put a message first on every member."""
    a, b, mallory = (net.add(Identity.generate()) for _ in range(3))
    for x, y in ((a, b), (a, mallory), (b, mallory)):
        net.link(x, y)
    net.pump()
    a.send_text("first", net.now(a))
    net.pump()
    mallory.send_text("m1", net.now(mallory))
    net.pump()
    a.send_text("third", net.now(a))
    net.pump()
    add_lamport = a.members_part._admitted_at[mallory.peer_id]
    errors = {r.peer_id: r.error_counts(mallory.peer_id).get("backdated", 0) for r in (a, b)}
    mallory.sync.clock = LamportClock(0)  # a hostile client picks its lamport
    mallory.send_text("before everything", net.now(mallory))
    net.pump()
    for r in (a, b):
        assert r.error_counts(mallory.peer_id).get("backdated", 0) > errors[r.peer_id]
        assert "before everything" not in [t for _, t in texts(r)]
    mallory.sync.clock = LamportClock(add_lamport + 1)  # after its ADD, before its own "m1"
    mallory.send_text("after my add", net.now(mallory))
    net.pump()
    for r in (a, b):
        assert [t for _, t in texts(r)] == ["first", "m1", "after my add", "third"]


def _timer_envelope(net: Net, who: Room, seq: int, ttl_s: int, lamport: int) -> bytes:
    op = make_set_timer(who.identity, net.invite.member_key, net.invite.room_id, lamport, ttl_s, 1)
    return seal_unchained_envelope(
        who.identity, net.invite.room_id, Kind.MEMBERSHIP, seq, lamport + 1, net.clock.now, NEVER, op.encode()
    )


def test_equivocation_is_detected_and_resolved_the_same_everywhere(net: Net) -> None:
    """Issue 13, item 3: two room timers under one (sender, seq) used to split the room for good (one
    member at 60 s, another at 604,800 s). Bytes are now compared on every duplicate key; the key is
    void on every member (neither version counts), reported as the author's 'equivocation'."""
    a, b, c, d, mallory = (net.add(Identity.generate()) for _ in range(5))
    for x, y in ((a, b), (a, c), (b, d), (a, mallory), (b, mallory)):
        net.link(x, y)
    net.tick(2_000)  # lazy announces: everyone knows everyone's ADD
    lamport = max(r.sync.lamport for r in net.rooms.values()) + 10
    before = a.timer_s
    short = _timer_envelope(net, mallory, 10_000, 60, lamport)
    long = _timer_envelope(net, mallory, 10_000, 604_800, lamport)
    for frame in wire.encode_envelopes([long]):  # d holds the long version...
        d.receive(b.peer_id, frame, net.now(d))
    assert d.timer_s == 604_800
    net.remove(d)  # ...and is offline while the room finds out
    d_batches = net.persisted[d.peer_id]
    for target, data in ((a, short), (b, long)):
        for frame in wire.encode_envelopes([data]):
            net.events[target.peer_id] += target.receive(mallory.peer_id, frame, net.now(target))
    net.pump()
    for r in (a, b, c):
        assert r.timer_s == before, r.peer_id  # neither version: the room timer is as before
        assert r.error_counts(mallory.peer_id).get("equivocation") == 1
        assert (mallory.peer_id, 10_000) not in [e.key for e in r.sync.log.ordered()]
    # d comes back holding one version: its neighbour shows it the pair, and it voids the key too
    d2 = net.add(d.identity, snapshot=snapshot_of(d_batches))
    assert d2.timer_s == 604_800
    net.link(d2, b)
    net.pump()
    assert d2.timer_s == before
    assert d2.error_counts(mallory.peer_id).get("equivocation") == 1


def test_junk_under_a_held_key_is_not_equivocation(net: Net) -> None:
    a, b = net.add(Identity.generate()), net.add(Identity.generate())
    net.link(a, b)
    net.pump()
    msg = b.send_text("hello", net.now(b))
    net.pump()
    held = a.sync.entry((b.peer_id, msg.seq))
    assert held is not None
    forged = bytearray(held.data)
    forged[-1] ^= 1  # same key, other bytes, not b's signature
    for frame in wire.encode_envelopes([bytes(forged)]):
        a.receive(b.peer_id, frame, net.now(a))
    assert texts(a) == [(b.peer_id, "hello")]
    assert "equivocation" not in a.error_counts(b.peer_id)
    assert a.error_counts(b.peer_id).get("bad-signature") == 1
