// Serving neighbours (a part of the sync engine; mirrors peer/core/sync_serve.py): what we tell them (our
// HELLO, erasures), the WANTs we make and answer, the tombstones we take in, their ACKs, and the
// per-neighbour budgets that keep what one neighbour can make us send or hold bounded. The engine
// (sync.js) owns the sessions, the log and the envelopes; it routes WANT, ACK and TOMBSTONES frames here.
//
// Rules:
// - After every HELLO we WANT what the neighbour has (held or tombstoned) and we have not seen, skipping
//   keys pending elsewhere; at most maxWantKeys in flight per neighbour, ever: a newer HELLO replaces the
//   older one (wants for keys it no longer claims are released), timed-out wants are released first. A key
//   WANTed maxWantAttempts times from one neighbour is not asked from it again until its next HELLO.
// - Delivery ('acked'): an ACK frame, and also a HELLO: what a neighbour's HELLO says it holds of OUR own
//   entries counts as an ACK of each (bounded by maxServeKeys per HELLO, once per session and key).
// - Our HELLO lists senders we hold entries of first, each with a fair share of the frame.
// - WANT is served with ENVELOPES for held unexpired entries and TOMBSTONES for tombstoned keys, paced per
//   neighbour: a key queued or served less than wantTimeoutMs/2 ago is not served again, and at most
//   maxServeKeysPerWindow keys / maxServeBytesPerWindow bytes per wantTimeoutMs window.
// - Proof-less tombstones: accepted for a held entry iff expires_at <= now + skew, for an unheld key
//   iff until <= now + skew. Tombstones with a proof need authorizeTombstone. With knownSender (the
//   membership rule) a tombstone naming an unknown sender is refused (unknown-sender); tombstones for keys
//   never held are bounded per neighbour and in total; keys a neighbour never claimed grow nothing.
//
// Owns: the wants in flight (key -> [asked neighbour, until]); per neighbour (Book) its in-flight keys,
// want attempts, unservable keys, acknowledged seqs and serve pacing; the book of foreign tombstones.
// Persists nothing (wants and pacing start again with each session; foreign tombstones are in the log).
// Interface with the engine: its Log (public API only), the Session records of sync_events.js (claimed
// ranges, output queues control/envs/tombs/voids/retryAt) and the callables `live()` and
// `error(neighbour, code)`; the engine calls the methods below, never the fields.

import { RangeSet, keyOf } from './log.js';
import { toRangeMap } from './sync_events.js';
import * as wire from './wire.js';

/**
 * @typedef {import('./log.js').Log} Log
 * @typedef {import('./log.js').LogEntry} LogEntry
 * @typedef {import('./log.js').Tombstone} Tombstone
 * @typedef {import('./sync_events.js').Session} Session
 * @typedef {import('./sync_events.js').SyncEvent} SyncEvent
 * @typedef {typeof import('./sync_events.js').DEFAULT_SYNC_CONFIG} SyncConfig
 */

// what one (sender, ranges) block of a HELLO costs and what the frame holds (see wire.js)
const HELLO_ROOM = 65536 - 64;
const HELLO_SENDER = 18;
const HELLO_RANGE = 16;

/** @param {string} key @returns {[string, number]} the (sender, seq) of a keyOf() key */
export const splitKey = (key) => {
  const i = key.lastIndexOf(':');
  return [key.slice(0, i), Number(key.slice(i + 1))];
};

/** One neighbour's budgets: what we WANT from it, and the pacing of what we serve it. */
class Book {
  constructor() {
    /** @type {Set<string>} */
    this.inflight = new Set();
    /** @type {Map<string, number>} */
    this.attempts = new Map();
    /** @type {Set<string>} */
    this.unservable = new Set();
    /** @type {Map<string, RangeSet>} per sender, the seqs it acknowledged */
    this.acked = new Map();
    /** @type {Map<string, number>} serve pacing: key -> time before which it is not served again */
    this.served = new Map();
    this.windowEnd = 0;
    this.keys = 0;
    this.bytes = 0;
  }
}

export class Serve {
  /**
   * @param {SyncConfig} config @param {Log} log
   * @param {{live: () => Session[], error: (neighbour: string, code: string) => SyncEvent,
   *   authorizeTombstone: ((t: Tombstone, held: LogEntry|null, now: number) => Promise<boolean>)|null,
   *   knownSender: ((sender: string) => boolean)|null, selfId?: string|null}} hooks
   */
  constructor(config, log, hooks) {
    this.config = config;
    this.log = log;
    this.live = hooks.live;
    this.error = hooks.error;
    this.authorize = hooks.authorizeTombstone;
    this.knownSender = hooks.knownSender;
    /** our own sender id: tombstones of our keys we do not hold are dropped */
    this.selfId = hooks.selfId ?? null;
    /** @type {Map<string, Book>} */
    this.books = new Map();
    /** @type {Map<string, [string, number]>} wanted key -> [asked neighbour, until] */
    this.pendingWants = new Map();
    /** @type {Map<string, string>} tombstones of keys never held -> the neighbour that sent them */
    this.foreign = new Map();
    /** @type {Map<string, number>} */
    this.foreignBy = new Map();
    this.foreignStale = false; // the log pruned tombstones since the last sweep of `foreign`
  }

  /** @param {string} neighbour @returns {Book} */
  book(neighbour) {
    let b = this.books.get(neighbour);
    if (!b) this.books.set(neighbour, (b = new Book()));
    return b;
  }

  /** The session ended: its wants are released, its book goes. @param {string} neighbour */
  end(neighbour) {
    this.releaseAll(neighbour);
    this.books.delete(neighbour);
  }

  /** @param {string} neighbour */
  releaseAll(neighbour) {
    const b = this.books.get(neighbour);
    if (!b) return;
    for (const k of b.inflight) if (this.pendingWants.get(k)?.[0] === neighbour) this.pendingWants.delete(k);
    b.inflight.clear();
  }

  /** The log may have pruned tombstones (expire). */
  logPruned() {
    this.foreignStale = true;
  }

  /** How many keys are wanted (from any neighbour) and not settled yet. */
  pending() {
    return this.pendingWants.size;
  }

  /** @param {string} neighbour */
  idle(neighbour) {
    const b = this.books.get(neighbour);
    return !b || !b.inflight.size;
  }

  /** @param {string} neighbour */
  counts(neighbour) {
    const b = this.books.get(neighbour) ?? new Book();
    let pending = 0;
    for (const [n] of this.pendingWants.values()) if (n === neighbour) pending += 1;
    return {
      inflight: b.inflight.size, pending, attempts: b.attempts.size, unservable: b.unservable.size,
      served: b.served.size, foreignTombstones: this.foreignBy.get(neighbour) ?? 0,
    };
  }

  // ---------------------------------------------------------------------------------------- wanting

  /** `s` sent a HELLO: attempts start over, wants for keys it no longer claims are released. @param {Session} s */
  onHello(s) {
    const b = this.book(s.neighbour);
    b.attempts.clear();
    b.unservable.clear();
    for (const k of [...b.inflight]) {
      const [sender, seq] = splitKey(k);
      if (!s.has(sender, seq)) this.release(s.neighbour, k);
    }
  }

  /** A wanted key was settled; returns the neighbour whose in-flight set became empty. @param {string} key @returns {string|null} */
  resolve(key) {
    const p = this.pendingWants.get(key);
    if (!p) return null;
    this.pendingWants.delete(key);
    const owner = this.books.get(p[0]);
    if (!owner) return null;
    owner.inflight.delete(key);
    return owner.inflight.size ? null : p[0];
  }

  /** WANT from `s` what it has and we have not seen. @param {Session} s @param {number} now */
  request(s, now) {
    const c = this.config;
    const b = this.book(s.neighbour);
    for (const k of [...b.inflight]) if ((this.pendingWants.get(k)?.[1] ?? 0) <= now) this.release(s.neighbour, k); // timed out
    let budget = c.maxWantKeys - b.inflight.size;
    let scan = 4 * c.maxWantKeys;
    /** @type {Map<string, RangeSet>} */
    const wants = new Map();
    const deadline = now + c.wantTimeoutMs;
    for (const [sender, theirs] of s.remoteHave) {
      for (const [lo, hi] of theirs.difference(this.log.seenRanges(sender))) {
        for (let seq = lo; seq <= hi; seq++) {
          if (budget <= 0 || scan <= 0) break;
          scan -= 1;
          const key = keyOf(sender, seq);
          if (b.unservable.has(key)) continue;
          const p = this.pendingWants.get(key);
          if (p) {
            if (p[1] > now) continue;
            this.books.get(p[0])?.inflight.delete(key);
          }
          const tries = (b.attempts.get(key) ?? 0) + 1;
          if (tries > c.maxWantAttempts) { b.unservable.add(key); continue; }
          b.attempts.set(key, tries);
          this.pendingWants.set(key, [s.neighbour, deadline]);
          b.inflight.add(key);
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

  /** @param {string} neighbour @param {string} key */
  release(neighbour, key) {
    this.books.get(neighbour)?.inflight.delete(key);
    if (this.pendingWants.get(key)?.[0] === neighbour) this.pendingWants.delete(key);
  }

  // ------------------------------------------------------------ telling: our HELLO, erasures, delivery

  /** Our HELLO: senders we hold entries of first, each with at most a fair share of the frame. @param {string} roomId */
  hello(roomId) {
    const have = this.log.have();
    if (!have.size) return wire.encodeHello(roomId, have);
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
    return wire.encodeHello(roomId, chosen);
  }

  /** A first HELLO: explicit deletions it may hold, both versions of void keys it claims. @param {Session} s */
  showErased(s) {
    for (const t of this.log.tombstones()) {
      if (t.proof.length && s.has(t.sender, t.seq)) s.tombs.set(keyOf(t.sender, t.seq), t);
    }
    for (const [sender, seq, first, second] of this.log.voidPairs.values()) if (s.has(sender, seq)) s.voids.set(keyOf(sender, seq), [first, second]);
  }

  /** Queue the log's tombstone to every live neighbour (or those claiming it). @param {string} sender @param {number} seq @param {boolean} claimedOnly @param {Session|null} [exclude] */
  tellTombstone(sender, seq, claimedOnly, exclude = null) {
    const tomb = /** @type {Tombstone} */ (this.log.getTombstone(sender, seq));
    for (const s of this.live()) if (s !== exclude && (!claimedOnly || s.has(sender, seq))) s.tombs.set(keyOf(sender, seq), tomb);
  }

  /** Our own entries the neighbour's HELLO covers are delivered to it. @param {Session} s @param {string} me @returns {SyncEvent[]} */
  helloAcks(s, me) {
    const theirs = s.remoteHave.get(me);
    if (!theirs) return [];
    const held = this.log.seenRanges(me);
    const b = this.book(s.neighbour);
    let acked = b.acked.get(me);
    if (!acked) b.acked.set(me, (acked = new RangeSet()));
    /** @type {SyncEvent[]} */
    const events = [];
    let budget = this.config.maxServeKeys;
    for (const [a, z] of theirs.ranges()) {
      for (const [lo, hi] of held.intersect(a, z)) {
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

  /** @param {Session} s @param {import('./log.js').RangeMap} ranges @returns {SyncEvent[]} */
  onAck(s, ranges) {
    /** @type {SyncEvent[]} */
    const events = [];
    let budget = this.config.maxServeKeys;
    const b = this.book(s.neighbour);
    for (const [sender, rs] of ranges) {
      let acked = b.acked.get(sender);
      if (!acked) b.acked.set(sender, (acked = new RangeSet()));
      for (const [a, z] of rs) {
        for (const [lo, hi] of this.log.seenRanges(sender).intersect(a, z)) {
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

  // ---------------------------------------------------------------------------------------- serving

  /** @param {Session} s @param {import('./log.js').RangeMap} ranges @param {number} now */
  onWant(s, ranges, now) {
    const c = this.config;
    const p = this.book(s.neighbour);
    if (now >= p.windowEnd) { // a new pacing window
      p.windowEnd = now + c.wantTimeoutMs;
      p.keys = 0; p.bytes = 0;
      for (const [k, t] of [...p.served]) if (t <= now) p.served.delete(k);
    }
    const againAt = now + Math.floor(c.wantTimeoutMs / 2);
    let budget = c.maxServeKeys;
    for (const [sender, rs] of ranges) {
      const seen = this.log.seenRanges(sender);
      for (const [a, b] of rs) {
        for (const [lo, hi] of seen.intersect(a, b)) {
          for (let seq = lo; seq <= hi; seq++) {
            if (budget <= 0 || p.keys >= c.maxServeKeysPerWindow) return;
            budget -= 1;
            const key = keyOf(sender, seq);
            if (s.envs.has(key) || s.tombs.has(key) || (p.served.get(key) ?? now) > now) continue;
            const entry = this.log.get(sender, seq);
            if (entry) {
              if (entry.expiresAt > now) {
                if (p.bytes + entry.data.length > c.maxServeBytesPerWindow) return;
                p.bytes += entry.data.length;
                p.keys += 1;
                p.served.set(key, againAt);
                s.envs.set(key, entry.data);
                s.mark(sender, seq);
              }
              continue;
            }
            const tomb = this.log.getTombstone(sender, seq);
            if (tomb) { p.keys += 1; p.served.set(key, againAt); s.tombs.set(key, tomb); }
          }
        }
      }
    }
  }

  /** @param {Session} s @param {Tombstone[]} items @param {number} now @returns {Promise<SyncEvent[]>} */
  async onTombstones(s, items, now) {
    /** @type {SyncEvent[]} */
    const events = [];
    const skew = this.config.skewMs;
    const b = this.book(s.neighbour);
    const cap = 4 * this.config.maxWantKeys;
    let unknown = false;
    for (const tomb of items) {
      const { sender, seq } = tomb;
      const key = keyOf(sender, seq);
      const claimed = s.has(sender, seq); // listed in its HELLO (or sent/served to us before)
      this.resolve(key);
      if (this.log.getTombstone(sender, seq)) { s.mark(sender, seq); continue; }
      if (this.knownSender !== null && !this.knownSender(sender)) {
        unknown = true;
        if (claimed && b.unservable.size < cap) b.unservable.add(key);
        continue;
      }
      const held = this.log.get(sender, seq);
      if (!held && sender === this.selfId) {
        // one of our own keys we do not hold (a seq not used yet, or long erased): we alone say what is gone of it
        if (claimed && b.unservable.size < cap) b.unservable.add(key);
        continue;
      }
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
      if (!ok) { if (claimed && b.unservable.size < cap) b.unservable.add(key); continue; }
      s.mark(sender, seq);
      this.log.tombstone(sender, seq, tomb.until, tomb.proof);
      if (held) events.push({ type: tomb.proof.length ? 'entry-deleted' : 'entry-expired', sender, seq });
      this.tellTombstone(sender, seq, true, s);
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
}
