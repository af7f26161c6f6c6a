"""The room's replicated log: a grow-only set of entries plus tombstones (a CRDT).

Rules:
- An entry is keyed by ``(sender, seq)``. The envelope bytes (``data``) are opaque here: the sync layer
  validates them (signature, room binding) before they reach the log.
- ``add`` accepts an entry only if its key has never been seen (held or tombstoned) and it has not
  expired (``expires_at > now``). Two members that hold the same set of keys therefore converge.
- Total order is ``(effective lamport, sender, seq)``: every member shows the same order for the same
  set. An author cannot place an entry before its own previous one: the effective lamport of
  ``(s, q)`` is the largest lamport among ``s``'s held entries with seq <= q, a function of the held
  set only (an honest author's lamports grow with its seqs, so for it this is the lamport itself). A
  backdated entry is thus shown right after its author's previous entry (same effective lamport,
  then seq order).
- Expiry turns an entry into a tombstone that lives until ``expires_at + skew_ms``; an explicit
  deletion (``tombstone``) does the same. A tombstoned key is never re-accepted nor served. When a
  tombstone is pruned the entry's own ``expires_at`` is already past, so ``add`` still refuses it.
- Equivocation (two different validly signed envelopes under one key, found by comparing bytes on
  every duplicate key) makes the key *void*: ``void`` drops the held entry and marks the key seen,
  without a tombstone (nothing to announce, nothing to serve), until ``until``. Every member that sees
  both versions voids the key, so all converge on "neither"; the pair is kept (bounded: the newest
  ``MAX_VOID_PAIRS``) so it can be shown to neighbours that still hold one version.
- For the equivocation check (``peer.core.sync_check``) the held seqs of each sender are grouped in
  blocks of ``DIGEST_BLOCK`` (block = seq // 64); ``held_blocks(sender)`` maps each block holding at
  least one entry to a version that changes whenever that block's held set changes (a global counter,
  so a block emptied and refilled never shows an old version), ``held_version(sender)`` likewise for
  the sender as a whole (0 when nothing is held).
- ``have()`` is a compact version vector: per sender, the sorted, disjoint, non-adjacent inclusive
  ranges of seqs held *or* tombstoned.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

Key = tuple[str, int]
Range = tuple[int, int]
#: Per sender, sorted disjoint inclusive ranges of seqs.
RangeMap = dict[str, list[Range]]

#: Default clock-skew bound added to ``expires_at`` to compute a tombstone's lifetime.
DEFAULT_SKEW_MS = 60_000
#: Void keys whose two conflicting envelopes are kept to show neighbours (older pairs keep the mark only).
MAX_VOID_PAIRS = 256
#: Seqs per block of the equivocation check's digests (see peer.core.sync_check).
DIGEST_BLOCK = 64


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One envelope in the log. ``data`` is the opaque signed envelope as received."""

    sender: str
    seq: int
    lamport: int
    sent_at: int
    expires_at: int
    data: bytes

    @property
    def key(self) -> Key:
        return (self.sender, self.seq)

    @property
    def order_key(self) -> tuple[int, str, int]:
        return (self.lamport, self.sender, self.seq)


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A deleted or expired key. ``proof`` is opaque (e.g. a sender-signed "unsend"); empty for expiry."""

    sender: str
    seq: int
    until: int
    proof: bytes = b""

    @property
    def key(self) -> Key:
        return (self.sender, self.seq)


class RangeSet:
    """A set of non-negative integers stored as sorted disjoint inclusive ranges (adjacent ones merged)."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, ranges: Iterable[Range] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for a, b in ranges:
            self.add_range(a, b)

    def __contains__(self, x: object) -> bool:
        if not isinstance(x, int):
            return False
        i = bisect_right(self._starts, x) - 1
        return i >= 0 and self._ends[i] >= x

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeSet) and self.ranges() == other.ranges()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RangeSet({self.ranges()!r})"

    def __iter__(self) -> Iterator[int]:
        for a, b in zip(self._starts, self._ends, strict=True):
            yield from range(a, b + 1)

    def count(self) -> int:
        """Number of integers in the set."""
        return sum(b - a + 1 for a, b in zip(self._starts, self._ends, strict=True))

    def ranges(self) -> list[Range]:
        return list(zip(self._starts, self._ends, strict=True))

    def add(self, x: int) -> None:
        self.add_range(x, x)

    def add_range(self, a: int, b: int) -> None:
        """Add ``[a, b]`` (inclusive), merging overlapping and adjacent ranges."""
        if a > b:
            raise ValueError("empty range")
        lo = bisect_left(self._ends, a - 1)  # first range that ends at or after a-1
        hi = bisect_right(self._starts, b + 1)  # ranges [lo, hi) overlap or touch [a, b]
        if lo < hi:
            a = min(a, self._starts[lo])
            b = max(b, self._ends[hi - 1])
        self._starts[lo:hi] = [a]
        self._ends[lo:hi] = [b]

    def remove(self, x: int) -> None:
        i = bisect_right(self._starts, x) - 1
        if i < 0 or self._ends[i] < x:
            return
        s, e = self._starts[i], self._ends[i]
        if s == e:
            del self._starts[i], self._ends[i]
        elif x == s:
            self._starts[i] = x + 1
        elif x == e:
            self._ends[i] = x - 1
        else:
            self._ends[i] = x - 1
            self._starts.insert(i + 1, x + 1)
            self._ends.insert(i + 1, e)

    def intersect(self, a: int, b: int) -> list[Range]:
        """The parts of ``[a, b]`` that are in the set."""
        out: list[Range] = []
        i = max(bisect_right(self._starts, a) - 1, 0)
        while i < len(self._starts) and self._starts[i] <= b:
            lo, hi = max(a, self._starts[i]), min(b, self._ends[i])
            if lo <= hi:
                out.append((lo, hi))
            i += 1
        return out

    def difference(self, other: RangeSet) -> list[Range]:
        """Ranges in ``self`` that are not in ``other``."""
        out: list[Range] = []
        for a, b in zip(self._starts, self._ends, strict=True):
            j = max(bisect_right(other._starts, a) - 1, 0)
            cur = a
            while j < len(other._starts) and other._starts[j] <= b:
                os_, oe = other._starts[j], other._ends[j]
                if oe >= cur:
                    if os_ > cur:
                        out.append((cur, os_ - 1))
                    cur = oe + 1
                    if cur > b:
                        break
                j += 1
            if cur <= b:
                out.append((cur, b))
        return out


def ranges_to_map(ranges: Mapping[str, Sequence[Range]]) -> dict[str, RangeSet]:
    return {sender: RangeSet(rs) for sender, rs in ranges.items()}


class Log:
    """The replicated log. Methods are O(log n) or O(ranges) except where noted."""

    def __init__(self, skew_ms: int = DEFAULT_SKEW_MS) -> None:
        if skew_ms < 0:
            raise ValueError("skew_ms must be >= 0")
        self.skew_ms = skew_ms
        self._entries: dict[Key, LogEntry] = {}
        self._held: dict[str, list[int]] = {}
        self._prefix_max: dict[str, list[int]] = {}  # per sender, over _held: a cache, dropped on change
        self._seen: dict[str, RangeSet] = {}
        self._tombs: dict[Key, Tombstone] = {}
        self._void: dict[Key, int] = {}  # void key -> until
        self._void_pairs: dict[Key, tuple[bytes, bytes]] = {}  # insertion-ordered, bounded
        self._expiry_heap: list[tuple[int, str, int]] = []
        self._prune_heap: list[tuple[int, str, int]] = []
        self._change = 0  # bumped on every change of a held set
        self._blocks: dict[str, dict[int, list[int]]] = {}  # sender -> block -> [held count, version]
        self._sender_version: dict[str, int] = {}

    # -- queries ---------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: Key) -> LogEntry | None:
        return self._entries.get(key)

    def seen(self, key: Key) -> bool:
        """True if the key is held or tombstoned (``add`` would refuse it)."""
        rs = self._seen.get(key[0])
        return rs is not None and key[1] in rs

    def get_tombstone(self, key: Key) -> Tombstone | None:
        return self._tombs.get(key)

    def is_void(self, key: Key) -> bool:
        return key in self._void

    def void_pairs(self) -> list[tuple[Key, bytes, bytes]]:
        """The kept conflicting pairs of void keys (oldest first)."""
        return [(k, a, b) for k, (a, b) in self._void_pairs.items()]

    def tombstones(self) -> list[Tombstone]:
        return sorted(self._tombs.values(), key=lambda t: t.key)

    def ordered(self) -> list[LogEntry]:
        """All held entries in total order ``(effective lamport, sender, seq)`` (O(n log n))."""
        return sorted(self._entries.values(), key=lambda e: self._order_key(e.sender, e.seq))

    def order_of(self, key: Key) -> tuple[int, str, int] | None:
        """The total-order key ``(effective lamport, sender, seq)`` of a held entry, else ``None``."""
        return self._order_key(*key) if key in self._entries else None

    def position(self, key: Key) -> int:
        """Index of a held entry in ``ordered()`` (where a UI inserts it). KeyError if not held."""
        mine = self._order_key(*self._entries[key].key)
        return sum(1 for e in self._entries.values() if self._order_key(e.sender, e.seq) < mine)

    def _order_key(self, sender: str, seq: int) -> tuple[int, str, int]:
        seqs = self._held[sender]
        pm = self._prefix_max.get(sender)
        if pm is None:  # rebuilt lazily, once per change of this sender's entries: O(k)
            pm, top = [], -1
            for q in seqs:
                top = max(top, self._entries[(sender, q)].lamport)
                pm.append(top)
            self._prefix_max[sender] = pm
        return (pm[bisect_left(seqs, seq)], sender, seq)

    def have(self) -> RangeMap:
        """Per sender, the inclusive seq ranges held or tombstoned."""
        return {s: rs.ranges() for s, rs in sorted(self._seen.items()) if rs}

    def seen_ranges(self, sender: str) -> RangeSet:
        """The live RangeSet of seqs held or tombstoned for ``sender`` (do not mutate)."""
        return self._seen.get(sender) or RangeSet()

    def missing(self, remote_have: Mapping[str, Sequence[Range]]) -> RangeMap:
        """Ranges the remote has (held or tombstoned) that this log has not seen."""
        out: RangeMap = {}
        for sender, ranges in remote_have.items():
            diff = RangeSet(ranges).difference(self.seen_ranges(sender))
            if diff:
                out[sender] = diff
        return out

    def entries_in_range(self, sender: str, start: int, end: int, limit: int | None = None) -> list[LogEntry]:
        """Held entries of ``sender`` with ``start <= seq <= end``, ascending, at most ``limit``."""
        seqs = self._held.get(sender)
        if not seqs:
            return []
        i = bisect_left(seqs, start)
        j = bisect_right(seqs, end)
        if limit is not None:
            j = min(j, i + limit)
        return [self._entries[(sender, q)] for q in seqs[i:j]]

    def held_blocks(self, sender: str) -> dict[int, int]:
        """Block -> version, for the blocks of ``sender`` holding at least one entry (a fresh dict)."""
        return {b: v[1] for b, v in self._blocks.get(sender, {}).items()}

    def held_version(self, sender: str) -> int:
        """Changes whenever the held set of ``sender`` changes; 0 when nothing of it is held."""
        return self._sender_version.get(sender, 0)

    def next_deadline(self) -> int | None:
        """Earliest time at which ``expire`` has work to do (lazy heaps: may be early, never late)."""
        times = [h[0][0] for h in (self._expiry_heap, self._prune_heap) if h]
        return min(times) if times else None

    # -- mutations -------------------------------------------------------------------------------------

    def add(self, entry: LogEntry, now: int) -> bool:
        """Insert ``entry``. False for a duplicate, a tombstoned key, or an expired entry."""
        if entry.expires_at <= now or self.seen(entry.key):
            return False
        self._entries[entry.key] = entry
        insort(self._held.setdefault(entry.sender, []), entry.seq)
        self._prefix_max.pop(entry.sender, None)
        self._seen.setdefault(entry.sender, RangeSet()).add(entry.seq)
        heapq.heappush(self._expiry_heap, (entry.expires_at, entry.sender, entry.seq))
        self._touch(entry.sender, entry.seq, 1)
        return True

    def _touch(self, sender: str, seq: int, delta: int) -> None:
        self._change += 1
        blocks = self._blocks.setdefault(sender, {})
        cur = blocks.setdefault(seq // DIGEST_BLOCK, [0, 0])
        cur[0] += delta
        cur[1] = self._change
        if not cur[0]:
            del blocks[seq // DIGEST_BLOCK]
        if blocks:
            self._sender_version[sender] = self._change
        else:
            del self._blocks[sender]
            self._sender_version.pop(sender, None)

    def void(self, key: Key, first: bytes, second: bytes, until: int) -> bool:
        """Make ``key`` void (equivocation): drop the held entry, refuse the key until ``until``, keep the
        pair. False if it already was void."""
        if key in self._void:
            return False
        entry = self._entries.get(key)
        if entry is not None:
            self._remove(entry)
        self._tombs.pop(key, None)
        self._void[key] = until
        self._void_pairs[key] = (first, second)
        while len(self._void_pairs) > MAX_VOID_PAIRS:
            del self._void_pairs[next(iter(self._void_pairs))]
        self._seen.setdefault(key[0], RangeSet()).add(key[1])
        heapq.heappush(self._prune_heap, (until, key[0], key[1]))
        return True

    def tombstone(self, key: Key, until: int, proof: bytes = b"") -> bool:
        """Delete ``key`` (held or not) and refuse it until ``until``. False if already tombstoned.

        If the entry is held, ``until`` is raised to at least ``expires_at + skew_ms`` so that a stale
        copy can never come back after the tombstone is pruned.
        """
        if key in self._tombs or key in self._void:
            return False
        entry = self._entries.get(key)
        if entry is not None:
            until = max(until, entry.expires_at + self.skew_ms)
            self._remove(entry)
        self._tombs[key] = Tombstone(key[0], key[1], until, proof)
        self._seen.setdefault(key[0], RangeSet()).add(key[1])
        heapq.heappush(self._prune_heap, (until, key[0], key[1]))
        return True

    def expire(self, now: int) -> list[Key]:
        """Erase entries with ``expires_at <= now`` (tombstoning them); prune tombstones past ``until``.

        Returns the keys of the entries erased by this call, in expiry order.
        """
        erased: list[Key] = []
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            t, sender, seq = heapq.heappop(heap)
            entry = self._entries.get((sender, seq))
            if entry is not None and entry.expires_at == t:
                self.tombstone(entry.key, t + self.skew_ms)
                erased.append(entry.key)
        prune = self._prune_heap
        while prune and prune[0][0] <= now:
            until, sender, seq = heapq.heappop(prune)
            tomb = self._tombs.get((sender, seq))
            if tomb is not None and tomb.until == until:
                del self._tombs[(sender, seq)]
                self._seen[sender].remove(seq)
            elif self._void.get((sender, seq)) == until:
                del self._void[(sender, seq)]
                self._void_pairs.pop((sender, seq), None)
                self._seen[sender].remove(seq)
        return erased

    def _remove(self, entry: LogEntry) -> None:
        del self._entries[entry.key]
        self._prefix_max.pop(entry.sender, None)
        seqs = self._held[entry.sender]
        del seqs[bisect_left(seqs, entry.seq)]
        if not seqs:
            del self._held[entry.sender]
        self._touch(entry.sender, entry.seq, -1)
