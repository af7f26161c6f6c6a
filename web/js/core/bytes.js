// Byte helpers shared by every core module: b64u (base64url, no padding), hex, utf8, concat.
// Decoders of remote input are strict (canonical only) and throw ProtocolError.

import { ProtocolError } from './errors.js';

const B64U = /^[A-Za-z0-9_-]*$/;
const HEX = /^(?:[0-9a-f]{2})*$/;
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** @param {Uint8Array} bytes @returns {string} */
export function b64uEncode(bytes) {
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * Strict base64url decode: no padding, no whitespace, canonical trailing bits.
 * @param {unknown} text @returns {Uint8Array}
 */
export function b64uDecode(text) {
  if (typeof text !== 'string' || !B64U.test(text) || text.length % 4 === 1) {
    throw new ProtocolError('bad-b64u', 'not base64url without padding');
  }
  const std = text.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((text.length + 3) % 4);
  const bin = atob(std);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  if (b64uEncode(out) !== text) throw new ProtocolError('bad-b64u', 'non-canonical base64url');
  return out;
}

/** @param {Uint8Array} bytes @returns {string} lowercase hex */
export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** @param {unknown} text @returns {Uint8Array} */
export function fromHex(text) {
  if (typeof text !== 'string' || !HEX.test(text)) throw new ProtocolError('bad-hex', 'not lowercase hex');
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** @param {string} text @returns {Uint8Array} */
export function utf8(text) {
  return encoder.encode(text);
}

/** @param {Uint8Array} bytes @returns {string} */
export function fromUtf8(bytes) {
  try {
    return decoder.decode(bytes);
  } catch {
    throw new ProtocolError('bad-utf8', 'invalid UTF-8');
  }
}

/** @param {...Uint8Array} parts @returns {Uint8Array} */
export function concatBytes(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Constant-time-ish equality (length leaks, content does not short-circuit). */
export function equalBytes(/** @type {Uint8Array} */ a, /** @type {Uint8Array} */ b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
