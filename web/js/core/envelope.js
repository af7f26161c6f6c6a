// The group-message envelope: binary, big-endian, signed by its sender. Mirrors peer/core/envelope.py.
//
//   header (90 bytes, also the AEAD associated data)
//     0 version u8 = 1 | 1 kind u8 | 2 room_id (16) | 18 sender (16) | 34 seq u64 | 42 lamport u64
//     50 sent_at u64 | 58 expires_at u64 | 66 chain_id (8) | 74 chain_index u32 | 78 nonce (12)
//   90 ct_len u32 | ciphertext | signature (64) = Ed25519(sender, "ephemesh-v1 envelope\0" || bytes[0:94+ct_len])
//
// Kinds: 1 CHAT (chained; AES-256-GCM under HKDF(mk, "", "ephemesh-v1 envelope-key")), 2 MEMBERSHIP,
// 3 SENDER_KEY, 4 TOMBSTONE (unchained: zero chain fields, payload in clear).
// Rules: parseEnvelope enforces limits/layout and throws only ProtocolError (u64 fields above 2^53-1
// are refused here: JS cannot hold them); verifyEnvelope checks the key hashes to the sender and the
// signature; openEnvelope verifies, then derives the key (the chain advances only on success).

import { ProtocolError } from './errors.js';
import { concatBytes, fromHex, fromUtf8, toHex, utf8 } from './bytes.js';
import { aesGcmOpen, aesGcmSeal, defaultRng, ed25519VerifyOrThrow, hkdfSha256 } from './crypto.js';
import { peerIdFromPublicKey } from './ids.js';
import { sign } from './identity.js';
import { advance, receiverMessageKey } from './chains.js';
import { getU32, getU64, label, u32, u64 } from './codec.js';

export const VERSION = 1;
export const HEADER_LEN = 90;
/** One envelope must fit in one sync ENVELOPES frame: MAX_FRAME (65,536) - type u8 - count u16 - length u32. */
export const MAX_ENVELOPE = 65_529;
export const LABEL_SIG = label('ephemesh-v1 envelope', true);
export const LABEL_KEY = label('ephemesh-v1 envelope-key');
export const Kind = Object.freeze({ CHAT: 1, MEMBERSHIP: 2, SENDER_KEY: 3, TOMBSTONE: 4 });

/**
 * @typedef {{kind: number, roomId: string, sender: string, seq: number, lamport: number, sentAt: number,
 *   expiresAt: number, chainId: Uint8Array, chainIndex: number, nonce: Uint8Array, ciphertext: Uint8Array,
 *   signature: Uint8Array}} Envelope
 */

/** @param {Omit<Envelope, 'ciphertext'|'signature'>} e */
export function envelopeHeader(e) {
  return concatBytes(new Uint8Array([VERSION, e.kind]), fromHex(e.roomId), fromHex(e.sender), u64(e.seq), u64(e.lamport),
    u64(e.sentAt), u64(e.expiresAt), e.chainId, u32(e.chainIndex), e.nonce);
}

/** @param {Envelope} e */
export const signedBytes = (e) => concatBytes(LABEL_SIG, envelopeHeader(e), u32(e.ciphertext.length), e.ciphertext);
/** @param {Envelope} e */
export const envelopeToBytes = (e) => concatBytes(envelopeHeader(e), u32(e.ciphertext.length), e.ciphertext, e.signature);

/** @param {Uint8Array} mk */
export const messageKeyToAeadKey = (mk) => hkdfSha256(mk, new Uint8Array(0), LABEL_KEY, 32);

function checkTimes(/** @type {number[]} */ ...v) {
  const [seq, lamport, sentAt, expiresAt] = v;
  if (![seq, lamport, sentAt, expiresAt].every((x) => Number.isSafeInteger(x) && x >= 0) || expiresAt < sentAt) {
    throw new ProtocolError('bad-envelope', 'bad counters or times');
  }
}

/** @param {import('./identity.js').Identity} id @param {Envelope} unsigned */
async function signEnvelope(id, unsigned) {
  const sig = await sign(id, signedBytes(unsigned));
  const data = envelopeToBytes({ ...unsigned, signature: sig });
  if (data.length > MAX_ENVELOPE) throw new ProtocolError('too-large', 'envelope exceeds the size limit');
  return data;
}

/**
 * Seal a CHAT envelope; returns [wire bytes, next chain state, message key]. Persist the state first.
 * @param {import('./identity.js').Identity} id @param {string} roomId @param {import('./chains.js').SenderChain} chain
 * @param {{seq: number, lamport: number, sentAt: number, expiresAt: number}} t @param {Uint8Array} plaintext
 * @param {import('./crypto.js').Rng} [rng] @returns {Promise<[Uint8Array, import('./chains.js').SenderChain, Uint8Array]>}
 */
export async function sealEnvelope(id, roomId, chain, t, plaintext, rng = defaultRng) {
  checkTimes(t.seq, t.lamport, t.sentAt, t.expiresAt);
  const [next, mk] = await advance(chain);
  const base = { kind: Kind.CHAT, roomId, sender: id.peerId, ...t, chainId: chain.chainId, chainIndex: mk.index, nonce: await rng(12) };
  const ct = await aesGcmSeal(await messageKeyToAeadKey(mk.key), base.nonce, plaintext, envelopeHeader(base));
  return [await signEnvelope(id, { ...base, ciphertext: ct, signature: new Uint8Array(0) }), next, mk.key];
}

/**
 * Sign an unchained envelope (kinds 2, 3, 4).
 * @param {import('./identity.js').Identity} id @param {string} roomId @param {number} kind
 * @param {{seq: number, lamport: number, sentAt: number, expiresAt: number}} t @param {Uint8Array} payload
 */
export async function sealUnchainedEnvelope(id, roomId, kind, t, payload) {
  if (![2, 3, 4].includes(kind)) throw new Error('kind is chained or unknown');
  checkTimes(t.seq, t.lamport, t.sentAt, t.expiresAt);
  return signEnvelope(id, { kind, roomId, sender: id.peerId, ...t, chainId: new Uint8Array(8), chainIndex: 0, nonce: new Uint8Array(12), ciphertext: payload, signature: new Uint8Array(0) });
}

const isZero = (/** @type {Uint8Array} */ b) => b.every((x) => x === 0);

/** Parse wire bytes; ProtocolError on anything malformed. @param {unknown} data @returns {Envelope} */
export function parseEnvelope(data) {
  if (!(data instanceof Uint8Array)) throw new ProtocolError('bad-envelope', 'expected bytes');
  if (data.length > MAX_ENVELOPE) throw new ProtocolError('too-large', 'envelope exceeds the size limit');
  if (data.length < HEADER_LEN + 4 + 64) throw new ProtocolError('bad-envelope', 'envelope too short');
  if (data[0] !== VERSION) throw new ProtocolError('bad-version', 'unsupported envelope version');
  const kind = data[1];
  if (kind < 1 || kind > 4) throw new ProtocolError('bad-kind', 'unknown envelope kind');
  const ctLen = getU32(data, HEADER_LEN);
  if (HEADER_LEN + 4 + ctLen + 64 !== data.length) throw new ProtocolError('bad-envelope', 'length mismatch');
  const seq = getU64(data, 34, 'bad-envelope'), lamport = getU64(data, 42, 'bad-envelope');
  const sentAt = getU64(data, 50, 'bad-envelope'), expiresAt = getU64(data, 58, 'bad-envelope');
  checkTimes(seq, lamport, sentAt, expiresAt);
  const chainId = data.slice(66, 74), chainIndex = getU32(data, 74), nonce = data.slice(78, 90);
  if (kind === Kind.CHAT) {
    if (ctLen < 16) throw new ProtocolError('bad-envelope', 'ciphertext too short');
  } else if (!isZero(chainId) || chainIndex !== 0 || !isZero(nonce)) {
    throw new ProtocolError('bad-envelope', 'unchained envelope with chain fields');
  }
  return Object.freeze({
    kind, roomId: toHex(data.subarray(2, 18)), sender: toHex(data.subarray(18, 34)), seq, lamport, sentAt, expiresAt,
    chainId, chainIndex, nonce, ciphertext: data.slice(94, 94 + ctLen), signature: data.slice(data.length - 64),
  });
}

/** @param {Envelope} env @param {Uint8Array} senderPublicKey */
export async function verifyEnvelope(env, senderPublicKey) {
  if ((await peerIdFromPublicKey(senderPublicKey)) !== env.sender) throw new ProtocolError('wrong-sender', 'key does not match the envelope sender');
  await ed25519VerifyOrThrow(senderPublicKey, signedBytes(env), env.signature);
}

/** Open a verified CHAT envelope with its message key. @param {Envelope} env @param {Uint8Array} mk */
export async function openWithKey(env, mk) {
  return aesGcmOpen(await messageKeyToAeadKey(mk), env.nonce, env.ciphertext, envelopeHeader(env));
}

/**
 * Verify and decrypt a chained envelope; returns [plaintext, next receiver state, message key].
 * @param {Envelope} env @param {import('./chains.js').ReceiverChain} rx
 * @returns {Promise<[Uint8Array, import('./chains.js').ReceiverChain, Uint8Array]>}
 */
export async function openEnvelope(env, rx) {
  if (env.kind !== Kind.CHAT) throw new ProtocolError('bad-kind', 'envelope is not chained');
  if (rx.sender !== env.sender || toHex(rx.chainId) !== toHex(env.chainId)) throw new ProtocolError('unknown-chain', 'no receiver chain for this sender/chain id');
  await verifyEnvelope(env, rx.senderKey);
  const [next, mk] = await receiverMessageKey(rx, env.chainIndex);
  return [await openWithKey(env, mk), next, mk];
}

/** (sender, seq) read from the header without verifying anything (to skip duplicates cheaply). @param {Uint8Array} data @returns {[string, number]} */
export function envelopeKey(data) {
  if (!(data instanceof Uint8Array) || data.length < HEADER_LEN || data[0] !== VERSION) throw new ProtocolError('bad-envelope', 'not an envelope');
  return [toHex(data.subarray(18, 34)), getU64(data, 34, 'bad-envelope')];
}

/** @param {number[]} seqs */
export const encodeTombstone = (seqs) => utf8(JSON.stringify({ t: 'delete', seqs: [...new Set(seqs)].sort((a, b) => a - b) }).replace(/,/g, ', ').replace(/:/g, ': '));

/** @param {Uint8Array} payload @returns {number[]} */
export function decodeTombstone(payload) {
  let obj;
  try {
    obj = JSON.parse(fromUtf8(payload));
  } catch {
    throw new ProtocolError('bad-tombstone', 'not UTF-8 JSON');
  }
  const seqs = obj && typeof obj === 'object' && obj.t === 'delete' ? obj.seqs : null;
  if (!Array.isArray(seqs) || seqs.length > 4096 || !seqs.every((s) => Number.isSafeInteger(s) && s >= 0)) {
    throw new ProtocolError('bad-tombstone', 'malformed tombstone');
  }
  return seqs;
}
