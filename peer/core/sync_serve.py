"""Serving neighbours (a part of the sync engine): what we tell them (our HELLO, erasures), the WANTs
we make and answer, the tombstones we take in, their ACKs, and the per-neighbour budgets that keep what
one neighbour can make us send or hold bounded. The engine (:mod:`peer.core.sync`) owns the sessions,
the log and the envelopes; it routes WANT, ACK and TOMBSTONES frames here.

Rules:
- After every HELLO we WANT what the neighbour has (held or tombstoned) and we have not seen, skipping
  keys already wanted from someone else and not yet timed out. At most ``max_want_keys`` keys are in
  flight per neighbour, ever: a newer HELLO *replaces* what the older one claimed (wants for keys it no
  longer claims are released), timed-out wants are released before new ones are made. A key WANTed
  ``max_want_attempts`` times from one neighbour without result is not asked from it again until its
  next HELLO (``unservable``; at most ``4 * max_want_keys`` keys are scanned per request).
- Delivery (``Acked``): an ACK frame, and also a HELLO: what a neighbour's HELLO says it holds of OUR
  own entries counts as an ACK of each of them, whoever it got them from (at most ``max_serve_keys``
  new keys per HELLO, once per session and key). A new entry received from someone other than its
  author is also ACKed to the author when the author is a ready neighbour.
- Our HELLO lists senders we hold entries of first, and gives each sender at most a fair share of the
  frame, so tombstone-only or fragmented senders can never crowd real senders out of it.
- A WANT is served with ENVELOPES for held, unexpired entries and TOMBSTONES for tombstoned keys; never
  an expired or tombstoned entry. At most ``max_serve_keys`` keys are looked at per WANT frame. Serving
  is paced per neighbour: a key already queued, or served less than ``want_timeout_ms / 2`` ago, is not
  served again (so repeating a WANT amplifies nothing), and at most ``max_serve_keys_per_window`` keys /
  ``max_serve_bytes_per_window`` bytes are served per ``want_timeout_ms`` window; the rest is served
  when the neighbour asks again.
- Tombstones: a proof-less tombstone (expiry) is accepted for a held entry iff its ``expires_at <= now
  + skew``, and for an unheld key iff ``until <= now + skew`` (a forged one can hide a key for at most
  the skew bound). A tombstone with a proof (explicit unsend) is accepted only if the injected
  ``authorize_tombstone`` says so; without it, ``unauthorized-tombstone``. Accepted tombstones are
  relayed to the other neighbours that may hold the key.
- A tombstone naming our own sender id for a key we do not hold is dropped (not an error: an honest
  stale neighbour may still carry one of a message we erased): we alone decide what is gone of our own
  keys, and a taken tombstone of a seq we have not used yet would refuse our next message for good.
- With ``known_sender`` injected (membership, the authority on senders), a tombstone naming a sender it
  does not know is refused (``unknown-sender``). A tombstone for a key we never held only saves a WANT,
  so at most ``max_foreign_tombstones_per_neighbour`` of them per neighbour and
  ``max_foreign_tombstones`` in total are kept; the rest are dropped. Nothing a neighbour sends for a
  key it never claimed grows its session record (no ``mark``; ``unservable`` only for claimed keys,
  at most ``4 * max_want_keys`` of them).

Owns: the wants in flight (key -> the neighbour asked and until when), and per neighbour (``_Book``) its
in-flight keys, want attempts, unservable keys, acknowledged seqs and serve pacing (keys served with the time before which
they are not served again, the current window and its key/byte counts); the book of foreign tombstones
(which neighbour sent each tombstone of a key we never held, counted per neighbour).
Persists nothing: wants and pacing start again with each session; foreign tombstones themselves are in
the log (which the room persists), the book only counts who sent them and starts empty after a restart.

Interface with the engine (nothing else is shared): the engine's ``Log`` (public API only), the session
records of :mod:`peer.core.sync_events` (their claimed ranges and output queues: ``control``, ``envs``,
``tombs``, ``voids``, ``retry_at``) and two callables given at construction: ``live()`` (the live sessions) and
``error(neighbour, code)`` (count and build a protocol-error event). The engine calls the public
methods below, never its attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from peer.core import wire
from peer.core.log import Key, Log, LogEntry, RangeSet, Tombstone
from peer.core.sync_events import (
    Acked,
    EntryDeleted,
    EntryExpired,
    Event,
    ProtocolErrorEvent,
    Session,
    SyncConfig,
)

#: ``(tombstone, held entry or None, now) -> accept?`` for tombstones that carry a proof.
AuthorizeTombstone = Callable[[Tombstone, LogEntry | None, int], bool]
#: ``sender -> is it (or was it) a member?``: the membership part's one rule
KnownSender = Callable[[str], bool]
#: what one (sender, ranges) block of a HELLO costs, and what the frame holds (see peer.core.wire)
_HELLO_ROOM = wire.MAX_FRAME - 64
_HELLO_SENDER = 18
_HELLO_RANGE = 16


@dataclass(eq=False)
class _Book:
    """One neighbour's budgets: what we WANT from it, and the pacing of what we serve it."""

    inflight: set[Key] = field(default_factory=set)
    attempts: dict[Key, int] = field(default_factory=dict)
    unservable: set[Key] = field(default_factory=set)
    #: per sender, the seqs it acknowledged (by ACK, or by its HELLO for our own entries)
    acked: dict[str, RangeSet] = field(default_factory=dict)
    #: serve pacing: key -> time before which a WANT for it is not served again; the current window
    served: dict[Key, int] = field(default_factory=dict)
    window_end: int = 0
    keys: int = 0
    bytes: int = 0


class Serve:
    """What serves neighbours: WANTs made and answered, tombstone intake, and the per-neighbour budgets."""

    def __init__(
        self,
        config: SyncConfig,
        log: Log,
        *,
        live: Callable[[], list[Session]],
        error: Callable[[str, str], ProtocolErrorEvent],
        authorize_tombstone: AuthorizeTombstone | None = None,
        known_sender: KnownSender | None = None,
        self_id: str | None = None,
    ) -> None:
        self._config = config
        self._self_id = self_id  # our own keys: only we say what is gone of them
        self._log = log
        self._live = live
        self._error = error
        self._authorize = authorize_tombstone
        self._known = known_sender
        self._books: dict[str, _Book] = {}
        self._pending: dict[Key, tuple[str, int]] = {}  # wanted key -> (asked neighbour, until)
        #: tombstones accepted for keys we never held -> the neighbour that sent them (bounded)
        self._foreign: dict[Key, str] = {}
        self._foreign_by: dict[str, int] = {}
        self._foreign_stale = False  # the log pruned tombstones since the last sweep of ``_foreign``

    # -- the engine's calls ---------------------------------------------------------------------------

    def book(self, neighbour: str) -> _Book:
        b = self._books.get(neighbour)
        if b is None:
            b = self._books[neighbour] = _Book()
        return b

    def end(self, neighbour: str) -> None:
        """The session with ``neighbour`` ended: its wants are released (they may be asked of others) and
        its book goes (its foreign tombstones stay counted)."""
        self.release_all(neighbour)
        self._books.pop(neighbour, None)

    def release_all(self, neighbour: str) -> None:
        b = self._books.get(neighbour)
        if b is None:
            return
        for key in b.inflight:
            if self._pending.get(key, ("", 0))[0] == neighbour:
                del self._pending[key]
        b.inflight.clear()

    def log_pruned(self) -> None:
        """The log may have pruned tombstones (``expire``): the foreign book may be swept at its bound."""
        self._foreign_stale = True

    def pending(self) -> int:
        """How many keys are wanted (from any neighbour) and not yet settled."""
        return len(self._pending)

    def idle(self, neighbour: str) -> bool:
        """Nothing wanted from ``neighbour`` is in flight."""
        b = self._books.get(neighbour)
        return b is None or not b.inflight

    def counts(self, neighbour: str) -> dict[str, int]:
        """What ``neighbour`` makes this part hold, per structure."""
        b = self._books.get(neighbour) or _Book()
        return {
            "inflight": len(b.inflight),
            "pending": sum(1 for n, _ in self._pending.values() if n == neighbour),
            "attempts": len(b.attempts),
            "unservable": len(b.unservable),
            "acked_ranges": sum(len(rs.ranges()) for rs in b.acked.values()),
            "served": len(b.served),
            "foreign_tombstones": self._foreign_by.get(neighbour, 0),
        }

    # -- wanting --------------------------------------------------------------------------------------

    def on_hello(self, s: Session) -> None:
        """``s`` sent a HELLO (its claims are in ``s.remote_have``): the newer HELLO replaces the older
        one, so attempts start over and wants for keys it no longer claims are released."""
        b = self.book(s.neighbour)
        b.attempts.clear()
        b.unservable.clear()
        for key in [k for k in b.inflight if not s.has(k)]:
            self._release(s.neighbour, key)

    def resolve(self, key: Key) -> str | None:
        """A wanted key arrived or was settled; returns the neighbour whose in-flight set became empty."""
        p = self._pending.pop(key, None)
        if p is None:
            return None
        owner = self._books.get(p[0])
        if owner is None:
            return None
        owner.inflight.discard(key)
        return p[0] if not owner.inflight else None

    def request(self, s: Session, now: int) -> None:
        """WANT from ``s`` what it has and we have not seen (bounded; skipping keys pending elsewhere)."""
        c = self._config
        b = self.book(s.neighbour)
        for key in [k for k in b.inflight if self._pending.get(k, ("", 0))[1] <= now]:
            self._release(s.neighbour, key)  # timed out: may be asked again below (one more attempt)
        budget = c.max_want_keys - len(b.inflight)
        scan = 4 * c.max_want_keys
        wants: dict[str, RangeSet] = {}
        deadline = now + c.want_timeout_ms
        for sender, theirs in s.remote_have.items():
            for lo, hi in theirs.difference(self._log.seen_ranges(sender)):
                for seq in range(lo, hi + 1):
                    if budget <= 0 or scan <= 0:
                        break
                    scan -= 1
                    key = (sender, seq)
                    if key in b.unservable:
                        continue
                    p = self._pending.get(key)
                    if p is not None:
                        if p[1] > now:
                            continue
                        prev = self._books.get(p[0])
                        if prev is not None:
                            prev.inflight.discard(key)
                    tries = b.attempts.get(key, 0) + 1
                    if tries > c.max_want_attempts:
                        b.unservable.add(key)
                        continue
                    b.attempts[key] = tries
                    self._pending[key] = (s.neighbour, deadline)
                    b.inflight.add(key)
                    wants.setdefault(sender, RangeSet()).add(seq)
                    budget -= 1
        if wants:
            s.control += wire.encode_want({k: v.ranges() for k, v in wants.items()})
            s.retry_at = deadline

    def _release(self, neighbour: str, key: Key) -> None:
        self._books[neighbour].inflight.discard(key)
        if self._pending.get(key, ("", 0))[0] == neighbour:
            del self._pending[key]

    # -- telling: our HELLO, erasures, delivery ------------------------------------------------------

    def hello(self, room_id: str) -> bytes:
        """Our HELLO. Senders we hold entries of first (then tombstone-only ones), each with at most a fair
        share of the frame: a HELLO may under-claim, and junk can never crowd real senders out of it."""
        log = self._log
        have = log.have()
        if not have:
            return wire.encode_hello(room_id, have)
        share = max(1, (_HELLO_ROOM - _HELLO_SENDER * len(have)) // (_HELLO_RANGE * len(have)))
        ranked = sorted(have, key=lambda p: (not log.entries_in_range(p, 0, wire.MAX_INT, 1), p))
        chosen: dict[str, list[tuple[int, int]]] = {}
        room = _HELLO_ROOM
        for p in ranked:
            rs = have[p][:share]
            room -= _HELLO_SENDER + _HELLO_RANGE * len(rs)
            if room < 0:
                break
            chosen[p] = rs
        return wire.encode_hello(room_id, chosen)

    def show_erased(self, s: Session) -> None:
        """A neighbour's first HELLO: explicit deletions it may still hold, and both versions of void keys
        it claims (it may not have seen the equivocation; so it voids the key too)."""
        s.tombs.update((t.key, t) for t in self._log.tombstones() if t.proof and s.has(t.key))
        for key, first, second in self._log.void_pairs():
            if s.has(key):
                s.voids[key] = (first, second)

    def tell_tombstone(self, key: Key, *, claimed_only: bool, exclude: Session | None = None) -> None:
        """Queue the log's tombstone of ``key`` to every live neighbour (or only those that claim it)."""
        tomb = self._log.get_tombstone(key)
        assert tomb is not None
        for s in self._live():
            if s is not exclude and (not claimed_only or s.has(key)):
                s.tombs[key] = tomb

    def unacked(self, neighbour: str, me: str) -> int:
        """How many of our own held entries ``neighbour`` has not acknowledged in this session."""
        b = self._books.get(neighbour) or _Book()
        acked = b.acked.get(me) or RangeSet()
        held = self._log.seen_ranges(me)
        return sum(1 for a, z in held.difference(acked) for seq in range(a, z + 1) if (me, seq) in self._log)

    def hello_acks(self, s: Session, me: str) -> list[Event]:
        """Our own entries the neighbour's HELLO covers are delivered to it (whoever it got them from)."""
        theirs = s.remote_have.get(me)
        if not theirs:
            return []
        held = self._log.seen_ranges(me)
        acked = self.book(s.neighbour).acked.setdefault(me, RangeSet())
        events: list[Event] = []
        budget = self._config.max_serve_keys
        for a, b in theirs.ranges():
            for lo, hi in held.intersect(a, b):
                for x, y in RangeSet([(lo, hi)]).difference(acked):
                    for seq in range(x, y + 1):
                        if budget <= 0:
                            return events
                        budget -= 1
                        acked.add(seq)  # a tombstoned one too: never looked at again this session
                        if (me, seq) in self._log:
                            events.append(Acked(s.neighbour, me, seq))
        return events

    def on_ack(self, s: Session, frame: wire.Ack) -> list[Event]:
        events: list[Event] = []
        budget = self._config.max_serve_keys
        book = self.book(s.neighbour)
        for sender, ranges in frame.ranges.items():
            acked = book.acked.setdefault(sender, RangeSet())
            for a, b in ranges:
                for lo, hi in self._log.seen_ranges(sender).intersect(a, b):
                    for seq in range(lo, hi + 1):
                        if budget <= 0:
                            return events
                        budget -= 1
                        s.mark((sender, seq))
                        if seq not in acked and (sender, seq) in self._log:
                            acked.add(seq)
                            events.append(Acked(s.neighbour, sender, seq))
        return events

    # -- serving --------------------------------------------------------------------------------------

    def on_want(self, s: Session, frame: wire.Want, now: int) -> None:
        c = self._config
        p = self.book(s.neighbour)
        if now >= p.window_end:  # a new pacing window
            p.window_end = now + c.want_timeout_ms
            p.keys = p.bytes = 0
            p.served = {k: t for k, t in p.served.items() if t > now}
        again_at = now + c.want_timeout_ms // 2
        budget = c.max_serve_keys
        log = self._log
        for sender, ranges in frame.ranges.items():
            seen = log.seen_ranges(sender)
            for a, b in ranges:
                for lo, hi in seen.intersect(a, b):
                    for seq in range(lo, hi + 1):
                        if budget <= 0 or p.keys >= c.max_serve_keys_per_window:
                            return
                        budget -= 1
                        key = (sender, seq)
                        if key in s.envs or key in s.tombs or p.served.get(key, now) > now:
                            continue  # already being served
                        entry = log.get(key)
                        if entry is not None:
                            if entry.expires_at > now:
                                if p.bytes + len(entry.data) > c.max_serve_bytes_per_window:
                                    return
                                p.bytes += len(entry.data)
                                p.keys += 1
                                p.served[key] = again_at
                                s.envs[key] = entry.data
                                s.mark(key)
                            continue
                        tomb = log.get_tombstone(key)
                        if tomb is not None:
                            p.keys += 1
                            p.served[key] = again_at
                            s.tombs[key] = tomb

    def on_tombstones(self, s: Session, frame: wire.Tombstones, now: int) -> list[Event]:
        events: list[Event] = []
        skew = self._config.skew_ms
        log = self._log
        unknown = False
        for tomb in frame.items:
            key = tomb.key
            claimed = s.has(key)  # listed in its HELLO (or sent/served to us before)
            self.resolve(key)
            if log.get_tombstone(key) is not None:
                s.mark(key)
                continue
            if self._known is not None and not self._known(tomb.sender):
                unknown = True
                self._unservable(s, key, claimed)
                continue
            held = log.get(key)
            if held is None and tomb.sender == self._self_id:
                # one of our own keys we do not hold: a seq we have not used yet (or long erased), so
                # nothing to hide from us; taking it would make our next message a "duplicate" forever
                self._unservable(s, key, claimed)
                continue
            if tomb.proof:
                ok = self._authorize is not None and self._authorize(tomb, held, now)
                if not ok:
                    events.append(self._error(s.neighbour, "unauthorized-tombstone"))
            elif held is not None:
                ok = held.expires_at <= now + skew
            else:
                ok = tomb.until <= now + skew
            if ok and held is None and not log.seen(key):
                ok = self._take_foreign(s.neighbour, key)
            if not ok:
                self._unservable(s, key, claimed)
                continue
            s.mark(key)
            log.tombstone(key, tomb.until, tomb.proof)
            if held is not None:
                events.append(EntryDeleted(key) if tomb.proof else EntryExpired(key))
            self.tell_tombstone(key, claimed_only=True, exclude=s)
        if unknown:
            events.append(self._error(s.neighbour, "unknown-sender"))
        return events

    # -- helpers --------------------------------------------------------------------------------------

    def _unservable(self, s: Session, key: Key, claimed: bool) -> None:
        b = self.book(s.neighbour)
        if claimed and len(b.unservable) < 4 * self._config.max_want_keys:
            b.unservable.add(key)  # bounded: only the first 4*max_want_keys claimed keys are scanned

    def _take_foreign(self, neighbour: str, key: Key) -> bool:
        """Room for one more tombstone of a key we never held, from ``neighbour``? (bounded both ways)"""
        c = self._config
        if (
            len(self._foreign) >= c.max_foreign_tombstones
            or self._foreign_by.get(neighbour, 0) >= c.max_foreign_tombstones_per_neighbour
        ):
            if not self._foreign_stale:
                return False
            # forget the ones the log has pruned since: only when a bound is hit and the log has pruned
            # since the last sweep (a neighbour at its bound cannot make every tombstone cost a sweep)
            self._foreign_stale = False
            for k, n in [(k, n) for k, n in self._foreign.items() if self._log.get_tombstone(k) is None]:
                del self._foreign[k]
                left = self._foreign_by[n] - 1
                if left:
                    self._foreign_by[n] = left
                else:
                    del self._foreign_by[n]
            if (
                len(self._foreign) >= c.max_foreign_tombstones
                or self._foreign_by.get(neighbour, 0) >= c.max_foreign_tombstones_per_neighbour
            ):
                return False
        self._foreign[key] = neighbour
        self._foreign_by[neighbour] = self._foreign_by.get(neighbour, 0) + 1
        return True
