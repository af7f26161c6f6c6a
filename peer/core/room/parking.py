"""Parking (part of links): envelopes that overtook their author's ADD, held until the author is known.

Rules:
- An envelope the sync engine refused with ``unknown-sender`` is parked with the neighbour it came from
  and the time it arrived; nothing else is parked.
- Bounded per neighbour (``PER_NEIGHBOUR``, the oldest of that neighbour goes first) and in total
  (``TOTAL``, the oldest overall goes first); a parked envelope expires ``TTL_MS`` after it arrived,
  whatever happens meanwhile. Parking never re-validates anything by itself.
- When membership says a sender became known (its ADD arrived), the room takes that sender's parked
  envelopes and offers them back to the sync engine, once, as if their neighbour had just sent them.
- A neighbour's parked envelopes go when its link goes (they could not be acked to it any more).
- Persists nothing (a restart re-asks them by HELLO/WANT).
"""

from __future__ import annotations

from collections import deque

PER_NEIGHBOUR = 512
TOTAL = 2048
TTL_MS = 30_000


class Parking:
    def __init__(self, per_neighbour: int = PER_NEIGHBOUR, total: int = TOTAL, ttl_ms: int = TTL_MS) -> None:
        self.per_neighbour, self.total, self.ttl_ms = per_neighbour, total, ttl_ms
        self._held: dict[str, deque[tuple[int, str, bytes]]] = {}  # neighbour -> (parked at, sender, data)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def park(self, neighbour: str, sender: str, data: bytes, now: int) -> None:
        held = self._held.setdefault(neighbour, deque())
        held.append((now, sender, data))
        self._count += 1
        if len(held) > self.per_neighbour:
            held.popleft()
            self._count -= 1
        while self._count > self.total:
            oldest = min((q for q in self._held.values() if q), key=lambda q: q[0][0])
            oldest.popleft()
            self._count -= 1

    def take(self, sender: str) -> list[tuple[str, bytes]]:
        """Remove and return ``sender``'s parked envelopes as (neighbour, envelope), in arrival order."""
        out: list[tuple[int, str, bytes]] = []
        for neighbour, held in self._held.items():
            keep: deque[tuple[int, str, bytes]] = deque()
            for item in held:
                if item[1] == sender:
                    out.append((item[0], neighbour, item[2]))
                else:
                    keep.append(item)
            self._count -= len(held) - len(keep)
            self._held[neighbour] = keep
        self._prune()
        return [(n, d) for _, n, d in sorted(out, key=lambda x: x[0])]

    def drop_neighbour(self, neighbour: str) -> None:
        self._count -= len(self._held.pop(neighbour, ()))

    def expire(self, now: int) -> int:
        dropped = 0
        for held in self._held.values():
            while held and held[0][0] + self.ttl_ms <= now:
                held.popleft()
                dropped += 1
        self._count -= dropped
        self._prune()
        return dropped

    def next_deadline(self) -> int | None:
        firsts = [q[0][0] for q in self._held.values() if q]
        return min(firsts) + self.ttl_ms if firsts else None

    def _prune(self) -> None:
        for neighbour in [n for n, q in self._held.items() if not q]:
            del self._held[neighbour]
