"""Distribution (part of the sender-key hand-over): when a member we have not linked with gets our chains.

Rules (issue 13 item 8, fake members). Every admitted member used to get a sealed SENDER_KEY envelope of
every live chain from every member at once, so N fake self-ADDs made each member publish N × (live
chains) envelopes, replicated to everyone. Now:

- A member whose link with us became ready gets our live chains at once, pairwise and sealed (as before;
  links are bounded by the connection limits and each one is an authenticated handshake). A rotation
  reaches at once, too, every member that holds one of our live chains (it was served before): pacing
  bounds how fast members *start* receiving our chains, it does not delay established ones.
- Any other member is *served* (sealed envelopes of every live chain) paced: at most ``PER_WINDOW``
  members per ``WINDOW_MS`` (a fixed window that starts with the first serve after the previous one
  ended). One owed while the window is spent, or while others wait, waits in a queue with two tiers,
  FIFO within each: first members that have *shown life* (an envelope they authored other than an ADD
  op entered our log), then silent ones (only an ADD seen). ``Room.handle_timer`` serves the queue as the
  window allows (``next_deadline`` is one of the room's timers); a member that links with us is served at once. A rotation owes the new chain to every
  member the same way.
- So a flood of fake self-ADDs costs each member at most ``PER_WINDOW`` × (live chains) sealed envelopes
  per window (and those expire with their chain's window, see ``senderkeys``); honest joins below that
  rate are served at once, as before.
- Bounded: each queue holds a member at most once (members are bounded by admission); a member that
  leaves is dropped. Persists nothing: at restore, members missing one of our live chains are queued again
  (shown life = authored a non-ADD envelope we still hold).
"""

from __future__ import annotations

PER_WINDOW = 32
WINDOW_MS = 60_000


class Distribution:
    def __init__(self, per_window: int = PER_WINDOW, window_ms: int = WINDOW_MS) -> None:
        self.per_window, self.window_ms = per_window, window_ms
        self._active: set[str] = set()  # shown life
        self._queues: tuple[dict[str, None], dict[str, None]] = ({}, {})  # (shown life, silent), FIFO
        self._window: tuple[int, int] | None = None  # (start, served in it)

    def shown_life(self, peer: str) -> None:
        """``peer`` authored an envelope other than an ADD: it moves to the first tier if it waits."""
        if peer in self._active:
            return
        self._active.add(peer)
        if peer in self._queues[1]:
            del self._queues[1][peer]
            self._queues[0][peer] = None

    def offer(self, peer: str, now: int) -> bool:
        """``peer`` is owed our live chains: True to serve it now (charged), else it waits in the queue."""
        if self.waiting(peer):
            return False
        if not any(self._queues) and self._charge(now):
            return True
        self._queues[0 if peer in self._active else 1][peer] = None
        return False

    def enqueue(self, peer: str) -> None:
        """``peer`` is owed our live chains, served from the queue (at restore)."""
        if not self.waiting(peer):
            self._queues[0 if peer in self._active else 1][peer] = None

    def due(self, now: int) -> list[str]:
        """Waiting members to serve now, in queue order (each charged)."""
        out: list[str] = []
        for queue in self._queues:
            while queue and self._charge(now):
                peer = next(iter(queue))
                del queue[peer]
                out.append(peer)
        return out

    def next_deadline(self) -> int | None:
        """When waiting members can be served: None if none waits, 0 if the window has room now."""
        if not any(self._queues):
            return None
        if self._window is None or self._window[1] < self.per_window:
            return 0
        return self._window[0] + self.window_ms

    def drop(self, peer: str) -> None:
        """``peer`` is served another way (a link) or left: it no longer waits."""
        for queue in self._queues:
            queue.pop(peer, None)

    def waiting(self, peer: str) -> bool:
        return any(peer in q for q in self._queues)

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues)

    def _charge(self, now: int) -> bool:
        start, used = self._window if self._window is not None else (now, 0)
        if now - start >= self.window_ms or now < start:
            start, used = now, 0
        if used >= self.per_window:
            return False
        self._window = (start, used + 1)
        return True
