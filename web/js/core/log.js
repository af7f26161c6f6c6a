// The room's replicated log: a grow-only set of entries plus tombstones (a CRDT). Mirrors
// peer/core/log.py.
//
// Rules:
// - Entries are keyed by (sender, seq); envelope bytes are opaque here (validated by the room first).
// - add() accepts an entry only if its key was never seen (held or tombstoned) and expires_at > now.
// - Total order (effective lamport, sender, seq); sender compares as its 32-char lowercase hex string.
//   The effective lamport of (s, q) is the largest lamport among s's held entries with seq <= q, so an
//   author cannot place an entry before its own previous one (for an honest author it is the lamport).
// - Expiry turns an entry into a tombstone living until expires_at + skew; an explicit deletion does
//   the same. A tombstoned key is never re-accepted nor served.
// - Equivocation (two different validly signed envelopes under one key) makes the key void: void()
//   drops the held entry and marks the key seen, without a tombstone, until `until`; the newest
//   MAX_VOID_PAIRS pairs are kept to show neighbours that still hold one version.
// - have(): per sender, sorted disjoint non-adjacent inclusive ranges of seqs held or tombstoned.
// - For the equivocation check (sync_check.js) held seqs are grouped in blocks of DIGEST_BLOCK (64):
//   heldBlocks(sender) maps each block holding an entry to a version that changes whenever its held set
//   changes (a global counter), heldVersion(sender) likewise for the sender (0 when nothing is held).

export const DEFAULT_SKEW_MS = 60_000;
/** Void keys whose two conflicting envelopes are kept to show neighbours (older pairs keep the mark only). */
export const MAX_VOID_PAIRS = 256;
/** Seqs per block of the equivocation check's digests (sync_check.js). */
export const DIGEST_BLOCK = 64;

/**
 * @typedef {{ sender: string, seq: number, lamport: number, sentAt: number, expiresAt: number, data: Uint8Array }} LogEntry
 * @typedef {{ sender: string, seq: number, until: number, proof: Uint8Array }} Tombstone
 * @typedef {[number, number]} Range
 * @typedef {Map<string, Range[]>} RangeMap
 */

/** @param {string} sender @param {number} seq */
export const keyOf = (sender, seq) => `${sender}:${seq}`;

/** @param {{lamport: number, sender: string, seq: number}} a @param {{lamport: number, sender: string, seq: number}} b */
export function compareOrder(a, b) {
  if (a.lamport !== b.lamport) return a.lamport - b.lamport;
  if (a.sender !== b.sender) return a.sender < b.sender ? -1 : 1;
  return a.seq - b.seq;
}

/** A set of non-negative integers as sorted disjoint inclusive ranges (adjacent ones merged). */
export class RangeSet {
  /** @param {Iterable<Range>} [ranges] */
  constructor(ranges = []) {
    /** @type {Range[]} */
    this.rs = [];
    for (const [a, b] of ranges) this.addRange(a, b);
  }

  /** @param {number} x */
  has(x) {
    for (const [a, b] of this.rs) {
      if (x < a) return false;
      if (x <= b) return true;
    }
    return false;
  }

  get size() {
    return this.rs.length;
  }

  /** @returns {Range[]} */
  ranges() {
    return this.rs.map(([a, b]) => [a, b]);
  }

  /** @param {number} x */
  add(x) {
    this.addRange(x, x);
  }

  /** @param {number} a @param {number} b */
  addRange(a, b) {
    if (a > b) throw new RangeError('empty range');
    /** @type {Range[]} */
    const out = [];
    let placed = false;
    for (const [s, e] of this.rs) {
      if (e < a - 1) out.push([s, e]);
      else if (s > b + 1) {
        if (!placed) { out.push([a, b]); placed = true; }
        out.push([s, e]);
      } else {
        a = Math.min(a, s);
        b = Math.max(b, e);
      }
    }
    if (!placed) out.push([a, b]);
    this.rs = out;
  }

  /** @param {number} x */
  remove(x) {
    /** @type {Range[]} */
    const out = [];
    for (const [s, e] of this.rs) {
      if (x < s || x > e) out.push([s, e]);
      else {
        if (s <= x - 1) out.push([s, x - 1]);
        if (x + 1 <= e) out.push([x + 1, e]);
      }
    }
    this.rs = out;
  }

  /** The parts of [a, b] in the set. @param {number} a @param {number} b @returns {Range[]} */
  intersect(a, b) {
    /** @type {Range[]} */
    const out = [];
    for (const [s, e] of this.rs) {
      const lo = Math.max(a, s), hi = Math.min(b, e);
      if (lo <= hi) out.push([lo, hi]);
    }
    return out;
  }

  /** Ranges in this set that are not in `other`. @param {RangeSet} other @returns {Range[]} */
  difference(other) {
    /** @type {Range[]} */
    const out = [];
    for (const [a, b] of this.rs) {
      let cur = a;
      for (const [os, oe] of other.rs) {
        if (oe < cur) continue;
        if (os > b) break;
        if (os > cur) out.push([cur, os - 1]);
        cur = oe + 1;
        if (cur > b) break;
      }
      if (cur <= b) out.push([cur, b]);
    }
    return out;
  }
}

export class Log {
  constructor(skewMs = DEFAULT_SKEW_MS) {
    this.skewMs = skewMs;
    /** @type {Map<string, LogEntry>} */
    this.entries = new Map();
    /** @type {Map<string, RangeSet>} */
    this.seenBy = new Map();
    /** @type {Map<string, Tombstone>} */
    this.tombs = new Map();
    /** @type {Map<string, number>} void key -> until */
    this.voids = new Map();
    /** @type {Map<string, [string, number, Uint8Array, Uint8Array]>} insertion-ordered, bounded */
    this.voidPairs = new Map();
    this.change = 0; // bumped on every change of a held set
    /** @type {Map<string, Map<number, [number, number]>>} sender -> block -> [held count, version] */
    this.blocks = new Map();
    /** @type {Map<string, number>} */
    this.senderVersion = new Map();
  }

  /** Block -> version for the blocks of `sender` holding an entry (a fresh map). @param {string} sender @returns {Map<number, number>} */
  heldBlocks(sender) {
    return new Map([...(this.blocks.get(sender) ?? [])].map(([b, v]) => [b, v[1]]));
  }

  /** Changes whenever the held set of `sender` changes; 0 when nothing is held. @param {string} sender */
  heldVersion(sender) {
    return this.senderVersion.get(sender) ?? 0;
  }

  /** @param {string} sender @param {number} seq @param {number} delta */
  touch(sender, seq, delta) {
    this.change += 1;
    let blocks = this.blocks.get(sender);
    if (!blocks) this.blocks.set(sender, (blocks = new Map()));
    const b = Math.floor(seq / DIGEST_BLOCK);
    let cur = blocks.get(b);
    if (!cur) blocks.set(b, (cur = [0, 0]));
    cur[0] += delta;
    cur[1] = this.change;
    if (!cur[0]) blocks.delete(b);
    if (blocks.size) this.senderVersion.set(sender, this.change);
    else { this.blocks.delete(sender); this.senderVersion.delete(sender); }
  }

  /** @param {string} sender @param {number} seq */
  isVoid(sender, seq) {
    return this.voids.has(keyOf(sender, seq));
  }

  /** Make a key void (equivocation); false if it already was. @param {string} sender @param {number} seq @param {Uint8Array} first @param {Uint8Array} second @param {number} until */
  void(sender, seq, first, second, until) {
    const k = keyOf(sender, seq);
    if (this.voids.has(k)) return false;
    if (this.entries.delete(k)) this.touch(sender, seq, -1);
    this.tombs.delete(k);
    this.voids.set(k, until);
    this.voidPairs.set(k, [sender, seq, first, second]);
    while (this.voidPairs.size > MAX_VOID_PAIRS) this.voidPairs.delete(/** @type {string} */ (this.voidPairs.keys().next().value));
    this.mark(sender, seq);
    return true;
  }

  get length() {
    return this.entries.size;
  }

  /** @param {string} sender @param {number} seq */
  get(sender, seq) {
    return this.entries.get(keyOf(sender, seq)) ?? null;
  }

  /** @param {string} sender @param {number} seq */
  holds(sender, seq) {
    return this.entries.has(keyOf(sender, seq));
  }

  /** @param {string} sender @param {number} seq */
  seen(sender, seq) {
    return this.seenBy.get(sender)?.has(seq) ?? false;
  }

  /** @param {string} sender @param {number} seq */
  getTombstone(sender, seq) {
    return this.tombs.get(keyOf(sender, seq)) ?? null;
  }

  /** @returns {Tombstone[]} */
  tombstones() {
    return [...this.tombs.values()].sort((a, b) => (a.sender === b.sender ? a.seq - b.seq : a.sender < b.sender ? -1 : 1));
  }

  /** Effective lamport of every held entry, by key (see the rules). @returns {Map<string, number>} */
  effectiveLamports() {
    /** @type {Map<string, LogEntry[]>} */
    const bySender = new Map();
    for (const e of this.entries.values()) {
      const list = bySender.get(e.sender);
      if (list) list.push(e);
      else bySender.set(e.sender, [e]);
    }
    /** @type {Map<string, number>} */
    const out = new Map();
    for (const list of bySender.values()) {
      list.sort((a, b) => a.seq - b.seq);
      let top = -1;
      for (const e of list) {
        top = Math.max(top, e.lamport);
        out.set(keyOf(e.sender, e.seq), top);
      }
    }
    return out;
  }

  /** Held entries in total order (effective lamport, sender, seq). @returns {LogEntry[]} */
  ordered() {
    const eff = this.effectiveLamports();
    const at = (/** @type {LogEntry} */ e) => ({ lamport: /** @type {number} */ (eff.get(keyOf(e.sender, e.seq))), sender: e.sender, seq: e.seq });
    return [...this.entries.values()].sort((a, b) => compareOrder(at(a), at(b)));
  }

  /** @returns {RangeMap} */
  have() {
    /** @type {RangeMap} */
    const out = new Map();
    for (const s of [...this.seenBy.keys()].sort()) {
      const rs = /** @type {RangeSet} */ (this.seenBy.get(s));
      if (rs.size) out.set(s, rs.ranges());
    }
    return out;
  }

  /** @param {string} sender */
  seenRanges(sender) {
    return this.seenBy.get(sender) ?? new RangeSet();
  }

  /** @param {string} sender @param {number} start @param {number} end @returns {LogEntry[]} */
  entriesInRange(sender, start, end) {
    return [...this.entries.values()].filter((e) => e.sender === sender && e.seq >= start && e.seq <= end).sort((a, b) => a.seq - b.seq);
  }

  /** Earliest time at which expire() has work to do. @returns {number|null} */
  nextDeadline() {
    let t = Infinity;
    for (const e of this.entries.values()) t = Math.min(t, e.expiresAt);
    for (const x of this.tombs.values()) t = Math.min(t, x.until);
    for (const u of this.voids.values()) t = Math.min(t, u);
    return t === Infinity ? null : t;
  }

  /** @param {LogEntry} entry @param {number} now */
  add(entry, now) {
    if (entry.expiresAt <= now || this.seen(entry.sender, entry.seq)) return false;
    this.entries.set(keyOf(entry.sender, entry.seq), entry);
    this.mark(entry.sender, entry.seq);
    this.touch(entry.sender, entry.seq, 1);
    return true;
  }

  /** @param {string} sender @param {number} seq */
  mark(sender, seq) {
    let rs = this.seenBy.get(sender);
    if (!rs) this.seenBy.set(sender, (rs = new RangeSet()));
    rs.add(seq);
  }

  /**
   * Delete a key (held or not) and refuse it until `until`; false if already tombstoned. For a held
   * entry `until` is raised to at least expires_at + skew.
   * @param {string} sender @param {number} seq @param {number} until @param {Uint8Array} [proof]
   */
  tombstone(sender, seq, until, proof = new Uint8Array(0)) {
    const k = keyOf(sender, seq);
    if (this.tombs.has(k) || this.voids.has(k)) return false;
    const entry = this.entries.get(k);
    if (entry) {
      until = Math.max(until, entry.expiresAt + this.skewMs);
      this.entries.delete(k);
      this.touch(sender, seq, -1);
    }
    this.tombs.set(k, { sender, seq, until, proof });
    this.mark(sender, seq);
    return true;
  }

  /** Erase entries with expires_at <= now; prune tombstones past until. @param {number} now @returns {[string, number][]} erased keys */
  expire(now) {
    const due = [...this.entries.values()].filter((e) => e.expiresAt <= now).sort((a, b) => a.expiresAt - b.expiresAt || (a.sender === b.sender ? a.seq - b.seq : a.sender < b.sender ? -1 : 1));
    /** @type {[string, number][]} */
    const erased = [];
    for (const e of due) {
      this.tombstone(e.sender, e.seq, e.expiresAt + this.skewMs);
      erased.push([e.sender, e.seq]);
    }
    for (const [k, t] of [...this.tombs]) {
      if (t.until <= now) {
        this.tombs.delete(k);
        this.seenBy.get(t.sender)?.remove(t.seq);
      }
    }
    for (const [k, until] of [...this.voids]) {
      if (until <= now) {
        const [sender, seq] = [k.slice(0, 32), Number(k.slice(33))];
        this.voids.delete(k);
        this.voidPairs.delete(k);
        this.seenBy.get(sender)?.remove(seq);
      }
    }
    return erased;
  }
}
