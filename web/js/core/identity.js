// Long-term identity: an Ed25519 signing key and an X25519 key certified by it.
// Mirrors peer/core/identity.py.
//
// Rules:
// - cert = Ed25519(seed, "ephemesh-v1 x25519-cert\0" || x25519_public).
// - Identity bytes (import/export only) = 0x01 | ed25519 seed (32) | x25519 private (32).
// - PublicBundle JSON {"v":1,"ed25519","x25519","cert"} (b64u); binary ed25519|x25519|cert (128 B).
//   parseBundle / bundleFromBytes verify both keys and the certificate: a bundle that parses is verified.
// - Fingerprint = hex(SHA-256(ed25519_public)) in 16 groups of 4.

import { ProtocolError } from './errors.js';
import { b64uDecode, b64uEncode, concatBytes, toHex, utf8 } from './bytes.js';
import {
  checkEd25519PublicKey, checkX25519PublicKey, ed25519FromSeed, ed25519Generate, ed25519Sign,
  ed25519VerifyOrThrow, sha256, x25519FromPrivate, x25519Generate,
} from './crypto.js';
import { peerIdFromPublicKey } from './ids.js';

export const LABEL_X25519_CERT = concatBytes(utf8('ephemesh-v1 x25519-cert'), new Uint8Array([0]));

/**
 * @typedef {{ ed25519: Uint8Array, x25519: Uint8Array, cert: Uint8Array }} PublicBundle
 * @typedef {{ peerId: string, signingKey: CryptoKey, publicKey: Uint8Array,
 *   dhKey: CryptoKey, dhPublic: Uint8Array, cert: Uint8Array }} Identity
 */

/** @param {{privateKey: CryptoKey, publicKey: Uint8Array}} sign @param {{privateKey: CryptoKey, publicKey: Uint8Array}} dh */
async function assemble(sign, dh) {
  const cert = await ed25519Sign(sign.privateKey, concatBytes(LABEL_X25519_CERT, dh.publicKey));
  return /** @type {Identity} */ ({
    peerId: await peerIdFromPublicKey(sign.publicKey),
    signingKey: sign.privateKey, publicKey: sign.publicKey,
    dhKey: dh.privateKey, dhPublic: dh.publicKey, cert,
  });
}

/** A fresh identity with non-extractable private keys. @returns {Promise<Identity>} */
export async function generateIdentity() {
  return assemble(await ed25519Generate(false), await x25519Generate(false));
}

/** Import 0x01 | seed | x25519 private (65 bytes). @param {Uint8Array} bytes */
export async function identityFromBytes(bytes) {
  if (!(bytes instanceof Uint8Array) || bytes.length !== 65 || bytes[0] !== 1) throw new ProtocolError('bad-identity', 'expected 65 bytes, version 1');
  return assemble(await ed25519FromSeed(bytes.slice(1, 33)), await x25519FromPrivate(bytes.slice(33)));
}

/** @param {Identity} id @returns {PublicBundle} */
export function publicBundle(id) {
  return { ed25519: id.publicKey, x25519: id.dhPublic, cert: id.cert };
}

/** @param {Identity} id @param {Uint8Array} message */
export function sign(id, message) {
  return ed25519Sign(id.signingKey, message);
}

/** Verify both keys and the certificate; throws ProtocolError. @param {PublicBundle} b */
export async function verifyBundle(b) {
  checkEd25519PublicKey(b.ed25519);
  checkX25519PublicKey(b.x25519);
  await ed25519VerifyOrThrow(b.ed25519, concatBytes(LABEL_X25519_CERT, b.x25519), b.cert);
  return b;
}

/** @param {PublicBundle} b */
export function bundleToDict(b) {
  return { v: 1, ed25519: b64uEncode(b.ed25519), x25519: b64uEncode(b.x25519), cert: b64uEncode(b.cert) };
}

/** @param {PublicBundle} b */
export function bundleToBytes(b) {
  return concatBytes(b.ed25519, b.x25519, b.cert);
}

/** Parse and verify a bundle dict. @param {unknown} data @returns {Promise<PublicBundle>} */
export async function parseBundle(data) {
  if (!data || typeof data !== 'object' || /** @type {any} */ (data).v !== 1) throw new ProtocolError('bad-bundle', 'expected a v1 bundle object');
  const d = /** @type {Record<string, unknown>} */ (data);
  let b;
  try {
    b = { ed25519: b64uDecode(d.ed25519), x25519: b64uDecode(d.x25519), cert: b64uDecode(d.cert) };
  } catch {
    throw new ProtocolError('bad-bundle', 'bad field');
  }
  if (b.ed25519.length !== 32 || b.x25519.length !== 32 || b.cert.length !== 64) throw new ProtocolError('bad-bundle', 'bad lengths');
  return verifyBundle(b);
}

/** Parse and verify a 128-byte binary bundle. @param {Uint8Array} data */
export async function bundleFromBytes(data) {
  if (!(data instanceof Uint8Array) || data.length !== 128) throw new ProtocolError('bad-bundle', 'bundle must be 128 bytes');
  return verifyBundle({ ed25519: data.slice(0, 32), x25519: data.slice(32, 64), cert: data.slice(64) });
}

/** @param {Uint8Array} publicKey @returns {Promise<string>} */
export async function fingerprint(publicKey) {
  return (toHex(await sha256(publicKey)).match(/.{4}/g) ?? []).join(' ');
}
