"""The equivocation check (issue 13, item 3, the part the byte comparison alone left open): an author that
sends version A of (sender, seq) only to Alice and version B only to Bob in a full mesh used to split the
room silently and forever (nobody relays, HELLO high-water marks are equal). Digests after each HELLO
and a paged hash exchange now find the differing envelope; every member voids the key."""

from __future__ import annotations

import pytest

from peer.core import wire
from peer.core.errors import ProtocolError
from peer.core.log import DIGEST_BLOCK
from peer.core.sync import EntryVoided, Event, SyncConfig, SyncEngine
from peer.core.sync_check import Check
from peer.testing import FakeClock, dummy_validate, make_envelope, sim_id

HOUR = 3_600_000
ROOM = sim_id("room")
A, B, M, HOSTILE = sim_id("alice"), sim_id("bob"), sim_id("mallory"), sim_id("hostile")
TOP = wire.MAX_INT


class Mesh:
    """Engines linked pairwise, frames delivered in order, timers on a fake clock."""

    def __init__(self, names: list[str], config: SyncConfig | None = None) -> None:
        self.clock = FakeClock()
        self.engines = {n: SyncEngine(n, ROOM, dummy_validate, config=config) for n in names}
        self.events: dict[str, list[Event]] = {n: [] for n in names}
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                self.engines[a].connect(b, self.clock.now)
                self.engines[b].connect(a, self.clock.now)

    def pump(self) -> None:
        for _ in range(1_000):
            sent = [(src, dst, f) for src, e in self.engines.items() for dst, f in e.data_to_send()]
            if not sent:
                return
            for src, dst, f in sent:
                self.events[dst] += self.engines[dst].receive(src, f, self.clock.now)
        raise AssertionError("did not settle")

    def run(self, ms: int) -> None:
        end = self.clock.now + ms
        while self.clock.now < end:
            self.clock.advance(100)
            for n, e in self.engines.items():
                t = e.next_timer()
                if t is not None and t <= self.clock.now:
                    self.events[n] += e.handle_timer(self.clock.now)
            self.pump()


def split(mesh: Mesh, seq: int, ttl_ms: int = HOUR) -> tuple[bytes, bytes]:
    """Mallory (a neighbour of both) gives Alice one version and Bob another, straight from the author."""
    now = mesh.clock.now
    va = make_envelope(M, seq, seq, now, now + ttl_ms, b"meet at 10:00")
    vb = make_envelope(M, seq, seq, now, now + ttl_ms, b"meet at 18:00")
    mesh.events[A] += mesh.engines[A].receive(M, wire.encode_envelopes([va])[0], now)
    mesh.events[B] += mesh.engines[B].receive(M, wire.encode_envelopes([vb])[0], now)
    return va, vb


def test_split_versions_in_a_full_mesh_are_found_and_voided_everywhere() -> None:
    mesh = Mesh([A, B, M])
    mesh.run(1_000)
    for seq in range(1, 200):  # some agreed history first: the check must find one key among many
        data = make_envelope(M, seq, seq, mesh.clock.now, mesh.clock.now + HOUR, b"x%d" % seq)
        for n in (A, B):
            mesh.engines[n].receive(M, wire.encode_envelopes([data])[0], mesh.clock.now)
    mesh.run(6_000)
    split(mesh, 200)
    mesh.pump()
    a, b = mesh.engines[A], mesh.engines[B]
    assert a.entry((M, 200)) is not None
    assert b.entry((M, 200)) is not None
    assert a.entry((M, 200)) != b.entry((M, 200))  # the room is split: same marks, other contents
    ha, hb = wire.decode_frame(a.hello()), wire.decode_frame(b.hello())
    assert isinstance(ha, wire.Hello)
    assert isinstance(hb, wire.Hello)
    assert ha.have[M] == hb.have[M]  # same marks
    mesh.run(6_000)  # one resync round
    for n in (A, B):
        e = mesh.engines[n]
        assert e.entry((M, 200)) is None, n
        assert e.log.is_void((M, 200)), n
        assert [ev.key for ev in mesh.events[n] if isinstance(ev, EntryVoided)] == [(M, 200)]
        assert all(e.entry((M, q)) is not None for q in range(1, 200))  # the agreed history stays
        assert e.budget_counts(A if n == B else B)["checks"] == 0  # the check finished
    assert Check(a.config, a.log).digest(M, TOP) == Check(b.config, b.log).digest(M, TOP)


def test_without_the_check_the_split_stays() -> None:
    """The control: with no checks allowed, the same split is never found (what happened before)."""
    mesh = Mesh([A, B, M], config=SyncConfig(max_checks_per_neighbour=0))
    mesh.run(1_000)
    split(mesh, 1)
    mesh.run(20_000)
    a, b = mesh.engines[A], mesh.engines[B]
    assert a.entry((M, 1)) is not None
    assert b.entry((M, 1)) is not None
    assert a.entry((M, 1)) != b.entry((M, 1))


def test_digests_agree_after_the_same_erasures_and_move_with_the_held_set() -> None:
    """Only held entries count: members that erased the same things agree; expiry changes the digest."""
    clock = FakeClock()
    now = clock.now
    x, y = SyncEngine(A, ROOM, dummy_validate), SyncEngine(B, ROOM, dummy_validate)
    datas = [
        make_envelope(M, q, q, now, now + (1_000 if q % 3 == 0 else HOUR), b"m%d" % q) for q in range(1, 300)
    ]
    for e in (x, y):
        e.connect(M, now)
        e.receive(M, wire.encode_hello(ROOM, {}), now)
        e.receive(M, wire.encode_envelopes(datas)[0], now)
    cx, cy = Check(x.config, x.log), Check(y.config, y.log)
    before = cx.digest(M, TOP)
    assert before == cy.digest(M, TOP)
    x.handle_timer(now + 1_000)  # every third one expires on x...
    assert cx.digest(M, TOP) != before
    assert cx.digest(M, TOP) != cy.digest(M, TOP)
    y.delete((M, 3), now + HOUR, b"", now)  # ...y erases one of them by hand first, the rest by expiry
    y.handle_timer(now + 1_000)
    assert cx.digest(M, TOP) == cy.digest(M, TOP)
    z = SyncEngine(HOSTILE, ROOM, dummy_validate)  # a member that only ever held the survivors agrees
    z.connect(M, now)
    z.receive(M, wire.encode_hello(ROOM, {}), now)
    z.receive(
        M, wire.encode_envelopes([d for q, d in zip(range(1, 300), datas, strict=True) if q % 3])[0], now
    )
    assert Check(z.config, z.log).digest(M, TOP) == cx.digest(M, TOP)


def _victim(entries: int) -> tuple[SyncEngine, FakeClock]:
    clock = FakeClock()
    v = SyncEngine(A, ROOM, dummy_validate)
    now = clock.now
    v.connect(M, now)
    v.receive(M, wire.encode_hello(ROOM, {}), now)
    datas = [make_envelope(M, q, q, now, now + HOUR, b"v%d" % q) for q in range(1, entries + 1)]
    for f in wire.encode_envelopes(datas):
        v.receive(M, f, now)
    v.connect(HOSTILE, now)
    v.receive(HOSTILE, wire.encode_hello(ROOM, {M: [(1, entries)]}), now)
    v.data_to_send()
    return v, clock


def _to(v: SyncEngine, n: str) -> list[wire.Frame]:
    return [wire.decode_frame(f) for to, f in v.data_to_send() if to == n]


def test_bogus_digests_keep_checks_and_requests_bounded() -> None:
    """A neighbour that claims a different digest for every sender, over and over, gets at most
    ``max_checks_per_neighbour`` checks and ``max_hash_pages_per_window`` requests per window."""
    v, clock = _victim(300)
    c = v.config
    senders = sorted([M] + [sim_id(f"s{i}") for i in range(2_000)])
    asked = 0
    for _ in range(50):
        for f in wire.encode_digests([(s, 300, b"\x01" * 32) for s in senders]):
            v.receive(HOSTILE, f, clock.now)
        asked += sum(isinstance(f, wire.HashWant) for f in _to(v, HOSTILE))
        assert v.budget_counts(HOSTILE)["checks"] <= c.max_checks_per_neighbour
    assert asked == 1  # only mallory's digest could be compared, and its check is still waiting
    clock.advance(c.want_timeout_ms)  # the check times out; the flood starts it again, once per window
    for _ in range(50):
        for f in wire.encode_digests([(M, 300, b"\x01" * 32)]):
            v.receive(HOSTILE, f, clock.now)
        asked += sum(isinstance(f, wire.HashWant) for f in _to(v, HOSTILE))
    assert asked == 2


def test_hash_requests_are_served_within_the_window_budget() -> None:
    v, clock = _victim(3_000)
    c = v.config
    pages = 0
    for _ in range(500):  # cheap requests (nothing held there): the page budget holds
        v.receive(HOSTILE, wire.encode_hash_want(M, 0, 10**9, 10**9), clock.now)
        pages += len(_to(v, HOSTILE))
    assert pages == c.max_hash_pages_per_window
    clock.advance(c.want_timeout_ms)
    pages = items = 0
    for i in range(500):  # wide requests, both levels: the item budget holds
        level = i % 2
        f = wire.encode_hash_want(M, level, 0, wire.MAX_INT if level == 0 else wire.MAX_INT // DIGEST_BLOCK)
        v.receive(HOSTILE, f, clock.now)
        for fr in _to(v, HOSTILE):
            assert isinstance(fr, wire.Hashes)
            pages += 1
            items += len(fr.items)
    assert 0 < pages <= c.max_hash_pages_per_window
    assert items == c.max_hash_items_per_window
    clock.advance(c.want_timeout_ms)  # a new window: served again (honest paging still works)
    v.receive(HOSTILE, wire.encode_hash_want(M, 0, 0, 63), clock.now)
    (page,) = _to(v, HOSTILE)
    assert isinstance(page, wire.Hashes)
    assert [q for q, _ in page.items] == list(range(1, 64))


def test_unsolicited_or_mismatched_hashes_are_ignored() -> None:
    v, clock = _victim(100)
    bogus = [(q, b"\x02" * 32) for q in range(1, 100)]
    v.receive(HOSTILE, wire.encode_hashes(M, 0, 1, 99, bogus), clock.now)  # nothing asked
    assert _to(v, HOSTILE) == []
    v.receive(HOSTILE, wire.encode_digests([(M, 100, b"\x01" * 32)])[0], clock.now)
    (ask,) = _to(v, HOSTILE)
    assert ask == wire.HashWant(M, wire.LEVEL_BLOCK, 0, 100 // DIGEST_BLOCK)
    v.receive(HOSTILE, wire.encode_hashes(M, 0, 0, 1, bogus[:1]), clock.now)  # wrong level
    assert _to(v, HOSTILE) == []
    # the right answer, claiming every block differs: seq pages are asked, one at a time
    v.receive(HOSTILE, wire.encode_hashes(M, 1, 0, 1, [(0, b"\x03" * 32), (1, b"\x03" * 32)]), clock.now)
    assert _to(v, HOSTILE) == [wire.HashWant(M, wire.LEVEL_SEQ, 0, 63)]
    # bogus seq hashes: WANTs for those keys, at most max_check_wants of them
    v.receive(HOSTILE, wire.encode_hashes(M, 0, 0, 63, bogus[:63]), clock.now)
    frames = _to(v, HOSTILE)
    wants = [f for f in frames if isinstance(f, wire.Want)]
    assert sum(b - a + 1 for f in wants for rs in f.ranges.values() for a, b in rs) == 63
    assert frames[-1] == wire.HashWant(M, wire.LEVEL_SEQ, 64, 127)
    clock.advance(v.config.want_timeout_ms)  # too late now: ignored, the check is dropped
    v.receive(HOSTILE, wire.encode_hashes(M, 0, 64, 127, bogus[63:]), clock.now)
    assert _to(v, HOSTILE) == []


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x08\x00\x00", "empty"),
        (b"\x08\x00\x01" + bytes(16) + bytes(8) + bytes(31), "truncated"),
        (b"\x08\x00\x02" + (bytes(16) + bytes(8) + bytes(32)) * 2, "bad-digests"),  # not ascending
        (b"\x08\x00\x01" + bytes(16) + b"\xff" * 8 + bytes(32), "bad-integer"),
        (b"\x09" + bytes(16) + b"\x02" + bytes(16), "bad-level"),
        (b"\x09" + bytes(16) + b"\x00" + (5).to_bytes(8, "big") + (4).to_bytes(8, "big"), "bad-range"),
        (b"\x09" + bytes(16) + b"\x00" + bytes(16) + b"\x00", "trailing-bytes"),
        (
            b"\x0a" + bytes(16) + b"\x00" + bytes(8) + (9).to_bytes(8, "big") + (1025).to_bytes(2, "big"),
            "too-large",
        ),
        (
            b"\x0a"
            + bytes(16)
            + b"\x00"
            + bytes(8)
            + (9).to_bytes(8, "big")
            + b"\x00\x01"
            + (10).to_bytes(8, "big")
            + bytes(32),
            "bad-hashes",
        ),
        (
            b"\x0a"
            + bytes(16)
            + b"\x01"
            + bytes(8)
            + (9).to_bytes(8, "big")
            + b"\x00\x02"
            + ((3).to_bytes(8, "big") + bytes(32)) * 2,
            "bad-hashes",
        ),
        (
            b"\x0a" + bytes(16) + b"\x00" + bytes(8) + (9).to_bytes(8, "big") + b"\x00\x01" + bytes(8),
            "truncated",
        ),
    ],
)
def test_codec_refuses_malformed_check_frames(frame: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as err:
        wire.decode_frame(frame)
    assert err.value.code == code


def test_codec_round_trips_and_encoders_refuse_bad_values() -> None:
    d = [(sim_id("b"), 7, b"\x05" * 32), (sim_id("a"), 0, b"\x06" * 32)]
    (f,) = wire.encode_digests(d)
    assert wire.decode_frame(f) == wire.Digests(tuple(sorted(d)))
    assert wire.decode_frame(wire.encode_hash_want(M, 1, 2, 3)) == wire.HashWant(M, 1, 2, 3)
    page = wire.encode_hashes(M, 0, 2, 9, [(2, b"\x07" * 32), (9, b"\x08" * 32)])
    assert wire.decode_frame(page) == wire.Hashes(M, 0, 2, 9, ((2, b"\x07" * 32), (9, b"\x08" * 32)))
    many = wire.encode_digests([(sim_id(f"x{i}"), i, bytes(32)) for i in range(3_000)])
    assert len(many) == 3
    assert all(len(x) <= wire.MAX_FRAME for x in many)
    for bad in (
        lambda: wire.encode_hash_want(M, 2, 0, 1),
        lambda: wire.encode_hash_want(M, 0, 2, 1),
        lambda: wire.encode_hashes(M, 0, 0, 5, [(6, bytes(32))]),
        lambda: wire.encode_hashes(M, 0, 0, 5, [(1, bytes(31))]),
        lambda: wire.encode_digests([(M, 1, bytes(16))]),
        lambda: wire.encode_digests([(M, 1, bytes(32)), (M, 2, bytes(32))]),
    ):
        with pytest.raises(ValueError):
            bad()


def test_digests_compare_prefixes_so_marks_kept_apart_do_not_hide_a_split() -> None:
    """An author that keeps sending a newer seq to one side keeps the two high-water marks apart; the
    digest up to the lower mark is compared anyway."""
    v, clock = _victim(300)
    ours = Check(v.config, v.log).digest(M, 200)
    assert ours is not None
    other = SyncEngine(B, ROOM, dummy_validate)  # a log that differs at seq 150 only
    other.connect(M, clock.now)
    other.receive(M, wire.encode_hello(ROOM, {}), clock.now)
    datas = [make_envelope(M, q, q, clock.now, clock.now + HOUR, b"v%d" % q) for q in range(1, 301)]
    datas[149] = make_envelope(M, 150, 150, clock.now, clock.now + HOUR, b"the other version")
    for f in wire.encode_envelopes(datas):
        other.receive(M, f, clock.now)
    theirs = Check(other.config, other.log).digest(M, 200)
    assert theirs is not None
    assert theirs != ours
    v.receive(HOSTILE, wire.encode_digests([(M, 200, ours)])[0], clock.now)
    assert _to(v, HOSTILE) == []  # equal up to 200: nothing to check
    v.receive(HOSTILE, wire.encode_digests([(M, 400, theirs)])[0], clock.now)
    assert _to(v, HOSTILE) == []  # a mark above ours: we cannot compare yet
    v.receive(HOSTILE, wire.encode_digests([(M, 200, theirs)])[0], clock.now)
    assert _to(v, HOSTILE) == [wire.HashWant(M, wire.LEVEL_BLOCK, 0, 200 // DIGEST_BLOCK)]
    # and our own summary names the lower mark: a HELLO claiming up to 250 gets digest(250)
    v.receive(HOSTILE, wire.encode_hello(ROOM, {M: [(1, 250)]}), clock.now)
    (summary,) = [f for f in _to(v, HOSTILE) if isinstance(f, wire.Digests)]
    assert summary.items == ((M, 250, Check(v.config, v.log).digest(M, 250)),)


def test_digests_a_neighbour_makes_us_compute_are_bounded_per_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """A neighbour naming a new mark in every DIGESTS or HELLO would make us hash a digest each time:
    at most ``max_digests_per_window`` uncached ones per window are computed for it."""
    v, clock = _victim(3_000)
    cap = v.config.max_digests_per_window
    reference = Check(v.config, v.log)
    right = {k: reference.digest(M, k) for k in range(1_000, 1_200)}  # the true digests: no check starts
    computed = []
    real = Check._compute

    def counting(self: Check, sender: str, hi: int) -> bytes | None:
        computed.append(hi)
        return real(self, sender, hi)

    monkeypatch.setattr(Check, "_compute", counting)
    clock.advance(v.config.want_timeout_ms)  # a fresh window (linking spent one digest)
    for k in range(1_000, 1_100):
        d = right[k]
        assert d is not None
        v.receive(HOSTILE, wire.encode_digests([(M, k, d)])[0], clock.now)
        v.receive(HOSTILE, wire.encode_hello(ROOM, {M: [(1, k + 100)]}), clock.now)
    assert len(computed) == cap
    assert v.budget_counts(HOSTILE)["digests"] == cap
    assert not any(isinstance(f, wire.HashWant) for f in _to(v, HOSTILE))
    clock.advance(v.config.want_timeout_ms)  # a new window
    v.receive(HOSTILE, wire.encode_hello(ROOM, {M: [(1, 2_500)]}), clock.now)
    (summary,) = [f for f in _to(v, HOSTILE) if isinstance(f, wire.Digests)]
    assert summary.items == ((M, 2_500, reference.digest(M, 2_500)),)
