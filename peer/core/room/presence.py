"""Typing and seen (ephemeral, direct links only): who is typing, and what we told senders we saw.

Rules:
- ``set_typing`` tells linked members; a repeated "typing" is re-sent at most every ``TYPING_RENEW_MS``.
  A member's indicator lasts ``TYPING_TTL_MS`` unless renewed; its end is a ``Typing(peer, False)``.
- ``mark_seen`` tells each linked sender, once per message, that we showed it (the timeline counts
  what others tell us).
- Persists nothing.
"""

from __future__ import annotations

from peer.core.events import RoomEvent, Typing
from peer.core.log import Key
from peer.core.presence import TYPING_RENEW_MS, TYPING_TTL_MS, encode_seen, encode_typing


class Presence:
    def __init__(self) -> None:
        self._typing: dict[str, int] = {}  # peer -> typing indicator valid until
        self._typing_sent: tuple[bool, int] = (False, 0)
        self._seen_sent: set[Key] = set()

    def set_typing(self, typing: bool, now: int, online: set[str]) -> list[tuple[str, bytes]]:
        last = self._typing_sent
        if typing == last[0] and (not typing or now - last[1] < TYPING_RENEW_MS):
            return []
        self._typing_sent = (typing, now)
        body = encode_typing(typing)
        return [(peer, body) for peer in sorted(online)]

    def typing_members(self, now: int) -> list[str]:
        return sorted(p for p, until in self._typing.items() if until > now)

    def on_typing(self, peer: str, typing: bool, now: int, events: list[RoomEvent]) -> None:
        was = self._typing.get(peer, 0) > now
        if typing:
            self._typing[peer] = now + TYPING_TTL_MS
        else:
            self._typing.pop(peer, None)
        if was != typing:
            events.append(Typing(peer, typing))

    def seen(self, keys: list[Key]) -> list[tuple[str, bytes]]:
        """``keys``: messages shown whose senders are linked; one SEEN body per sender, once per message."""
        out: dict[str, list[int]] = {}
        for key in keys:
            if key not in self._seen_sent:
                self._seen_sent.add(key)
                out.setdefault(key[0], []).append(key[1])
        return [(peer, encode_seen(seqs)) for peer, seqs in out.items()]

    def forget(self, key: Key) -> None:
        self._seen_sent.discard(key)

    def expire(self, now: int, events: list[RoomEvent]) -> None:
        for peer in [p for p, until in self._typing.items() if until <= now]:
            del self._typing[peer]
            events.append(Typing(peer, False))

    def next_deadline(self) -> int | None:
        return min(self._typing.values(), default=None)
