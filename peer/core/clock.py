"""Lamport clock for the room log.

Rules:
- ``tick()`` is called for every local event that creates an entry; it returns a value strictly
  greater than every value returned or observed before.
- ``observe(remote)`` is called for every entry accepted from a peer; afterwards ``tick()`` returns a
  value greater than ``remote``.
- The clock never reads wall time; it is a plain counter (sans-IO).
"""

from __future__ import annotations

from peer.core.ints import MAX_INT

#: Largest value a Lamport stamp may take on the wire (JavaScript's ``Number.MAX_SAFE_INTEGER``).
MAX_LAMPORT = MAX_INT


class LamportClock:
    """A Lamport logical clock."""

    __slots__ = ("_value",)

    def __init__(self, value: int = 0) -> None:
        if not 0 <= value <= MAX_LAMPORT:
            raise ValueError("lamport value out of range")
        self._value = value

    @property
    def value(self) -> int:
        """The largest stamp issued or observed so far."""
        return self._value

    def tick(self) -> int:
        """Advance for a local event and return its stamp."""
        if self._value >= MAX_LAMPORT:
            raise OverflowError("lamport clock exhausted")
        self._value += 1
        return self._value

    def observe(self, remote: int) -> None:
        """Merge a stamp seen on a remote entry (values outside the wire range are clamped)."""
        if remote > self._value:
            self._value = min(remote, MAX_LAMPORT)
