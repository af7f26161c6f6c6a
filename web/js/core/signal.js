// Signaling payloads: encrypted for the room, signed by the sender, bound to DTLS fingerprints.
// Mirrors peer/core/signal.py (see PROTOCOL.md "Signaling payloads").
//
// payload = "v1." + b64u(nonce12 || AES-256-GCM(signal_key, nonce12, inner, aad)),
// aad = "ephemesh-v1 signal-aead\0" || room_id || from || to; inner = UTF-8 JSON
// {"v":1,"kind","from","to","ts","n","body" (JSON text),"fp","bundle","sig"}.
// Rules on open (each failure a ProtocolError): AEAD under the relay-claimed sender and our id;
// to = us; from = relayed sender = bundle's peer id; |now - ts| <= 120000; (from, n) unseen
// (ReplayCache); strict signature; SDP fingerprints equal the signed fp list, in order.

import { ProtocolError } from './errors.js';
import { b64uDecode, b64uEncode, concatBytes, fromHex, fromUtf8, utf8 } from './bytes.js';
import { aesGcmOpen, aesGcmSeal, defaultRng, ed25519VerifyOrThrow, sha256, u64 } from './crypto.js';
import { bundleToDict, parseBundle, publicBundle, sign } from './identity.js';
import { parsePeerId, peerIdFromPublicKey } from './ids.js';

export const LABEL_SIG = concatBytes(utf8('ephemesh-v1 signal-sig'), new Uint8Array([0]));
export const LABEL_AEAD = concatBytes(utf8('ephemesh-v1 signal-aead'), new Uint8Array([0]));
export const MAX_SKEW_MS = 120_000;
export const MAX_PAYLOAD_CHARS = 64 * 1024;
export const MAX_FINGERPRINTS = 8;
const KIND = /^[a-z][a-z0-9-]{0,31}$/;
const FP_LINE = /^a=fingerprint:([A-Za-z0-9-]{1,16}) ([0-9A-Fa-f:]{1,200})\s*$/gm;

/**
 * Bounded memory of (sender, nonce) seen within the skew window. When full, the oldest entry is
 * evicted and its timestamp becomes a floor: anything at or below it is rejected (fail closed).
 */
export class ReplayCache {
  constructor(capacity = 10_000, windowMs = MAX_SKEW_MS) {
    this.capacity = capacity;
    this.windowMs = windowMs;
    /** @type {Map<string, number>} insertion-ordered */
    this.seen = new Map();
    this.floor = -1;
  }

  /** @param {string} sender @param {Uint8Array} nonce @param {number} ts @param {number} now */
  checkAndAdd(sender, nonce, ts, now) {
    const horizon = now - 2 * this.windowMs;
    for (const [k, t] of this.seen) {
      if (t >= horizon) break;
      this.seen.delete(k);
    }
    const key = `${sender}:${b64uEncode(nonce)}`;
    if (this.seen.has(key) || ts <= this.floor) throw new ProtocolError('replay', 'signaling payload replayed');
    while (this.seen.size >= this.capacity) {
      const [k, t] = /** @type {[string, number]} */ (this.seen.entries().next().value);
      this.seen.delete(k);
      this.floor = Math.max(this.floor, t);
    }
    this.seen.set(key, ts);
  }
}

/** `a=fingerprint:` values of an SDP, normalised to "<algo lower> <HEX UPPER>". @param {string} sdp */
export function sdpFingerprints(sdp) {
  return [...sdp.replace(/\r/g, '').matchAll(FP_LINE)].map((m) => `${m[1].toLowerCase()} ${m[2].toUpperCase()}`);
}

/** @param {unknown} body */
function bodyFingerprints(body) {
  const sdp = body && typeof body === 'object' ? /** @type {any} */ (body).sdp : body;
  return typeof sdp === 'string' ? sdpFingerprints(sdp) : [];
}

/** The exact bytes the sender signs. */
export async function signedBytes(
  /** @type {string} */ roomId, /** @type {string} */ sender, /** @type {string} */ to, /** @type {number} */ ts,
  /** @type {Uint8Array} */ nonce, /** @type {string} */ kind, /** @type {string} */ bodyJson, /** @type {string[]} */ fps,
) {
  const kindB = utf8(kind);
  const parts = [LABEL_SIG, fromHex(roomId), fromHex(sender), fromHex(to), u64(ts), nonce,
    new Uint8Array([kindB.length]), kindB, await sha256(utf8(bodyJson)), new Uint8Array([fps.length])];
  for (const fp of fps) {
    const b = utf8(fp);
    parts.push(new Uint8Array([b.length]), b);
  }
  return concatBytes(...parts);
}

/** @param {string} roomId @param {string} sender @param {string} to */
function aad(roomId, sender, to) {
  return concatBytes(LABEL_AEAD, fromHex(roomId), fromHex(sender), fromHex(to));
}

/**
 * Encrypt and sign a signaling message for `to`; fingerprints are taken from the body's SDP.
 * Object bodies are serialised in insertion order (put "type" before "sdp" like the Python peers).
 * @param {import('./identity.js').Identity} identity
 * @param {{roomId: string, signalKey: Uint8Array}} room
 * @param {string} to @param {string} kind @param {Record<string, unknown>|string} body @param {number} now
 * @param {import('./crypto.js').Rng} [rng]
 * @param {string[]} [fingerprints] TESTS ONLY: sign this fp list instead of the SDP's (to simulate a liar)
 */
export async function sealSignal(identity, room, to, kind, body, now, rng = defaultRng, fingerprints = undefined) {
  if (!KIND.test(kind)) throw new Error('bad kind');
  parsePeerId(to);
  if (!(room.signalKey instanceof Uint8Array) || room.signalKey.length !== 32) throw new Error('missing signal key');
  const bodyJson = JSON.stringify(body);
  const fps = fingerprints ?? bodyFingerprints(body);
  const nonce = await rng(16);
  const sig = await sign(identity, await signedBytes(room.roomId, identity.peerId, to, now, nonce, kind, bodyJson, fps));
  const inner = {
    v: 1, kind, from: identity.peerId, to, ts: now, n: b64uEncode(nonce), body: bodyJson, fp: fps,
    bundle: bundleToDict(publicBundle(identity)), sig: b64uEncode(sig),
  };
  const aeadNonce = await rng(12);
  const ct = await aesGcmSeal(room.signalKey, aeadNonce, utf8(JSON.stringify(inner)), aad(room.roomId, identity.peerId, to));
  return `v1.${b64uEncode(concatBytes(aeadNonce, ct))}`;
}

/** @param {Record<string, unknown>} inner @param {string} name @param {'string'|'number'|'array'} type */
function field(inner, name, type) {
  const v = inner[name];
  const ok = type === 'array' ? Array.isArray(v) : type === 'number' ? Number.isSafeInteger(v) : typeof v === type;
  if (!ok) throw new ProtocolError('bad-signal', `field ${name} missing or mistyped`);
  return /** @type {any} */ (v);
}

/** @param {unknown} text @param {number} len */
function b64uExact(text, len) {
  const b = b64uDecode(text);
  if (b.length !== len) throw new ProtocolError('bad-b64u', `expected ${len} bytes`);
  return b;
}

/**
 * Decrypt, verify and replay-check a payload relayed from `fromPeer`.
 * @param {{roomId: string, signalKey: Uint8Array}} room @param {string} myPeerId @param {string} fromPeer
 * @param {unknown} payload @param {number} now @param {ReplayCache} replay
 * @returns {Promise<{kind: string, body: Record<string, unknown>|string, senderBundle: import('./identity.js').PublicBundle, sentAt: number}>}
 */
export async function openSignal(room, myPeerId, fromPeer, payload, now, replay) {
  parsePeerId(myPeerId);
  parsePeerId(fromPeer, 'sender');
  if (typeof payload !== 'string' || payload.length > MAX_PAYLOAD_CHARS || !payload.startsWith('v1.')) {
    throw new ProtocolError('bad-signal', 'malformed payload');
  }
  const raw = b64uDecode(payload.slice(3));
  if (raw.length < 12 + 16) throw new ProtocolError('bad-signal', 'payload too short');
  const plaintext = await aesGcmOpen(room.signalKey, raw.slice(0, 12), raw.slice(12), aad(room.roomId, fromPeer, myPeerId));
  let inner;
  try {
    inner = JSON.parse(fromUtf8(plaintext));
  } catch {
    throw new ProtocolError('bad-signal', 'inner payload is not JSON');
  }
  if (!inner || typeof inner !== 'object' || Array.isArray(inner) || inner.v !== 1) throw new ProtocolError('bad-signal', 'unsupported inner version');
  const kind = field(inner, 'kind', 'string');
  if (!KIND.test(kind)) throw new ProtocolError('bad-signal', 'bad kind');
  if (field(inner, 'to', 'string') !== myPeerId) throw new ProtocolError('wrong-recipient', 'payload is addressed to another peer');
  if (field(inner, 'from', 'string') !== fromPeer) throw new ProtocolError('wrong-sender', 'inner sender differs from relayed sender');
  const ts = field(inner, 'ts', 'number');
  if (Math.abs(now - ts) > MAX_SKEW_MS || ts < 0) throw new ProtocolError('stale', 'timestamp outside the allowed window');
  const nonce = b64uExact(inner.n, 16);
  const bodyJson = field(inner, 'body', 'string');
  const fps = field(inner, 'fp', 'array');
  if (fps.length > MAX_FINGERPRINTS || !fps.every((/** @type {unknown} */ f) => typeof f === 'string' && /^[\x00-\x7f]*$/.test(f) && f.length < 256)) {
    throw new ProtocolError('bad-signal', 'bad fingerprint list');
  }
  const bundle = await parseBundle(inner.bundle);
  if ((await peerIdFromPublicKey(bundle.ed25519)) !== fromPeer) throw new ProtocolError('wrong-sender', 'sender id does not match its public key');
  const sig = b64uExact(inner.sig, 64);
  await ed25519VerifyOrThrow(bundle.ed25519, await signedBytes(room.roomId, fromPeer, myPeerId, ts, nonce, kind, bodyJson, fps), sig);
  let body;
  try {
    body = JSON.parse(bodyJson);
  } catch {
    throw new ProtocolError('bad-signal', 'body is not JSON');
  }
  if (!(typeof body === 'string' || (body && typeof body === 'object' && !Array.isArray(body)))) {
    throw new ProtocolError('bad-signal', 'body must be an object or a string');
  }
  const got = bodyFingerprints(body);
  if (got.length !== fps.length || got.some((f, i) => f !== fps[i])) {
    throw new ProtocolError('fingerprint-mismatch', 'SDP fingerprints differ from the signed list');
  }
  replay.checkAndAdd(fromPeer, nonce, ts, now);
  return { kind, body, senderBundle: bundle, sentAt: ts };
}
