// Erasure receipts: a member's signed statement that it erased some of a sender's messages.
// Mirrors peer/core/erasure.py (PROTOCOL.md "Disappearing messages", "Erasure receipts").
//
// Wire (an APP frame body, big-endian):
//   tag u8 = 0x01 | version u8 = 1 | room_id (16) | member (16) | sender (16) | n u16 (1..1024)
//   | n x seq u64 (strictly ascending) | Ed25519(member, "ephemesh-v1 erasure-receipt\0" || bytes before sig)
// Rules: decodeReceipt parses (does not verify) and throws ProtocolError('bad-receipt') on anything
// malformed; verifyReceipt throws 'wrong-sender' unless the key is the member's, and 'bad-key' /
// 'bad-signature' like every other signature check. A receipt travels only over a direct link to the
// messages' sender, which counts "erased on N of M". It is the member's claim, not a proof.

import { ProtocolError } from './errors.js';
import { concatBytes, fromHex, toHex } from './bytes.js';
import { getU16, getU64, label, u16, u64, u8 } from './codec.js';
import { ed25519VerifyOrThrow } from './crypto.js';
import { sign } from './identity.js';
import { parsePeerId, peerIdFromPublicKey } from './ids.js';

export const RECEIPT_TAG = 0x01;
export const RECEIPT_VERSION = 1;
export const MAX_RECEIPT_SEQS = 1024;
export const LABEL_RECEIPT = label('ephemesh-v1 erasure-receipt', true);
const HEAD = 2 + 16 * 3 + 2;

/** @typedef {{roomId: string, member: string, sender: string, seqs: number[], signature: Uint8Array}} ErasureReceipt */

/** @param {string} roomId @param {string} member @param {string} sender @param {number[]} seqs */
function receiptBody(roomId, member, sender, seqs) {
  return concatBytes(
    u8(RECEIPT_TAG), u8(RECEIPT_VERSION),
    fromHex(parsePeerId(roomId, 'room id')), fromHex(parsePeerId(member)), fromHex(parsePeerId(sender)),
    u16(seqs.length), ...seqs.map((q) => u64(q)),
  );
}

/**
 * Sign a receipt: we (identity) erased messages `seqs` of `sender` in `roomId`.
 * @param {import('./identity.js').Identity} identity @param {string} roomId @param {string} sender @param {Iterable<number>} seqs
 * @returns {Promise<ErasureReceipt>}
 */
export async function createReceipt(identity, roomId, sender, seqs) {
  const ordered = [...new Set(seqs)].sort((a, b) => a - b);
  if (ordered.length < 1 || ordered.length > MAX_RECEIPT_SEQS) throw new Error('a receipt names 1..1024 seqs');
  const signature = await sign(identity, concatBytes(LABEL_RECEIPT, receiptBody(roomId, identity.peerId, sender, ordered)));
  return Object.freeze({ roomId, member: identity.peerId, sender, seqs: ordered, signature });
}

/** @param {ErasureReceipt} r */
export const encodeReceipt = (r) => concatBytes(receiptBody(r.roomId, r.member, r.sender, r.seqs), r.signature);

/** Parse (not verify). @param {unknown} data @returns {ErasureReceipt} */
export function decodeReceipt(data) {
  if (!(data instanceof Uint8Array) || data.length < HEAD + 8 + 64) throw new ProtocolError('bad-receipt', 'malformed erasure receipt');
  if (data[0] !== RECEIPT_TAG || data[1] !== RECEIPT_VERSION) throw new ProtocolError('bad-receipt', 'unknown receipt tag or version');
  const n = getU16(data, HEAD - 2);
  if (n < 1 || n > MAX_RECEIPT_SEQS || data.length !== HEAD + 8 * n + 64) throw new ProtocolError('bad-receipt', 'malformed erasure receipt');
  /** @type {number[]} */
  const seqs = [];
  for (let i = 0; i < n; i++) {
    const q = getU64(data, HEAD + 8 * i, 'bad-receipt');
    if (i > 0 && q <= seqs[i - 1]) throw new ProtocolError('bad-receipt', 'receipt seqs not strictly ascending');
    seqs.push(q);
  }
  return Object.freeze({
    roomId: toHex(data.subarray(2, 18)), member: toHex(data.subarray(18, 34)), sender: toHex(data.subarray(34, 50)),
    seqs, signature: data.slice(data.length - 64),
  });
}

/** Throw ProtocolError unless `memberPublicKey` is the receipt member's key and signed it. @param {ErasureReceipt} r @param {Uint8Array} memberPublicKey */
export async function verifyReceipt(r, memberPublicKey) {
  if ((await peerIdFromPublicKey(memberPublicKey)) !== r.member) throw new ProtocolError('wrong-sender', 'key does not match the receipt member');
  await ed25519VerifyOrThrow(memberPublicKey, concatBytes(LABEL_RECEIPT, receiptBody(r.roomId, r.member, r.sender, r.seqs)), r.signature);
}
