"""Sans-IO sync engine: keeps one room's log in sync with every neighbour (PROTOCOL.md, "Sync").

Rules (one session per neighbour; the adapter calls ``connect`` when a transport opens):
- ``connect`` queues HELLO(room id, have-ranges) first; the transport keeps order, so HELLO is the
  first frame a neighbour sees from us. HELLO is re-sent every ``resync_ms`` (anti-entropy). Frames
  other than HELLO, PING, PONG and opaque ones received before the neighbour's HELLO are dropped with
  a ``no-hello`` protocol error.
- A HELLO naming another room: ``wrong-room`` error, the session is ignored from then on (nothing is
  sent to it, nothing received is processed); the adapter should close the transport.
- The serving part (:mod:`peer.core.sync_serve`, whose header states its rules) builds our HELLO,
  makes the WANTs after each HELLO, answers WANT, ACK and TOMBSTONES frames and keeps every
  per-neighbour budget (wants in flight, serve pacing, foreign tombstones, acknowledged ranges). Every
  output queue is keyed: a key is queued at most once per link.
- The equivocation check (:mod:`peer.core.sync_check`): after each HELLO we send DIGESTS of the senders
  whose high-water marks we share; DIGESTS, HASH_WANT and HASHES frames go to it, and a differing
  envelope it finds is WANTed, so it reaches the equivocation rule below even when nobody relays.
- Every envelope received goes through ``validate``; a ``ProtocolError`` drops that envelope only and
  yields ``EnvelopeRefused`` (with the envelope, so the room may park it); the session survives. A new
  entry is added, ACKed to the neighbour that sent it and relayed to every other neighbour not known to have it (flood with dedupe = gossip).
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
from peer.core.sync_check import Check
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
    Session,
    SyncConfig,
)
from peer.core.sync_serve import AuthorizeTombstone, KnownSender, Serve

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
        self._peek = peek_key
        self._eager = eager  # entries always relayed at once, even when received from their author
        self._announce_at: int | None = None
        self._sessions: dict[str, Session] = {}
        self.protocol_errors = 0
        self._serve = Serve(
            self.config,
            self.log,
            live=self._live,
            error=self._error,
            authorize_tombstone=authorize_tombstone,
            known_sender=known_sender,
            self_id=self_id,
        )
        self._check = Check(self.config, self.log)

    # -- sessions -------------------------------------------------------------------------------------

    @property
    def neighbours(self) -> list[str]:
        """Neighbours with a live (not rejected) session."""
        return [n for n, s in self._sessions.items() if not s.rejected]

    def caught_up(self) -> bool:
        """True when every live session has exchanged HELLO and nothing we asked for is outstanding."""
        return not self._serve.pending() and all(s.ready for s in self._sessions.values() if not s.rejected)

    def is_ready(self, neighbour: str) -> bool:
        s = self._sessions.get(neighbour)
        return s is not None and s.ready and not s.rejected

    def own_unacked(self, neighbour: str) -> int:
        """How many of our own held entries ``neighbour`` has not acknowledged (by ACK or its HELLO) in
        this session; 0 for a neighbour without a ready session. A local query: nothing is sent."""
        s = self._sessions.get(neighbour)
        if s is None or not s.ready or s.rejected:
            return 0
        return self._serve.unacked(neighbour, self.self_id)

    def connect(self, neighbour: str, now: int) -> None:
        """Start (or restart) a session: queue HELLO. Any previous session with that neighbour is dropped."""
        if neighbour == self.self_id:
            raise ValueError("cannot connect to self")
        self._drop(neighbour)
        c = self.config
        s = Session(neighbour, last_heard=now, next_ping=now + c.heartbeat_ms, next_hello=now + c.resync_ms)
        s.control.append(self.hello())
        self._sessions[neighbour] = s

    def disconnect(self, neighbour: str, now: int) -> None:
        """Forget a neighbour (transport closed); missing keys wanted from it are asked of others."""
        if self._drop(neighbour):
            self._rerequest(now)

    def _drop(self, neighbour: str) -> bool:
        s = self._sessions.pop(neighbour, None)
        if s is None:
            return False
        self._serve.end(neighbour)
        self._check.end(neighbour)
        return True

    def _rerequest(self, now: int) -> None:
        for s in self._sessions.values():
            if s.ready and not s.rejected:
                self._serve.request(s, now)

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
        self._serve.tell_tombstone(key, claimed_only=False)
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
        self._serve.log_pruned()  # expire() may prune tombstones
        for key in self.log.expire(now):
            events.append(EntryExpired(key))
            if self.log.get_tombstone(key) is not None:  # None: the clock jumped past expires_at + skew
                self._serve.tell_tombstone(key, claimed_only=True)  # and it was pruned in the same call
        c = self.config
        if self._announce_at is not None and now >= self._announce_at:
            self._announce_at = None
            hello = self.hello()
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
                s.control.append(self.hello())
                s.next_hello = now + c.resync_ms
            if s.retry_at is not None and now >= s.retry_at:
                s.retry_at = None
                if s.ready:
                    self._serve.request(s, now)
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
            self._serve.on_want(s, frame, now)
            return []
        if isinstance(frame, wire.Ack):
            return self._serve.on_ack(s, frame)
        if isinstance(frame, wire.Digests):
            self._check.on_digests(s, frame, now)
        elif isinstance(frame, wire.HashWant):
            self._check.on_hash_want(s, frame, now)
        elif isinstance(frame, wire.Hashes):
            self._check.on_hashes(s, frame, now)
        else:
            return self._serve.on_tombstones(s, frame, now)
        return []

    def _on_hello(self, s: Session, frame: wire.Hello, now: int) -> list[Event]:
        if frame.room_id != self.room_id:
            s.rejected = True
            self._serve.release_all(s.neighbour)
            return [self._error(s.neighbour, "wrong-room")]
        events: list[Event] = []
        s.remote_have = {sender: RangeSet(rs) for sender, rs in frame.have.items()}
        self._serve.on_hello(s)  # the newer HELLO replaces the older one
        if not s.ready:
            s.ready = True
            events.append(NeighbourReady(s.neighbour))
            self._serve.show_erased(s)
        events += self._serve.hello_acks(s, self.self_id)
        self._serve.request(s, now)
        self._check.summary(s, now)
        return events

    def _on_envelopes(self, s: Session, items: Sequence[bytes], now: int) -> list[Event]:
        events: list[Event] = []
        refill: list[str] = []
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
                    self._serve.resolve(seen_key)
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
            drained = self._serve.resolve(key)
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
        for n in refill:  # a finished pull: ask for the next chunk right away
            r = self._sessions.get(n)
            if r is not None and r.ready and self._serve.idle(n):
                self._serve.request(r, now)
        return events

    def _equivocation(
        self, s: Session, held: LogEntry, item: bytes, now: int, other: LogEntry | None = None
    ) -> list[Event]:
        """``item`` claims ``held``'s key with other bytes: void the key if the sender signed both."""
        s.mark(held.key)
        self._serve.resolve(held.key)
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

    def budget_counts(self, neighbour: str) -> dict[str, int]:
        """What ``neighbour`` currently makes us hold, per structure (for tests and monitoring)."""
        served = self._serve.counts(neighbour)
        s = self._sessions.get(neighbour)
        if s is None:
            return {"foreign_tombstones": served["foreign_tombstones"]}
        return {
            **served,
            "remote_have_ranges": sum(len(rs.ranges()) for rs in s.remote_have.values()),
            "control": len(s.control),
            "envs": len(s.envs),
            "voids": len(s.voids),
            "tombs": len(s.tombs),
            **self._check.counts(neighbour),
        }

    def hello(self) -> bytes:
        """Our HELLO as it would be sent now (a local query: nothing is queued)."""
        return self._serve.hello(self.room_id)

    def pending_wants(self) -> int:
        """How many keys are wanted from some neighbour and not settled yet (all neighbours together)."""
        return self._serve.pending()

    # -- helpers --------------------------------------------------------------------------------------

    def _live(self) -> list[Session]:
        return [s for s in self._sessions.values() if not s.rejected]

    def _error(self, neighbour: str, code: str) -> ProtocolErrorEvent:
        self.protocol_errors += 1
        return ProtocolErrorEvent(neighbour, code)

    def _relay(self, entry: LogEntry, exclude: str | None) -> None:
        for s in self._live():
            if s.neighbour != exclude and not s.has(entry.key):
                s.envs[entry.key] = entry.data
                s.mark(entry.key)
