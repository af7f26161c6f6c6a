"""Property test: a hostile member feeds arbitrary frames to a room (issue 13 item 5).

Three real sans-IO rooms: ``a`` and ``b`` are honest, ``h`` is a member holding the invite whose link to
``a`` is authenticated; hypothesis then sends, as ``h``, any mix of HELLO / WANT / ACK / TOMBSTONES /
ENVELOPES (real ones replayed, mutated or random), the equivocation check's DIGESTS / HASH_WANT / HASHES
(bogus digests, any ranges, bogus hashes), raw bytes and PINGs, interleaved with honest sends and time
passing. After every step:

- no exception escapes the room (``receive``, ``handle_timer``, ``data_to_send``);
- what ``h`` makes ``a`` hold is bounded, structure by structure (``SyncEngine.budget_counts``);

and at the end, once ``h`` is gone, ``a`` and ``b`` converge: the same log keys, the same messages, every
honest text on both. Bounded examples: runs in well under 30 s.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peer.core import wire
from peer.core.identity import Identity
from peer.core.invite import Invite
from peer.core.log import RangeSet, Tombstone
from peer.core.room import Room
from peer.testing import FakeClock, sim_id
from tests.peer.room_net import Net, texts

SENDERS = 8  # 0..2 the three members, the rest made-up ids
seqs = st.integers(0, 2**53 - 1) | st.integers(0, 64)
ranges = st.lists(st.tuples(st.integers(0, SENDERS - 1), seqs, st.integers(0, 10_000)), max_size=6)


@dataclass(frozen=True)
class Hello:
    claims: list[tuple[int, int, int]]


@dataclass(frozen=True)
class Want:
    claims: list[tuple[int, int, int]]


@dataclass(frozen=True)
class Ack:
    claims: list[tuple[int, int, int]]


@dataclass(frozen=True)
class Tombs:
    items: list[tuple[int, int, int, bytes]]
    copies: int


@dataclass(frozen=True)
class Envs:
    picks: list[tuple[int, int, int]]  # (which captured envelope, byte to flip or -1, copies)


@dataclass(frozen=True)
class Check:
    """DIGESTS (who, hi), then HASH_WANT and HASHES (who, level, lo, span) with made-up hashes."""

    digests: list[tuple[int, int]]
    want: tuple[int, int, int, int]
    hashes: tuple[int, int, int, int]


@dataclass(frozen=True)
class Raw:
    data: bytes


@dataclass(frozen=True)
class Tick:
    ms: int


@dataclass(frozen=True)
class Send:
    by_b: bool
    text: str


actions = st.one_of(
    st.builds(Hello, ranges),
    st.builds(Want, ranges),
    st.builds(Ack, ranges),
    st.builds(
        Tombs,
        st.lists(
            st.tuples(
                st.integers(0, SENDERS - 1),
                seqs,
                st.integers(-120_000, 10**9),
                st.sampled_from([b"", b"x" * 40, b"\x01" * 200]),
            ),
            max_size=40,
        ),
        st.integers(1, 60),
    ),
    st.builds(
        Envs, st.lists(st.tuples(st.integers(0, 50), st.integers(-1, 300), st.integers(1, 20)), max_size=8)
    ),
    st.builds(
        Check,
        st.lists(st.tuples(st.integers(0, SENDERS - 1), seqs), max_size=8),
        st.tuples(st.integers(0, SENDERS - 1), st.integers(0, 1), seqs, st.integers(0, 10_000)),
        st.tuples(st.integers(0, SENDERS - 1), st.integers(0, 1), seqs, st.integers(0, 2_000)),
    ),
    st.builds(Raw, st.binary(max_size=200)),
    st.builds(Tick, st.integers(0, 6_000)),
    st.builds(Send, st.booleans(), st.text(min_size=1, max_size=20)),
)


class World:
    def __init__(self) -> None:
        self.net = Net(Invite.new("http://127.0.0.1:1"), FakeClock())
        self.a = self.net.add(Identity.generate())
        self.b = self.net.add(Identity.generate())
        self.h = self.net.add(Identity.generate())
        self.net.link(self.a, self.b)
        self.net.link(self.a, self.h)
        self.net.link(self.b, self.h)
        self.net.pump()
        self.net.tick(1_000)
        assert self.h.peer_id in self.a.online()
        self.ids = [self.a.peer_id, self.b.peer_id, self.h.peer_id] + [
            sim_id(f"fake{i}") for i in range(SENDERS - 3)
        ]
        self.captured: list[bytes] = []
        self.sent: list[str] = []

    @property
    def now(self) -> int:
        return self.net.clock.now

    def rangemap(self, claims: list[tuple[int, int, int]]) -> dict[str, list[tuple[int, int]]]:
        sets: dict[str, RangeSet] = {}
        for who, lo, span in claims:
            sets.setdefault(self.ids[who], RangeSet()).add_range(lo, min(lo + span, wire.MAX_INT))
        return {k: v.ranges() for k, v in sets.items()}

    def capture(self) -> None:
        for room in (self.a, self.b, self.h):
            self.captured += [e.data for e in room.sync.log.ordered()][-20:]
        self.captured = self.captured[-200:]

    def hostile(self, frames: list[bytes]) -> None:
        for f in frames:
            self.net.events[self.a.peer_id] += self.a.receive(self.h.peer_id, f, self.now)

    def step(self, action: object) -> None:
        if isinstance(action, Hello):
            self.hostile([wire.encode_hello(self.a.room_id, self.rangemap(action.claims))])
        elif isinstance(action, Want):
            self.hostile(wire.encode_want(self.rangemap(action.claims)))
        elif isinstance(action, Ack):
            self.hostile(wire.encode_ack(self.rangemap(action.claims)))
        elif isinstance(action, Tombs):
            tombs = [
                Tombstone(self.ids[w], seq, max(0, min(self.now + off, wire.MAX_INT)), proof)
                for w, seq, off, proof in action.items
            ]
            if tombs:
                self.hostile(wire.encode_tombstones(tombs) * action.copies)
        elif isinstance(action, Envs):
            self.capture()
            items = []
            for i, flip, copies in action.picks:
                if not self.captured:
                    break
                data = bytearray(self.captured[i % len(self.captured)])
                if 0 <= flip < len(data):
                    data[flip] ^= 0x55
                items += [bytes(data)] * copies
            if items:
                self.hostile(wire.encode_envelopes(items))
        elif isinstance(action, Check):
            digests = {self.ids[w]: (self.ids[w], hi, bytes([w]) * 32) for w, hi in action.digests}
            frames = wire.encode_digests(digests.values())
            w, level, lo, span = action.want
            frames.append(wire.encode_hash_want(self.ids[w], level, lo, min(lo + span, wire.MAX_INT)))
            w, level, lo, span = action.hashes
            hi = min(lo + span, wire.MAX_INT)
            page = [(i, bytes([i % 256]) * 32) for i in range(lo, min(hi, lo + 1_023) + 1)]
            frames.append(wire.encode_hashes(self.ids[w], level, lo, hi, page))
            self.hostile(frames)
        elif isinstance(action, Raw):
            self.hostile([action.data] if action.data else [])
        elif isinstance(action, Tick):
            self.net.tick(action.ms)
        elif isinstance(action, Send):
            room = self.b if action.by_b else self.a
            room.send_text(action.text, self.net.now(room))
            self.sent.append(action.text)
        self.net.pump()

    def check_bounds(self) -> None:
        c = self.a.sync.config
        got = self.a.sync.budget_counts(self.h.peer_id)
        held = len(self.a.sync.log) + len(self.a.sync.log.tombstones())
        assert got.get("inflight", 0) <= c.max_want_keys
        assert got.get("pending", 0) <= c.max_want_keys
        assert got.get("attempts", 0) <= 4 * c.max_want_keys
        assert got.get("unservable", 0) <= 8 * c.max_want_keys
        assert got.get("envs", 0) <= held
        assert got.get("tombs", 0) <= held
        assert got.get("served", 0) <= 2 * c.max_serve_keys_per_window
        assert got["foreign_tombstones"] <= c.max_foreign_tombstones_per_neighbour
        assert got.get("remote_have_ranges", 0) <= wire.MAX_FRAME // 16 + held
        assert self.a.sync.pending_wants() <= 2 * c.max_want_keys  # two live neighbours
        assert got.get("checks", 0) <= c.max_checks_per_neighbour
        assert got.get("digests", 0) <= c.max_digests_per_window

    def converge(self) -> None:
        self.net.remove(self.h)
        self.net.tick(12_000)
        a, b = self.a, self.b
        keys_a = {e.key for e in a.sync.log.ordered()}
        keys_b = {e.key for e in b.sync.log.ordered()}
        assert keys_a == keys_b
        assert texts(a) == texts(b)
        shown = [t for _, t in texts(a)]
        for text in self.sent:
            assert text in shown


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(actions, min_size=1, max_size=12))
def test_a_hostile_member_cannot_unbound_or_split_the_room(steps: list[object]) -> None:
    world = World()
    for action in steps:
        world.step(action)
        world.check_bounds()
    world.converge()


def test_the_hostile_member_is_really_linked() -> None:
    """The property above is not vacuous: h's frames reach a's sync engine (a WANT is served)."""
    world = World()
    world.a.send_text("hello", world.now)
    world.net.pump()
    before = len(world.a.data_to_send())
    world.hostile(wire.encode_want({world.a.peer_id: [(0, 100)]}))
    assert isinstance(world.a, Room)
    assert len(world.a.data_to_send()) > before
