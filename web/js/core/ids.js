// Identifiers. Mirrors peer/core/ids.py.
//
// Rules: peer id = lowercase hex of the first 16 bytes of SHA-256(Ed25519 public key) (32 chars);
// room id = 32 lowercase hex chars (opaque to the server). Parsers throw ProtocolError.

import { ProtocolError } from './errors.js';
import { toHex } from './bytes.js';
import { sha256 } from './crypto.js';

const ID_RE = /^[0-9a-f]{32}$/;

/** @param {Uint8Array} publicKey @returns {Promise<string>} */
export async function peerIdFromPublicKey(publicKey) {
  return toHex((await sha256(publicKey)).subarray(0, 16));
}

/** @param {unknown} value @returns {value is string} */
export function isId(value) {
  return typeof value === 'string' && ID_RE.test(value);
}

/** @param {unknown} value @param {string} [what] @returns {string} */
export function parsePeerId(value, what = 'peer id') {
  if (!isId(value)) throw new ProtocolError('bad-id', `${what} must be 32 lowercase hex chars`);
  return /** @type {string} */ (value);
}

export const parseRoomId = (/** @type {unknown} */ value) => parsePeerId(value, 'room id');
