// WebCrypto wrappers for the ephemesh suite: Ed25519, X25519, HKDF-SHA256, HMAC-SHA256,
// AES-256-GCM, SHA-256. WebCrypto only; no hand-rolled primitives.
//
// Rules (see /work/shared/design/field-notes.md):
// - Ed25519 public keys and signature R are rejected when non-canonical (y >= p) or of small order,
//   BEFORE WebCrypto sees them: Chromium accepts signatures under the identity point for any message.
//   Signature S must be canonical (S < L).
// - X25519 peer keys of small order are rejected (they would give an all-zero secret), and any
//   WebCrypto failure on remote keys becomes ProtocolError.
// - Private keys never leave WebCrypto as raw bytes: seeds are imported via PKCS#8
//   (16-byte prefix + 32-byte seed) and kept as non-extractable CryptoKeys unless asked otherwise.
// - HKDF base keys are imported non-extractable.
// - Every function fails closed: a missing key is an error, never a plaintext pass-through.

import { ProtocolError } from './errors.js';
import { concatBytes, equalBytes, fromHex, b64uEncode } from './bytes.js';

const subtle = globalThis.crypto.subtle;

/**
 * Type-only view for WebCrypto: its `BufferSource` excludes views of a SharedArrayBuffer, and every
 * Uint8Array in this code is over a plain ArrayBuffer. Returns its argument unchanged.
 * @param {Uint8Array} b @returns {Uint8Array<ArrayBuffer>}
 */
const buf = (b) => /** @type {Uint8Array<ArrayBuffer>} */ (b);

const P = (1n << 255n) - 19n;
const L = (1n << 252n) + 27742317777372353535851937790883648493n;
const ED25519_PKCS8_PREFIX = fromHex('302e020100300506032b657004220420');
const X25519_PKCS8_PREFIX = fromHex('302e020100300506032b656e04220420');

/**
 * Known small-order encodings (libsodium's block lists), compared with the top bit masked, so the
 * sign-bit variants and the non-canonical encodings of the same points are rejected too.
 */
export const ED25519_SMALL_ORDER = [
  '0000000000000000000000000000000000000000000000000000000000000000', // y=0, order 4
  '0100000000000000000000000000000000000000000000000000000000000000', // identity, order 1
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05', // order 8
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a', // order 8
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // y=p-1, order 2
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // y=p (non-canonical 0)
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // y=p+1 (non-canonical 1)
].map(fromHex);

export const X25519_SMALL_ORDER = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
].map(fromHex);

/** @param {Uint8Array} bytes little-endian @returns {bigint} */
function leInt(bytes) {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}

/** True when `enc` equals a block-list entry, ignoring the top bit of the last byte. */
function inBlockList(/** @type {Uint8Array} */ enc, /** @type {Uint8Array[]} */ list) {
  return list.some((bad) => {
    let diff = 0;
    for (let i = 0; i < 31; i++) diff |= enc[i] ^ bad[i];
    diff |= (enc[31] & 0x7f) ^ bad[31];
    return diff === 0;
  });
}

/** @param {unknown} x @param {number} n @param {string} what @returns {Uint8Array} */
function needBytes(x, n, what) {
  if (!(x instanceof Uint8Array) || x.length !== n) throw new ProtocolError('bad-length', `${what} must be ${n} bytes`);
  return x;
}

/** True when an Ed25519 point encoding is canonical: y < p, and no sign bit on x = 0 (y = 1, y = -1). */
export function isCanonicalEd25519Point(/** @type {Uint8Array} */ enc) {
  if (enc.length !== 32) return false;
  const y = leInt(enc) & ((1n << 255n) - 1n);
  if (y >= P) return false;
  return !((enc[31] & 0x80) && (y === 1n || y === P - 1n));
}

// Public-data point arithmetic, used ONLY to check that a public key is on the curve and of prime
// order ([L]A = identity), as libsodium's crypto_core_ed25519_is_valid_point does on the Python side.
// No secret ever goes through it; signing and verification are WebCrypto's.
const D = (-121665n * modPow(121666n, P - 2n)) % P + P;
const SQRT_M1 = modPow(2n, (P - 1n) / 4n);
/** @param {bigint} b @param {bigint} e */
function modPow(b, e) {
  let r = 1n;
  b %= P;
  while (e > 0n) {
    if (e & 1n) r = (r * b) % P;
    b = (b * b) % P;
    e >>= 1n;
  }
  return r;
}
const mod = (/** @type {bigint} */ a) => ((a % P) + P) % P;
/** @typedef {[bigint, bigint, bigint, bigint]} Ext extended coordinates X, Y, Z, T */
/** @param {Ext} p @param {Ext} q @returns {Ext} */
function edAdd([X1, Y1, Z1, T1], [X2, Y2, Z2, T2]) {
  const A = mod((Y1 - X1) * (Y2 - X2)), B = mod((Y1 + X1) * (Y2 + X2));
  const C = mod(2n * D * T1 * T2), Dd = mod(2n * Z1 * Z2);
  const E = B - A, F = Dd - C, G = Dd + C, H = B + A;
  return [mod(E * F), mod(G * H), mod(F * G), mod(E * H)];
}
/** Decode a canonical encoding to an extended point, or null when it is not on the curve. */
function edDecode(/** @type {Uint8Array} */ enc) {
  const y = leInt(enc) & ((1n << 255n) - 1n);
  const sign = BigInt(enc[31] >> 7);
  const y2 = mod(y * y);
  const x2 = mod((y2 - 1n) * modPow(mod(D * y2 + 1n), P - 2n));
  let x = modPow(x2, (P + 3n) / 8n);
  if (mod(x * x - x2) !== 0n) x = mod(x * SQRT_M1);
  if (mod(x * x - x2) !== 0n) return null;
  if (x === 0n && sign === 1n) return null;
  if ((x & 1n) !== sign) x = P - x;
  return /** @type {Ext} */ ([x, y, 1n, mod(x * y)]);
}
/** True when the (canonical) encoding is a point on the curve in the prime-order subgroup. */
export function isPrimeOrderEd25519Point(/** @type {Uint8Array} */ enc) {
  const pt = edDecode(enc);
  if (!pt) return false;
  /** @type {Ext} */
  let acc = [0n, 1n, 1n, 0n];
  for (let i = 252n; i >= 0n; i--) {
    acc = edAdd(acc, acc);
    if ((L >> i) & 1n) acc = edAdd(acc, pt);
  }
  return acc[0] === 0n && acc[1] === acc[2];
}

/** True when an Ed25519 point encoding is one of the small-order points (any encoding of them). */
export function isSmallOrderEd25519(/** @type {Uint8Array} */ enc) {
  return enc.length === 32 && inBlockList(enc, ED25519_SMALL_ORDER);
}

/** True when an X25519 public key is one of the small-order u-coordinates (any encoding). */
export function isSmallOrderX25519(/** @type {Uint8Array} */ enc) {
  return enc.length === 32 && inBlockList(enc, X25519_SMALL_ORDER);
}

/** Throws ProtocolError unless `pub` is an acceptable Ed25519 public key. @returns {Uint8Array} */
export function checkEd25519PublicKey(/** @type {unknown} */ pub) {
  const pk = needBytes(pub, 32, 'Ed25519 public key');
  if (!isCanonicalEd25519Point(pk)) throw new ProtocolError('bad-key', 'non-canonical Ed25519 key');
  if (isSmallOrderEd25519(pk)) throw new ProtocolError('bad-key', 'small-order Ed25519 key');
  if (!isPrimeOrderEd25519Point(pk)) throw new ProtocolError('bad-key', 'invalid Ed25519 point');
  return pk;
}

/** Throws ProtocolError unless `pub` is an acceptable X25519 public key. @returns {Uint8Array} */
export function checkX25519PublicKey(/** @type {unknown} */ pub) {
  const pk = needBytes(pub, 32, 'X25519 public key');
  if (isSmallOrderX25519(pk) || leInt(pk) >= P) throw new ProtocolError('bad-key', 'small-order or non-canonical X25519 key');
  return pk;
}

/** @param {number} n @returns {Uint8Array} */
export function randomBytes(n) {
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

/** @param {Uint8Array} data @returns {Promise<Uint8Array>} */
export async function sha256(data) {
  return new Uint8Array(await subtle.digest('SHA-256', buf(data)));
}

// ---------------------------------------------------------------- Ed25519

/**
 * @typedef {{ privateKey: CryptoKey, publicKey: Uint8Array }} SigningPair
 */

/** Fresh Ed25519 identity; the private key is non-extractable unless `extractable`. */
export async function ed25519Generate(extractable = false) {
  const pair = /** @type {CryptoKeyPair} */ (await subtle.generateKey({ name: 'Ed25519' }, extractable, ['sign', 'verify']));
  const publicKey = new Uint8Array(await subtle.exportKey('raw', pair.publicKey));
  return /** @type {SigningPair} */ ({ privateKey: pair.privateKey, publicKey });
}

/** Import an Ed25519 32-byte seed (PKCS#8 prefix + seed); derives the public key via JWK `x`. */
export async function ed25519FromSeed(/** @type {Uint8Array} */ seed, extractable = false) {
  needBytes(seed, 32, 'Ed25519 seed');
  const pkcs8 = concatBytes(ED25519_PKCS8_PREFIX, seed);
  const tmp = await subtle.importKey('pkcs8', buf(pkcs8), { name: 'Ed25519' }, true, ['sign']);
  const jwk = await subtle.exportKey('jwk', tmp);
  const publicKey = b64uDecodeLoose(/** @type {string} */ (jwk.x));
  const privateKey = extractable ? tmp : await subtle.importKey('pkcs8', buf(pkcs8), { name: 'Ed25519' }, false, ['sign']);
  return /** @type {SigningPair} */ ({ privateKey, publicKey });
}

/** Export the 32-byte seed of an extractable Ed25519 private key (PKCS#8 minus prefix). */
export async function ed25519ExportSeed(/** @type {CryptoKey} */ privateKey) {
  const pkcs8 = new Uint8Array(await subtle.exportKey('pkcs8', privateKey));
  return pkcs8.slice(ED25519_PKCS8_PREFIX.length);
}

/** @param {CryptoKey} privateKey @param {Uint8Array} message @returns {Promise<Uint8Array>} 64 bytes */
export async function ed25519Sign(privateKey, message) {
  if (!(privateKey instanceof CryptoKey)) throw new Error('missing signing key');
  return new Uint8Array(await subtle.sign({ name: 'Ed25519' }, privateKey, buf(message)));
}

/**
 * Verify an Ed25519 signature; false for any bad input (wrong length, small-order or non-canonical
 * key or R, non-canonical S, bad signature). Never throws on remote input.
 * @param {unknown} publicKey @param {Uint8Array} message @param {unknown} signature
 */
export async function ed25519Verify(publicKey, message, signature) {
  try {
    const pk = checkEd25519PublicKey(publicKey);
    const sig = needBytes(signature, 64, 'signature');
    const R = sig.subarray(0, 32);
    if (!isCanonicalEd25519Point(R) || isSmallOrderEd25519(R)) return false;
    if (leInt(sig.subarray(32)) >= L) return false;
    const key = await subtle.importKey('raw', buf(pk), { name: 'Ed25519' }, false, ['verify']);
    return await subtle.verify({ name: 'Ed25519' }, key, buf(sig), buf(message));
  } catch {
    return false;
  }
}

/**
 * Strict verification that throws like peer/core/crypto.py::ed25519_verify:
 * ProtocolError('bad-key') for an unacceptable key, ('bad-signature') for anything else.
 */
export async function ed25519VerifyOrThrow(/** @type {unknown} */ publicKey, /** @type {Uint8Array} */ message, /** @type {unknown} */ signature) {
  checkEd25519PublicKey(publicKey);
  if (!(await ed25519Verify(publicKey, message, signature))) throw new ProtocolError('bad-signature', 'signature check failed');
}

// ---------------------------------------------------------------- X25519

/** Fresh X25519 pair (private non-extractable unless asked). */
export async function x25519Generate(extractable = false) {
  const pair = /** @type {CryptoKeyPair} */ (await subtle.generateKey({ name: 'X25519' }, extractable, ['deriveBits']));
  const publicKey = new Uint8Array(await subtle.exportKey('raw', pair.publicKey));
  return { privateKey: pair.privateKey, publicKey };
}

/** Import a raw 32-byte X25519 private scalar via PKCS#8; derives the public key via JWK `x`. */
export async function x25519FromPrivate(/** @type {Uint8Array} */ scalar, extractable = false) {
  needBytes(scalar, 32, 'X25519 private key');
  const pkcs8 = concatBytes(X25519_PKCS8_PREFIX, scalar);
  const tmp = await subtle.importKey('pkcs8', buf(pkcs8), { name: 'X25519' }, true, ['deriveBits']);
  const jwk = await subtle.exportKey('jwk', tmp);
  const publicKey = b64uDecodeLoose(/** @type {string} */ (jwk.x));
  const privateKey = extractable ? tmp : await subtle.importKey('pkcs8', buf(pkcs8), { name: 'X25519' }, false, ['deriveBits']);
  return { privateKey, publicKey };
}

/**
 * X25519 with a validated peer key (canonical u < p with top bit clear, not small order:
 * ProtocolError('bad-key')); an all-zero output is ProtocolError('bad-dh').
 * @param {CryptoKey} privateKey @param {unknown} peerPublic
 */
export async function x25519(privateKey, peerPublic) {
  return x25519Unchecked(privateKey, checkX25519PublicKey(peerPublic));
}

/**
 * Raw RFC 7748 X25519 without public-key validation (for RFC vectors only); failures and all-zero
 * outputs still raise ProtocolError('bad-dh').
 * @param {CryptoKey} privateKey @param {unknown} peerPublic
 */
export async function x25519Unchecked(privateKey, peerPublic) {
  if (!(privateKey instanceof CryptoKey)) throw new Error('missing X25519 key');
  const pk = needBytes(peerPublic, 32, 'X25519 public key');
  let out;
  try {
    const pub = await subtle.importKey('raw', buf(pk), { name: 'X25519' }, true, []);
    out = new Uint8Array(await subtle.deriveBits({ name: 'X25519', public: pub }, privateKey, 256));
  } catch {
    throw new ProtocolError('bad-dh', 'X25519 failed');
  }
  if (equalBytes(out, new Uint8Array(32))) throw new ProtocolError('bad-dh', 'all-zero X25519 output');
  return out;
}

// ---------------------------------------------------------------- KDF / MAC / AEAD

/**
 * HKDF-SHA256 (extract + expand). The base key is imported non-extractable.
 * @param {Uint8Array} ikm @param {Uint8Array} salt @param {Uint8Array} info @param {number} length bytes
 */
export async function hkdfSha256(ikm, salt, info, length) {
  if (!Number.isInteger(length) || length <= 0 || length > 255 * 32) throw new Error('bad HKDF length');
  const base = await subtle.importKey('raw', buf(ikm), 'HKDF', false, ['deriveBits']);
  const bits = await subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: buf(salt), info: buf(info) }, base, length * 8);
  return new Uint8Array(bits);
}

/** @param {Uint8Array} key @param {Uint8Array} data @returns {Promise<Uint8Array>} 32 bytes */
export async function hmacSha256(key, data) {
  if (!(key instanceof Uint8Array) || key.length === 0) throw new Error('missing HMAC key');
  const k = await subtle.importKey('raw', buf(key), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await subtle.sign('HMAC', k, buf(data)));
}

/** @param {Uint8Array} key @param {Uint8Array} data @param {unknown} tag @returns {Promise<boolean>} */
export async function hmacSha256Verify(key, data, tag) {
  if (!(tag instanceof Uint8Array)) return false;
  return equalBytes(await hmacSha256(key, data), tag);
}

/** @param {unknown} key */
async function aesKey(key) {
  if (!(key instanceof Uint8Array) || key.length !== 32) throw new Error('missing or bad AES-256 key');
  return subtle.importKey('raw', buf(key), { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
}

/**
 * AES-256-GCM seal: returns ciphertext || 16-byte tag.
 * @param {Uint8Array} key 32 bytes @param {Uint8Array} nonce 12 bytes @param {Uint8Array} plaintext @param {Uint8Array} [aad]
 */
export async function aesGcmSeal(key, nonce, plaintext, aad = new Uint8Array(0)) {
  needBytes(nonce, 12, 'nonce');
  const k = await aesKey(key);
  return new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv: buf(nonce), additionalData: buf(aad), tagLength: 128 }, k, buf(plaintext)));
}

/**
 * AES-256-GCM open; ProtocolError('bad-ciphertext') when authentication fails.
 * @param {Uint8Array} key @param {Uint8Array} nonce @param {Uint8Array} sealed @param {Uint8Array} [aad]
 */
export async function aesGcmOpen(key, nonce, sealed, aad = new Uint8Array(0)) {
  needBytes(nonce, 12, 'nonce');
  const k = await aesKey(key);
  try {
    return new Uint8Array(await subtle.decrypt({ name: 'AES-GCM', iv: buf(nonce), additionalData: buf(aad), tagLength: 128 }, k, buf(sealed)));
  } catch {
    throw new ProtocolError('bad-ciphertext', 'authentication failed');
  }
}

/** JWK fields are base64url without padding, produced locally by WebCrypto. */
function b64uDecodeLoose(/** @type {string} */ s) {
  const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

export { b64uEncode };

/**
 * @typedef {(n: number) => Promise<Uint8Array>} Rng  randomness source (async in JS)
 */

/** The default Rng: WebCrypto getRandomValues. @type {Rng} */
export const defaultRng = async (n) => randomBytes(n);

/**
 * Reproducible byte stream for TEST VECTORS ONLY (mirrors peer/core/crypto.py::DeterministicRng):
 * block_i = SHA-256(seed || u32be(i)), concatenated.
 * @param {Uint8Array} seed @returns {Rng}
 */
export function deterministicRng(seed) {
  let counter = 0;
  /** @type {Uint8Array} */
  let buffer = new Uint8Array(0);
  return async (n) => {
    while (buffer.length < n) {
      const ctr = new Uint8Array(4);
      new DataView(ctr.buffer).setUint32(0, counter++);
      buffer = concatBytes(buffer, await sha256(concatBytes(seed, ctr)));
    }
    const out = buffer.slice(0, n);
    buffer = buffer.slice(n);
    return out;
  };
}

/** u64 big-endian. @param {number|bigint} n */
export function u64(n) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}

/** u32 big-endian. @param {number} n */
export function u32(n) {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n);
  return out;
}
