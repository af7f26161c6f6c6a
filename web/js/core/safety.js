// Safety numbers: 60 digits two members compare out of band. Mirrors peer/core/safety.py.
//
// Rules: for each Ed25519 key k: h0 = SHA-256(LABEL || k), h(i+1) = SHA-256(h(i) || k) for 5200
// rounds; the first 30 bytes give six 5-byte big-endian integers mod 100000, 5 digits each. The two
// 30-digit halves are sorted as strings and concatenated, shown as 12 groups of 5 digits.

import { concatBytes, utf8 } from './bytes.js';
import { checkEd25519PublicKey, sha256 } from './crypto.js';

const LABEL = concatBytes(utf8('ephemesh-v1 safety-number'), new Uint8Array([0]));
export const ITERATIONS = 5200;

/** @param {Uint8Array} publicKey @returns {Promise<string>} 30 digits */
export async function keyDigits(publicKey) {
  checkEd25519PublicKey(publicKey);
  let h = await sha256(concatBytes(LABEL, publicKey));
  for (let i = 0; i < ITERATIONS; i++) h = await sha256(concatBytes(h, publicKey));
  let out = '';
  for (let i = 0; i < 30; i += 5) {
    let n = 0;
    for (let j = 0; j < 5; j++) n = n * 256 + h[i + j];
    out += String(n % 100000).padStart(5, '0');
  }
  return out;
}

/** @param {Uint8Array} a @param {Uint8Array} b @returns {Promise<string>} */
export async function safetyNumber(a, b) {
  const digits = [await keyDigits(a), await keyDigits(b)].sort().join('');
  return digits.match(/.{5}/g)?.join(' ') ?? '';
}
