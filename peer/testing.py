"""Test doubles shipped with the package: a fake clock, dummy envelopes and a simulated network.

Nothing here is cryptography. The dummy envelope stands in for the real sealed+signed envelope: a fixed
header, a body, and a truncated SHA-256 checksum so that tampering is detected (like a bad signature).

Dummy envelope layout (big-endian)::

    b"DMY1" | sender (16 bytes) | seq u64 | lamport u64 | sent_at u64 | expires_at u64 | body | sha256[:8]

``SimNetwork`` pumps any number of ``SyncEngine`` over simulated links on a ``FakeClock``. All randomness
comes from one seeded ``random.Random``, so a run is a pure function of its seed and its script.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import struct
from collections.abc import Callable, Iterable

from peer.core.errors import ProtocolError
from peer.core.log import LogEntry, Tombstone
from peer.core.sync import Event, NeighbourTimedOut, SyncConfig, SyncEngine

_MAGIC = b"DMY1"
_HEAD = struct.Struct(">4s16sQQQQ")
_SUM = 8
_MAX_INT = 2**53 - 1


class FakeClock:
    """Milliseconds that move only when told to."""

    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def advance(self, ms: int) -> int:
        if ms < 0:
            raise ValueError("time does not go backwards")
        self.now += ms
        return self.now

    def set(self, now: int) -> None:
        if now < self.now:
            raise ValueError("time does not go backwards")
        self.now = now


def sim_id(name: str) -> str:
    """A deterministic 32-hex id (peer or room) for a test name."""
    return hashlib.sha256(name.encode()).digest()[:16].hex()


def make_envelope(
    sender: str, seq: int, lamport: int, sent_at: int, expires_at: int, body: bytes = b""
) -> bytes:
    head = _HEAD.pack(_MAGIC, bytes.fromhex(sender), seq, lamport, sent_at, expires_at)
    return head + body + hashlib.sha256(head + body).digest()[:_SUM]


def dummy_validate(data: bytes) -> LogEntry:
    """Parse a dummy envelope; ``ProtocolError`` if it is malformed or its checksum is wrong."""
    if len(data) < _HEAD.size + _SUM:
        raise ProtocolError("bad-envelope", "too short")
    magic, sender, seq, lamport, sent_at, expires_at = _HEAD.unpack_from(data)
    if magic != _MAGIC:
        raise ProtocolError("bad-envelope", "bad magic")
    if hashlib.sha256(data[:-_SUM]).digest()[:_SUM] != data[-_SUM:]:
        raise ProtocolError("bad-signature", "checksum mismatch")
    if max(seq, lamport, sent_at, expires_at) > _MAX_INT:
        raise ProtocolError("bad-envelope", "integer out of range")
    return LogEntry(sender.hex(), seq, lamport, sent_at, expires_at, bytes(data))


def body_of(entry: LogEntry) -> bytes:
    return entry.data[_HEAD.size : -_SUM]


def unsend_proof(sender: str, seq: int, until: int) -> bytes:
    """Stand-in for a sender-signed deletion: checked by ``dummy_authorize_tombstone``."""
    return b"UNSEND" + hashlib.sha256(f"{sender}:{seq}:{until}".encode()).digest()[:8]


def dummy_authorize_tombstone(tomb: Tombstone, held: LogEntry | None, now: int) -> bool:
    return tomb.proof == unsend_proof(tomb.sender, tomb.seq, tomb.until)


class Author:
    """Creates dummy envelopes for one engine with consecutive seqs and its Lamport clock."""

    def __init__(self, engine: SyncEngine, first_seq: int = 0) -> None:
        self.engine = engine
        self.next_seq = first_seq

    def envelope(self, now: int, ttl_ms: int, body: bytes = b"") -> bytes:
        seq = self.next_seq
        self.next_seq += 1
        lamport = self.engine.clock.tick()
        return make_envelope(self.engine.self_id, seq, lamport, now, now + ttl_ms, body)

    def publish(self, now: int, ttl_ms: int, body: bytes = b"") -> LogEntry:
        return self.engine.publish(self.envelope(now, ttl_ms, body), now)


def make_engine(
    name: str, room: str = "room", config: SyncConfig | None = None, authorize: bool = True
) -> SyncEngine:
    return SyncEngine(
        sim_id(name),
        sim_id(room),
        dummy_validate,
        config=config,
        authorize_tombstone=dummy_authorize_tombstone if authorize else None,
    )


def _link(a: str, b: str) -> frozenset[str]:
    return frozenset((a, b))


def _ends(link: frozenset[str]) -> tuple[str, str]:
    a, b = sorted(link)
    return a, b


#: (at, order, kind, src, dst, data, epoch); kind is "frame" or "timer".
_Item = tuple[int, int, str, str, str, bytes, int]


class SimNetwork:
    """Deterministic network of SyncEngines.

    Links are configured with ``link``; a link carries frames while it is up and neither end is
    partitioned away from the other. Bringing a link up calls ``connect`` on both engines, taking it
    down calls ``disconnect`` and drops frames in flight. Each frame is lost with probability ``loss``
    and delayed uniformly in ``[min_delay_ms, max_delay_ms]`` (frames may overtake each other when
    ``reorder`` is true; otherwise each direction is FIFO like a data channel). A ``NeighbourTimedOut``
    makes the sim reconnect that link, as the real mesh adapter would.
    """

    def __init__(
        self,
        seed: int,
        *,
        loss: float = 0.0,
        min_delay_ms: int = 1,
        max_delay_ms: int = 10,
        reorder: bool = False,
        clock: FakeClock | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.clock = clock or FakeClock()
        self.loss = loss
        self.min_delay_ms = min_delay_ms
        self.max_delay_ms = max_delay_ms
        self.reorder = reorder
        self.engines: dict[str, SyncEngine] = {}
        self.authors: dict[str, Author] = {}
        self.events: dict[str, list[Event]] = {}
        self.links: set[frozenset[str]] = set()
        self._down: set[frozenset[str]] = set()
        self._groups: dict[str, int] | None = None
        self._epoch: dict[frozenset[str], int] = {}
        self._fifo: dict[tuple[str, str], int] = {}
        self._heap: list[_Item] = []
        self._timer_at: dict[str, int] = {}
        self._counter = 0
        self.frames_sent = 0
        self.frames_lost = 0

    # -- topology --------------------------------------------------------------------------------------

    def add(self, engine: SyncEngine) -> SyncEngine:
        self.engines[engine.self_id] = engine
        self.authors[engine.self_id] = Author(engine)
        self.events[engine.self_id] = []
        return engine

    def carries(self, a: str, b: str) -> bool:
        key = _link(a, b)
        if key not in self.links or key in self._down:
            return False
        return self._groups is None or self._groups.get(a) == self._groups.get(b)

    def link(self, a: str, b: str) -> None:
        was = self.carries(a, b)
        self.links.add(_link(a, b))
        self._update(a, b, was)

    def set_link(self, a: str, b: str, up: bool) -> None:
        was = self.carries(a, b)
        if up:
            self._down.discard(_link(a, b))
        else:
            self._down.add(_link(a, b))
        self._update(a, b, was)

    def set_peer_online(self, peer: str, online: bool) -> None:
        for key in list(self.links):
            if peer in key:
                (other,) = key - {peer}
                self.set_link(peer, other, online)

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Split the network: only links inside one group carry frames. Unlisted peers form a group."""
        before = {k: self.carries(*_ends(k)) for k in self.links}
        mapping: dict[str, int] = {}
        for i, g in enumerate(groups):
            for p in g:
                mapping[p] = i
        for p in self.engines:
            mapping.setdefault(p, -1)
        self._groups = mapping
        for k, was in before.items():
            self._update(*_ends(k), was)

    def heal(self) -> None:
        before = {k: self.carries(*_ends(k)) for k in self.links}
        self._groups = None
        for k, was in before.items():
            self._update(*_ends(k), was)

    def _update(self, a: str, b: str, was: bool) -> None:
        now_up = self.carries(a, b)
        if was == now_up:
            return
        key = _link(a, b)
        self._epoch[key] = self._epoch.get(key, 0) + 1
        if now_up:
            self._open(a, b)
        else:
            for x, y in ((a, b), (b, a)):
                self.engines[x].disconnect(y, self.clock.now)
                self._flush(x)

    def _open(self, a: str, b: str) -> None:
        now = self.clock.now
        self.engines[a].connect(b, now)
        self.engines[b].connect(a, now)
        self._flush(a)
        self._flush(b)

    # -- driving ---------------------------------------------------------------------------------------

    def publish(self, peer: str, ttl_ms: int = 3_600_000, body: bytes = b"") -> LogEntry:
        entry = self.authors[peer].publish(self.clock.now, ttl_ms, body)
        self._flush(peer)
        return entry

    def _push(self, item: _Item) -> None:
        heapq.heappush(self._heap, item)

    def _flush(self, peer: str) -> None:
        engine = self.engines[peer]
        now = self.clock.now
        for dst, data in engine.data_to_send():
            if not self.carries(peer, dst):
                continue
            self.frames_sent += 1
            if self.loss and self.rng.random() < self.loss:
                self.frames_lost += 1
                continue
            at = now + self.rng.randint(self.min_delay_ms, self.max_delay_ms)
            if not self.reorder:
                at = max(at, self._fifo.get((peer, dst), 0))
                self._fifo[(peer, dst)] = at
            self._counter += 1
            self._push((at, self._counter, "frame", peer, dst, data, self._epoch[_link(peer, dst)]))
        self._schedule(peer)

    def _schedule(self, peer: str) -> None:
        t = self.engines[peer].next_timer()
        if t is None or self._timer_at.get(peer) == t:
            return
        self._timer_at[peer] = t
        self._counter += 1
        self._push((max(t, self.clock.now), self._counter, "timer", peer, peer, b"", 0))

    def _handle(self, peer: str, events: list[Event]) -> None:
        self.events[peer].extend(events)
        for ev in events:
            if isinstance(ev, NeighbourTimedOut) and self.carries(peer, ev.neighbour):
                # the adapter closes the dead transport; the mesh dials again
                key = _link(peer, ev.neighbour)
                self._epoch[key] = self._epoch.get(key, 0) + 1
                self.engines[ev.neighbour].disconnect(peer, self.clock.now)
                self._open(peer, ev.neighbour)

    def step(self, until: int) -> bool:
        """Process the next scheduled item if it is due by ``until``; False when none is."""
        while self._heap and self._heap[0][0] <= until:
            at, _, kind, src, dst, data, epoch = heapq.heappop(self._heap)
            if kind == "timer":
                if self._timer_at.get(src) != at:
                    continue  # superseded
                self._timer_at.pop(src)
                self.clock.set(max(self.clock.now, at))
                self._handle(src, self.engines[src].handle_timer(self.clock.now))
                self._flush(src)
                return True
            if not self.carries(src, dst) or self._epoch[_link(src, dst)] != epoch:
                continue
            self.clock.set(max(self.clock.now, at))
            self._handle(dst, self.engines[dst].receive(src, data, self.clock.now))
            self._flush(dst)
            return True
        return False

    def run_for(self, ms: int) -> None:
        end = self.clock.now + ms
        while self.step(end):
            pass
        self.clock.set(end)

    def run_until(self, condition: Callable[[], bool], max_ms: int, check_every_ms: int = 100) -> bool:
        """Run until ``condition()`` holds (checked every ``check_every_ms`` of sim time) or ``max_ms``."""
        deadline = self.clock.now + max_ms
        while self.clock.now < deadline:
            if condition():
                return True
            self.run_for(min(check_every_ms, deadline - self.clock.now))
        return condition()

    # -- observation -----------------------------------------------------------------------------------

    def keys(self, peer: str) -> list[tuple[str, int]]:
        return [e.key for e in self.engines[peer].log.ordered()]

    def converged(self, peers: Iterable[str] | None = None) -> bool:
        """All given peers (default: all) hold the same entries in the same order."""
        ids = list(peers) if peers is not None else list(self.engines)
        first = self.keys(ids[0])
        return all(self.keys(p) == first for p in ids[1:])


def build_sim(
    n: int,
    seed: int,
    *,
    degree: int | None = None,
    config: SyncConfig | None = None,
    loss: float = 0.0,
    max_delay_ms: int = 10,
    reorder: bool = False,
) -> tuple[SimNetwork, list[str]]:
    """``n`` engines in one room; full mesh, or a connected random graph (ring + random chords) where
    each peer has about ``degree`` links."""
    sim = SimNetwork(seed, loss=loss, max_delay_ms=max_delay_ms, reorder=reorder)
    ids = [sim.add(make_engine(f"peer-{i}", config=config)).self_id for i in range(n)]
    if degree is None or degree >= n - 1:
        for i in range(n):
            for j in range(i + 1, n):
                sim.link(ids[i], ids[j])
    else:
        for i in range(n):
            sim.link(ids[i], ids[(i + 1) % n])
        extra = max(0, (degree - 2) * n // 2)
        while extra > 0:
            a, b = sim.rng.sample(ids, 2)
            if _link(a, b) not in sim.links:
                sim.link(a, b)
                extra -= 1
    return sim, ids
