// Small big-endian helpers shared by the binary core modules (chains, envelope, handshake, membership).
// Readers of remote input throw ProtocolError (never RangeError).

import { ProtocolError } from './errors.js';
import { concatBytes, utf8 } from './bytes.js';

export const u8 = (/** @type {number} */ v) => new Uint8Array([v]);
export function u16(/** @type {number} */ v) { const o = new Uint8Array(2); new DataView(o.buffer).setUint16(0, v); return o; }
export function u32(/** @type {number} */ v) { const o = new Uint8Array(4); new DataView(o.buffer).setUint32(0, v); return o; }
/** u64 from a non-negative safe integer. @param {number} v */
export function u64(v) {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError('u64 out of safe range');
  const o = new Uint8Array(8); new DataView(o.buffer).setBigUint64(0, BigInt(v)); return o;
}
/** @param {Uint8Array} b @param {number} off */
export const getU16 = (b, off) => new DataView(b.buffer, b.byteOffset + off, 2).getUint16(0);
/** @param {Uint8Array} b @param {number} off */
export const getU32 = (b, off) => new DataView(b.buffer, b.byteOffset + off, 4).getUint32(0);
/**
 * u64 as a Number; values above 2^53-1 are refused with `code` (JS cannot hold them exactly).
 * @param {Uint8Array} b @param {number} off @param {string} code
 */
export function getU64(b, off, code) {
  const v = new DataView(b.buffer, b.byteOffset + off, 8).getBigUint64(0);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError(code, 'integer above 2**53-1');
  return Number(v);
}
/** A label "text\0" (withNul) or "text". @param {string} text @param {boolean} [withNul] */
export const label = (text, withNul = false) => (withNul ? concatBytes(utf8(text), u8(0)) : utf8(text));
