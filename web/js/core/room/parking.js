// Parking (part of links): envelopes that overtook their author's ADD, held until the author is known.
// Mirrors peer/core/room/parking.py: only `unknown-sender` refusals are parked, with their neighbour and
// arrival time; bounded per neighbour (oldest of that neighbour first) and in total (oldest overall);
// each expires TTL_MS after it arrived; offered back once, when membership says the sender is known;
// a neighbour's parked envelopes go with its link. Persists nothing.

export const PER_NEIGHBOUR = 512;
export const TOTAL = 2048;
export const TTL_MS = 30_000;

/** @typedef {[number, string, Uint8Array]} Parked (parked at, sender, envelope) */

export class Parking {
  constructor(perNeighbour = PER_NEIGHBOUR, total = TOTAL, ttlMs = TTL_MS) {
    this.perNeighbour = perNeighbour;
    this.total = total;
    this.ttlMs = ttlMs;
    /** @type {Map<string, Parked[]>} neighbour -> parked, in arrival order */
    this.held = new Map();
    this.count = 0;
  }

  get size() {
    return this.count;
  }

  /** @param {string} neighbour @param {string} sender @param {Uint8Array} data @param {number} now */
  park(neighbour, sender, data, now) {
    let held = this.held.get(neighbour);
    if (!held) this.held.set(neighbour, (held = []));
    held.push([now, sender, data]);
    this.count += 1;
    if (held.length > this.perNeighbour) {
      held.shift();
      this.count -= 1;
    }
    while (this.count > this.total) {
      let oldest = null;
      for (const q of this.held.values()) if (q.length && (!oldest || q[0][0] < oldest[0][0])) oldest = q;
      /** @type {Parked[]} */ (oldest).shift();
      this.count -= 1;
    }
  }

  /** Remove and return `sender`'s parked envelopes as [neighbour, envelope], in arrival order. @param {string} sender @returns {[string, Uint8Array][]} */
  take(sender) {
    /** @type {[number, string, Uint8Array][]} */
    const out = [];
    for (const [neighbour, held] of this.held) {
      const keep = held.filter((it) => it[1] !== sender);
      for (const it of held) if (it[1] === sender) out.push([it[0], neighbour, it[2]]);
      this.count -= held.length - keep.length;
      this.held.set(neighbour, keep);
    }
    this.prune();
    return out.sort((a, b) => a[0] - b[0]).map(([, n, d]) => /** @type {[string, Uint8Array]} */ ([n, d]));
  }

  /** @param {string} neighbour */
  dropNeighbour(neighbour) {
    this.count -= this.held.get(neighbour)?.length ?? 0;
    this.held.delete(neighbour);
  }

  /** @param {number} now */
  expire(now) {
    let dropped = 0;
    for (const held of this.held.values()) {
      while (held.length && held[0][0] + this.ttlMs <= now) {
        held.shift();
        dropped += 1;
      }
    }
    this.count -= dropped;
    this.prune();
    return dropped;
  }

  /** @returns {number|null} */
  nextDeadline() {
    const firsts = [...this.held.values()].filter((q) => q.length).map((q) => q[0][0]);
    return firsts.length ? Math.min(...firsts) + this.ttlMs : null;
  }

  prune() {
    for (const [n, q] of [...this.held]) if (!q.length) this.held.delete(n);
  }
}
