// Sans-IO sync engine: keeps one room's log in sync with every neighbour. Mirrors peer/core/sync.py
// (PROTOCOL.md "Sync"). The only difference: `validate` is async (WebCrypto), so receive() is async;
// callers must not interleave calls (the room serialises them).
//
// Rules (one session per neighbour):
// - connect() queues HELLO first. ENVELOPES/WANT/ACK/TOMBSTONES before the neighbour's HELLO: no-hello.
// - HELLO for another room: wrong-room, the session is ignored from then on.
// - On every HELLO we WANT what the neighbour has and we have not seen (skipping keys pending elsewhere);
//   at most maxWantKeys in flight per neighbour, ever: a newer HELLO replaces the older one (wants for
//   keys it no longer claims are released), timed-out wants are released first. HELLO is re-sent every
//   resyncMs (anti-entropy).
// - WANT is served with ENVELOPES for held unexpired entries and TOMBSTONES for tombstoned keys, paced per
//   neighbour: a key queued or served less than wantTimeoutMs/2 ago is not served again, and at most
//   maxServeKeysPerWindow keys / maxServeBytesPerWindow bytes per wantTimeoutMs window. Output queues are
//   keyed: a key is queued once per link.
// - A duplicate (peekKey says we have seen its key) is acked (or answered with its tombstone) without
//   validation. Every other envelope goes through validate; a ProtocolError drops that envelope only
//   and yields 'envelope-refused' (with the envelope, so the room may park it). A new entry is added,
//   ACKed to the neighbour and relayed to every other neighbour not known to have it, except an entry
//   received from its author: the others got it from the author too, so a HELLO goes to them
//   announceDelayMs later instead (lazy relay).
// - Delivery ('acked'): an ACK frame, and also a HELLO: what a neighbour's HELLO says it holds of OUR own
//   entries counts as an ACK of each (bounded by maxServeKeys per HELLO, once per session and key). A
//   new entry received from someone other than its author is also ACKed to the author if linked.
// - Proof-less tombstones: accepted for a held entry iff expires_at <= now + skew, for an unheld key
//   iff until <= now + skew. Tombstones with a proof need authorizeTombstone. With knownSender (the
//   membership rule) a tombstone naming an unknown sender is refused (unknown-sender); tombstones for keys
//   never held are bounded per neighbour and in total; keys a neighbour never claimed grow nothing.
// - Our HELLO lists senders we hold entries of first, each with a fair share of the frame.
// - An entry more than maxLamportJump ahead of our clock is refused (lamport-jump).
// - PING every heartbeatMs; silence for deadAfterMs: neighbour-timed-out, session dropped.

import { ProtocolError } from './errors.js';
import { LamportClock } from './clock.js';
import { Log, RangeSet, keyOf } from './log.js';
import { DEFAULT_SYNC_CONFIG, Session, toRangeMap } from './sync_events.js';
import * as wire from './wire.js';

/**
 * @typedef {import('./log.js').LogEntry} LogEntry
 * @typedef {import('./log.js').Tombstone} Tombstone
 * @typedef {import('./sync_events.js').SyncEvent} SyncEvent
 */

export { DEFAULT_SYNC_CONFIG } from './sync_events.js';

// what one (sender, ranges) block of a HELLO costs and what the frame holds (see wire.js)
const HELLO_ROOM = 65536 - 64;
const HELLO_SENDER = 18;
const HELLO_RANGE = 16;

/** @param {string} key @returns {[string, number]} the (sender, seq) of a keyOf() key */
const splitKey = (key) => {
  const i = key.lastIndexOf(':');
  return [key.slice(0, i), Number(key.slice(i + 1))];
};
/** @param {Uint8Array} a @param {Uint8Array} b */
const sameBytes = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

export class SyncEngine {
  /**
   * @param {string} selfId @param {string} roomId
   * @param {(data: Uint8Array) => Promise<LogEntry>} validate
   * @param {{config?: Partial<typeof DEFAULT_SYNC_CONFIG>, authorizeTombstone?: (t: Tombstone, held: LogEntry|null, now: number) => Promise<boolean>,
   *   peekKey?: (data: Uint8Array) => [string, number], eager?: (entry: LogEntry) => boolean,
   *   knownSender?: (sender: string) => boolean}} [opts]
   */
  constructor(selfId, roomId, validate, opts = {}) {
    this.selfId = selfId;
    this.roomId = roomId;
    this.config = { ...DEFAULT_SYNC_CONFIG, ...(opts.config ?? {}) };
    this.log = new Log(this.config.skewMs);
    this.clock = new LamportClock();
    this.validate = validate;
    this.authorize = opts.authorizeTombstone ?? null;
    this.peek = opts.peekKey ?? null;
    this.knownSender = opts.knownSender ?? null;
    /** @type {Map<string, string>} tombstones of keys never held -> the neighbour that sent them */
    this.foreign = new Map();
    /** @type {Map<string, number>} */
    this.foreignBy = new Map();
    this.foreignStale = false; // the log pruned tombstones since the last sweep of `foreign`
    /** entries always relayed at once, even when received from their author (room state) */
    this.eager = opts.eager ?? null;
    /** @type {number|null} */
    this.announceAt = null;
    /** @type {Map<string, Session>} */
    this.sessions = new Map();
    /** @type {Map<string, [string, number]>} */
    this.pending = new Map();
    this.protocolErrors = 0;
  }

  get neighbours() {
    return [...this.sessions.values()].filter((s) => !s.rejected).map((s) => s.neighbour);
  }

  /** @param {string} n */
  isReady(n) {
    const s = this.sessions.get(n);
    return !!s && s.ready && !s.rejected;
  }

  /** Start (or restart) a session: queue HELLO. @param {string} neighbour @param {number} now */
  connect(neighbour, now) {
    if (neighbour === this.selfId) throw new Error('cannot connect to self');
    this.drop(neighbour);
    const s = new Session(neighbour, now, this.config);
    s.control.push(this.hello());
    this.sessions.set(neighbour, s);
  }

  /** @param {string} neighbour @param {number} now */
  disconnect(neighbour, now) {
    if (this.drop(neighbour)) this.rerequest(now);
  }

  /** @param {string} neighbour */
  drop(neighbour) {
    const s = this.sessions.get(neighbour);
    if (!s) return false;
    this.sessions.delete(neighbour);
    this.dropPending(s);
    return true;
  }

  /** @param {number} now */
  rerequest(now) {
    for (const s of this.sessions.values()) if (s.ready && !s.rejected) this.request(s, now);
  }

  // -------------------------------------------------- hooks for the room (nothing reaches into log/clock)

  get skewMs() {
    return this.log.skewMs;
  }

  get lamport() {
    return this.clock.value;
  }

  tick() {
    return this.clock.tick();
  }

  /** @param {number} lamport */
  observe(lamport) {
    this.clock.observe(lamport);
  }

  /** @param {string} sender @param {number} seq */
  entry(sender, seq) {
    return this.log.get(sender, seq);
  }

  /** @param {string} sender @param {number} seq */
  tombstoneOf(sender, seq) {
    return this.log.getTombstone(sender, seq);
  }

  /** Put back a stored entry at restart (no relay, no event); false if expired or tombstoned. @param {LogEntry} entry @param {number} now */
  restore(entry, now) {
    if (!this.log.add(entry, now)) return false;
    this.clock.observe(entry.lamport);
    return true;
  }

  /** @param {string} sender @param {number} seq @param {number} until @param {Uint8Array} [proof] */
  restoreTombstone(sender, seq, until, proof = new Uint8Array(0)) {
    this.log.tombstone(sender, seq, until, proof);
  }

  /** Feed one envelope back as if `neighbour` had just sent it; dropped if that session is gone. @param {string} neighbour @param {Uint8Array} data @param {number} now @returns {Promise<SyncEvent[]>} */
  async offer(neighbour, data, now) {
    const s = this.sessions.get(neighbour);
    if (!s || s.rejected || !s.ready) return [];
    return this.onEnvelopes(s, [data], now);
  }

  /** Add a locally created envelope and push it to every neighbour (`entry`: built, so trusted, by the caller). @param {Uint8Array} data @param {number} now @param {LogEntry|null} [trusted] */
  async publish(data, now, trusted = null) {
    const entry = trusted ?? await this.validate(data);
    if (!this.log.add(entry, now)) throw new Error('duplicate, tombstoned or expired entry');
    this.clock.observe(entry.lamport);
    this.relay(entry, null);
    return entry;
  }

  /** Explicit local deletion. @param {string} sender @param {number} seq @param {number} until @param {Uint8Array} proof */
  delete(sender, seq, until, proof) {
    if (!this.log.tombstone(sender, seq, until, proof)) return false;
    const tomb = /** @type {Tombstone} */ (this.log.getTombstone(sender, seq));
    for (const s of this.live()) s.tombs.set(keyOf(sender, seq), tomb);
    return true;
  }

  /** @param {string} neighbour @param {number} type @param {Uint8Array} body */
  sendOpaque(neighbour, type, body) {
    const s = this.sessions.get(neighbour);
    if (!s || s.rejected) throw new Error(`no session with ${neighbour}`);
    s.control.push(wire.encodeOpaque(type, body));
  }

  /** Drain the outbox. @returns {[string, Uint8Array][]} */
  dataToSend() {
    /** @type {[string, Uint8Array][]} */
    const out = [];
    for (const [n, s] of this.sessions) {
      if (s.rejected || !(s.control.length || s.envs.size || s.voids.size || s.tombs.size || s.acks.size)) continue;
      const frames = s.control;
      if (s.envs.size || s.voids.size) frames.push(...wire.encodeEnvelopes([...s.envs.values(), ...[...s.voids.values()].flat()]));
      if (s.tombs.size) frames.push(...wire.encodeTombstones([...s.tombs.values()]));
      if (s.acks.size) frames.push(...wire.encodeAck(toRangeMap(s.acks)));
      for (const f of frames) out.push([n, f]);
      s.control = []; s.envs = new Map(); s.voids = new Map(); s.tombs = new Map(); s.acks = new Map();
    }
    return out;
  }

  /** @returns {number|null} */
  nextTimer() {
    const times = [];
    const d = this.log.nextDeadline();
    if (d !== null) times.push(d);
    if (this.announceAt !== null) times.push(this.announceAt);
    for (const s of this.sessions.values()) {
      if (s.rejected) continue;
      times.push(s.nextPing, s.lastHeard + this.config.deadAfterMs, s.nextHello);
      if (s.retryAt !== null) times.push(s.retryAt);
    }
    return times.length ? Math.min(...times) : null;
  }

  /** @param {number} now @returns {SyncEvent[]} */
  handleTimer(now) {
    /** @type {SyncEvent[]} */
    const events = [];
    this.foreignStale = true; // expire() may prune tombstones
    for (const [sender, seq] of this.log.expire(now)) {
      events.push({ type: 'entry-expired', sender, seq });
      const tomb = this.log.getTombstone(sender, seq);
      if (!tomb) continue; // the clock jumped past expiresAt + skew: pruned in the same call
      for (const s of this.live()) if (s.has(sender, seq)) s.tombs.set(keyOf(sender, seq), tomb);
    }
    const c = this.config;
    if (this.announceAt !== null && now >= this.announceAt) {
      this.announceAt = null;
      const hello = this.hello();
      for (const s of this.live()) {
        if (!s.ready) continue;
        s.control.push(hello);
        s.nextHello = now + c.resyncMs;
      }
    }
    let dropped = false;
    for (const s of [...this.sessions.values()]) {
      if (s.rejected) continue;
      if (now >= s.lastHeard + c.deadAfterMs) {
        events.push({ type: 'neighbour-timed-out', neighbour: s.neighbour });
        this.drop(s.neighbour);
        dropped = true;
        continue;
      }
      if (now >= s.nextPing) {
        s.pingNonce += 1;
        s.control.push(wire.encodePing(s.pingNonce));
        s.nextPing = now + c.heartbeatMs;
      }
      if (now >= s.nextHello) {
        s.control.push(this.hello());
        s.nextHello = now + c.resyncMs;
      }
      if (s.retryAt !== null && now >= s.retryAt) {
        s.retryAt = null;
        if (s.ready) this.request(s, now);
      }
    }
    if (dropped) this.rerequest(now);
    return events;
  }

  /** @param {string} neighbour @param {Uint8Array} data @param {number} now @returns {Promise<SyncEvent[]>} */
  async receive(neighbour, data, now) {
    const s = this.sessions.get(neighbour);
    if (!s) return [this.error(neighbour, 'no-session')];
    if (s.rejected) return [];
    s.lastHeard = now;
    let frame;
    try {
      frame = wire.decodeFrame(data);
    } catch (e) {
      if (e instanceof ProtocolError) return [this.error(neighbour, e.code)];
      throw e;
    }
    switch (frame.type) {
      case wire.FrameType.HELLO: return this.onHello(s, frame, now);
      case wire.FrameType.PING: s.control.push(wire.encodePong(frame.nonce)); return [];
      case wire.FrameType.PONG: return [];
      case wire.FrameType.HANDSHAKE: case wire.FrameType.PAIRWISE: case wire.FrameType.APP:
        return [{ type: 'opaque', neighbour, frameType: frame.type, body: frame.body }];
      default: break;
    }
    if (!s.ready) return [this.error(neighbour, 'no-hello')];
    if (frame.type === wire.FrameType.ENVELOPES) return this.onEnvelopes(s, frame.items, now);
    if (frame.type === wire.FrameType.WANT) { this.onWant(s, frame.ranges, now); return []; }
    if (frame.type === wire.FrameType.ACK) return this.onAck(s, frame.ranges);
    return this.onTombstones(s, /** @type {{items: Tombstone[]}} */ (frame).items, now);
  }

  /** @param {Session} s @param {{roomId: string, have: import('./log.js').RangeMap}} frame @param {number} now */
  onHello(s, frame, now) {
    if (frame.roomId !== this.roomId) {
      s.rejected = true;
      this.dropPending(s);
      return [this.error(s.neighbour, 'wrong-room')];
    }
    /** @type {SyncEvent[]} */
    const events = [];
    s.remoteHave = new Map([...frame.have].map(([k, v]) => [k, new RangeSet(v)]));
    s.attempts.clear();
    s.unservable.clear();
    // the newer HELLO replaces the older one: wants for keys it no longer claims are released
    for (const k of [...s.inflight]) {
      const [sender, seq] = splitKey(k);
      if (!s.has(sender, seq)) this.release(s, k);
    }
    if (!s.ready) {
      s.ready = true;
      events.push({ type: 'neighbour-ready', neighbour: s.neighbour });
      for (const t of this.log.tombstones()) {
        if (t.proof.length && s.has(t.sender, t.seq)) s.tombs.set(keyOf(t.sender, t.seq), t);
      }
      // equivocations it may not have seen: both versions, so it voids the key too
      for (const [sender, seq, first, second] of this.log.voidPairs.values()) if (s.has(sender, seq)) s.voids.set(keyOf(sender, seq), [first, second]);
    }
    events.push(...this.helloAcks(s));
    this.request(s, now);
    return events;
  }

  /**
   * Our own entries the neighbour's HELLO covers are delivered to it (whoever it got them from).
   * @param {Session} s @returns {SyncEvent[]}
   */
  helloAcks(s) {
    const me = this.selfId;
    const theirs = s.remoteHave.get(me);
    if (!theirs) return [];
    const held = this.log.seenRanges(me);
    let acked = s.acked.get(me);
    if (!acked) s.acked.set(me, (acked = new RangeSet()));
    /** @type {SyncEvent[]} */
    const events = [];
    let budget = this.config.maxServeKeys;
    for (const [a, b] of theirs.ranges()) {
      for (const [lo, hi] of held.intersect(a, b)) {
        for (const [x, y] of new RangeSet([[lo, hi]]).difference(acked)) {
          for (let seq = x; seq <= y; seq++) {
            if (budget-- <= 0) return events;
            acked.add(seq); // a tombstoned one too: never looked at again this session
            if (this.log.holds(me, seq)) events.push({ type: 'acked', neighbour: s.neighbour, sender: me, seq });
          }
        }
      }
    }
    return events;
  }

  /** @param {Session} s @param {Uint8Array[]} items @param {number} now */
  async onEnvelopes(s, items, now) {
    /** @type {SyncEvent[]} */
    const events = [];
    /** @type {Session[]} */
    const refill = [];
    for (const item of items) {
      if (this.peek) {
        let sender, seq;
        try {
          [sender, seq] = this.peek(item);
        } catch (e) {
          if (!(e instanceof ProtocolError)) throw e;
          events.push(this.error(s.neighbour, e.code));
          continue;
        }
        const held = this.log.get(sender, seq);
        if (held && !sameBytes(held.data, item)) { // same key, other bytes
          events.push(...(await this.equivocation(s, held, item, now, null)));
          continue;
        }
        if (this.log.seen(sender, seq)) { // a duplicate: no need to verify it again
          s.mark(sender, seq);
          this.resolve(keyOf(sender, seq));
          if (this.log.holds(sender, seq)) {
            let rs = s.acks.get(sender);
            if (!rs) s.acks.set(sender, (rs = new RangeSet()));
            rs.add(seq);
          } else {
            const tomb = this.log.getTombstone(sender, seq);
            if (tomb) s.tombs.set(keyOf(sender, seq), tomb); // a stale copy: answer with the tombstone
          }
          continue;
        }
      }
      let entry;
      try {
        entry = await this.validate(item);
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
        this.protocolErrors += 1;
        events.push({ type: 'envelope-refused', neighbour: s.neighbour, code: e.code, data: item });
        continue;
      }
      if (entry.lamport > this.clock.value + this.config.maxLamportJump) {
        events.push(this.error(s.neighbour, 'lamport-jump'));
        continue;
      }
      const { sender, seq } = entry;
      const held = this.log.get(sender, seq);
      if (held && !sameBytes(held.data, entry.data)) {
        events.push(...(await this.equivocation(s, held, item, now, entry)));
        continue;
      }
      const drained = this.resolve(keyOf(sender, seq));
      if (drained) refill.push(drained);
      s.mark(sender, seq);
      if (this.log.add(entry, now)) {
        this.clock.observe(entry.lamport);
        events.push({ type: 'entry-added', entry });
        const lazy = this.eager === null || !this.eager(entry);
        if (lazy && entry.sender === s.neighbour && this.config.announceDelayMs >= 0) {
          if (this.announceAt === null) this.announceAt = now + this.config.announceDelayMs;
        } else {
          this.relay(entry, s.neighbour);
          const author = this.sessions.get(sender);
          if (author && author.ready && !author.rejected) {
            // it reached us through someone else: tell its author it is delivered here
            let rs = author.acks.get(sender);
            if (!rs) author.acks.set(sender, (rs = new RangeSet()));
            rs.add(seq);
          }
        }
      }
      if (this.log.holds(sender, seq)) {
        let rs = s.acks.get(sender);
        if (!rs) s.acks.set(sender, (rs = new RangeSet()));
        rs.add(seq);
      } else {
        const tomb = this.log.getTombstone(sender, seq);
        if (tomb) s.tombs.set(keyOf(sender, seq), tomb);
      }
    }
    for (const r of refill) if (r.ready && !r.inflight.size) this.request(r, now);
    return events;
  }

  /** @param {Session} s @param {import('./log.js').RangeMap} ranges @param {number} now */
  onWant(s, ranges, now) {
    const c = this.config;
    if (now >= s.serveWindowEnd) { // a new pacing window
      s.serveWindowEnd = now + c.wantTimeoutMs;
      s.serveKeys = 0; s.serveBytes = 0;
      for (const [k, t] of [...s.served]) if (t <= now) s.served.delete(k);
    }
    const againAt = now + Math.floor(c.wantTimeoutMs / 2);
    let budget = c.maxServeKeys;
    for (const [sender, rs] of ranges) {
      const seen = this.log.seenRanges(sender);
      for (const [a, b] of rs) {
        for (const [lo, hi] of seen.intersect(a, b)) {
          for (let seq = lo; seq <= hi; seq++) {
            if (budget <= 0 || s.serveKeys >= c.maxServeKeysPerWindow) return;
            budget -= 1;
            const key = keyOf(sender, seq);
            if (s.envs.has(key) || s.tombs.has(key) || (s.served.get(key) ?? now) > now) continue;
            const entry = this.log.get(sender, seq);
            if (entry) {
              if (entry.expiresAt > now) {
                if (s.serveBytes + entry.data.length > c.maxServeBytesPerWindow) return;
                s.serveBytes += entry.data.length;
                s.serveKeys += 1;
                s.served.set(key, againAt);
                s.envs.set(key, entry.data);
                s.mark(sender, seq);
              }
              continue;
            }
            const tomb = this.log.getTombstone(sender, seq);
            if (tomb) { s.serveKeys += 1; s.served.set(key, againAt); s.tombs.set(key, tomb); }
          }
        }
      }
    }
  }

  /** @param {Session} s @param {import('./log.js').RangeMap} ranges */
  onAck(s, ranges) {
    /** @type {SyncEvent[]} */
    const events = [];
    let budget = this.config.maxServeKeys;
    for (const [sender, rs] of ranges) {
      let acked = s.acked.get(sender);
      if (!acked) s.acked.set(sender, (acked = new RangeSet()));
      for (const [a, b] of rs) {
        for (const [lo, hi] of this.log.seenRanges(sender).intersect(a, b)) {
          for (let seq = lo; seq <= hi; seq++) {
            if (budget <= 0) return events;
            budget -= 1;
            s.mark(sender, seq);
            if (!acked.has(seq) && this.log.holds(sender, seq)) {
              acked.add(seq);
              events.push({ type: 'acked', neighbour: s.neighbour, sender, seq });
            }
          }
        }
      }
    }
    return events;
  }

  /** @param {Session} s @param {Tombstone[]} items @param {number} now */
  async onTombstones(s, items, now) {
    /** @type {SyncEvent[]} */
    const events = [];
    const skew = this.config.skewMs;
    let unknown = false;
    for (const tomb of items) {
      const { sender, seq } = tomb;
      const key = keyOf(sender, seq);
      const claimed = s.has(sender, seq); // listed in its HELLO (or sent/served to us before)
      this.resolve(key);
      if (this.log.getTombstone(sender, seq)) { s.mark(sender, seq); continue; }
      if (this.knownSender !== null && !this.knownSender(sender)) {
        unknown = true;
        if (claimed && s.unservable.size < 4 * this.config.maxWantKeys) s.unservable.add(key);
        continue;
      }
      const held = this.log.get(sender, seq);
      let ok;
      if (tomb.proof.length) {
        ok = this.authorize !== null && await this.authorize(tomb, held, now);
        if (!ok) events.push(this.error(s.neighbour, 'unauthorized-tombstone'));
      } else if (held) {
        ok = held.expiresAt <= now + skew;
      } else {
        ok = tomb.until <= now + skew;
      }
      if (ok && !held && !this.log.seen(sender, seq)) ok = this.takeForeign(s.neighbour, key);
      if (!ok) { if (claimed && s.unservable.size < 4 * this.config.maxWantKeys) s.unservable.add(key); continue; }
      s.mark(sender, seq);
      this.log.tombstone(sender, seq, tomb.until, tomb.proof);
      if (held) events.push({ type: tomb.proof.length ? 'entry-deleted' : 'entry-expired', sender, seq });
      const stored = /** @type {Tombstone} */ (this.log.getTombstone(sender, seq));
      for (const other of this.live()) if (other !== s && other.has(sender, seq)) other.tombs.set(key, stored);
    }
    if (unknown) events.push(this.error(s.neighbour, 'unknown-sender'));
    return events;
  }

  /** Room for one more tombstone of a key never held, from `neighbour`? @param {string} neighbour @param {string} key */
  takeForeign(neighbour, key) {
    const c = this.config;
    const full = () => this.foreign.size >= c.maxForeignTombstones
      || (this.foreignBy.get(neighbour) ?? 0) >= c.maxForeignTombstonesPerNeighbour;
    if (full()) {
      if (!this.foreignStale) return false; // swept since the log last pruned: nothing to free
      this.foreignStale = false;
      for (const [k, n] of [...this.foreign]) { // forget the ones the log has pruned (only at a bound)
        const [sender, seq] = splitKey(k);
        if (this.log.getTombstone(sender, seq)) continue;
        this.foreign.delete(k);
        const left = (this.foreignBy.get(n) ?? 1) - 1;
        if (left) this.foreignBy.set(n, left); else this.foreignBy.delete(n);
      }
      if (full()) return false;
    }
    this.foreign.set(key, neighbour);
    this.foreignBy.set(neighbour, (this.foreignBy.get(neighbour) ?? 0) + 1);
    return true;
  }

  /** What `neighbour` makes us hold, per structure (tests, monitoring). @param {string} neighbour */
  budgetCounts(neighbour) {
    const s = this.sessions.get(neighbour);
    const foreignTombstones = this.foreignBy.get(neighbour) ?? 0;
    if (!s) return { foreignTombstones };
    let pending = 0;
    for (const [n] of this.pending.values()) if (n === neighbour) pending += 1;
    let remoteHaveRanges = 0;
    for (const rs of s.remoteHave.values()) remoteHaveRanges += rs.ranges().length;
    return {
      inflight: s.inflight.size, pending, attempts: s.attempts.size, unservable: s.unservable.size,
      remoteHaveRanges, control: s.control.length, envs: s.envs.size, voids: s.voids.size, tombs: s.tombs.size,
      served: s.served.size, foreignTombstones,
    };
  }

  live() {
    return [...this.sessions.values()].filter((s) => !s.rejected);
  }

  /** Senders we hold entries of first, each with at most a fair share of the frame (never crowded out). */
  hello() {
    const have = this.log.have();
    if (!have.size) return wire.encodeHello(this.roomId, have);
    const n = have.size;
    const share = Math.max(1, Math.floor((HELLO_ROOM - HELLO_SENDER * n) / (HELLO_RANGE * n)));
    const holding = new Set();
    for (const e of this.log.entries.values()) holding.add(e.sender);
    const ranked = [...have.keys()].filter((p) => holding.has(p)).concat([...have.keys()].filter((p) => !holding.has(p)));
    /** @type {Map<string, [number, number][]>} */
    const chosen = new Map();
    let room = HELLO_ROOM;
    for (const p of ranked) {
      const rs = /** @type {[number, number][]} */ (have.get(p)).slice(0, share);
      room -= HELLO_SENDER + HELLO_RANGE * rs.length;
      if (room < 0) break;
      chosen.set(p, rs);
    }
    return wire.encodeHello(this.roomId, chosen);
  }

  /** @param {string} neighbour @param {string} code @returns {SyncEvent} */
  error(neighbour, code) {
    this.protocolErrors += 1;
    return { type: 'protocol-error', neighbour, code };
  }

  /** @param {Session} s @param {string} key */
  release(s, key) {
    s.inflight.delete(key);
    if (this.pending.get(key)?.[0] === s.neighbour) this.pending.delete(key);
  }

  /** @param {Session} s */
  dropPending(s) {
    for (const k of s.inflight) if (this.pending.get(k)?.[0] === s.neighbour) this.pending.delete(k);
    s.inflight.clear();
  }

  /** @param {string} key @returns {Session|null} */
  resolve(key) {
    const p = this.pending.get(key);
    if (!p) return null;
    this.pending.delete(key);
    const owner = this.sessions.get(p[0]);
    if (!owner) return null;
    owner.inflight.delete(key);
    return owner.inflight.size ? null : owner;
  }

  /**
   * `item` claims `held`'s key with other bytes: void the key if the sender signed both (see log.js).
   * @param {Session} s @param {LogEntry} held @param {Uint8Array} item @param {number} _now @param {LogEntry|null} other
   * @returns {Promise<SyncEvent[]>}
   */
  async equivocation(s, held, item, _now, other) {
    s.mark(held.sender, held.seq);
    this.resolve(keyOf(held.sender, held.seq));
    if (other === null) {
      try {
        other = await this.validate(item);
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
        this.protocolErrors += 1; // not the sender's: junk under a known key, not equivocation
        return [{ type: 'envelope-refused', neighbour: s.neighbour, code: e.code, data: item }];
      }
    }
    const until = Math.min(Math.max(held.expiresAt, other.expiresAt) + this.log.skewMs, wire.MAX_INT);
    if (!this.log.void(held.sender, held.seq, held.data, other.data, until)) return [];
    for (const x of this.live()) {
      x.voids.set(keyOf(held.sender, held.seq), [held.data, other.data]);
      x.mark(held.sender, held.seq);
    }
    return [{ type: 'entry-voided', sender: held.sender, seq: held.seq, neighbour: s.neighbour }];
  }

  /** @param {LogEntry} entry @param {string|null} exclude */
  relay(entry, exclude) {
    for (const s of this.live()) {
      if (s.neighbour !== exclude && !s.has(entry.sender, entry.seq)) {
        s.envs.set(keyOf(entry.sender, entry.seq), entry.data);
        s.mark(entry.sender, entry.seq);
      }
    }
  }

  /** @param {Session} s @param {number} now */
  request(s, now) {
    const c = this.config;
    for (const k of [...s.inflight]) if ((this.pending.get(k)?.[1] ?? 0) <= now) this.release(s, k); // timed out
    let budget = c.maxWantKeys - s.inflight.size;
    let scan = 4 * c.maxWantKeys;
    /** @type {Map<string, RangeSet>} */
    const wants = new Map();
    const deadline = now + c.wantTimeoutMs;
    for (const [sender, theirs] of s.remoteHave) {
      for (const [a, b] of theirs.difference(this.log.seenRanges(sender))) {
        for (let seq = a; seq <= b; seq++) {
          if (budget <= 0 || scan <= 0) break;
          scan -= 1;
          const key = keyOf(sender, seq);
          if (s.unservable.has(key)) continue;
          const p = this.pending.get(key);
          if (p) {
            if (p[1] > now) continue;
            this.sessions.get(p[0])?.inflight.delete(key);
          }
          const tries = (s.attempts.get(key) ?? 0) + 1;
          if (tries > c.maxWantAttempts) { s.unservable.add(key); continue; }
          s.attempts.set(key, tries);
          this.pending.set(key, [s.neighbour, deadline]);
          s.inflight.add(key);
          let rs = wants.get(sender);
          if (!rs) wants.set(sender, (rs = new RangeSet()));
          rs.add(seq);
          budget -= 1;
        }
      }
    }
    if (wants.size) {
      s.control.push(...wire.encodeWant(toRangeMap(wants)));
      s.retryAt = deadline;
    }
  }
}
