// Distribution (part of the sender-key hand-over): when a member we have not linked with gets our chains.
// Mirrors peer/core/room/distribution.py (rules there): a linked member is served at once, and a rotation
// reaches at once every member holding one of our live chains (room.js); any other is
// served (sealed envelopes of every live chain) paced, at most PER_WINDOW members per WINDOW_MS (a fixed
// window from the first serve after the previous one ended); one owed while the window is spent or others
// wait is queued, FIFO in two tiers: members that showed life (authored an envelope other than an ADD op)
// first, then silent ones. handleTimer serves the queue (nextDeadline is one of the room's timers). Persists nothing (queued again at restore).

export const PER_WINDOW = 32;
export const WINDOW_MS = 60_000;

export class Distribution {
  constructor(perWindow = PER_WINDOW, windowMs = WINDOW_MS) {
    this.perWindow = perWindow;
    this.windowMs = windowMs;
    /** @type {Set<string>} shown life */
    this.active = new Set();
    /** @type {[Set<string>, Set<string>]} (shown life, silent), FIFO (insertion order) */
    this.queues = [new Set(), new Set()];
    /** @type {[number, number]|null} (start, served in it) */
    this.window = null;
  }

  /** `peer` authored an envelope other than an ADD: it moves to the first tier if it waits. @param {string} peer */
  shownLife(peer) {
    if (this.active.has(peer)) return;
    this.active.add(peer);
    if (this.queues[1].delete(peer)) this.queues[0].add(peer);
  }

  /** `peer` is owed our live chains: true to serve it now (charged), else it waits. @param {string} peer @param {number} now */
  offer(peer, now) {
    if (this.waiting(peer)) return false;
    if (!this.queues[0].size && !this.queues[1].size && this.charge(now)) return true;
    this.queues[this.active.has(peer) ? 0 : 1].add(peer);
    return false;
  }

  /** `peer` is owed our live chains, served from the queue (at restore). @param {string} peer */
  enqueue(peer) {
    if (!this.waiting(peer)) this.queues[this.active.has(peer) ? 0 : 1].add(peer);
  }

  /** Waiting members to serve now, in queue order (each charged). @param {number} now @returns {string[]} */
  due(now) {
    /** @type {string[]} */
    const out = [];
    for (const queue of this.queues) {
      while (queue.size && this.charge(now)) {
        const peer = /** @type {string} */ (queue.values().next().value);
        queue.delete(peer);
        out.push(peer);
      }
    }
    return out;
  }

  /** When waiting members can be served: null if none waits, 0 if the window has room now. @returns {number|null} */
  nextDeadline() {
    if (!this.size) return null;
    if (!this.window || this.window[1] < this.perWindow) return 0;
    return this.window[0] + this.windowMs;
  }

  /** `peer` is served another way (a link) or left. @param {string} peer */
  drop(peer) {
    for (const queue of this.queues) queue.delete(peer);
  }

  /** @param {string} peer */
  waiting(peer) {
    return this.queues.some((q) => q.has(peer));
  }

  get size() {
    return this.queues[0].size + this.queues[1].size;
  }

  /** @param {number} now */
  charge(now) {
    let [start, used] = this.window ?? [now, 0];
    if (now - start >= this.windowMs || now < start) [start, used] = [now, 0];
    if (used >= this.perWindow) return false;
    this.window = [start, used + 1];
    return true;
  }
}
