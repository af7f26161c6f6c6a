// Closed-room admission rules: the ADMISSION op's body and what it does to the membership state.
// Owns the closed-room part of the membership state (`closed`, `allowed`, `requests`): closing and
// reopening, an ADD that becomes a join request while closed, and an admin's admission (READMIT) of a
// not-yet-member. The rules are in membership.js's header; membership.js applies ops and calls these pure
// functions (a state in, a new state out; ProtocolError on a refused op). Not room/admission.js (the
// pacing of self-ADDs on a link). Mirrors peer/core/admission_rules.py.

import { ProtocolError } from './errors.js';
import { concatBytes, fromHex, toHex } from './bytes.js';

/**
 * @typedef {import('./membership.js').MembershipState} MembershipState
 * @typedef {import('./membership.js').MembershipOp} MembershipOp
 * @typedef {import('./membership.js').Member} Member
 */

export const MAX_CLOSE_IDS = 1024;
export const MAX_REQUESTS = 256;

/** @param {Uint8Array} body */
export function checkAdmissionBody(body) {
  if (body.length < 3 || (body[0] !== 0 && body[0] !== 1)) throw new ProtocolError('bad-op', 'bad admission mode');
  const n = (body[1] << 8) | body[2];
  if (body.length !== 3 + 16 * n) throw new ProtocolError('bad-op', 'bad body length');
  if (body[0] === 0 && n !== 0) throw new ProtocolError('bad-op', 'an open op lists no ids');
  if (body[0] === 1 && !(n >= 1 && n <= MAX_CLOSE_IDS)) throw new ProtocolError('bad-op', 'a close lists 1..1024 ids');
  for (let i = 1; i < n; i++) {
    if (toHex(body.subarray(3 + 16 * (i - 1), 19 + 16 * (i - 1))) >= toHex(body.subarray(3 + 16 * i, 19 + 16 * i))) throw new ProtocolError('bad-op', 'close ids not strictly ascending');
  }
}

/** The body of a close admitting `admits` (sorted here, 1..1024 ids), or of an open (null). @param {string[]|null} admits */
export function admissionBody(admits) {
  if (admits === null) return new Uint8Array([0, 0, 0]);
  const ids = [...new Set(admits)].sort();
  if (!(ids.length >= 1 && ids.length <= MAX_CLOSE_IDS)) throw new RangeError('a close lists 1..1024 peer ids');
  return concatBytes(new Uint8Array([1, ids.length >> 8, ids.length & 0xff]), ...ids.map(fromHex));
}

/** ADMISSION (close or open; the author is an admin: checked by the caller). @param {MembershipState} s @param {MembershipOp} op @returns {MembershipState} */
export function applyAdmission(s, op) {
  if (s.owner === null) throw new ProtocolError('not-allowed', 'a legacy room cannot be closed');
  if (!op.closing) return { ...s, closed: false, allowed: new Set(), requests: new Map(), members: new Map([...s.members, ...s.requests]) };
  const listed = new Set([...(op.admits ?? []), op.author, s.owner]);
  const keep = new Map([...s.members].filter(([p]) => listed.has(p)));
  const requests = new Map(s.requests);
  for (const pid of [...s.members.keys()].filter((p) => !keep.has(p)).sort()) {
    if (requests.size < MAX_REQUESTS) requests.set(pid, /** @type {Member} */ (s.members.get(pid)));
  }
  const admins = new Set([...s.admins].filter((p) => keep.has(p)));
  // no epoch change (a late self-ADD sorts before the close; REMOVE is what rotates)
  return { ...s, members: keep, closed: true, allowed: new Set(), requests, admins };
}

/** READMIT of a not-yet-member: a join request becomes a member; otherwise (closed) `target` joins `allowed`.
 * @param {MembershipState} s @param {string} target @returns {MembershipState} */
export function admitAhead(s, target) {
  const asked = s.requests.get(target);
  if (asked) {
    const requests = new Map(s.requests);
    requests.delete(target);
    return { ...s, members: new Map([...s.members, [target, asked]]), requests };
  }
  if (!s.closed) throw new ProtocolError('not-removed', 'target is not a removed member or a join request');
  if (s.allowed.has(target)) return s;
  if (s.allowed.size >= MAX_REQUESTS) throw new ProtocolError('too-many', 'too many names admitted ahead of their ADD');
  return { ...s, allowed: new Set([...s.allowed, target]) };
}

/** An ADD of a not-yet-member: while closed, unless `allowed` or an admin's ADD of another identity
 * (`byAdmin`), it admits no one and records a join request (the new state); null = the ADD admits it.
 * @param {MembershipState} s @param {string} target @param {Member} member @param {boolean} byAdmin @returns {MembershipState|null} */
export function requestInstead(s, target, member, byAdmin) {
  if (!s.closed || s.allowed.has(target) || byAdmin) return null;
  const asked = s.requests.get(target);
  if (asked && asked.prekey.createdAt >= member.prekey.createdAt) return s;
  if (!asked && s.requests.size >= MAX_REQUESTS) return s;
  return { ...s, requests: new Map(s.requests).set(target, member) };
}
