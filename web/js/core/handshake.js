// Pairwise handshake, pairwise AEAD sessions and prekey sealing. Mirrors peer/core/handshake.py
// (PROTOCOL.md "Pairwise handshake and sessions", "Prekeys").
//
// Rules:
// - Symmetric handshake: HELLO = 0x01|0x01|room|from|to|eph(32) (82 B); on the peer's HELLO send
//   FINISH = 0x01|0x02|room|from|to|Ed25519(T) (114 B) over the transcript T (lo/hi = peers ordered by id);
//   on FINISH verify the peer's signature. okm = HKDF(X25519, salt = SHA-256(T), "ephemesh-v1 pairwise-keys", 64):
//   okm[0:32] protects lo->hi, okm[32:64] hi->lo.
// - Pairwise frame = counter u64 || AES-256-GCM(key, 0^4 || counter, pt, aad); a counter not above the
//   last accepted one is a replay. Sessions are immutable: seal/open return the next state.
// - Prekey frames: header(133) | u32 len | ct | signature; the caller rejects a msg_id seen before.

import { ProtocolError } from './errors.js';
import { concatBytes, equalBytes, fromHex, toHex } from './bytes.js';
import {
  aesGcmOpen, aesGcmSeal, checkX25519PublicKey, defaultRng, ed25519VerifyOrThrow, hkdfSha256, sha256,
  x25519, x25519FromPrivate,
} from './crypto.js';
import { publicBundle, sign } from './identity.js';
import { peerIdFromPublicKey } from './ids.js';
import { getU32, getU64, label, u32, u64 } from './codec.js';

export const LABEL_TRANSCRIPT = label('ephemesh-v1 handshake', true);
export const LABEL_SESSION = label('ephemesh-v1 pairwise-keys');
export const LABEL_PREKEY = label('ephemesh-v1 prekey', true);
export const LABEL_PREKEY_MSG = label('ephemesh-v1 prekey-msg', true);
export const LABEL_PREKEY_KEY = label('ephemesh-v1 prekey-key');
export const MAX_PREKEY_FRAME = 64 * 1024;
export const PREKEY_FUTURE_SKEW_MS = 120_000;
const HELLO = 1, FINISH = 2;

/**
 * @typedef {import('./identity.js').Identity} Identity
 * @typedef {import('./identity.js').PublicBundle} PublicBundle
 * @typedef {{peerId: string, sendKey: Uint8Array, recvKey: Uint8Array, sendCounter: number, recvCounter: number}} PairwiseSession
 */

/** The signed transcript (order-independent). @param {string} roomId @param {{peerId: string, ed25519: Uint8Array, eph: Uint8Array}[]} sides */
export function transcript(roomId, sides) {
  const [lo, hi] = [...sides].sort((a, b) => (a.peerId < b.peerId ? -1 : 1));
  return concatBytes(LABEL_TRANSCRIPT, fromHex(roomId), fromHex(lo.peerId), fromHex(hi.peerId), lo.ed25519, hi.ed25519, lo.eph, hi.eph);
}

/** @param {number} c */
const pairNonce = (c) => concatBytes(new Uint8Array(4), u64(c));

/** @param {PairwiseSession} s @param {Uint8Array} pt @param {Uint8Array} [aad] @returns {Promise<[PairwiseSession, Uint8Array]>} */
export async function sealPairwise(s, pt, aad = new Uint8Array(0)) {
  const c = s.sendCounter;
  if (c >= Number.MAX_SAFE_INTEGER) throw new ProtocolError('exhausted', 'pairwise counter exhausted; re-handshake');
  const frame = concatBytes(u64(c), await aesGcmSeal(s.sendKey, pairNonce(c), pt, aad));
  return [Object.freeze({ ...s, sendCounter: c + 1 }), frame];
}

/** @param {PairwiseSession} s @param {Uint8Array} frame @param {Uint8Array} [aad] @returns {Promise<[PairwiseSession, Uint8Array]>} */
export async function openPairwise(s, frame, aad = new Uint8Array(0)) {
  if (!(frame instanceof Uint8Array) || frame.length < 24) throw new ProtocolError('bad-frame', 'pairwise frame too short');
  const c = getU64(frame, 0, 'replay');
  if (c <= s.recvCounter) throw new ProtocolError('replay', 'pairwise counter not increasing');
  const pt = await aesGcmOpen(s.recvKey, pairNonce(c), frame.subarray(8), aad);
  return [Object.freeze({ ...s, recvCounter: c }), pt];
}

/** Sans-IO state of one handshake. Create with Handshake.create (async: key generation). */
export class Handshake {
  /** @param {Identity} identity @param {PublicBundle} peer @param {string} peerId @param {string} roomId @param {CryptoKey} ephPrivate @param {Uint8Array} ephemeral */
  constructor(identity, peer, peerId, roomId, ephPrivate, ephemeral) {
    this.identity = identity;
    this.peer = peer;
    this.peerId = peerId;
    this.roomId = roomId;
    this.ephPrivate = ephPrivate;
    this.ephemeral = ephemeral;
    /** @type {Uint8Array|null} */
    this.transcript = null;
    /** @type {Uint8Array|null} */
    this.shared = null;
  }

  /** @param {Identity} identity @param {PublicBundle} peer @param {string} roomId @param {import('./crypto.js').Rng} [rng] */
  static async create(identity, peer, roomId, rng = defaultRng) {
    const eph = await x25519FromPrivate(await rng(32));
    return new Handshake(identity, peer, await peerIdFromPublicKey(peer.ed25519), roomId, eph.privateKey, eph.publicKey);
  }

  /** @param {number} type */
  prefix(type) {
    return concatBytes(new Uint8Array([1, type]), fromHex(this.roomId), fromHex(this.identity.peerId), fromHex(this.peerId));
  }

  /** @param {Uint8Array} data @param {number} type @param {number} length */
  checkPrefix(data, type, length) {
    const expected = concatBytes(new Uint8Array([1, type]), fromHex(this.roomId), fromHex(this.peerId), fromHex(this.identity.peerId));
    if (!(data instanceof Uint8Array) || data.length !== length || !equalBytes(data.subarray(0, 50), expected)) {
      throw new ProtocolError('bad-handshake', 'unexpected handshake message');
    }
  }

  hello() {
    return concatBytes(this.prefix(HELLO), this.ephemeral);
  }

  /** Process the peer's HELLO; returns our FINISH. @param {Uint8Array} data */
  async onHello(data) {
    if (this.transcript !== null) throw new ProtocolError('bad-handshake', 'duplicate hello');
    this.checkPrefix(data, HELLO, 82);
    const peerEph = checkX25519PublicKey(data.slice(50, 82));
    this.shared = await x25519(this.ephPrivate, peerEph);
    const me = publicBundle(this.identity);
    this.transcript = transcript(this.roomId, [
      { peerId: this.identity.peerId, ed25519: me.ed25519, eph: this.ephemeral },
      { peerId: this.peerId, ed25519: this.peer.ed25519, eph: peerEph },
    ]);
    return concatBytes(this.prefix(FINISH), await sign(this.identity, this.transcript));
  }

  /** Verify the peer's FINISH; returns the session. @param {Uint8Array} data @returns {Promise<PairwiseSession>} */
  async onFinish(data) {
    if (this.transcript === null || this.shared === null) throw new ProtocolError('bad-handshake', 'finish before hello');
    this.checkPrefix(data, FINISH, 114);
    await ed25519VerifyOrThrow(this.peer.ed25519, this.transcript, data.slice(50, 114));
    const okm = await hkdfSha256(this.shared, await sha256(this.transcript), LABEL_SESSION, 64);
    const loToHi = okm.slice(0, 32), hiToLo = okm.slice(32);
    const lo = this.identity.peerId < this.peerId;
    return Object.freeze({ peerId: this.peerId, sendKey: lo ? loToHi : hiToLo, recvKey: lo ? hiToLo : loToHi, sendCounter: 0, recvCounter: -1 });
  }
}

// ---------------------------------------------------------------- prekeys

/** @typedef {{public: Uint8Array, createdAt: number, signature: Uint8Array}} SignedPrekey */
/** @typedef {{privateKey: CryptoKey, signed: SignedPrekey}} PrekeyPrivate */

/** @param {SignedPrekey} p @param {Uint8Array} ownerEd25519 */
const prekeySignedMessage = (p, ownerEd25519) => concatBytes(LABEL_PREKEY, ownerEd25519, p.public, u64(p.createdAt));

/** @param {SignedPrekey} p @param {PublicBundle} owner */
export async function verifyPrekey(p, owner) {
  checkX25519PublicKey(p.public);
  await ed25519VerifyOrThrow(owner.ed25519, prekeySignedMessage(p, owner.ed25519), p.signature);
}

/** @param {SignedPrekey} p */
export const prekeyToBytes = (p) => concatBytes(p.public, u64(p.createdAt), p.signature);

/** @param {unknown} d @returns {SignedPrekey} */
export function prekeyFromBytes(d) {
  if (!(d instanceof Uint8Array) || d.length !== 104) throw new ProtocolError('bad-prekey', 'prekey must be 104 bytes');
  return Object.freeze({ public: checkX25519PublicKey(d.slice(0, 32)), createdAt: getU64(d, 32, 'bad-prekey'), signature: d.slice(40) });
}

/** A fresh prekey (private non-extractable). @param {Identity} id @param {number} now @param {import('./crypto.js').Rng} [rng] @returns {Promise<PrekeyPrivate>} */
export async function generatePrekey(id, now, rng = defaultRng) {
  const pair = await x25519FromPrivate(await rng(32));
  const unsigned = { public: pair.publicKey, createdAt: now, signature: new Uint8Array(0) };
  const signature = await sign(id, prekeySignedMessage(unsigned, id.publicKey));
  return { privateKey: pair.privateKey, signed: Object.freeze({ ...unsigned, signature }) };
}

/** @param {Uint8Array} header @param {Uint8Array} aad @param {Uint8Array} ct */
const signedPrekeyMsg = (header, aad, ct) => concatBytes(LABEL_PREKEY_MSG, header, u32(aad.length), aad, u32(ct.length), ct);

/**
 * Seal `plaintext` to `recipient`'s (verified) prekey.
 * @param {Identity} sender @param {PublicBundle} recipient @param {SignedPrekey} prekey @param {Uint8Array} plaintext
 * @param {Uint8Array} aad @param {number} now @param {import('./crypto.js').Rng} [rng]
 */
export async function sealToPrekey(sender, recipient, prekey, plaintext, aad, now, rng = defaultRng) {
  await verifyPrekey(prekey, recipient);
  const eph = await x25519FromPrivate(await rng(32));
  const msgId = await rng(16), nonce = await rng(12);
  const header = concatBytes(new Uint8Array([1]), fromHex(sender.peerId), fromHex(await peerIdFromPublicKey(recipient.ed25519)),
    prekey.public, eph.publicKey, msgId, u64(now), nonce);
  const key = await hkdfSha256(await x25519(eph.privateKey, prekey.public), new Uint8Array(0), concatBytes(LABEL_PREKEY_KEY, header.subarray(0, 121)), 32);
  const ct = await aesGcmSeal(key, nonce, plaintext, concatBytes(header, aad));
  return concatBytes(header, u32(ct.length), ct, await sign(sender, signedPrekeyMsg(header, aad, ct)));
}

/** The claimed sender of a prekey frame. @param {Uint8Array} frame */
export function prekeyFrameSender(frame) {
  if (!(frame instanceof Uint8Array) || frame.length < 133 + 4 + 16 + 64) throw new ProtocolError('bad-prekey-msg', 'frame too short');
  return toHex(frame.subarray(1, 17));
}

/**
 * Verify and open a prekey frame. The caller must reject a msgId seen before.
 * @param {Identity} recipient @param {PrekeyPrivate} prekey @param {PublicBundle} sender @param {unknown} frame
 * @param {Uint8Array} aad @param {number} now @returns {Promise<{msgId: Uint8Array, sentAt: number, plaintext: Uint8Array}>}
 */
export async function openFromPrekey(recipient, prekey, sender, frame, aad, now) {
  if (!(frame instanceof Uint8Array) || frame.length > MAX_PREKEY_FRAME || frame.length < 133 + 4 + 16 + 64) throw new ProtocolError('bad-prekey-msg', 'bad frame size');
  const header = frame.slice(0, 133);
  const ctLen = getU32(frame, 133);
  if (header[0] !== 1 || 137 + ctLen + 64 !== frame.length) throw new ProtocolError('bad-prekey-msg', 'bad frame layout');
  const ct = frame.slice(137, 137 + ctLen), sig = frame.slice(137 + ctLen);
  if (toHex(header.subarray(1, 17)) !== (await peerIdFromPublicKey(sender.ed25519)) || toHex(header.subarray(17, 33)) !== recipient.peerId) {
    throw new ProtocolError('wrong-peer', 'frame is not from this sender to us');
  }
  if (!equalBytes(header.subarray(33, 65), prekey.signed.public)) throw new ProtocolError('unknown-prekey', 'frame sealed to another prekey');
  const sentAt = getU64(header, 113, 'stale');
  if (sentAt > now + PREKEY_FUTURE_SKEW_MS) throw new ProtocolError('stale', 'frame from the future');
  await ed25519VerifyOrThrow(sender.ed25519, signedPrekeyMsg(header, aad, ct), sig);
  const key = await hkdfSha256(await x25519(prekey.privateKey, header.slice(65, 97)), new Uint8Array(0), concatBytes(LABEL_PREKEY_KEY, header.subarray(0, 121)), 32);
  const plaintext = await aesGcmOpen(key, header.slice(121, 133), ct, concatBytes(header, aad));
  return { msgId: header.slice(97, 113), sentAt, plaintext };
}
