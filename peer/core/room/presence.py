"""Typing and seen (ephemeral, direct links only): who is typing, and what we told senders we saw.

Rules:
- ``set_typing`` tells linked members; a repeated "typing" is re-sent at most every ``TYPING_RENEW_MS``.
  A member's indicator lasts ``TYPING_TTL_MS`` unless renewed; its end is a ``Typing(peer, False)``.
- ``mark_seen`` tells each linked sender, once per message, that we showed it (the timeline counts
  what others tell us).
- Last seen (issue 15): when a member's link goes down we note the time; ``last_seen`` reports it for
  members not online now, only within ``horizon_ms`` (the room timer) and never for a member that asked
  not to be shown (LASTSEEN share=0, sent on every link that becomes ready while we opt out). A member
  that opts out sees no one's last seen either. Kept in memory only.
- Persists only our own last-seen preference (state ``presence/last_seen`` = ``off``, deleted when on).
"""

from __future__ import annotations

from peer.core.events import RoomEvent, Typing
from peer.core.log import Key
from peer.core.persist import PersistBatch
from peer.core.presence import TYPING_RENEW_MS, TYPING_TTL_MS, encode_last_seen, encode_seen, encode_typing

LAST_SEEN_STATE = "presence/last_seen"


class Presence:
    def __init__(self) -> None:
        self._typing: dict[str, int] = {}  # peer -> typing indicator valid until
        self._typing_sent: tuple[bool, int] = (False, 0)
        self._seen_sent: set[Key] = set()
        self._last_seen: dict[str, int] = {}  # member -> when its link last went down (memory only)
        self._hidden: set[str] = set()  # members that asked us not to show their last seen
        self.share_last_seen = True

    # -- last seen (issue 15) --------------------------------------------------------------------------

    def load(self, states: dict[str, bytes]) -> None:
        self.share_last_seen = states.get(LAST_SEEN_STATE) != b"off"

    def set_share(self, share: bool, online: set[str], persist: PersistBatch) -> list[tuple[str, bytes]]:
        """Change our preference; tell the members online now (the others hear it when they link)."""
        if share == self.share_last_seen:
            return []
        self.share_last_seen = share
        if share:
            persist.delete(LAST_SEEN_STATE)
        else:
            persist.put(LAST_SEEN_STATE, b"off")
        body = encode_last_seen(share)
        return [(peer, body) for peer in sorted(online)]

    def on_online(self, peer: str) -> list[tuple[str, bytes]]:
        """A link became ready: while we opt out, say so on it."""
        self._last_seen.pop(peer, None)
        return [] if self.share_last_seen else [(peer, encode_last_seen(False))]

    def on_offline(self, peer: str, now: int) -> None:
        self._last_seen[peer] = now

    def on_share(self, peer: str, share: bool) -> None:
        if share:
            self._hidden.discard(peer)
        else:
            self._hidden.add(peer)

    def last_seen(self, now: int, online: set[str], horizon_ms: int | None) -> dict[str, int]:
        """Member -> when we last saw it online (ms), for members offline now; forgets what is older
        than ``horizon_ms`` (None: keep)."""
        if horizon_ms is not None:
            for peer in [p for p, t in self._last_seen.items() if now - t > horizon_ms]:
                del self._last_seen[peer]
        if not self.share_last_seen:
            return {}
        return {p: t for p, t in sorted(self._last_seen.items()) if p not in online and p not in self._hidden}

    def forget_member(self, peer: str) -> None:
        self._last_seen.pop(peer, None)
        self._hidden.discard(peer)

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
