"""The equivocation check (a part of the sync engine): neighbours compare digests of what they hold, so
two versions of one (sender, seq) meet even when nobody relays (issue 13, item 3; PROTOCOL.md "Sync",
section "Equivocation check").

An author may send version A of an envelope only to Alice and version B only to Bob. In a full mesh
nobody relays (each got "a" version from the author) and their HELLOs claim the same ranges, so the
ordinary sync never shows one version to the other member. This part closes that gap.

Rules:
- Hashes (all SHA-256, 32 bytes): ``fp = H(envelope bytes)`` per held entry; per block of
  ``DIGEST_BLOCK`` (64) seqs of one sender holding at least one entry, ``block = H(concat over its held
  seqs ascending of u64be(seq) || fp)``; per sender and mark ``hi``, ``digest(hi) =
  H("ephemesh/sync-digest/v1" || concat over its blocks holding a seq <= hi, ascending, of u64be(block
  index) || block)``, where the block of ``hi`` itself counts only its seqs <= hi. Only *held* entries
  count: expired, tombstoned and void keys are in no hash, so members that erased the same things agree.
- After every HELLO from a neighbour we send one DIGESTS frame: for each sender both of us claim,
  (sender, hi = the lower of the two highest seqs, our ``digest(hi)``) when we hold an entry <= hi. At
  most one frame (1,170 senders). Comparing prefixes means an author that keeps sending new seqs to one
  side cannot keep the marks apart to dodge the check.
- On DIGESTS: for a sender whose ``hi`` we have seen up to and whose ``digest(hi)`` differs from ours, a
  *check* starts (at most ``max_checks_per_neighbour`` at once per neighbour): we ask the neighbour for
  its block hashes (HASH_WANT level 1, blocks ``[0, hi // 64]``), compare them with ours, and for each
  block that both hold and that differs ask for its seq hashes (HASH_WANT level 0). A seq both hold with
  different hashes is WANTed from the neighbour (at most ``max_check_wants`` per page); its version then
  reaches the existing equivocation path (``Log.void``), which voids the key and shows both versions to
  every neighbour. Pages that stop short of the asked ``hi`` are continued from the page's ``hi + 1``.
- A check answers only the request it made (same sender, level and ``lo``, ``hi`` not above the asked
  one, before ``want_timeout_ms``); anything else is ignored. A check whose answer does not come in time
  is dropped; the next DIGESTS starts it again.
- Serving HASH_WANT: a page lists all our hashes with index in ``[lo, hi']`` for the ``hi' <= hi`` it
  states, at most ``MAX_HASH_PAGE`` (1,024) items. Per neighbour and per ``want_timeout_ms`` window at
  most ``max_hash_pages_per_window`` requests are answered (the rest are ignored) and at most
  ``max_hash_items_per_window`` items sent; the same page budget bounds the requests we send it.
- Cost: hashes are cached per block with the log's block version (``Log.held_blocks``), so a digest
  re-hashes only the blocks that changed (at most 64 entries each) plus one 40-byte line per block.
  Digests are cached per sender for up to ``DIGEST_MARKS`` marks of its current held set; one not in
  the cache (for our summary or to compare a neighbour's) is computed at most
  ``max_digests_per_window`` times per neighbour and window: a sender left out waits for the next HELLO.

Owns: the hash cache (per sender and block: the version, the block hash, and (seq, fp) of its held
entries; no envelope bytes, so nothing erased lingers here; per sender its digests by mark, with the log's sender version) and, per neighbour, the checks in
progress and the window counters. Persists nothing (all of it is re-derived from the log).
Interface with the engine: the engine's ``Log`` (public API only) and the session records (their claimed
ranges and the ``control`` queue); the engine calls ``summary``, ``on_digests``, ``on_hash_want``,
``on_hashes``, ``end`` and ``counts``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from peer.core import wire
from peer.core.crypto import sha256
from peer.core.log import DIGEST_BLOCK, Log, RangeSet
from peer.core.sync_events import Session, SyncConfig

DIGEST_TAG = b"ephemesh/sync-digest/v1"
#: digests remembered per sender for its current held set (one per mark asked, oldest dropped first)
DIGEST_MARKS = 4
_U64 = struct.Struct(">Q")
_Page = tuple[int, int, int]  # (level, lo, hi)


@dataclass(eq=False)
class _Check:
    level: int = wire.LEVEL_BLOCK
    lo: int = 0
    hi: int = 0
    deadline: int = 0
    todo: list[_Page] = field(default_factory=list)


@dataclass(eq=False)
class _Peer:
    checks: dict[str, _Check] = field(default_factory=dict)
    window_end: int = 0
    pages_served: int = 0
    items_served: int = 0
    pages_asked: int = 0
    digests: int = 0  # digests computed (not found in the cache) for this neighbour in this window


@dataclass(eq=False)
class _Block:
    version: int
    hash: bytes
    items: list[tuple[int, bytes]]  # (seq, fp) of its held entries


class Check:
    """Digests of what we hold, compared with each neighbour's; paged hash exchange on a mismatch."""

    def __init__(self, config: SyncConfig, log: Log) -> None:
        self._config = config
        self._log = log
        self._peers: dict[str, _Peer] = {}
        self._blocks: dict[str, dict[int, _Block]] = {}
        #: sender -> (log version of its held set, mark -> digest), at most DIGEST_MARKS marks
        self._digests: dict[str, tuple[int, dict[int, bytes | None]]] = {}

    # -- the engine's calls ---------------------------------------------------------------------------

    def end(self, neighbour: str) -> None:
        self._peers.pop(neighbour, None)

    def counts(self, neighbour: str) -> dict[str, int]:
        p = self._peers.get(neighbour)
        return {"checks": 0 if p is None else len(p.checks), "digests": 0 if p is None else p.digests}

    def summary(self, s: Session, now: int) -> None:
        """After a HELLO from ``s``: per sender both claim, our digest up to the lower high-water mark."""
        for sender in [x for x in self._digests if not self._log.held_version(x)]:
            self._forget(sender)
        p = self._peer(s.neighbour, now)
        items: list[tuple[str, int, bytes]] = []
        for sender, theirs in s.remote_have.items():
            mine, other = _top(self._log.seen_ranges(sender)), _top(theirs)
            if mine is None or other is None:
                continue
            hi = min(mine, other)
            if not self._spend(p, sender, hi):
                continue
            d = self.digest(sender, hi)
            if d is not None:
                items.append((sender, hi, d))
        s.control += wire.encode_digests(items)[:1]

    def on_digests(self, s: Session, frame: wire.Digests, now: int) -> None:
        c = self._config
        p = self._peer(s.neighbour, now)
        for sender in [k for k, ch in p.checks.items() if ch.deadline <= now]:
            del p.checks[sender]
        for sender, hi, theirs in frame.items:
            if len(p.checks) >= c.max_checks_per_neighbour or p.pages_asked >= c.max_hash_pages_per_window:
                return
            top = _top(self._log.seen_ranges(sender))
            if sender in p.checks or top is None or top < hi or not self._spend(p, sender, hi):
                continue
            mine = self.digest(sender, hi)
            if mine is None or mine == theirs:
                continue
            ch = p.checks[sender] = _Check()
            self._ask(s, p, sender, ch, (wire.LEVEL_BLOCK, 0, hi // DIGEST_BLOCK), now)

    def on_hash_want(self, s: Session, frame: wire.HashWant, now: int) -> None:
        c = self._config
        p = self._peer(s.neighbour, now)
        limit = min(wire.MAX_HASH_PAGE, c.max_hash_items_per_window - p.items_served)
        if p.pages_served >= c.max_hash_pages_per_window or limit <= 0:
            return  # over budget: ignored (the neighbour's check times out and starts again later)
        p.pages_served += 1
        items, hi = self.page(frame.sender, frame.level, frame.lo, frame.hi, limit)
        p.items_served += len(items)
        s.control.append(wire.encode_hashes(frame.sender, frame.level, frame.lo, hi, items))

    def on_hashes(self, s: Session, frame: wire.Hashes, now: int) -> None:
        c = self._config
        p = self._peers.get(s.neighbour)
        sender = frame.sender
        ch = None if p is None else p.checks.get(sender)
        if (
            p is None
            or ch is None
            or (frame.level, frame.lo) != (ch.level, ch.lo)
            or frame.hi > ch.hi
            or ch.deadline <= now
        ):
            return  # not what we asked (or too late): ignored
        blocks = self._log.held_blocks(sender)
        if frame.level == wire.LEVEL_BLOCK:
            for b, h in frame.items:
                if (
                    b in blocks
                    and len(ch.todo) < wire.MAX_HASH_PAGE
                    and self._block(sender, b, blocks[b]).hash != h
                ):
                    start = b * DIGEST_BLOCK
                    ch.todo.append((wire.LEVEL_SEQ, start, start + DIGEST_BLOCK - 1))
        else:
            wants = RangeSet()
            budget = c.max_check_wants
            for q, h in frame.items:
                b = q // DIGEST_BLOCK
                if budget <= 0 or b not in blocks:
                    continue
                fp = next((x[1] for x in self._block(sender, b, blocks[b]).items if x[0] == q), None)
                if fp is not None and fp != h:
                    wants.add(q)
                    budget -= 1
            if wants:
                s.control += wire.encode_want({sender: wants.ranges()})
        if frame.hi < ch.hi:
            ch.todo.insert(0, (frame.level, frame.hi + 1, ch.hi))
        p = self._peer(s.neighbour, now)
        if ch.todo and p.pages_asked < c.max_hash_pages_per_window:
            self._ask(s, p, sender, ch, ch.todo.pop(0), now)
        else:
            del p.checks[sender]

    # -- hashes ---------------------------------------------------------------------------------------

    def digest(self, sender: str, hi: int) -> bytes | None:
        """Our digest of ``sender``'s held entries with seq <= ``hi`` (None when we hold none of them)."""
        version = self._log.held_version(sender)
        if not version:
            self._forget(sender)
            return None
        got = self._digests.get(sender)
        if got is None or got[0] != version:
            got = self._digests[sender] = (version, {})
        marks = got[1]
        if hi in marks:
            return marks[hi]
        d = marks[hi] = self._compute(sender, hi)
        while len(marks) > DIGEST_MARKS:
            del marks[next(iter(marks))]
        return d

    def _compute(self, sender: str, hi: int) -> bytes | None:
        blocks = self._log.held_blocks(sender)
        parts = [DIGEST_TAG]
        for b in sorted(x for x in blocks if x <= hi // DIGEST_BLOCK):
            block = self._block(sender, b, blocks[b])
            if block.items[-1][0] > hi:  # the block of ``hi``, cut after it
                cut = [(q, fp) for q, fp in block.items if q <= hi]
                if cut:
                    parts += (_U64.pack(b), sha256(b"".join(_U64.pack(q) + fp for q, fp in cut)))
            else:
                parts += (_U64.pack(b), block.hash)
        cache = self._blocks.get(sender, {})
        self._blocks[sender] = {b: cache[b] for b in blocks if b in cache}
        return None if len(parts) == 1 else sha256(b"".join(parts))

    def _block(self, sender: str, b: int, version: int) -> _Block:
        cache = self._blocks.setdefault(sender, {})
        got = cache.get(b)
        if got is not None and got.version == version:
            return got
        start = b * DIGEST_BLOCK  # a changed block is hashed again whole: no envelope is kept here
        items = [
            (e.seq, sha256(e.data))
            for e in self._log.entries_in_range(sender, start, start + DIGEST_BLOCK - 1)
        ]
        block = cache[b] = _Block(version, sha256(b"".join(_U64.pack(q) + fp for q, fp in items)), items)
        return block

    def page(
        self, sender: str, level: int, lo: int, hi: int, limit: int
    ) -> tuple[list[tuple[int, bytes]], int]:
        """Our hashes at ``level`` with index in ``[lo, hi']``, at most ``limit``; returns them and ``hi'``."""
        blocks = self._log.held_blocks(sender)
        out: list[tuple[int, bytes]] = []
        if level == wire.LEVEL_BLOCK:
            for b in sorted(x for x in blocks if lo <= x <= hi):
                if len(out) == limit:
                    return out, out[-1][0]
                out.append((b, self._block(sender, b, blocks[b]).hash))
            return out, hi
        for b in sorted(x for x in blocks if lo // DIGEST_BLOCK <= x <= hi // DIGEST_BLOCK):
            for q, fp in self._block(sender, b, blocks[b]).items:
                if lo <= q <= hi:
                    if len(out) == limit:
                        return out, out[-1][0]
                    out.append((q, fp))
        return out, hi

    # -- helpers --------------------------------------------------------------------------------------

    def _forget(self, sender: str) -> None:
        self._digests.pop(sender, None)
        self._blocks.pop(sender, None)

    def _spend(self, p: _Peer, sender: str, hi: int) -> bool:
        """May we have ``digest(sender, hi)`` for this neighbour? Free when cached, else from its budget."""
        got = self._digests.get(sender)
        if got is not None and got[0] == self._log.held_version(sender) and hi in got[1]:
            return True
        if p.digests >= self._config.max_digests_per_window:
            return False
        p.digests += 1
        return True

    def _peer(self, neighbour: str, now: int) -> _Peer:
        p = self._peers.get(neighbour)
        if p is None:
            p = self._peers[neighbour] = _Peer()
        if now >= p.window_end:
            p.window_end = now + self._config.want_timeout_ms
            p.pages_served = p.items_served = p.pages_asked = p.digests = 0
        return p

    def _ask(self, s: Session, p: _Peer, sender: str, ch: _Check, page: _Page, now: int) -> None:
        ch.level, ch.lo, ch.hi = page
        ch.deadline = now + self._config.want_timeout_ms
        p.pages_asked += 1
        s.control.append(wire.encode_hash_want(sender, *page))


def _top(rs: RangeSet) -> int | None:
    """The highest number in ``rs`` (None if empty)."""
    ranges = rs.ranges()
    return ranges[-1][1] if ranges else None
