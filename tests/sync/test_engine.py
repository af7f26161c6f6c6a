"""SyncEngine behaviour between a few peers, on a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

from peer.core import wire
from peer.core.errors import ProtocolError
from peer.core.log import Tombstone
from peer.core.sync import (
    Acked,
    EntryAdded,
    EntryDeleted,
    EntryExpired,
    EnvelopeRefused,
    Event,
    NeighbourReady,
    NeighbourTimedOut,
    OpaqueFrame,
    ProtocolErrorEvent,
    SyncConfig,
    SyncEngine,
)
from peer.testing import (
    Author,
    FakeClock,
    SimNetwork,
    build_sim,
    make_engine,
    make_envelope,
    unsend_proof,
)

HOUR = 3_600_000


class Pair:
    """Two engines wired by hand: every frame can be inspected or dropped before delivery."""

    def __init__(self, config: SyncConfig | None = None, room_b: str = "room", connect: bool = True) -> None:
        self.clock = FakeClock()
        self.a = make_engine("a", config=config)
        self.b = make_engine("b", room=room_b, config=config)
        self.events: dict[str, list[Event]] = {self.a.self_id: [], self.b.self_id: []}
        if connect:
            self.connect()

    def connect(self) -> None:
        self.a.connect(self.b.self_id, self.clock.now)
        self.b.connect(self.a.self_id, self.clock.now)

    def engine(self, ident: str) -> SyncEngine:
        return self.a if ident == self.a.self_id else self.b

    def pump(self, drop: Callable[[str, bytes], bool] = lambda src, data: False) -> int:
        """Deliver queued frames both ways until quiet; returns frames delivered."""
        delivered = 0
        while True:
            batch = [(self.a.self_id, d, f) for d, f in self.a.data_to_send()]
            batch += [(self.b.self_id, d, f) for d, f in self.b.data_to_send()]
            if not batch:
                return delivered
            for src, dst, frame in batch:
                if drop(src, frame):
                    continue
                delivered += 1
                self.events[dst] += self.engine(dst).receive(src, frame, self.clock.now)

    def tick(self, ms: int) -> None:
        """Advance the clock, firing every timer that falls due on the way."""
        end = self.clock.now + ms
        while True:
            due = [t for t in (self.a.next_timer(), self.b.next_timer()) if t is not None and t <= end]
            if not due:
                break
            self.clock.set(max(self.clock.now, min(due)))
            for e in (self.a, self.b):
                t = e.next_timer()
                if t is not None and t <= self.clock.now:
                    self.events[e.self_id] += e.handle_timer(self.clock.now)
        self.clock.set(end)


T = TypeVar("T")


def of_type(events: list[Event], cls: type[T]) -> list[T]:
    return [e for e in events if isinstance(e, cls)]


def test_hello_exchange_makes_neighbours_ready() -> None:
    p = Pair()
    p.pump()
    assert of_type(p.events[p.a.self_id], NeighbourReady) == [NeighbourReady(p.b.self_id)]
    assert p.a.is_ready(p.b.self_id)
    assert p.b.is_ready(p.a.self_id)


def test_catch_up_pulls_everything_and_acks() -> None:
    p = Pair()
    author = Author(p.a)
    entries = [author.publish(p.clock.now, HOUR, b"m%d" % i) for i in range(30)]
    p.pump()
    added = of_type(p.events[p.b.self_id], EntryAdded)
    assert [e.entry for e in added] == entries
    assert [e.key for e in p.b.log.ordered()] == [e.key for e in entries]
    acked = {(ev.sender, ev.seq) for ev in of_type(p.events[p.a.self_id], Acked)}
    assert acked == {e.key for e in entries}


def test_catch_up_beyond_one_want_round() -> None:
    p = Pair(SyncConfig(max_want_keys=7))
    author = Author(p.a)
    for _ in range(50):
        author.publish(p.clock.now, HOUR)
    p.pump()  # each finished pull asks for the next chunk without waiting for a timer
    assert len(p.b.log) == 50


def test_live_publish_pushes_and_acks() -> None:
    p = Pair()
    p.pump()
    entry = Author(p.b).publish(p.clock.now, HOUR, b"hi")
    p.pump()
    assert p.a.log.get(entry.key) == entry
    assert Acked(p.a.self_id, entry.sender, entry.seq) in p.events[p.b.self_id]


def test_publish_rejects_duplicates_and_bad_envelopes() -> None:
    p = Pair()
    data = Author(p.a).envelope(p.clock.now, HOUR)
    p.a.publish(data, p.clock.now)
    with pytest.raises(ValueError, match="duplicate"):
        p.a.publish(data, p.clock.now)
    with pytest.raises(ProtocolError):
        p.a.publish(data[:-1] + bytes([data[-1] ^ 1]), p.clock.now)


def test_relay_through_middle_of_a_line() -> None:
    sim, ids = build_sim(3, seed=1, degree=1)  # ring of 3 -> make it a line
    sim.set_link(ids[0], ids[2], False)
    sim.run_for(100)
    early = sim.publish(ids[0])
    sim.run_for(200)
    late = sim.publish(ids[2])
    sim.run_for(200)
    for peer in ids:
        assert sim.keys(peer) == [early.key, late.key]


def test_heartbeats_keep_a_quiet_session_alive() -> None:
    p = Pair()
    p.pump()
    assert p.a.next_timer() == p.clock.now + 1_000
    for _ in range(10):
        p.tick(1_000)
        pings = [f for _, f in p.a.data_to_send()]
        assert any(isinstance(wire.decode_frame(f), wire.Ping) for f in pings)
        for f in pings:
            p.events[p.b.self_id] += p.b.receive(p.a.self_id, f, p.clock.now)
        p.pump()
    assert not of_type(p.events[p.a.self_id], NeighbourTimedOut)


def test_silent_neighbour_times_out() -> None:
    p = Pair()
    p.pump()
    p.tick(3_999)
    p.pump(drop=lambda src, data: src == p.b.self_id)
    assert not of_type(p.events[p.a.self_id], NeighbourTimedOut)
    p.tick(1)
    assert of_type(p.events[p.a.self_id], NeighbourTimedOut) == [NeighbourTimedOut(p.b.self_id)]
    assert p.b.self_id not in p.a.neighbours


def test_lost_want_is_retried_after_timeout() -> None:
    p = Pair(SyncConfig(want_timeout_ms=500, dead_after_ms=60_000), connect=False)
    Author(p.a).publish(p.clock.now, HOUR)
    p.connect()
    dropped: list[bytes] = []

    def drop_first_want(src: str, data: bytes) -> bool:
        if not dropped and isinstance(wire.decode_frame(data), wire.Want):
            dropped.append(data)
            return True
        return False

    p.pump(drop=drop_first_want)
    assert dropped
    assert len(p.b.log) == 0
    p.tick(500)
    p.pump()
    assert len(p.b.log) == 1


def test_lost_push_is_repaired_by_periodic_hello() -> None:
    p = Pair(SyncConfig(resync_ms=2_000, dead_after_ms=60_000))
    p.pump()
    entry = Author(p.a).publish(p.clock.now, HOUR)
    p.pump(drop=lambda src, data: isinstance(wire.decode_frame(data), wire.Envelopes))
    assert entry.key not in p.b.log
    p.tick(2_000)
    p.pump()
    assert p.b.log.get(entry.key) == entry


def test_bad_frames_are_dropped_and_session_survives() -> None:
    p = Pair()
    p.pump()
    a, b, now = p.a.self_id, p.b, p.clock.now
    good = Author(p.a).envelope(now, HOUR, b"good")
    forged = bytearray(Author(p.a).envelope(now, HOUR, b"evil"))
    forged[-1] ^= 1
    events = b.receive(a, b"\xee garbage", now)
    events += b.receive(a, b"\x02" + b"\0" * (wire.MAX_FRAME + 10), now)
    (batch,) = wire.encode_envelopes([bytes(forged), good])
    events += b.receive(a, batch, now)
    codes = [e.code for e in events if isinstance(e, ProtocolErrorEvent | EnvelopeRefused)]
    assert codes == ["unknown-type", "too-large", "bad-signature"]
    assert [e.data for e in of_type(events, EnvelopeRefused)] == [bytes(forged)]
    assert [e.entry.data for e in of_type(events, EntryAdded)] == [good]
    assert b.is_ready(a)
    later = Author(p.a, first_seq=5).publish(now, HOUR)
    p.pump()
    assert b.log.get(later.key) == later
    assert b.protocol_errors == 3


def test_lamport_jump_is_refused() -> None:
    p = Pair()
    p.pump()
    data = make_envelope(p.a.self_id, 0, 2**40, p.clock.now, p.clock.now + HOUR)
    (frame,) = wire.encode_envelopes([data])
    assert p.b.receive(p.a.self_id, frame, p.clock.now) == [ProtocolErrorEvent(p.a.self_id, "lamport-jump")]
    assert p.b.clock.value < 2**32


def test_frames_before_hello_are_refused() -> None:
    p = Pair()
    a, b = p.a, p.b
    (want,) = wire.encode_want({a.self_id: [(0, 3)]})
    events = b.receive(a.self_id, want, p.clock.now)
    assert events == [ProtocolErrorEvent(a.self_id, "no-hello")]


def test_wrong_room_is_ignored() -> None:
    p = Pair(room_b="other-room")
    Author(p.a).publish(p.clock.now, HOUR)
    p.pump()
    errors = of_type(p.events[p.a.self_id] + p.events[p.b.self_id], ProtocolErrorEvent)
    assert {e.code for e in errors} == {"wrong-room"}
    assert len(p.b.log) == 0
    assert not of_type(p.events[p.a.self_id], NeighbourReady)
    assert p.a.data_to_send() == []
    p.tick(10_000)
    assert p.a.data_to_send() == []


def test_unknown_neighbour_is_a_protocol_error() -> None:
    e = make_engine("x")
    assert e.receive(make_engine("y").self_id, wire.encode_ping(1), 0) == [
        ProtocolErrorEvent(make_engine("y").self_id, "no-session")
    ]


def test_opaque_frames_pass_through() -> None:
    p = Pair()
    p.pump()
    p.a.send_opaque(p.b.self_id, wire.FrameType.HANDSHAKE, b"hs")
    p.pump()
    assert OpaqueFrame(p.a.self_id, wire.FrameType.HANDSHAKE, b"hs") in p.events[p.b.self_id]


def test_expiry_erases_everywhere_and_is_never_served_again() -> None:
    p = Pair()
    p.pump()
    entry = Author(p.a).publish(p.clock.now, 1_000)
    p.pump()
    assert entry.key in p.b.log
    p.tick(1_000)
    assert EntryExpired(entry.key) in p.events[p.a.self_id]
    assert EntryExpired(entry.key) in p.events[p.b.self_id]
    p.pump()
    # a stale copy pushed again is refused and answered with the tombstone
    (frame,) = wire.encode_envelopes([entry.data])
    events = p.b.receive(p.a.self_id, frame, p.clock.now)
    assert not of_type(events, EntryAdded)
    # a WANT for it is answered with a tombstone, never the envelope
    (want,) = wire.encode_want({entry.sender: [(0, 0)]})
    p.b.receive(p.a.self_id, want, p.clock.now)
    frames = [wire.decode_frame(f) for _, f in p.b.data_to_send()]
    assert not any(isinstance(f, wire.Envelopes) for f in frames)
    assert any(isinstance(f, wire.Tombstones) for f in frames)


def test_expiry_tombstone_reaches_a_peer_whose_clock_lags() -> None:
    p = Pair(SyncConfig(dead_after_ms=60_000))
    p.pump()
    entry = Author(p.a).publish(p.clock.now, 5_000)
    p.pump()
    # b's clock runs 2 s behind: a expires first and tells b, within the skew bound
    events = p.a.handle_timer(p.clock.now + 5_000)
    assert events == [EntryExpired(entry.key)]
    for _, f in p.a.data_to_send():
        p.events[p.b.self_id] += p.b.receive(p.a.self_id, f, p.clock.now + 3_000)
    assert EntryExpired(entry.key) in p.events[p.b.self_id]
    assert entry.key not in p.b.log


def test_explicit_delete_propagates_and_blocks_resurrection() -> None:
    sim, ids = build_sim(4, seed=3)
    sim.run_for(100)
    entry = sim.publish(ids[0])
    sim.run_for(200)
    assert all(entry.key in sim.engines[i].log for i in ids)
    sim.set_peer_online(ids[3], False)  # a stale peer keeps its copy
    until = entry.expires_at + 60_000
    assert sim.engines[ids[0]].delete(entry.key, until, unsend_proof(*entry.key, until), sim.clock.now)
    sim.publish(ids[0])  # flush the tombstone with any traffic
    sim.run_for(200)
    for i in ids[:3]:
        assert entry.key not in sim.engines[i].log
    assert EntryDeleted(entry.key) in sim.events[ids[1]]
    assert entry.key in sim.engines[ids[3]].log
    sim.set_peer_online(ids[3], True)
    sim.run_for(500)
    assert entry.key not in sim.engines[ids[3]].log
    assert EntryDeleted(entry.key) in sim.events[ids[3]]
    assert sim.converged()


def test_unauthorized_delete_is_refused() -> None:
    p = Pair()
    p.pump()
    entry = Author(p.a).publish(p.clock.now, HOUR)
    p.pump()
    (frame,) = wire.encode_tombstones([Tombstone(entry.sender, entry.seq, entry.expires_at, b"forged")])
    events = p.b.receive(p.a.self_id, frame, p.clock.now)
    assert events == [ProtocolErrorEvent(p.a.self_id, "unauthorized-tombstone")]
    assert entry.key in p.b.log
    # a proof-less (expiry) tombstone for a live entry is refused too
    (frame,) = wire.encode_tombstones([Tombstone(entry.sender, entry.seq, entry.expires_at, b"")])
    assert p.b.receive(p.a.self_id, frame, p.clock.now) == []
    assert entry.key in p.b.log


def test_reconnect_after_timeout_in_sim() -> None:
    sim = SimNetwork(seed=9, loss=0.0)
    a, b = sim.add(make_engine("a")).self_id, sim.add(make_engine("b")).self_id
    sim.link(a, b)
    sim.run_for(100)
    before = sim.frames_sent
    sim.set_link(a, b, False)
    sim.publish(a)
    sim.run_for(1_000)
    assert sim.keys(b) == []
    sim.set_link(a, b, True)
    sim.run_for(200)
    assert sim.converged()
    assert sim.frames_sent > before
