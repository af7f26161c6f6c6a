"""Admission (part of links): how many new self-ADDs one neighbour may bring us per time window.

Rules (issue 13 item 8):
- A *new* self-ADD is a self-ADD envelope whose author is not yet a known sender of the room (re-ADDs of
  known members, e.g. a prekey refresh, are free). Each one received from a neighbour is charged to that
  neighbour before any signature is checked.
- At most ``PER_WINDOW`` new self-ADDs per neighbour per ``WINDOW_MS`` (a fixed window that starts with
  the first charge after the previous one ended). The excess is refused (``add-budget``), counted as a
  remote error of that neighbour but never closing its link (an honest member relaying a burst of real
  joins must not be cut off); nothing of it is stored, so anti-entropy asks for it again later, from
  this neighbour in a later window or from another one. Joins therefore still get in, only paced.
- Envelopes offered back from parking are charged to the neighbour they came from, like any other.
- Bounded: one (window start, count) pair per neighbour; entries of ended windows are dropped when
  more than ``MAX_TRACKED`` neighbours are tracked. Persists nothing.
"""

from __future__ import annotations

PER_WINDOW = 256
WINDOW_MS = 10_000
MAX_TRACKED = 1024


class AddBudget:
    def __init__(self, per_window: int = PER_WINDOW, window_ms: int = WINDOW_MS) -> None:
        self.per_window, self.window_ms = per_window, window_ms
        self._windows: dict[str, tuple[int, int]] = {}  # neighbour -> (window start, charged in it)

    def charge(self, neighbour: str, now: int) -> bool:
        """Charge one new self-ADD to ``neighbour``; False (refuse it) if its window is spent."""
        start, used = self._windows.get(neighbour, (now, 0))
        if now - start >= self.window_ms or now < start:
            start, used = now, 0
        if used >= self.per_window:
            return False
        self._windows[neighbour] = (start, used + 1)
        if len(self._windows) > MAX_TRACKED:
            self._windows = {
                p: w for p, w in self._windows.items() if 0 <= now - w[0] < self.window_ms or p == neighbour
            }
        return True

    def __len__(self) -> int:
        return len(self._windows)
