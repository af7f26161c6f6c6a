"""Sans-IO sync engine: keeps one room's log in sync with every neighbour (see docs/sync.md).

Rules (one session per neighbour; the adapter calls ``connect`` when a transport opens):
- ``connect`` queues HELLO(room id, have-ranges) first; the transport keeps order, so HELLO is the
  first frame a neighbour sees from us. Frames other than HELLO, PING, PONG and opaque ones received
  before the neighbour's HELLO are dropped with a ``no-hello`` protocol error.
- A HELLO naming another room: ``wrong-room`` error, the session is ignored from then on (nothing is
  sent to it, nothing received is processed); the adapter should close the transport.
- On every HELLO we WANT what the neighbour has (held or tombstoned) and we have not seen, skipping keys
  already wanted from someone else and not yet timed out. At most ``max_want_keys`` keys are in flight
  per neighbour, ever: a newer HELLO *replaces* what the older one claimed (wants for keys it no longer
  claims are released), timed-out wants are released before new ones are made. A key WANTed
  ``max_want_attempts`` times from one neighbour without result is not asked from it again until its
  next HELLO. HELLO is re-sent every ``resync_ms`` (anti-entropy).
- A WANT is served with ENVELOPES for held, unexpired entries and TOMBSTONES for tombstoned keys; never
  an expired or tombstoned entry. At most ``max_serve_keys`` keys are looked at per WANT frame. Serving
  is paced per neighbour: a key already queued, or served less than ``want_timeout_ms / 2`` ago, is not
  served again (so repeating a WANT amplifies nothing), and at most ``max_serve_keys_per_window`` keys /
  ``max_serve_bytes_per_window`` bytes are served per ``want_timeout_ms`` window; the rest is served
  when the neighbour asks again. Every output queue is keyed: a key is queued at most once per link.
- Every envelope received goes through ``validate``; a ``ProtocolError`` drops that envelope only and
  yields ``EnvelopeRefused`` (with the envelope, so the room may park it); the session survives. A new entry is added, ACKed to the neighbour that
  sent it and relayed to every other neighbour not known to have it (flood with dedupe = gossip).
- Delivery (``Acked``): an ACK frame, and also a HELLO: what a neighbour's HELLO says it holds of OUR
  own entries counts as an ACK of each of them, whoever it got them from (at most ``max_serve_keys``
  new keys per HELLO, once per session and key). A new entry received from someone other than its
  author is also ACKed to the author when the author is a ready neighbour.
- Tombstones: a proof-less tombstone (expiry) is accepted for a held entry iff its ``expires_at <= now
  + skew``, and for an unheld key iff ``until <= now + skew`` (a forged one can hide a key for at most
  the skew bound). A tombstone with a proof (explicit unsend) is accepted only if the injected
  ``authorize_tombstone`` says so; without it, ``unauthorized-tombstone``. Accepted tombstones are
  relayed to neighbours that may hold the key.
- Membership is the authority on senders: with ``known_sender`` injected, a tombstone naming a sender
  it does not know is refused (``unknown-sender``). A tombstone for a key we never held only saves a
  WANT, so at most ``max_foreign_tombstones_per_neighbour`` of them per neighbour and
  ``max_foreign_tombstones`` in total are kept; the rest are dropped. Nothing a neighbour sends for a
  key we never saw grows its session record (no ``mark`` and no ``unservable`` entry for keys it did
  not claim in its HELLO).
- Our HELLO lists senders we hold entries of first, and gives each sender at most a fair share of the
  frame, so tombstone-only or fragmented senders can never crowd real senders out of it.
- Equivocation: a duplicate key whose bytes differ from the held entry's is validated; if it is
  the sender's too, the key becomes void (``Log.void``: neither version is kept), ``EntryVoided`` is
  emitted and both envelopes are pushed to every neighbour, so each of them finds it too. On HELLO,
  kept pairs go to a neighbour that says it has such a key (it may still hold one version). Entries
  the injected ``eager`` hook names (the room: everything but chat, i.e. room state) are relayed at
  once even when received from their author, so a version sent to one member meets the other.
- An entry stamped more than ``max_lamport_jump`` ahead of our Lamport clock is refused
  (``lamport-jump``), so one member cannot exhaust everyone's clock. Local entries take their stamp
  from ``engine.clock.tick()``.
- PING every ``heartbeat_ms``; any frame counts as liveness; silence for ``dead_after_ms`` ->
  ``NeighbourTimedOut`` and the session is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from peer.core import wire
from peer.core.clock import LamportClock
from peer.core.errors import ProtocolError
from peer.core.log import Key, Log, LogEntry, RangeSet, Tombstone
from peer.core.sync_events import (
    Acked,
    EntryAdded,
    EntryDeleted,
    EntryExpired,
    EntryVoided,
    EnvelopeRefused,
    Event,
    NeighbourReady,
    NeighbourTimedOut,
    OpaqueFrame,
    ProtocolErrorEvent,
    SyncConfig,
    _Session,
)

__all__ = [
    "Acked",
    "AuthorizeTombstone",
    "EntryAdded",
    "EntryDeleted",
    "EntryExpired",
    "EntryVoided",
    "EnvelopeRefused",
    "Event",
    "NeighbourReady",
    "NeighbourTimedOut",
    "OpaqueFrame",
    "PeekKey",
    "ProtocolErrorEvent",
    "SyncConfig",
    "SyncEngine",
    "Validate",
]

Validate = Callable[[bytes], LogEntry]
#: ``data -> (sender, seq)`` without verifying anything: lets duplicates skip the (costly) ``validate``
PeekKey = Callable[[bytes], Key]
#: ``(tombstone, held entry or None, now) -> accept?`` for tombstones that carry a proof.
AuthorizeTombstone = Callable[[Tombstone, LogEntry | None, int], bool]
#: ``sender -> is it (or was it) a member?``: the membership part's one rule
KnownSender = Callable[[str], bool]
#: what one (sender, ranges) block of a HELLO costs, and what the frame holds (see peer.core.wire)
_HELLO_ROOM = wire.MAX_FRAME - 64
_HELLO_SENDER = 18
_HELLO_RANGE = 16


class SyncEngine:
    """Per-room sync state machine over any number of neighbours. Never does I/O, never reads a clock."""

    def __init__(
        self,
        self_id: str,
        room_id: str,
        validate: Validate,
        log: Log | None = None,
        config: SyncConfig | None = None,
        authorize_tombstone: AuthorizeTombstone | None = None,
        peek_key: PeekKey | None = None,
        known_sender: KnownSender | None = None,
        eager: Callable[[LogEntry], bool] | None = None,
    ) -> None:
        wire.id_to_bytes(self_id)
        wire.id_to_bytes(room_id)
        self.self_id = self_id
        self.room_id = room_id
        self.config = config or SyncConfig()
        self.log = log if log is not None else Log(self.config.skew_ms)
        self.clock = LamportClock()
        self._validate = validate
        self._authorize = authorize_tombstone
        self._peek = peek_key
        self._known = known_sender
        #: tombstones accepted for keys we never held -> the neighbour that sent them (bounded)
        self._foreign: dict[Key, str] = {}
        self._foreign_by: dict[str, int] = {}
        self._foreign_stale = False  # the log pruned tombstones since the last sweep of ``_foreign``
        self._eager = eager  # entries always relayed at once, even when received from their author
        self._announce_at: int | None = None
        self._sessions: dict[str, _Session] = {}
        self._pending: dict[Key, tuple[str, int]] = {}
        self.protocol_errors = 0

    # -- sessions -------------------------------------------------------------------------------------

    @property
    def neighbours(self) -> list[str]:
        """Neighbours with a live (not rejected) session."""
        return [n for n, s in self._sessions.items() if not s.rejected]

    def caught_up(self) -> bool:
        """True when every live session has exchanged HELLO and nothing we asked for is outstanding."""
        return not self._pending and all(s.ready for s in self._sessions.values() if not s.rejected)

    def is_ready(self, neighbour: str) -> bool:
        s = self._sessions.get(neighbour)
        return s is not None and s.ready and not s.rejected

    def own_unacked(self, neighbour: str) -> int:
        """How many of our own held entries ``neighbour`` has not acknowledged (by ACK or its HELLO) in
        this session; 0 for a neighbour without a ready session. A local query: nothing is sent."""
        s = self._sessions.get(neighbour)
        if s is None or not s.ready or s.rejected:
            return 0
        me = self.self_id
        held = self.log.seen_ranges(me)
        acked = s.acked.get(me) or RangeSet()
        return sum(1 for a, b in held.difference(acked) for seq in range(a, b + 1) if (me, seq) in self.log)

    def connect(self, neighbour: str, now: int) -> None:
        """Start (or restart) a session: queue HELLO. Any previous session with that neighbour is dropped."""
        if neighbour == self.self_id:
            raise ValueError("cannot connect to self")
        self._drop(neighbour)
        c = self.config
        s = _Session(neighbour, last_heard=now, next_ping=now + c.heartbeat_ms, next_hello=now + c.resync_ms)
        s.control.append(self._hello())
        self._sessions[neighbour] = s

    def disconnect(self, neighbour: str, now: int) -> None:
        """Forget a neighbour (transport closed); missing keys wanted from it are asked of others."""
        if self._drop(neighbour):
            self._rerequest(now)

    def _drop(self, neighbour: str) -> bool:
        s = self._sessions.pop(neighbour, None)
        if s is None:
            return False
        self._drop_pending(s)
        return True

    def _rerequest(self, now: int) -> None:
        for s in self._sessions.values():
            if s.ready and not s.rejected:
                self._request(s, now)

    # -- hooks for the room (so nothing reaches into the log or the clock) ---------------------------

    @property
    def skew_ms(self) -> int:
        return self.log.skew_ms

    @property
    def lamport(self) -> int:
        return self.clock.value

    def tick(self) -> int:
        """The Lamport stamp for a local op or envelope."""
        return self.clock.tick()

    def observe(self, lamport: int) -> None:
        self.clock.observe(lamport)

    def entry(self, key: Key) -> LogEntry | None:
        return self.log.get(key)

    def tombstone_of(self, key: Key) -> Tombstone | None:
        return self.log.get_tombstone(key)

    def restore(self, entry: LogEntry, now: int) -> bool:
        """Put back a stored entry at restart (no relay, no event); False if expired or tombstoned."""
        if not self.log.add(entry, now):
            return False
        self.clock.observe(entry.lamport)
        return True

    def restore_tombstone(self, key: Key, until: int, proof: bytes = b"") -> None:
        """Put back a stored tombstone (or one re-derived from a stored unsend) at restart."""
        self.log.tombstone(key, until, proof)

    def offer(self, neighbour: str, data: bytes, now: int) -> list[Event]:
        """Feed one envelope back as if ``neighbour`` had just sent it (e.g. unparked); dropped if that
        session is gone."""
        s = self._sessions.get(neighbour)
        if s is None or s.rejected or not s.ready:
            return []
        return self._on_envelopes(s, [data], now)

    # -- local API ------------------------------------------------------------------------------------

    def publish(self, data: bytes, now: int, entry: LogEntry | None = None) -> LogEntry:
        """Add a locally created envelope and push it to every neighbour.

        ``entry`` may be given by a caller that built (and so trusts) the envelope; otherwise it is
        validated, and ``validate`` errors propagate (``ProtocolError``). A duplicate or expired entry is
        a ValueError.
        """
        if entry is None:
            entry = self._validate(data)
        if not self.log.add(entry, now):
            raise ValueError("duplicate, tombstoned or expired entry")
        self.clock.observe(entry.lamport)
        self._relay(entry, exclude=None)
        return entry

    def delete(self, key: Key, until: int, proof: bytes, now: int) -> bool:
        """Explicit local deletion ("unsend"): tombstone ``key`` and tell every neighbour.

        ``proof`` is what remote ``authorize_tombstone`` hooks will check. False if already tombstoned.
        """
        if not self.log.tombstone(key, until, proof):
            return False
        tomb = self.log.get_tombstone(key)
        assert tomb is not None
        for s in self._live():
            s.tombs[key] = tomb
        return True

    def send_opaque(self, neighbour: str, ftype: wire.FrameType, body: bytes) -> None:
        """Queue a HANDSHAKE / PAIRWISE / APP frame for a neighbour (after its HELLO, in order)."""
        s = self._sessions.get(neighbour)
        if s is None or s.rejected:
            raise KeyError(neighbour)
        s.control.append(wire.encode_opaque(ftype, body))

    # -- outbox and timers ----------------------------------------------------------------------------

    def data_to_send(self) -> list[tuple[str, bytes]]:
        """Drain the outbox. Per neighbour: control frames, then envelope batches, tombstones, acks."""
        out: list[tuple[str, bytes]] = []
        for n, s in self._sessions.items():
            if s.rejected or not (s.control or s.envs or s.voids or s.tombs or s.acks):
                continue
            frames = s.control
            if s.envs or s.voids:
                pairs = [data for pair in s.voids.values() for data in pair]
                frames += wire.encode_envelopes(list(s.envs.values()) + pairs)
            if s.tombs:
                frames += wire.encode_tombstones(list(s.tombs.values()))
            if s.acks:
                frames += wire.encode_ack({k: v.ranges() for k, v in s.acks.items()})
            out.extend((n, f) for f in frames)
            s.control, s.envs, s.voids, s.tombs, s.acks = [], {}, {}, {}, {}
        return out

    def next_timer(self) -> int | None:
        times: list[int] = []
        d = self.log.next_deadline()
        if d is not None:
            times.append(d)
        if self._announce_at is not None:
            times.append(self._announce_at)
        dead = self.config.dead_after_ms
        for s in self._sessions.values():
            if s.rejected:
                continue
            times += (s.next_ping, s.last_heard + dead, s.next_hello)
            if s.retry_at is not None:
                times.append(s.retry_at)
        return min(times) if times else None

    def handle_timer(self, now: int) -> list[Event]:
        events: list[Event] = []
        self._foreign_stale = True  # expire() may prune tombstones
        for key in self.log.expire(now):
            events.append(EntryExpired(key))
            tomb = self.log.get_tombstone(key)
            if tomb is None:  # the clock jumped past expires_at + skew: pruned in the same call
                continue
            for s in self._live():
                if s.has(key):
                    s.tombs[key] = tomb
        c = self.config
        if self._announce_at is not None and now >= self._announce_at:
            self._announce_at = None
            hello = self._hello()
            for s in self._live():
                if s.ready:
                    s.control.append(hello)
                    s.next_hello = now + c.resync_ms
        dropped = False
        for s in list(self._sessions.values()):
            if s.rejected:
                continue
            if now >= s.last_heard + c.dead_after_ms:
                events.append(NeighbourTimedOut(s.neighbour))
                self._drop(s.neighbour)
                dropped = True
                continue
            if now >= s.next_ping:
                s.ping_nonce += 1
                s.control.append(wire.encode_ping(s.ping_nonce))
                s.next_ping = now + c.heartbeat_ms
            if now >= s.next_hello:
                s.control.append(self._hello())
                s.next_hello = now + c.resync_ms
            if s.retry_at is not None and now >= s.retry_at:
                s.retry_at = None
                if s.ready:
                    self._request(s, now)
        if dropped:
            self._rerequest(now)
        return events

    # -- receiving ------------------------------------------------------------------------------------

    def receive(self, neighbour: str, data: bytes, now: int) -> list[Event]:
        s = self._sessions.get(neighbour)
        if s is None:
            return [self._error(neighbour, "no-session")]
        if s.rejected:
            return []
        s.last_heard = now
        try:
            frame = wire.decode_frame(data)
        except ProtocolError as e:
            return [self._error(neighbour, e.code)]
        if isinstance(frame, wire.Hello):
            return self._on_hello(s, frame, now)
        if isinstance(frame, wire.Ping):
            s.control.append(wire.encode_pong(frame.nonce))
            return []
        if isinstance(frame, wire.Pong):
            return []
        if isinstance(frame, wire.Opaque):
            return [OpaqueFrame(neighbour, frame.type, frame.body)]
        if not s.ready:
            return [self._error(neighbour, "no-hello")]
        if isinstance(frame, wire.Envelopes):
            return self._on_envelopes(s, frame.items, now)
        if isinstance(frame, wire.Want):
            self._on_want(s, frame, now)
            return []
        if isinstance(frame, wire.Ack):
            return self._on_ack(s, frame)
        return self._on_tombstones(s, frame, now)

    def _on_hello(self, s: _Session, frame: wire.Hello, now: int) -> list[Event]:
        if frame.room_id != self.room_id:
            s.rejected = True
            self._drop_pending(s)
            return [self._error(s.neighbour, "wrong-room")]
        events: list[Event] = []
        s.remote_have = {sender: RangeSet(rs) for sender, rs in frame.have.items()}
        s.attempts.clear()
        s.unservable.clear()
        # the newer HELLO replaces the older one: wants for keys it no longer claims are released
        for key in [k for k in s.inflight if not s.has(k)]:
            self._release(s, key)
        if not s.ready:
            s.ready = True
            events.append(NeighbourReady(s.neighbour))
            # explicit deletions the neighbour may still hold
            s.tombs.update((t.key, t) for t in self.log.tombstones() if t.proof and s.has(t.key))
            # equivocations it may not have seen: both versions, so it voids the key too
            for key, first, second in self.log.void_pairs():
                if s.has(key):
                    s.voids[key] = (first, second)
        events += self._hello_acks(s)
        self._request(s, now)
        return events

    def _hello_acks(self, s: _Session) -> list[Event]:
        """Our own entries the neighbour's HELLO covers are delivered to it (whoever it got them from)."""
        theirs = s.remote_have.get(self.self_id)
        if not theirs:
            return []
        me = self.self_id
        held = self.log.seen_ranges(me)
        acked = s.acked.setdefault(me, RangeSet())
        events: list[Event] = []
        budget = self.config.max_serve_keys
        for a, b in theirs.ranges():
            for lo, hi in held.intersect(a, b):
                for x, y in RangeSet([(lo, hi)]).difference(acked):
                    for seq in range(x, y + 1):
                        if budget <= 0:
                            return events
                        budget -= 1
                        acked.add(seq)  # a tombstoned one too: never looked at again this session
                        if (me, seq) in self.log:
                            events.append(Acked(s.neighbour, me, seq))
        return events

    def _on_envelopes(self, s: _Session, items: Sequence[bytes], now: int) -> list[Event]:
        events: list[Event] = []
        refill: list[_Session] = []
        for item in items:
            if self._peek is not None:
                try:
                    seen_key = self._peek(item)
                except ProtocolError as e:
                    events.append(self._error(s.neighbour, e.code))
                    continue
                held = self.log.get(seen_key)
                if held is not None and held.data != bytes(item):  # same key, other bytes
                    events += self._equivocation(s, held, item, now)
                    continue
                if self.log.seen(seen_key):  # a duplicate: no need to verify it again
                    s.mark(seen_key)
                    self._resolve(seen_key)
                    if seen_key in self.log:
                        s.acks.setdefault(seen_key[0], RangeSet()).add(seen_key[1])
                    elif (tomb := self.log.get_tombstone(seen_key)) is not None:
                        s.tombs[seen_key] = tomb  # a stale copy: answer with the tombstone
                    continue
            try:
                entry = self._validate(item)
            except ProtocolError as e:
                self.protocol_errors += 1
                events.append(EnvelopeRefused(s.neighbour, e.code, item))
                continue
            if entry.lamport > self.clock.value + self.config.max_lamport_jump:
                events.append(self._error(s.neighbour, "lamport-jump"))
                continue
            key = entry.key
            held = self.log.get(key)
            if held is not None and held.data != entry.data:
                events += self._equivocation(s, held, item, now, entry)
                continue
            drained = self._resolve(key)
            if drained is not None:
                refill.append(drained)
            s.mark(key)
            if self.log.add(entry, now):
                self.clock.observe(entry.lamport)
                events.append(EntryAdded(entry))
                lazy = self._eager is None or not self._eager(entry)
                if lazy and entry.sender == s.neighbour and self.config.announce_delay_ms >= 0:
                    if self._announce_at is None:
                        self._announce_at = now + self.config.announce_delay_ms
                else:
                    self._relay(entry, exclude=s.neighbour)
                    author = self._sessions.get(entry.sender)
                    if author is not None and author.ready and not author.rejected:
                        # it reached us through someone else: tell its author it is delivered here
                        author.acks.setdefault(entry.sender, RangeSet()).add(entry.seq)
            if key in self.log:
                s.acks.setdefault(key[0], RangeSet()).add(key[1])
            else:
                tomb = self.log.get_tombstone(key)
                if tomb is not None:
                    s.tombs[key] = tomb
        for r in refill:  # a finished pull: ask for the next chunk right away
            if r.ready and not r.inflight:
                self._request(r, now)
        return events

    def _equivocation(
        self, s: _Session, held: LogEntry, item: bytes, now: int, other: LogEntry | None = None
    ) -> list[Event]:
        """``item`` claims ``held``'s key with other bytes: void the key if the sender signed both."""
        s.mark(held.key)
        self._resolve(held.key)
        if other is None:
            try:
                other = self._validate(item)
            except ProtocolError as e:  # not the sender's: junk under a known key, not equivocation
                self.protocol_errors += 1
                return [EnvelopeRefused(s.neighbour, e.code, item)]
        until = min(max(held.expires_at, other.expires_at) + self.log.skew_ms, wire.MAX_INT)
        if not self.log.void(held.key, held.data, other.data, until):
            return []
        for sess in self._live():
            sess.voids[held.key] = (held.data, other.data)
            sess.mark(held.key)
        return [EntryVoided(held.key, s.neighbour)]

    def _on_want(self, s: _Session, frame: wire.Want, now: int) -> None:
        c = self.config
        if now >= s.serve_window_end:  # a new pacing window
            s.serve_window_end = now + c.want_timeout_ms
            s.serve_keys = s.serve_bytes = 0
            s.served = {k: t for k, t in s.served.items() if t > now}
        again_at = now + c.want_timeout_ms // 2
        budget = c.max_serve_keys
        for sender, ranges in frame.ranges.items():
            seen = self.log.seen_ranges(sender)
            for a, b in ranges:
                for lo, hi in seen.intersect(a, b):
                    for seq in range(lo, hi + 1):
                        if budget <= 0 or s.serve_keys >= c.max_serve_keys_per_window:
                            return
                        budget -= 1
                        key = (sender, seq)
                        if key in s.envs or key in s.tombs or s.served.get(key, now) > now:
                            continue  # already being served
                        entry = self.log.get(key)
                        if entry is not None:
                            if entry.expires_at > now:
                                if s.serve_bytes + len(entry.data) > c.max_serve_bytes_per_window:
                                    return
                                s.serve_bytes += len(entry.data)
                                s.serve_keys += 1
                                s.served[key] = again_at
                                s.envs[key] = entry.data
                                s.mark(key)
                            continue
                        tomb = self.log.get_tombstone(key)
                        if tomb is not None:
                            s.serve_keys += 1
                            s.served[key] = again_at
                            s.tombs[key] = tomb

    def _on_ack(self, s: _Session, frame: wire.Ack) -> list[Event]:
        events: list[Event] = []
        budget = self.config.max_serve_keys
        for sender, ranges in frame.ranges.items():
            acked = s.acked.setdefault(sender, RangeSet())
            for a, b in ranges:
                for lo, hi in self.log.seen_ranges(sender).intersect(a, b):
                    for seq in range(lo, hi + 1):
                        if budget <= 0:
                            return events
                        budget -= 1
                        s.mark((sender, seq))
                        if seq not in acked and (sender, seq) in self.log:
                            acked.add(seq)
                            events.append(Acked(s.neighbour, sender, seq))
        return events

    def _on_tombstones(self, s: _Session, frame: wire.Tombstones, now: int) -> list[Event]:
        events: list[Event] = []
        skew = self.config.skew_ms
        unknown = False
        for tomb in frame.items:
            key = tomb.key
            claimed = s.has(key)  # listed in its HELLO (or sent/served to us before)
            self._resolve(key)
            if self.log.get_tombstone(key) is not None:
                s.mark(key)
                continue
            if self._known is not None and not self._known(tomb.sender):
                unknown = True
                if claimed and len(s.unservable) < 4 * self.config.max_want_keys:
                    s.unservable.add(key)  # bounded: only the first 4*max_want_keys claimed keys are scanned
                continue
            held = self.log.get(key)
            if tomb.proof:
                ok = self._authorize is not None and self._authorize(tomb, held, now)
                if not ok:
                    events.append(self._error(s.neighbour, "unauthorized-tombstone"))
            elif held is not None:
                ok = held.expires_at <= now + skew
            else:
                ok = tomb.until <= now + skew
            if ok and held is None and not self.log.seen(key):
                ok = self._take_foreign(s.neighbour, key)
            if not ok:
                if claimed and len(s.unservable) < 4 * self.config.max_want_keys:
                    s.unservable.add(key)  # bounded: only the first 4*max_want_keys claimed keys are scanned
                continue
            s.mark(key)
            self.log.tombstone(key, tomb.until, tomb.proof)
            if held is not None:
                events.append(EntryDeleted(key) if tomb.proof else EntryExpired(key))
            stored = self.log.get_tombstone(key)
            assert stored is not None
            for other in self._live():
                if other is not s and other.has(key):
                    other.tombs[key] = stored
        if unknown:
            events.append(self._error(s.neighbour, "unknown-sender"))
        return events

    def _take_foreign(self, neighbour: str, key: Key) -> bool:
        """Room for one more tombstone of a key we never held, from ``neighbour``? (bounded both ways)"""
        c = self.config
        if (
            len(self._foreign) >= c.max_foreign_tombstones
            or self._foreign_by.get(neighbour, 0) >= c.max_foreign_tombstones_per_neighbour
        ):
            if not self._foreign_stale:
                return False
            # forget the ones the log has pruned since: only when a bound is hit and the log has pruned
            # since the last sweep (a neighbour at its bound cannot make every tombstone cost a sweep)
            self._foreign_stale = False
            for k, n in [(k, n) for k, n in self._foreign.items() if self.log.get_tombstone(k) is None]:
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

    def budget_counts(self, neighbour: str) -> dict[str, int]:
        """What ``neighbour`` currently makes us hold, per structure (for tests and monitoring)."""
        s = self._sessions.get(neighbour)
        if s is None:
            return {"foreign_tombstones": self._foreign_by.get(neighbour, 0)}
        return {
            "inflight": len(s.inflight),
            "pending": sum(1 for n, _ in self._pending.values() if n == neighbour),
            "attempts": len(s.attempts),
            "unservable": len(s.unservable),
            "remote_have_ranges": sum(len(rs.ranges()) for rs in s.remote_have.values()),
            "acked_ranges": sum(len(rs.ranges()) for rs in s.acked.values()),
            "control": len(s.control),
            "envs": len(s.envs),
            "voids": len(s.voids),
            "tombs": len(s.tombs),
            "served": len(s.served),
            "foreign_tombstones": self._foreign_by.get(neighbour, 0),
        }

    # -- helpers --------------------------------------------------------------------------------------

    def _live(self) -> list[_Session]:
        return [s for s in self._sessions.values() if not s.rejected]

    def _hello(self) -> bytes:
        """Senders we hold entries of first (then tombstone-only ones), each with at most a fair share of
        the frame: a HELLO may under-claim, and junk can never crowd real senders out of it."""
        have = self.log.have()
        if not have:
            return wire.encode_hello(self.room_id, have)
        share = max(1, (_HELLO_ROOM - _HELLO_SENDER * len(have)) // (_HELLO_RANGE * len(have)))
        ranked = sorted(have, key=lambda p: (not self.log.entries_in_range(p, 0, wire.MAX_INT, 1), p))
        chosen: dict[str, list[tuple[int, int]]] = {}
        room = _HELLO_ROOM
        for p in ranked:
            rs = have[p][:share]
            room -= _HELLO_SENDER + _HELLO_RANGE * len(rs)
            if room < 0:
                break
            chosen[p] = rs
        return wire.encode_hello(self.room_id, chosen)

    def _error(self, neighbour: str, code: str) -> ProtocolErrorEvent:
        self.protocol_errors += 1
        return ProtocolErrorEvent(neighbour, code)

    def _release(self, s: _Session, key: Key) -> None:
        s.inflight.discard(key)
        if self._pending.get(key, ("", 0))[0] == s.neighbour:
            del self._pending[key]

    def _drop_pending(self, s: _Session) -> None:
        for key in s.inflight:
            if self._pending.get(key, ("", 0))[0] == s.neighbour:
                del self._pending[key]
        s.inflight.clear()

    def _resolve(self, key: Key) -> _Session | None:
        """A wanted key arrived or was settled; returns the session whose in-flight set became empty."""
        p = self._pending.pop(key, None)
        if p is None:
            return None
        owner = self._sessions.get(p[0])
        if owner is None:
            return None
        owner.inflight.discard(key)
        return owner if not owner.inflight else None

    def _relay(self, entry: LogEntry, exclude: str | None) -> None:
        for s in self._live():
            if s.neighbour != exclude and not s.has(entry.key):
                s.envs[entry.key] = entry.data
                s.mark(entry.key)

    def _request(self, s: _Session, now: int) -> None:
        """WANT from ``s`` what it has and we have not seen (bounded; skipping keys pending elsewhere)."""
        c = self.config
        for key in [k for k in s.inflight if self._pending.get(k, ("", 0))[1] <= now]:
            self._release(s, key)  # timed out: may be asked again below (one more attempt)
        budget = c.max_want_keys - len(s.inflight)
        scan = 4 * c.max_want_keys
        wants: dict[str, RangeSet] = {}
        deadline = now + c.want_timeout_ms
        for sender, theirs in s.remote_have.items():
            for a, b in theirs.difference(self.log.seen_ranges(sender)):
                for seq in range(a, b + 1):
                    if budget <= 0 or scan <= 0:
                        break
                    scan -= 1
                    key = (sender, seq)
                    if key in s.unservable:
                        continue
                    p = self._pending.get(key)
                    if p is not None:
                        if p[1] > now:
                            continue
                        prev = self._sessions.get(p[0])
                        if prev is not None:
                            prev.inflight.discard(key)
                    tries = s.attempts.get(key, 0) + 1
                    if tries > c.max_want_attempts:
                        s.unservable.add(key)
                        continue
                    s.attempts[key] = tries
                    self._pending[key] = (s.neighbour, deadline)
                    s.inflight.add(key)
                    wants.setdefault(sender, RangeSet()).add(seq)
                    budget -= 1
        if wants:
            s.control += wire.encode_want({k: v.ranges() for k, v in wants.items()})
            s.retry_at = deadline
