// Data-channel frame codec (binary, big-endian). Mirrors peer/core/wire.py (PROTOCOL.md "Sync — Frames").
//
// Rules:
// - A frame is u8 type + body, at most MAX_FRAME (65,536) bytes; encoders split batches to fit.
// - decodeFrame returns a frame object or throws ProtocolError, never anything else: unknown types,
//   truncation, trailing bytes, zero counts, unsorted/overlapping ranges and integers above 2^53-1 are
//   refused (fail closed).
// - Ids travel as 16 raw bytes and decode to 32 lowercase hex chars.
// - HANDSHAKE, PAIRWISE and APP bodies are opaque bytes for the room layer.
// - DIGESTS, HASH_WANT and HASHES carry the equivocation check (sync_check.js): digests and hashes are
//   32 bytes, levels 0 (seqs) or 1 (blocks of DIGEST_BLOCK seqs), lo <= hi, a HASHES page lists at most
//   MAX_HASH_PAGE strictly ascending indices within [lo, hi], DIGESTS senders strictly ascending.

import { ProtocolError } from './errors.js';
import { concatBytes, fromHex, toHex } from './bytes.js';

export const MAX_FRAME = 65_536;
export const VERSION = 1;
export const MAX_INT = Number.MAX_SAFE_INTEGER;
export const MAX_PROOF = 1024;
export const DIGEST_BYTES = 32;
export const MAX_HASH_PAGE = 1024;
export const LEVEL_SEQ = 0;
export const LEVEL_BLOCK = 1;

export const FrameType = Object.freeze({
  HELLO: 0x01, ENVELOPES: 0x02, WANT: 0x03, ACK: 0x04, PING: 0x05, PONG: 0x06, TOMBSTONES: 0x07,
  DIGESTS: 0x08, HASH_WANT: 0x09, HASHES: 0x0a, HANDSHAKE: 0x10, PAIRWISE: 0x11, APP: 0x12,
});
/** @type {Set<number>} */
const KNOWN = new Set(Object.values(FrameType));
/** @type {Set<number>} */
export const OPAQUE_TYPES = new Set([FrameType.HANDSHAKE, FrameType.PAIRWISE, FrameType.APP]);

/**
 * @typedef {import('./log.js').Range} Range
 * @typedef {import('./log.js').RangeMap} RangeMap
 * @typedef {import('./log.js').Tombstone} Tombstone
 * @typedef {{type: 1, roomId: string, have: RangeMap, version: number}
 *   | {type: 2, items: Uint8Array[]} | {type: 3, ranges: RangeMap} | {type: 4, ranges: RangeMap}
 *   | {type: 5, nonce: number} | {type: 6, nonce: number} | {type: 7, items: Tombstone[]}
 *   | {type: 8, items: [string, number, Uint8Array][]} | {type: 9, sender: string, level: number, lo: number, hi: number}
 *   | {type: 10, sender: string, level: number, lo: number, hi: number, items: [number, Uint8Array][]}
 *   | {type: 16|17|18, body: Uint8Array}} Frame
 */

/** @param {string} id */
function idBytes(id) {
  if (!/^[0-9a-f]{32}$/.test(id)) throw new RangeError('id must be 32 lowercase hex characters');
  return fromHex(id);
}

/** @param {number} v */
function checkInt(v) {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError('integer out of wire range');
}

const u8 = (/** @type {number} */ v) => new Uint8Array([v]);
function u16(/** @type {number} */ v) { const o = new Uint8Array(2); new DataView(o.buffer).setUint16(0, v); return o; }
function u32(/** @type {number} */ v) { const o = new Uint8Array(4); new DataView(o.buffer).setUint32(0, v); return o; }
function u64(/** @type {number} */ v) { const o = new Uint8Array(8); new DataView(o.buffer).setBigUint64(0, BigInt(v)); return o; }

/** @param {string} sender @param {Range[]} ranges */
function senderBlock(sender, ranges) {
  const parts = [idBytes(sender), u16(ranges.length)];
  let prev = -2;
  for (const [a, b] of ranges) {
    checkInt(a); checkInt(b);
    if (a > b || a < prev + 2) throw new RangeError('ranges must be sorted, disjoint and non-adjacent');
    prev = b;
    parts.push(u64(a), u64(b));
  }
  return concatBytes(...parts);
}

/** @param {RangeMap} ranges @param {number} budget @returns {Uint8Array[][]} */
function splitRangemap(ranges, budget) {
  const maxRanges = Math.floor((budget - 18) / 16);
  /** @type {Uint8Array[][]} */
  const groups = [[]];
  let size = 0;
  for (const sender of [...ranges.keys()].sort()) {
    const rs = /** @type {Range[]} */ (ranges.get(sender));
    for (let i = 0; i < rs.length; i += maxRanges) {
      const block = senderBlock(sender, rs.slice(i, i + maxRanges));
      if (size + block.length > budget && groups[groups.length - 1].length) { groups.push([]); size = 0; }
      groups[groups.length - 1].push(block);
      size += block.length;
    }
  }
  return groups[0].length ? groups : [];
}

/** @param {number} type @param {RangeMap} ranges */
function rangemapFrames(type, ranges) {
  const nonempty = new Map([...ranges].filter(([, r]) => r.length));
  return splitRangemap(nonempty, MAX_FRAME - 3).map((g) => concatBytes(u8(type), u16(g.length), ...g));
}

/** One HELLO; senders that do not fit are omitted (under-claims, never over-claims). @param {string} roomId @param {RangeMap} have */
export function encodeHello(roomId, have) {
  const head = concatBytes(u8(FrameType.HELLO), u8(VERSION), idBytes(roomId));
  const budget = MAX_FRAME - head.length - 2;
  /** @type {Uint8Array[]} */
  const blocks = [];
  let size = 0;
  for (const sender of [...have.keys()].sort()) {
    const rs = /** @type {Range[]} */ (have.get(sender));
    if (!rs.length) continue;
    const maxRanges = Math.floor((budget - size - 18) / 16);
    if (maxRanges <= 0) break;
    const block = senderBlock(sender, rs.slice(0, maxRanges));
    blocks.push(block);
    size += block.length;
  }
  return concatBytes(head, u16(blocks.length), ...blocks);
}

export const encodeWant = (/** @type {RangeMap} */ r) => rangemapFrames(FrameType.WANT, r);
export const encodeAck = (/** @type {RangeMap} */ r) => rangemapFrames(FrameType.ACK, r);

/** Coalesce envelopes into as few ENVELOPES frames as fit. @param {Uint8Array[]} items */
export function encodeEnvelopes(items) {
  const limit = MAX_FRAME - 1 - 2 - 4;
  /** @type {Uint8Array[]} */
  const frames = [];
  /** @type {Uint8Array[]} */
  let batch = [];
  let size = 3;
  const flush = () => frames.push(concatBytes(u8(FrameType.ENVELOPES), u16(batch.length), ...batch.flatMap((b) => [u32(b.length), b])));
  for (const item of items) {
    if (!(item.length > 0 && item.length <= limit)) throw new RangeError('envelope empty or too large for one frame');
    const need = 4 + item.length;
    if (size + need > MAX_FRAME || batch.length === 0xffff) { flush(); batch = []; size = 3; }
    batch.push(item);
    size += need;
  }
  if (batch.length) flush();
  return frames;
}

/** @param {Tombstone[]} items */
export function encodeTombstones(items) {
  /** @type {Uint8Array[]} */
  const frames = [];
  /** @type {Uint8Array[]} */
  let batch = [];
  let size = 3;
  const flush = () => frames.push(concatBytes(u8(FrameType.TOMBSTONES), u16(batch.length), ...batch));
  for (const t of items) {
    checkInt(t.seq); checkInt(t.until);
    if (t.proof.length > MAX_PROOF) throw new RangeError('tombstone proof too large');
    const rec = concatBytes(idBytes(t.sender), u64(t.seq), u64(t.until), u16(t.proof.length), t.proof);
    if (size + rec.length > MAX_FRAME || batch.length === 0xffff) { flush(); batch = []; size = 3; }
    batch.push(rec);
    size += rec.length;
  }
  if (batch.length) flush();
  return frames;
}

/** DIGESTS frames, sorted by sender and split to fit. @param {[string, number, Uint8Array][]} items */
export function encodeDigests(items) {
  const perFrame = Math.floor((MAX_FRAME - 3) / 56);
  const sorted = [...items].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const recs = sorted.map(([sender, hi, digest], i) => {
    checkInt(hi);
    if (digest.length !== DIGEST_BYTES || (i > 0 && sorted[i - 1][0] === sender)) throw new RangeError('one 32-byte digest per sender');
    return concatBytes(idBytes(sender), u64(hi), digest);
  });
  /** @type {Uint8Array[]} */
  const frames = [];
  for (let i = 0; i < recs.length; i += perFrame) {
    const batch = recs.slice(i, i + perFrame);
    frames.push(concatBytes(u8(FrameType.DIGESTS), u16(batch.length), ...batch));
  }
  return frames;
}

/** @param {number} level @param {number} lo @param {number} hi */
function checkPage(level, lo, hi) {
  checkInt(lo); checkInt(hi);
  if ((level !== LEVEL_SEQ && level !== LEVEL_BLOCK) || lo > hi) throw new RangeError('bad level or range');
}

/** @param {string} sender @param {number} level @param {number} lo @param {number} hi */
export function encodeHashWant(sender, level, lo, hi) {
  checkPage(level, lo, hi);
  return concatBytes(u8(FrameType.HASH_WANT), idBytes(sender), u8(level), u64(lo), u64(hi));
}

/** @param {string} sender @param {number} level @param {number} lo @param {number} hi @param {[number, Uint8Array][]} items */
export function encodeHashes(sender, level, lo, hi, items) {
  checkPage(level, lo, hi);
  if (items.length > MAX_HASH_PAGE) throw new RangeError('hash page too large');
  const parts = [u8(FrameType.HASHES), idBytes(sender), u8(level), u64(lo), u64(hi), u16(items.length)];
  let prev = -1;
  for (const [index, h] of items) {
    if (!(index >= lo && index <= hi) || index <= prev || h.length !== DIGEST_BYTES) throw new RangeError('hash items must ascend within [lo, hi] and be 32 bytes');
    prev = index;
    parts.push(u64(index), h);
  }
  return concatBytes(...parts);
}

export function encodePing(/** @type {number} */ nonce) { checkInt(nonce); return concatBytes(u8(FrameType.PING), u64(nonce)); }
export function encodePong(/** @type {number} */ nonce) { checkInt(nonce); return concatBytes(u8(FrameType.PONG), u64(nonce)); }

/** @param {number} type @param {Uint8Array} body */
export function encodeOpaque(type, body) {
  if (!OPAQUE_TYPES.has(type)) throw new RangeError('not an opaque frame type');
  if (1 + body.length > MAX_FRAME) throw new RangeError('opaque body too large');
  return concatBytes(u8(type), body);
}

class Reader {
  /** @param {Uint8Array} data @param {number} pos */
  constructor(data, pos) {
    this.data = data;
    this.pos = pos;
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  /** @param {number} n */
  take(n) {
    if (this.pos + n > this.data.length) throw new ProtocolError('truncated', 'frame ends early');
    const out = this.data.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  u8() { this.take(1); return this.view.getUint8(this.pos - 1); }
  u16() { this.take(2); return this.view.getUint16(this.pos - 2); }
  u32() { this.take(4); return this.view.getUint32(this.pos - 4); }
  u64() {
    this.take(8);
    const v = this.view.getBigUint64(this.pos - 8);
    if (v > BigInt(MAX_INT)) throw new ProtocolError('bad-integer', 'integer above 2**53-1');
    return Number(v);
  }
  ident() { return toHex(this.take(16)); }
  end() { if (this.pos !== this.data.length) throw new ProtocolError('trailing-bytes', 'bytes after the end of the frame'); }
}

/** @param {Reader} r @param {boolean} allowEmpty @returns {RangeMap} */
function readRangemap(r, allowEmpty) {
  const n = r.u16();
  if (n === 0 && !allowEmpty) throw new ProtocolError('empty', 'no ranges');
  /** @type {RangeMap} */
  const out = new Map();
  let prevSender = '';
  for (let i = 0; i < n; i++) {
    const sender = r.ident();
    if (sender <= prevSender) throw new ProtocolError('bad-ranges', 'senders not strictly ascending');
    prevSender = sender;
    const count = r.u16();
    if (count === 0) throw new ProtocolError('bad-ranges', 'sender without ranges');
    /** @type {Range[]} */
    const ranges = [];
    let prev = -2;
    for (let j = 0; j < count; j++) {
      const a = r.u64(), b = r.u64();
      if (a > b || a < prev + 2) throw new ProtocolError('bad-ranges', 'ranges not sorted, disjoint and non-adjacent');
      prev = b;
      ranges.push([a, b]);
    }
    out.set(sender, ranges);
  }
  return out;
}

/** Parse one frame; ProtocolError on anything malformed or oversized. @param {unknown} input @returns {Frame} */
export function decodeFrame(input) {
  if (!(input instanceof Uint8Array)) throw new ProtocolError('bad-frame', 'frame is not bytes');
  const data = input;
  if (data.length > MAX_FRAME) throw new ProtocolError('too-large', 'frame above 64 KiB');
  if (!data.length) throw new ProtocolError('bad-frame', 'empty frame');
  const type = data[0];
  if (!KNOWN.has(type)) throw new ProtocolError('unknown-type', 'unknown frame type');
  if (OPAQUE_TYPES.has(type)) return /** @type {Frame} */ ({ type, body: data.slice(1) });
  const r = new Reader(data, 1);
  /** @type {Frame} */
  let frame;
  if (type === FrameType.HELLO) {
    const version = r.u8();
    if (version !== VERSION) throw new ProtocolError('bad-version', 'unsupported sync version');
    const roomId = r.ident();
    frame = { type, roomId, have: readRangemap(r, true), version };
  } else if (type === FrameType.ENVELOPES) {
    const n = r.u16();
    if (n === 0) throw new ProtocolError('empty', 'empty envelope batch');
    const items = [];
    for (let i = 0; i < n; i++) {
      const len = r.u32();
      if (len === 0) throw new ProtocolError('bad-envelope', 'empty envelope');
      items.push(r.take(len));
    }
    frame = { type, items };
  } else if (type === FrameType.WANT || type === FrameType.ACK) {
    frame = { type, ranges: readRangemap(r, false) };
  } else if (type === FrameType.PING || type === FrameType.PONG) {
    frame = { type, nonce: r.u64() };
  } else if (type === FrameType.DIGESTS) {
    const n = r.u16();
    if (n === 0) throw new ProtocolError('empty', 'no digests');
    /** @type {[string, number, Uint8Array][]} */
    const items = [];
    let prevSender = '';
    for (let i = 0; i < n; i++) {
      const sender = r.ident();
      if (sender <= prevSender) throw new ProtocolError('bad-digests', 'senders not strictly ascending');
      prevSender = sender;
      const hi = r.u64();
      items.push([sender, hi, r.take(DIGEST_BYTES)]);
    }
    frame = { type: 8, items };
  } else if (type === FrameType.HASH_WANT || type === FrameType.HASHES) {
    const sender = r.ident();
    const level = r.u8();
    const lo = r.u64(), hi = r.u64();
    if (level !== LEVEL_SEQ && level !== LEVEL_BLOCK) throw new ProtocolError('bad-level', 'unknown hash level');
    if (lo > hi) throw new ProtocolError('bad-range', 'lo above hi');
    if (type === FrameType.HASH_WANT) {
      frame = { type: 9, sender, level, lo, hi };
    } else {
      const n = r.u16();
      if (n > MAX_HASH_PAGE) throw new ProtocolError('too-large', 'hash page above 1,024 items');
      /** @type {[number, Uint8Array][]} */
      const items = [];
      let prev = -1;
      for (let i = 0; i < n; i++) {
        const index = r.u64();
        if (!(index >= lo && index <= hi) || index <= prev) throw new ProtocolError('bad-hashes', 'indices not ascending within [lo, hi]');
        prev = index;
        items.push([index, r.take(DIGEST_BYTES)]);
      }
      frame = { type: 10, sender, level, lo, hi, items };
    }
  } else {
    const n = r.u16();
    if (n === 0) throw new ProtocolError('empty', 'empty tombstone batch');
    const items = [];
    for (let i = 0; i < n; i++) {
      const sender = r.ident();
      const seq = r.u64(), until = r.u64();
      const plen = r.u16();
      if (plen > MAX_PROOF) throw new ProtocolError('too-large', 'tombstone proof too large');
      items.push({ sender, seq, until, proof: r.take(plen) });
    }
    frame = /** @type {Frame} */ ({ type: 7, items });
  }
  r.end();
  return frame;
}
