// Invite links and room keys. Mirrors peer/core/invite.py.
//
// Rules:
// - URL: `{server}/#v1.{b64u(secret)}[.{ttl_s}][.o{b64u(owner)}][.s{b64u(servers)}]`; the 32-byte secret
//   lives only in the fragment (browsers never send it). ttl_s: decimal 1..31_536_000, no leading 0.
//   owner: the creator's peer id (16 bytes, 22 b64u chars); without it the invite names a legacy room.
//   servers: more signaling servers (URLs like `server`, joined by "\n", UTF-8), at most
//   MAX_EXTRA_SERVERS, no duplicates; not an input of the keys (same room with or without them).
//   `ephemesh:#v1...` names no server (LAN discovery only: a browser cannot use it alone).
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
export const MAX_EXTRA_SERVERS = 8;
export const NO_SERVER = 'ephemesh:';
const FRAGMENT = /^v1\.([A-Za-z0-9_-]{43})(?:\.([1-9][0-9]{0,7}))?(?:\.o([A-Za-z0-9_-]{22}))?(?:\.s([A-Za-z0-9_-]{1,1800}))?$/;
const SERVER = /^https?:\/\/[A-Za-z0-9.\-[\]:]+(\/[A-Za-z0-9._~\-/%]*)?$/;
const SALT = utf8('ephemesh-v1');

/** @typedef {{ roomId: string, signalKey: Uint8Array, memberKey: Uint8Array }} RoomKeys */
/** @typedef {{ secret: Uint8Array, ttlS: number | null, owner: string | null, extraServers: string[] }} InviteSecret */

/** A server URL without trailing slashes, or ProtocolError. @param {unknown} url @returns {string} */
function checkServer(url) {
  const server = typeof url === 'string' ? url.replace(/\/+$/, '') : '';
  if (server.length > 1024 || !SERVER.test(server)) throw new ProtocolError('bad-invite', 'server must be an http(s) URL');
  return server;
}

/** The `.s` list. @param {string} text @returns {string[]} */
function decodeServers(text) {
  let raw;
  try {
    raw = new TextDecoder('utf-8', { fatal: true }).decode(b64uDecode(text));
  } catch {
    throw new ProtocolError('bad-invite', 'malformed server list');
  }
  const list = raw.split('\n').map(checkServer);
  if (list.length > MAX_EXTRA_SERVERS) throw new ProtocolError('bad-invite', `at most ${MAX_EXTRA_SERVERS} extra servers`);
  if (new Set(list).size !== list.length) throw new ProtocolError('bad-invite', 'a server is listed twice');
  return list;
}

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
  const extraServers = m[4] ? decodeServers(m[4]) : [];
  return { secret, ttlS, owner, extraServers };
}

/** Parse a whole invite URL (server null: `ephemesh:#...`, LAN only). @param {unknown} url @returns {InviteSecret & {server: string|null}} */
export function parseInvite(url) {
  if (typeof url !== 'string' || url.length > MAX_URL_LEN || url.split('#').length !== 2) {
    throw new ProtocolError('bad-invite', 'expected one URL with a fragment');
  }
  const [base, frag] = url.split('#');
  const server = base === NO_SERVER ? null : checkServer(base);
  const parsed = parseFragment(frag);
  if (server !== null && parsed.extraServers.includes(server)) throw new ProtocolError('bad-invite', 'a server is listed twice');
  return { server, ...parsed };
}

/**
 * @param {Uint8Array} secret @param {number|null} ttlS @param {string|null} [owner] the creator's peer id
 * @param {string[]} [servers] more signaling servers (the `.s` component)
 */
export function inviteFragment(secret, ttlS, owner = null, servers = []) {
  let frag = `v1.${b64uEncode(secret)}`;
  if (ttlS !== null) frag += `.${ttlS}`;
  if (owner !== null) frag += `.o${b64uEncode(fromHex(owner))}`;
  if (servers.length) frag += `.s${b64uEncode(utf8(servers.map(checkServer).join('\n')))}`;
  return frag;
}

/** A fresh room secret (32 random bytes). */
export function newRoomSecret() {
  return randomBytes(32);
}
