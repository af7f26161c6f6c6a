"""Lamport clock, RangeSet and the replicated log."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peer.core.clock import LamportClock
from peer.core.log import Log, LogEntry, RangeSet
from peer.testing import sim_id

A, B, C = sim_id("a"), sim_id("b"), sim_id("c")
NOW = 1_000_000
HOUR = 3_600_000


def entry(sender: str, seq: int, lamport: int = 1, expires_at: int = NOW + HOUR) -> LogEntry:
    return LogEntry(sender, seq, lamport, NOW, expires_at, f"{sender}:{seq}".encode())


def test_lamport_tick_and_observe() -> None:
    c = LamportClock()
    assert c.tick() == 1
    assert c.tick() == 2
    c.observe(10)
    assert c.tick() == 11
    c.observe(3)
    assert c.tick() == 12


def test_rangeset_add_merges_and_remove_splits() -> None:
    rs = RangeSet()
    for x in (5, 1, 2, 3, 7, 6):
        rs.add(x)
    assert rs.ranges() == [(1, 3), (5, 7)]
    rs.add(4)
    assert rs.ranges() == [(1, 7)]
    rs.remove(4)
    assert rs.ranges() == [(1, 3), (5, 7)]
    rs.remove(1)
    rs.remove(7)
    assert rs.ranges() == [(2, 3), (5, 6)]
    assert 2 in rs
    assert 4 not in rs
    assert rs.intersect(3, 5) == [(3, 3), (5, 5)]


@settings(max_examples=200, derandomize=True)
@given(st.sets(st.integers(0, 60)), st.sets(st.integers(0, 60)), st.sets(st.integers(0, 60)))
def test_rangeset_matches_python_sets(xs: set[int], ys: set[int], removed: set[int]) -> None:
    a, b = RangeSet(), RangeSet()
    for x in xs:
        a.add(x)
    for x in removed:
        a.remove(x)
    for y in ys:
        b.add(y)
    expected = xs - removed
    assert set(a) == expected
    assert {x for r in a.difference(b) for x in range(r[0], r[1] + 1)} == expected - ys
    ranges = a.ranges()
    assert all(r[0] <= r[1] for r in ranges)
    assert all(ranges[i][1] + 1 < ranges[i + 1][0] for i in range(len(ranges) - 1))


def test_total_order_is_lamport_sender_seq() -> None:
    log = Log()
    es = [entry(B, 0, 2), entry(A, 0, 2), entry(C, 5, 1), entry(A, 1, 3)]
    for e in es:
        assert log.add(e, NOW)
    tie = sorted([(A, 0), (B, 0)])
    assert [e.key for e in log.ordered()] == [(C, 5), *tie, (A, 1)]
    assert log.position(tie[1]) == 2


def test_same_set_same_order_any_insertion_order() -> None:
    es = [entry(random.Random(i).choice([A, B, C]), i, lamport=i % 5) for i in range(300)]
    logs = []
    for seed in range(3):
        shuffled = es[:]
        random.Random(seed).shuffle(shuffled)
        log = Log()
        for e in shuffled:
            log.add(e, NOW)
        logs.append([e.key for e in log.ordered()])
    assert logs[0] == logs[1] == logs[2]


def test_add_rejects_duplicates_and_expired() -> None:
    log = Log()
    assert log.add(entry(A, 0), NOW)
    assert not log.add(entry(A, 0), NOW)
    assert not log.add(entry(A, 1, expires_at=NOW), NOW)
    assert len(log) == 1


def test_expire_tombstones_then_prunes() -> None:
    log = Log(skew_ms=60_000)
    log.add(entry(A, 0, expires_at=NOW + 10), NOW)
    log.add(entry(A, 1, expires_at=NOW + 20), NOW)
    assert log.next_deadline() == NOW + 10
    assert log.expire(NOW + 9) == []
    assert log.expire(NOW + 10) == [(A, 0)]
    assert (A, 0) not in log
    tomb = log.get_tombstone((A, 0))
    assert tomb is not None
    assert tomb.until == NOW + 10 + 60_000
    # a stale copy cannot come back while the tombstone lives
    assert not log.add(entry(A, 0, expires_at=NOW + HOUR), NOW + 11)
    assert log.have() == {A: [(0, 1)]}
    log.expire(NOW + 20 + 60_000)
    assert log.get_tombstone((A, 0)) is None
    assert log.have() == {}
    # after pruning, the entry is past its own expiry: still refused
    assert not log.add(entry(A, 0, expires_at=NOW + 10), NOW + 20 + 60_000)


def test_explicit_tombstone_outlives_entry_expiry() -> None:
    log = Log(skew_ms=1_000)
    log.add(entry(A, 0, expires_at=NOW + 500), NOW)
    assert log.tombstone((A, 0), until=NOW + 1)
    assert not log.tombstone((A, 0), until=NOW + 1)
    tomb = log.get_tombstone((A, 0))
    assert tomb is not None
    assert tomb.until == NOW + 1_500
    assert len(log) == 0
    assert not log.add(entry(A, 0, expires_at=NOW + 500), NOW)


def test_tombstone_unheld_key_blocks_later_copy() -> None:
    log = Log()
    log.tombstone((B, 3), until=NOW + 100)
    assert not log.add(entry(B, 3), NOW)
    assert log.have() == {B: [(3, 3)]}


def test_have_and_missing() -> None:
    log = Log()
    for s in (0, 1, 2, 5, 6):
        log.add(entry(A, s), NOW)
    log.add(entry(B, 0), NOW)
    log.tombstone((A, 3), NOW + 10)
    assert log.have() == {A: [(0, 3), (5, 6)], B: [(0, 0)]}
    assert log.missing({A: [(0, 10)], C: [(0, 1)]}) == {A: [(4, 4), (7, 10)], C: [(0, 1)]}
    assert log.missing(log.have()) == {}
    assert [e.seq for e in log.entries_in_range(A, 1, 5)] == [1, 2, 5]


def test_large_log_is_fast_enough() -> None:
    log = Log()
    n = 20_000
    for i in range(n):
        log.add(entry(A if i % 2 else B, i // 2, lamport=n - i, expires_at=NOW + 1000 + i), NOW)
    assert len(log.ordered()) == n
    assert log.have() == {A: [(0, n // 2 - 1)], B: [(0, n // 2 - 1)]}
    assert len(log.expire(NOW + 1000 + n // 2)) == n // 2 + 1
    assert len(log) == n // 2 - 1


def test_entry_is_frozen() -> None:
    e = entry(A, 0)
    with pytest.raises(AttributeError):
        e.seq = 3  # type: ignore[misc]


def test_an_author_cannot_place_an_entry_before_its_own_previous_one() -> None:
    """Issue 13, item 12: the effective lamport is the author's running maximum over its seqs, so a
    backdated entry (lamport 0) is shown right after its author's previous entry, in every order."""
    entries = [
        entry(A, 1, lamport=10),
        entry(B, 1, lamport=20),
        entry(A, 2, lamport=30),
        entry(B, 2, lamport=40),
        entry(A, 3, lamport=0),  # backdated "above all history"
    ]
    expected = [(A, 1), (B, 1), (A, 2), (A, 3), (B, 2)]
    rng = random.Random(7)
    for _ in range(20):
        log = Log()
        order = entries[:]
        rng.shuffle(order)
        for e in order:
            assert log.add(e, NOW)
        assert [e.key for e in log.ordered()] == expected
        assert log.order_of((A, 3)) == (30, A, 3)
        assert log.position((A, 3)) == 3
    log.tombstone((A, 2), NOW + HOUR)  # the bound is the author's held entries: it moves back
    assert [e.key for e in log.ordered()] == [(A, 1), (A, 3), (B, 1), (B, 2)]


def test_backdating_costs_linear_time_not_quadratic() -> None:
    """A hostile author with decreasing lamports: adding and expiring stay cheap (lazy prefix max)."""
    log = Log()
    n = 20_000
    for i in range(n):
        log.add(entry(A, i, lamport=n - i, expires_at=NOW + 1000 + i), NOW)
        if i % 1000 == 0:
            assert log.order_of((A, i)) == (n, A, i)
    assert len(log.expire(NOW + 1000 + n // 2)) == n // 2 + 1
    assert log.order_of((A, n - 1)) == (n - (n // 2 + 1), A, n - 1)
