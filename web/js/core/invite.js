// Invite links and room keys. Mirrors peer/core/invite.py.
//
// Rules:
// - URL: `{server}/#v1.{b64u(secret)}[.{ttl_s}][.o{b64u(owner)}]`; the 32-byte secret lives only in the
//   fragment (browsers never send it). ttl_s: decimal 1..31_536_000, no leading 0. owner: the creator's
//   peer id (16 bytes, 22 b64u chars); without it the invite names a legacy room (no roles).
// - Keys: HKDF-SHA256(ikm = secret, or secret || owner when the invite names one — so another owner id
//   is another room —, salt = "ephemesh-v1", 32 bytes): room_id = hex(first 16 bytes of
//   info "ephemesh-v1 room-id"), signal_key = info "ephemesh-v1 signal-key", member_key = info
//   "ephemesh-v1 member-key".
// - parseFragment / parseInvite throw ProtocolError('bad-invite') on anything malformed.

import { ProtocolError } from './errors.js';
import { b64uDecode, b64uEncode, concatBytes, fromHex, toHex, utf8 } from './bytes.js';
import { hkdfSha256, randomBytes } from './crypto.js';

export const MAX_TTL_S = 31_536_000;
export const MAX_URL_LEN = 2048;
const FRAGMENT = /^v1\.([A-Za-z0-9_-]{43})(?:\.([1-9][0-9]{0,7}))?(?:\.o([A-Za-z0-9_-]{22}))?$/;
const SALT = utf8('ephemesh-v1');

/** @typedef {{ roomId: string, signalKey: Uint8Array, memberKey: Uint8Array }} RoomKeys */
/** @typedef {{ secret: Uint8Array, ttlS: number | null, owner: string | null }} InviteSecret */

/** @param {Uint8Array} secret @param {string|null} [owner] the owner's peer id (null: legacy room) @returns {Promise<RoomKeys>} */
export async function deriveRoomKeys(secret, owner = null) {
  if (!(secret instanceof Uint8Array) || secret.length !== 32) throw new ProtocolError('bad-invite', 'room secret must be 32 bytes');
  if (owner !== null && !/^[0-9a-f]{32}$/.test(owner)) throw new ProtocolError('bad-invite', 'owner must be a peer id');
  const ikm = owner === null ? secret : concatBytes(secret, fromHex(owner));
  const roomId = toHex((await hkdfSha256(ikm, SALT, utf8('ephemesh-v1 room-id'), 32)).subarray(0, 16));
  const signalKey = await hkdfSha256(ikm, SALT, utf8('ephemesh-v1 signal-key'), 32);
  const memberKey = await hkdfSha256(ikm, SALT, utf8('ephemesh-v1 member-key'), 32);
  return { roomId, signalKey, memberKey };
}

/** Parse the fragment (without '#'). @param {unknown} fragment @returns {InviteSecret} */
export function parseFragment(fragment) {
  if (typeof fragment !== 'string') throw new ProtocolError('bad-invite', 'no fragment');
  const m = FRAGMENT.exec(fragment);
  if (!m) throw new ProtocolError('bad-invite', 'malformed fragment');
  let secret;
  try {
    secret = b64uDecode(m[1]);
  } catch {
    throw new ProtocolError('bad-invite', 'malformed secret');
  }
  if (secret.length !== 32) throw new ProtocolError('bad-invite', 'malformed secret');
  const ttlS = m[2] ? Number(m[2]) : null;
  if (ttlS !== null && (ttlS < 1 || ttlS > MAX_TTL_S)) throw new ProtocolError('bad-invite', 'ttl out of range');
  let owner = null;
  if (m[3]) {
    let raw;
    try {
      raw = b64uDecode(m[3]);
    } catch {
      throw new ProtocolError('bad-invite', 'malformed owner');
    }
    if (raw.length !== 16) throw new ProtocolError('bad-invite', 'malformed owner');
    owner = toHex(raw);
  }
  return { secret, ttlS, owner };
}

/** Parse a whole invite URL. @param {unknown} url @returns {InviteSecret & {server: string}} */
export function parseInvite(url) {
  if (typeof url !== 'string' || url.length > MAX_URL_LEN || url.split('#').length !== 2) {
    throw new ProtocolError('bad-invite', 'expected one URL with a fragment');
  }
  const [base, frag] = url.split('#');
  const server = base.replace(/\/+$/, '');
  if (!/^https?:\/\/[A-Za-z0-9.\-[\]:]+(\/[A-Za-z0-9._~\-/%]*)?$/.test(server)) {
    throw new ProtocolError('bad-invite', 'server must be an http(s) URL');
  }
  return { server, ...parseFragment(frag) };
}

/** @param {Uint8Array} secret @param {number|null} ttlS @param {string|null} [owner] the creator's peer id */
export function inviteFragment(secret, ttlS, owner = null) {
  let frag = `v1.${b64uEncode(secret)}`;
  if (ttlS !== null) frag += `.${ttlS}`;
  return owner === null ? frag : `${frag}.o${b64uEncode(fromHex(owner))}`;
}

/** A fresh room secret (32 random bytes). */
export function newRoomSecret() {
  return randomBytes(32);
}
