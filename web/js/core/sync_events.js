// The sync engine's configuration, events and per-neighbour session record (mirrors
// peer/core/sync_events.py; the engine is sync.js, its serving part sync_serve.js).

import { DEFAULT_SKEW_MS, RangeSet } from './log.js';

/**
 * @typedef {import('./log.js').LogEntry} LogEntry
 * @typedef {import('./log.js').Tombstone} Tombstone
 * @typedef {{type:'entry-added', entry: LogEntry} | {type:'entry-expired', sender: string, seq: number}
 *   | {type:'entry-deleted', sender: string, seq: number} | {type:'entry-voided', sender: string, seq: number, neighbour: string} | {type:'acked', neighbour: string, sender: string, seq: number}
 *   | {type:'neighbour-ready', neighbour: string} | {type:'neighbour-timed-out', neighbour: string}
 *   | {type:'protocol-error', neighbour: string, code: string}
 *   | {type:'envelope-refused', neighbour: string, code: string, data: Uint8Array}
 *   | {type:'opaque', neighbour: string, frameType: number, body: Uint8Array}} SyncEvent
 */

export const DEFAULT_SYNC_CONFIG = Object.freeze({
  heartbeatMs: 1000, deadAfterMs: 4000, wantTimeoutMs: 2000, resyncMs: 5000, maxWantKeys: 4096,
  maxWantAttempts: 8, maxServeKeys: 8192, skewMs: DEFAULT_SKEW_MS, maxLamportJump: 2 ** 32,
  announceDelayMs: 250,
  maxServeKeysPerWindow: 16384, maxServeBytesPerWindow: 8 * 1024 * 1024,
  maxForeignTombstonesPerNeighbour: 1024, maxForeignTombstones: 8192,
  maxChecksPerNeighbour: 4, maxHashPagesPerWindow: 32, maxHashItemsPerWindow: 8192, maxCheckWants: 256,
  maxDigestsPerWindow: 16,
});

export class Session {
  /** @param {string} neighbour @param {number} now @param {typeof DEFAULT_SYNC_CONFIG} c */
  constructor(neighbour, now, c) {
    this.neighbour = neighbour;
    this.lastHeard = now;
    this.nextPing = now + c.heartbeatMs;
    this.nextHello = now + c.resyncMs;
    this.ready = false;
    this.rejected = false;
    /** @type {number|null} */
    this.retryAt = null;
    this.pingNonce = 0;
    /** @type {Map<string, RangeSet>} */
    this.remoteHave = new Map();
    /** @type {Uint8Array[]} */
    this.control = [];
    /** @type {Map<string, Uint8Array>} keyed: one key queued once */
    this.envs = new Map();
    /** @type {Map<string, [Uint8Array, Uint8Array]>} both signed versions of a voided (equivocated) key */
    this.voids = new Map();
    /** @type {Map<string, Tombstone>} */
    this.tombs = new Map();
    /** @type {Map<string, RangeSet>} */
    this.acks = new Map();
  }

  /** @param {string} sender @param {number} seq */
  has(sender, seq) {
    return this.remoteHave.get(sender)?.has(seq) ?? false;
  }

  /** @param {string} sender @param {number} seq */
  mark(sender, seq) {
    let rs = this.remoteHave.get(sender);
    if (!rs) this.remoteHave.set(sender, (rs = new RangeSet()));
    rs.add(seq);
  }
}

/** @param {Map<string, RangeSet>} m */
export const toRangeMap = (m) => new Map([...m].map(([k, v]) => [k, v.ranges()]));
