// Sender chains (symmetric ratchets) for group messages. Mirrors peer/core/chains.py.
//
// Rules:
// - State (chainId 8B, index u32, chainKey 32B); step: mk_i = HMAC(ck_i, 0x01), ck_{i+1} = HMAC(ck_i, 0x02);
//   ck_i is dropped (forward secrecy). States are immutable: advance()/messageKey() return the next
//   state and the key; persist the next state before using the key.
// - A receiver keeps <= MAX_SKIP skipped keys, deletes a key once used, refuses used indexes (replay)
//   and indexes more than MAX_SKIP ahead (too-far-ahead).
// - Rotation (ChainPolicy): after maxMessages, after maxAgeMs, or when the membership epoch changed.
// - SenderKeyMessage = 0x01 | room(16) | sender(16) | epoch u32 | chain_id(8) | index u32 | chain_key(32)
//   | Ed25519(sender, "ephemesh-v1 sender-key\0" || bytes[0:81]) = 145 bytes; travels sealed only.

import { ProtocolError } from './errors.js';
import { concatBytes, fromHex, toHex } from './bytes.js';
import { defaultRng, ed25519VerifyOrThrow, hmacSha256 } from './crypto.js';
import { peerIdFromPublicKey } from './ids.js';
import { sign } from './identity.js';
import { getU16, getU32, getU64, label, u16, u32, u64 } from './codec.js';

export const MAX_SKIP = 1000;
export const MAX_INDEX = 2 ** 32 - 1;
export const LABEL_SENDER_KEY = label('ephemesh-v1 sender-key', true);
export const SENDER_KEY_MESSAGE_LEN = 145;

/** @param {Uint8Array} ck @returns {Promise<[Uint8Array, Uint8Array]>} (next chain key, message key) */
export async function ratchetStep(ck) {
  return [await hmacSha256(ck, new Uint8Array([2])), await hmacSha256(ck, new Uint8Array([1]))];
}

/** @typedef {{chainId: Uint8Array, index: number, chainKey: Uint8Array, epoch: number, createdAt: number}} SenderChain */

/** @param {{epoch?: number, createdAt?: number, rng?: import('./crypto.js').Rng}} [o] @returns {Promise<SenderChain>} */
export async function newSenderChain(o = {}) {
  const rng = o.rng ?? defaultRng;
  const chainId = await rng(8);
  return Object.freeze({ chainId, index: 0, chainKey: await rng(32), epoch: o.epoch ?? 0, createdAt: o.createdAt ?? 0 });
}

/** @param {SenderChain} c @returns {Promise<[SenderChain, {index: number, key: Uint8Array}]>} */
export async function advance(c) {
  if (c.index >= MAX_INDEX) throw new ProtocolError('exhausted', 'chain exhausted; rotate');
  const [next, mk] = await ratchetStep(c.chainKey);
  return [Object.freeze({ ...c, index: c.index + 1, chainKey: next }), { index: c.index, key: mk }];
}

/** 0x01 | chain_id | index u32 | chain_key | epoch u32 | created_at u64 (57 bytes). @param {SenderChain} c */
export function senderChainToBytes(c) {
  return concatBytes(new Uint8Array([1]), c.chainId, u32(c.index), c.chainKey, u32(c.epoch), u64(c.createdAt));
}

/** @param {Uint8Array} d @returns {SenderChain} */
export function senderChainFromBytes(d) {
  if (!(d instanceof Uint8Array) || d.length !== 57 || d[0] !== 1) throw new ProtocolError('bad-state', 'malformed sender chain');
  return Object.freeze({ chainId: d.slice(1, 9), index: getU32(d, 9), chainKey: d.slice(13, 45), epoch: getU32(d, 45), createdAt: getU64(d, 49, 'bad-state') });
}

export const DEFAULT_POLICY = Object.freeze({ maxMessages: 1000, maxAgeMs: 7 * 24 * 3600 * 1000 });

/** @param {SenderChain} c @param {number} now @param {number} epoch @param {typeof DEFAULT_POLICY} [p] */
export function mustRotate(c, now, epoch, p = DEFAULT_POLICY) {
  return c.index >= p.maxMessages || now - c.createdAt >= p.maxAgeMs || c.epoch !== epoch;
}

/**
 * @typedef {{roomId: string, sender: string, epoch: number, chainId: Uint8Array, index: number,
 *   chainKey: Uint8Array, signature: Uint8Array}} SenderKeyMessage
 */

/** @param {Omit<SenderKeyMessage, 'signature'>} m */
function skmBody(m) {
  return concatBytes(new Uint8Array([1]), fromHex(m.roomId), fromHex(m.sender), u32(m.epoch), m.chainId, u32(m.index), m.chainKey);
}

/** @param {import('./identity.js').Identity} id @param {string} roomId @param {SenderChain} c @returns {Promise<SenderKeyMessage>} */
export async function createSenderKeyMessage(id, roomId, c) {
  const m = { roomId, sender: id.peerId, epoch: c.epoch, chainId: c.chainId, index: c.index, chainKey: c.chainKey };
  return Object.freeze({ ...m, signature: await sign(id, concatBytes(LABEL_SENDER_KEY, skmBody(m))) });
}

/** @param {SenderKeyMessage} m */
export const encodeSenderKeyMessage = (m) => concatBytes(skmBody(m), m.signature);

/** Parse (not verify). @param {unknown} d @returns {SenderKeyMessage} */
export function decodeSenderKeyMessage(d) {
  if (!(d instanceof Uint8Array) || d.length !== SENDER_KEY_MESSAGE_LEN || d[0] !== 1) throw new ProtocolError('bad-sender-key', 'malformed sender key message');
  return Object.freeze({
    roomId: toHex(d.subarray(1, 17)), sender: toHex(d.subarray(17, 33)), epoch: getU32(d, 33),
    chainId: d.slice(37, 45), index: getU32(d, 45), chainKey: d.slice(49, 81), signature: d.slice(81),
  });
}

/** @param {SenderKeyMessage} m @param {Uint8Array} senderKey */
export async function verifySenderKeyMessage(m, senderKey) {
  if ((await peerIdFromPublicKey(senderKey)) !== m.sender) throw new ProtocolError('wrong-sender', 'key does not match sender id');
  await ed25519VerifyOrThrow(senderKey, concatBytes(LABEL_SENDER_KEY, skmBody(m)), m.signature);
}

/**
 * @typedef {{senderKey: Uint8Array, sender: string, chainId: Uint8Array, index: number, chainKey: Uint8Array,
 *   skipped: [number, Uint8Array][]}} ReceiverChain
 */

/** Start from a decoded message (verified first). @param {SenderKeyMessage} m @param {Uint8Array} senderKey @returns {Promise<ReceiverChain>} */
export async function receiverFromSenderKey(m, senderKey) {
  await verifySenderKeyMessage(m, senderKey);
  return Object.freeze({ senderKey, sender: m.sender, chainId: m.chainId, index: m.index, chainKey: m.chainKey, skipped: [] });
}

/** The key for `index` and the state without it. @param {ReceiverChain} rx @param {number} index @returns {Promise<[ReceiverChain, Uint8Array]>} */
export async function receiverMessageKey(rx, index) {
  const skipped = new Map(rx.skipped);
  if (index < rx.index) {
    const key = skipped.get(index);
    if (!key) throw new ProtocolError('replay', 'message key already used or expired');
    skipped.delete(index);
    return [Object.freeze({ ...rx, skipped: [...skipped] }), key];
  }
  if (index - rx.index > MAX_SKIP || index > MAX_INDEX) throw new ProtocolError('too-far-ahead', 'chain index too far ahead');
  let ck = rx.chainKey;
  for (let i = rx.index; i < index; i++) {
    const [next, mk] = await ratchetStep(ck);
    skipped.set(i, mk);
    ck = next;
  }
  const [next, key] = await ratchetStep(ck);
  const kept = [...skipped].sort((a, b) => a[0] - b[0]).slice(-MAX_SKIP);
  return [Object.freeze({ ...rx, index: index + 1, chainKey: next, skipped: kept }), key];
}

/** 0x01 | sender_key | chain_id | index u32 | chain_key | n u16 | (i u32 | key)*n. @param {ReceiverChain} rx */
export function receiverToBytes(rx) {
  return concatBytes(new Uint8Array([1]), rx.senderKey, rx.chainId, u32(rx.index), rx.chainKey, u16(rx.skipped.length),
    ...rx.skipped.flatMap(([i, k]) => [u32(i), k]));
}

/** @param {Uint8Array} d @returns {Promise<ReceiverChain>} */
export async function receiverFromBytes(d) {
  if (!(d instanceof Uint8Array) || d.length < 79 || d[0] !== 1) throw new ProtocolError('bad-state', 'malformed receiver chain');
  const n = getU16(d, 77);
  if (d.length !== 79 + 36 * n || n > MAX_SKIP) throw new ProtocolError('bad-state', 'malformed receiver chain');
  /** @type {[number, Uint8Array][]} */
  const skipped = [];
  for (let o = 79; o < d.length; o += 36) skipped.push([getU32(d, o), d.slice(o + 4, o + 36)]);
  const senderKey = d.slice(1, 33);
  return Object.freeze({ senderKey, sender: await peerIdFromPublicKey(senderKey), chainId: d.slice(33, 41), index: getU32(d, 41), chainKey: d.slice(45, 77), skipped });
}
