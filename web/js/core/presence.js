// Ephemeral signals between linked members: typing indicators and "seen" receipts.
// Mirrors peer/core/presence.py (PROTOCOL.md "Typing and seen (ephemeral APP frames)").
//
// They travel in APP frames over one authenticated link, are never stored or relayed and carry no content.
// Wire (APP frame body, big-endian; the first byte is the APP tag):
//   TYPING  0x02 | typing u8 (0 or 1)
//   SEEN    0x03 | n u16 (1..1024) | n x seq u64     "I have shown these messages of yours"
// Rules: a typing indicator is valid TYPING_TTL_MS after it arrives unless renewed; a sender renews it at
// most every TYPING_RENEW_MS while typing and sends 0 when it stops. SEEN goes only to the messages' sender,
// once per message. decodePresence returns or throws ProtocolError('bad-app-frame'), nothing else.

import { ProtocolError } from './errors.js';
import { concatBytes } from './bytes.js';
import { getU16, getU64, u16, u64, u8 } from './codec.js';

export const TYPING_TAG = 0x02;
export const SEEN_TAG = 0x03;
export const TYPING_TTL_MS = 6000;
export const TYPING_RENEW_MS = 3000;
export const MAX_SEEN = 1024;
export const LAST_SEEN_TAG = 0x06;

/** LASTSEEN 0x06 | share u8: "(do not) show when you last saw me" (issue 15). @param {boolean} share */
export const encodeLastSeen = (share) => new Uint8Array([LAST_SEEN_TAG, share ? 1 : 0]);

/** @typedef {{type: 'typing', typing: boolean} | {type: 'seen', seqs: number[]} | {type: 'lastseen', share: boolean}} PresenceSignal */

/** @param {boolean} typing */
export const encodeTyping = (typing) => new Uint8Array([TYPING_TAG, typing ? 1 : 0]);

/** SEEN for up to 1024 distinct seqs (sorted). @param {number[]} seqs */
export function encodeSeen(seqs) {
  const ordered = [...new Set(seqs)].sort((a, b) => a - b).slice(0, MAX_SEEN);
  if (!ordered.length) throw new Error('no seqs');
  return concatBytes(u8(SEEN_TAG), u16(ordered.length), ...ordered.map((q) => u64(q)));
}

/** Parse a TYPING or SEEN APP body. @param {Uint8Array} body @returns {PresenceSignal} */
export function decodePresence(body) {
  if (body.length === 2 && body[0] === TYPING_TAG && (body[1] === 0 || body[1] === 1)) return Object.freeze({ type: 'typing', typing: body[1] === 1 });
  if (body.length === 2 && body[0] === LAST_SEEN_TAG && (body[1] === 0 || body[1] === 1)) return Object.freeze({ type: 'lastseen', share: body[1] === 1 });
  if (body.length >= 3 && body[0] === SEEN_TAG) {
    const n = getU16(body, 1);
    if (n >= 1 && n <= MAX_SEEN && body.length === 3 + 8 * n) {
      /** @type {number[]} */
      const seqs = [];
      for (let i = 0; i < n; i++) seqs.push(getU64(body, 3 + 8 * i, 'bad-app-frame'));
      return Object.freeze({ type: 'seen', seqs });
    }
  }
  throw new ProtocolError('bad-app-frame', 'malformed typing/seen frame');
}
