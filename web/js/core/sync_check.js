// The equivocation check (a part of the sync engine; mirrors peer/core/sync_check.py, whose header states
// the rules in full; PROTOCOL.md "Sync", "Equivocation check"). Neighbours compare digests of what they
// hold, so two versions of one (sender, seq) meet even when nobody relays.
//
// Rules:
// - fp = SHA-256(envelope); block (64 seqs, block = seq // 64, only blocks holding an entry) =
//   SHA-256(concat of u64be(seq) || fp over its held seqs ascending); digest(hi) = SHA-256("ephemesh/sync-digest/v1"
//   || concat of u64be(block) || block hash over blocks holding a seq <= hi, ascending; the block of hi
//   counts only its seqs <= hi). Only held entries count.
// - After each HELLO: one DIGESTS frame, per sender both claim, hi = the lower of the two marks.
// - DIGESTS whose hi we have seen up to, with another digest(hi), starts a check (at most maxChecksPerNeighbour): block
//   hashes (level 1), then seq hashes (level 0) of differing blocks, then a WANT for each differing seq
//   (at most maxCheckWants per page). Only answers to the request made, in time, are used.
// - HASH_WANT is served with a complete page of at most MAX_HASH_PAGE hashes; per neighbour and window at
//   most maxHashPagesPerWindow pages (served, and asked) and maxHashItemsPerWindow items.
// - Digests are cached per sender for DIGEST_MARKS marks; at most maxDigestsPerWindow uncached ones are
//   computed per neighbour and window (for our DIGESTS or to compare); a sender left out waits.
// Owns: the hash cache ((seq, fp) per block, no envelope bytes) and, per neighbour, the checks in progress and window counters. Persists nothing.
// Interface with the engine: its Log (public API) and the Session records (claimed ranges, control queue).

import { concatBytes, equalBytes } from './bytes.js';
import { sha256 } from './crypto.js';
import { DIGEST_BLOCK, RangeSet } from './log.js';
import * as wire from './wire.js';

/**
 * @typedef {import('./log.js').Log} Log
 * @typedef {import('./sync_events.js').Session} Session
 * @typedef {typeof import('./sync_events.js').DEFAULT_SYNC_CONFIG} SyncConfig
 * @typedef {[number, number, number]} Page (level, lo, hi)
 * @typedef {{level: number, lo: number, hi: number, deadline: number, todo: Page[]}} CheckState
 * @typedef {{checks: Map<string, CheckState>, windowEnd: number, pagesServed: number, itemsServed: number, pagesAsked: number, digests: number}} Peer
 * @typedef {{version: number, hash: Uint8Array, items: [number, Uint8Array][]}} Block
 */

export const DIGEST_TAG = new TextEncoder().encode('ephemesh/sync-digest/v1');
/** digests remembered per sender for its current held set (one per mark asked, oldest dropped first) */
export const DIGEST_MARKS = 4;

/** @param {number} v */
function u64(v) { const o = new Uint8Array(8); new DataView(o.buffer).setBigUint64(0, BigInt(v)); return o; }

/** The highest number in `rs` (null if empty). @param {RangeSet} rs */
function top(rs) {
  const r = rs.ranges();
  return r.length ? r[r.length - 1][1] : null;
}

export class Check {
  /** @param {SyncConfig} config @param {Log} log */
  constructor(config, log) {
    this.config = config;
    this.log = log;
    /** @type {Map<string, Peer>} */
    this.peers = new Map();
    /** @type {Map<string, Map<number, Block>>} */
    this.blocks = new Map();
    /** @type {Map<string, [number, Map<number, Uint8Array|null>]>} sender -> [log version, mark -> digest] */
    this.digests = new Map();
  }

  /** @param {string} neighbour */
  end(neighbour) {
    this.peers.delete(neighbour);
  }

  /** @param {string} neighbour */
  counts(neighbour) {
    const p = this.peers.get(neighbour);
    return { checks: p?.checks.size ?? 0, digests: p?.digests ?? 0 };
  }

  /** After a HELLO from `s`: per sender both claim, our digest up to the lower mark. @param {Session} s @param {number} now */
  async summary(s, now) {
    for (const x of [...this.digests.keys()]) if (!this.log.heldVersion(x)) this.forget(x);
    const p = this.peer(s.neighbour, now);
    /** @type {[string, number, Uint8Array][]} */
    const items = [];
    for (const [sender, theirs] of s.remoteHave) {
      const mine = top(this.log.seenRanges(sender)), other = top(theirs);
      if (mine === null || other === null) continue;
      const hi = Math.min(mine, other);
      if (!this.spend(p, sender, hi)) continue;
      const d = await this.digest(sender, hi);
      if (d !== null) items.push([sender, hi, d]);
    }
    s.control.push(...wire.encodeDigests(items).slice(0, 1));
  }

  /** @param {Session} s @param {[string, number, Uint8Array][]} items @param {number} now */
  async onDigests(s, items, now) {
    const c = this.config;
    const p = this.peer(s.neighbour, now);
    for (const [k, ch] of [...p.checks]) if (ch.deadline <= now) p.checks.delete(k);
    for (const [sender, hi, theirs] of items) {
      if (p.checks.size >= c.maxChecksPerNeighbour || p.pagesAsked >= c.maxHashPagesPerWindow) return;
      const t = top(this.log.seenRanges(sender));
      if (p.checks.has(sender) || t === null || t < hi || !this.spend(p, sender, hi)) continue;
      const mine = await this.digest(sender, hi);
      if (mine === null || equalBytes(mine, theirs)) continue;
      /** @type {CheckState} */
      const ch = { level: wire.LEVEL_BLOCK, lo: 0, hi: 0, deadline: 0, todo: [] };
      p.checks.set(sender, ch);
      this.ask(s, p, sender, ch, [wire.LEVEL_BLOCK, 0, Math.floor(hi / DIGEST_BLOCK)], now);
    }
  }

  /** @param {Session} s @param {{sender: string, level: number, lo: number, hi: number}} f @param {number} now */
  async onHashWant(s, f, now) {
    const c = this.config;
    const p = this.peer(s.neighbour, now);
    const limit = Math.min(wire.MAX_HASH_PAGE, c.maxHashItemsPerWindow - p.itemsServed);
    if (p.pagesServed >= c.maxHashPagesPerWindow || limit <= 0) return; // over budget: ignored
    p.pagesServed += 1;
    const [items, hi] = await this.page(f.sender, f.level, f.lo, f.hi, limit);
    p.itemsServed += items.length;
    s.control.push(wire.encodeHashes(f.sender, f.level, f.lo, hi, items));
  }

  /** @param {Session} s @param {{sender: string, level: number, lo: number, hi: number, items: [number, Uint8Array][]}} f @param {number} now */
  async onHashes(s, f, now) {
    const c = this.config;
    const sender = f.sender;
    const ch = this.peers.get(s.neighbour)?.checks.get(sender);
    if (!ch || f.level !== ch.level || f.lo !== ch.lo || f.hi > ch.hi || ch.deadline <= now) return; // not asked: ignored
    const blocks = this.log.heldBlocks(sender);
    if (f.level === wire.LEVEL_BLOCK) {
      for (const [b, h] of f.items) {
        const v = blocks.get(b);
        if (v !== undefined && ch.todo.length < wire.MAX_HASH_PAGE && !equalBytes((await this.block(sender, b, v)).hash, h)) {
          ch.todo.push([wire.LEVEL_SEQ, b * DIGEST_BLOCK, b * DIGEST_BLOCK + DIGEST_BLOCK - 1]);
        }
      }
    } else {
      const wants = new RangeSet();
      let budget = c.maxCheckWants;
      for (const [q, h] of f.items) {
        const b = Math.floor(q / DIGEST_BLOCK);
        const v = blocks.get(b);
        if (budget <= 0 || v === undefined) continue;
        const fp = (await this.block(sender, b, v)).items.find((x) => x[0] === q)?.[1];
        if (fp !== undefined && !equalBytes(fp, h)) { wants.add(q); budget -= 1; }
      }
      if (wants.size) s.control.push(...wire.encodeWant(new Map([[sender, wants.ranges()]])));
    }
    if (f.hi < ch.hi) ch.todo.unshift([f.level, f.hi + 1, ch.hi]);
    const p = this.peer(s.neighbour, now);
    const next = ch.todo.length && p.pagesAsked < c.maxHashPagesPerWindow ? ch.todo.shift() : undefined;
    if (next) this.ask(s, p, sender, ch, next, now);
    else p.checks.delete(sender);
  }

  /** Our digest of `sender`'s held entries with seq <= hi (null when none). @param {string} sender @param {number} hi @returns {Promise<Uint8Array|null>} */
  async digest(sender, hi) {
    const version = this.log.heldVersion(sender);
    if (!version) { this.forget(sender); return null; }
    let got = this.digests.get(sender);
    if (!got || got[0] !== version) this.digests.set(sender, (got = [version, new Map()]));
    const marks = got[1];
    const known = marks.get(hi);
    if (known !== undefined) return known;
    const d = await this.compute(sender, hi);
    marks.set(hi, d);
    while (marks.size > DIGEST_MARKS) marks.delete(/** @type {number} */ (marks.keys().next().value));
    return d;
  }

  /** @param {string} sender @param {number} hi @returns {Promise<Uint8Array|null>} */
  async compute(sender, hi) {
    const blocks = this.log.heldBlocks(sender);
    const parts = /** @type {Uint8Array[]} */ ([DIGEST_TAG]);
    const last = Math.floor(hi / DIGEST_BLOCK);
    for (const b of [...blocks.keys()].filter((x) => x <= last).sort((x, y) => x - y)) {
      const block = await this.block(sender, b, /** @type {number} */ (blocks.get(b)));
      if (block.items[block.items.length - 1][0] > hi) { // the block of `hi`, cut after it
        const cut = block.items.filter(([q]) => q <= hi);
        if (cut.length) parts.push(u64(b), await sha256(concatBytes(...cut.flatMap(([q, fp]) => [u64(q), fp]))));
      } else {
        parts.push(u64(b), block.hash);
      }
    }
    const cache = this.blocks.get(sender) ?? new Map();
    this.blocks.set(sender, new Map([...cache].filter(([b]) => blocks.has(b))));
    return parts.length === 1 ? null : sha256(concatBytes(...parts));
  }

  /** @param {string} sender @param {number} b @param {number} version @returns {Promise<Block>} */
  async block(sender, b, version) {
    let cache = this.blocks.get(sender);
    if (!cache) this.blocks.set(sender, (cache = new Map()));
    const got = cache.get(b);
    if (got && got.version === version) return got;
    /** @type {[number, Uint8Array][]} a changed block is hashed again whole: no envelope is kept here */
    const items = [];
    for (let q = b * DIGEST_BLOCK; q < (b + 1) * DIGEST_BLOCK; q++) {
      const e = this.log.get(sender, q);
      if (e) items.push([q, await sha256(e.data)]);
    }
    const block = { version, hash: await sha256(concatBytes(...items.flatMap(([q, fp]) => [u64(q), fp]))), items };
    cache.set(b, block);
    return block;
  }

  /** @param {string} sender @param {number} level @param {number} lo @param {number} hi @param {number} limit @returns {Promise<[[number, Uint8Array][], number]>} */
  async page(sender, level, lo, hi, limit) {
    const blocks = this.log.heldBlocks(sender);
    /** @type {[number, Uint8Array][]} */
    const out = [];
    const sorted = [...blocks.keys()].sort((x, y) => x - y);
    if (level === wire.LEVEL_BLOCK) {
      for (const b of sorted.filter((x) => x >= lo && x <= hi)) {
        if (out.length === limit) return [out, out[out.length - 1][0]];
        out.push([b, (await this.block(sender, b, /** @type {number} */ (blocks.get(b)))).hash]);
      }
      return [out, hi];
    }
    const bl = Math.floor(lo / DIGEST_BLOCK), bh = Math.floor(hi / DIGEST_BLOCK);
    for (const b of sorted.filter((x) => x >= bl && x <= bh)) {
      for (const [q, fp] of (await this.block(sender, b, /** @type {number} */ (blocks.get(b)))).items) {
        if (q < lo || q > hi) continue;
        if (out.length === limit) return [out, out[out.length - 1][0]];
        out.push([q, fp]);
      }
    }
    return [out, hi];
  }

  /** @param {string} sender */
  forget(sender) {
    this.digests.delete(sender);
    this.blocks.delete(sender);
  }

  /** May we have digest(sender, hi) for this neighbour? Free when cached, else from its budget. @param {Peer} p @param {string} sender @param {number} hi */
  spend(p, sender, hi) {
    const got = this.digests.get(sender);
    if (got && got[0] === this.log.heldVersion(sender) && got[1].has(hi)) return true;
    if (p.digests >= this.config.maxDigestsPerWindow) return false;
    p.digests += 1;
    return true;
  }

  /** @param {string} neighbour @param {number} now @returns {Peer} */
  peer(neighbour, now) {
    let p = this.peers.get(neighbour);
    if (!p) this.peers.set(neighbour, (p = { checks: new Map(), windowEnd: 0, pagesServed: 0, itemsServed: 0, pagesAsked: 0, digests: 0 }));
    if (now >= p.windowEnd) {
      p.windowEnd = now + this.config.wantTimeoutMs;
      p.pagesServed = 0; p.itemsServed = 0; p.pagesAsked = 0; p.digests = 0;
    }
    return p;
  }

  /** @param {Session} s @param {Peer} p @param {string} sender @param {CheckState} ch @param {Page} page @param {number} now */
  ask(s, p, sender, ch, page, now) {
    [ch.level, ch.lo, ch.hi] = page;
    ch.deadline = now + this.config.wantTimeoutMs;
    p.pagesAsked += 1;
    s.control.push(wire.encodeHashWant(sender, ...page));
  }
}
