// Signed membership operations and the room's membership state (closed-room rules: admission_rules.js). Mirrors peer/core/membership.py.
//
//   op = 0x01 | type u8 | room_id(16) | author(16) | lamport u64 | body | mac(32) | sig(64)
//   ADD (1) body = PublicBundle(128) | SignedPrekey(104); REMOVE (2) body = target(16);
//   SET_TIMER (3) body = ttl_s u32 | version u32; ROLE (4) body = target(16) | role u8 (0 member, 1 admin);
//   READMIT (5) body = target(16); SETTINGS (6) body = flags u32 (bit 0 = announcement mode)
//   ADMISSION (7) body = mode u8 (0 open, 1 closed) | n u16 | n x peer id(16) strictly ascending
//     (open: n = 0; closed: 1 <= n <= 1024)
//   mac = HMAC(member_key, "ephemesh-v1 membership-mac\0" || bytes before mac)
//   sig = Ed25519(author, "ephemesh-v1 membership-sig\0" || bytes before sig)
//
// Rules (apply in the order (lamport, author, SHA-256(op)); same ops -> same state everywhere):
//   every op: right room, valid MAC, author not removed, valid signature (member key, or the bundle of
//   a self-ADD). Roles: the owner (from the invite; null = legacy room where every member is an admin)
//   is an admin; admins are appointed/demoted by admins with ROLE (never the owner's role); an op is valid
//   iff its author had the role in the state before it (canonical order decides concurrent ops).
//   ADD: author is a member or adds itself; removed targets cannot self-add back; a newer prekey replaces
//   an older one. REMOVE: target must be a member; leaving is open to all, removing another needs an
//   admin and never hits the owner; epoch += 1. ROLE: admin author, member target, not the owner, not in
//   a legacy room. READMIT: admin author, removed target back as a plain member; epoch += 1.
//   SETTINGS: admin author; announceSince = lamport of the op that turned announcement mode on (0 = off).
//   SET_TIMER: admin author; versions form a chain from 1; the timer is the op with the highest reachable
//   version (every lower version has an op), ties by highest (author, ttl); an op that skips versions is
//   held until the gap fills (see peer/core/membership.py). Rejections throw ProtocolError, state unchanged.
//   ADMISSION: admin author, not in a legacy room. Close: members = listed ids that are members, plus the
//   author and the owner; the others become join requests (epoch unchanged); `allowed` cleared.
//   Open: every join request becomes a member. While closed an ADD admits only a member (prekey refresh),
//   an id in `allowed`, or an admin's ADD of another identity; any other ADD is valid but only records
//   a join request (at most MAX_REQUESTS). READMIT of a not-yet-member (admit): a join request becomes a
//   member; otherwise (closed) the id joins `allowed` (at most MAX_REQUESTS) and its next ADD admits it.

import { MAX_CLOSE_IDS, MAX_REQUESTS, admissionBody, admitAhead, applyAdmission, checkAdmissionBody, requestInstead } from './admission_rules.js';
import { ProtocolError } from './errors.js';
import { b64uEncode, concatBytes, fromHex, toHex } from './bytes.js';
import { ed25519VerifyOrThrow, hmacSha256, hmacSha256Verify, sha256 } from './crypto.js';
import { bundleFromBytes, bundleToBytes, bundleToDict, sign } from './identity.js';
import { peerIdFromPublicKey } from './ids.js';
import { prekeyFromBytes, prekeyToBytes, verifyPrekey } from './handshake.js';
import { getU32, getU64, label, u32, u64 } from './codec.js';

export const LABEL_MAC = label('ephemesh-v1 membership-mac', true);
export const LABEL_SIG = label('ephemesh-v1 membership-sig', true);
export const MAX_TTL_S = 31_536_000;
export const OpType = Object.freeze({ ADD: 1, REMOVE: 2, SET_TIMER: 3, ROLE: 4, READMIT: 5, SETTINGS: 6, ADMISSION: 7 });
export { MAX_CLOSE_IDS, MAX_REQUESTS };
export const MAX_OP = 42 + 3 + MAX_CLOSE_IDS * 16 + 96;
export const Role = Object.freeze({ MEMBER: 0, ADMIN: 1 });
export const ANNOUNCE = 1;
const BODY_LEN = { 1: 232, 2: 16, 3: 8, 4: 17, 5: 16, 6: 4 };

/**
 * @typedef {import('./identity.js').PublicBundle} PublicBundle
 * @typedef {import('./handshake.js').SignedPrekey} SignedPrekey
 * @typedef {{op: number, roomId: string, author: string, lamport: number, body: Uint8Array, mac: Uint8Array,
 *   signature: Uint8Array, bundle?: PublicBundle, prekey?: SignedPrekey, target?: string, timer?: [number, number],
 *   role?: number, flags?: number, closing?: boolean, admits?: string[], digest: Uint8Array}} MembershipOp
 * @typedef {{bundle: PublicBundle, prekey: SignedPrekey}} Member
 * @typedef {{ttlS: number, version: number, author: string}} Timer
 * @typedef {{roomId: string, members: Map<string, Member>, removed: Set<string>, timer: Timer|null, epoch: number,
 *   owner: string|null, admins: Set<string>, announceSince: number, former: Map<string, Member>,
 *   timerHeld?: Timer[], closed: boolean, allowed: Set<string>, requests: Map<string, Member>}} MembershipState
 */

/** @param {{op: number, roomId: string, author: string, lamport: number, body: Uint8Array}} o */
const opPrefix = (o) => concatBytes(new Uint8Array([1, o.op]), fromHex(o.roomId), fromHex(o.author), u64(o.lamport), o.body);

/** @param {MembershipOp} o */
export const encodeOp = (o) => concatBytes(opPrefix(o), o.mac, o.signature);

/** Parse (MAC and signature are checked by applyOp); ProtocolError if malformed. @param {unknown} d @returns {Promise<MembershipOp>} */
export async function decodeOp(d) {
  if (!(d instanceof Uint8Array) || d.length < 42 + 3 + 96 || d.length > MAX_OP) throw new ProtocolError('bad-op', 'bad size');
  const op = d[1];
  if (d[0] !== 1 || !(op in BODY_LEN || op === OpType.ADMISSION)) throw new ProtocolError('bad-op', 'unknown version or op');
  if (op !== OpType.ADMISSION && d.length > 1024) throw new ProtocolError('bad-op', 'bad size');
  const body = d.slice(42, d.length - 96);
  if (op === OpType.ADMISSION) checkAdmissionBody(body);
  else if (body.length !== BODY_LEN[/** @type {1|2|3|4|5|6} */ (op)]) throw new ProtocolError('bad-op', 'bad body length');
  /** @type {MembershipOp} */
  const parsed = {
    op, roomId: toHex(d.subarray(2, 18)), author: toHex(d.subarray(18, 34)), lamport: getU64(d, 34, 'bad-op'), body,
    mac: d.slice(d.length - 96, d.length - 64), signature: d.slice(d.length - 64), digest: await sha256(d),
  };
  if (op === OpType.ADD) {
    parsed.bundle = await bundleFromBytes(body.slice(0, 128));
    parsed.prekey = prekeyFromBytes(body.slice(128));
    parsed.target = await peerIdFromPublicKey(parsed.bundle.ed25519);
  } else if (op === OpType.REMOVE || op === OpType.READMIT) {
    parsed.target = toHex(body);
  } else if (op === OpType.ROLE) {
    parsed.target = toHex(body.subarray(0, 16));
    parsed.role = body[16];
    if (parsed.role !== Role.MEMBER && parsed.role !== Role.ADMIN) throw new ProtocolError('bad-op', 'unknown role');
  } else if (op === OpType.ADMISSION) {
    parsed.closing = body[0] === 1;
    parsed.admits = [];
    for (let i = 3; i < body.length; i += 16) parsed.admits.push(toHex(body.subarray(i, i + 16)));
  } else if (op === OpType.SETTINGS) {
    parsed.flags = getU32(body, 0);
    if (parsed.flags & ~ANNOUNCE) throw new ProtocolError('bad-op', 'unknown settings flag');
  } else {
    parsed.timer = [getU32(body, 0), getU32(body, 4)];
    if (parsed.timer[0] > MAX_TTL_S) throw new ProtocolError('bad-op', 'ttl out of range');
  }
  return Object.freeze(parsed);
}

/** @param {import('./identity.js').Identity} id @param {Uint8Array} memberKey @param {string} roomId @param {number} lamport @param {number} op @param {Uint8Array} body */
async function make(id, memberKey, roomId, lamport, op, body) {
  const prefix = opPrefix({ op, roomId, author: id.peerId, lamport, body });
  const mac = await hmacSha256(memberKey, concatBytes(LABEL_MAC, prefix));
  const sig = await sign(id, concatBytes(LABEL_SIG, prefix, mac));
  return decodeOp(concatBytes(prefix, mac, sig));
}

/** @param {import('./identity.js').Identity} id @param {Uint8Array} mk @param {string} roomId @param {number} lamport @param {PublicBundle} bundle @param {SignedPrekey} prekey */
export const makeAdd = (id, mk, roomId, lamport, bundle, prekey) => make(id, mk, roomId, lamport, OpType.ADD, concatBytes(bundleToBytes(bundle), prekeyToBytes(prekey)));
/** @param {import('./identity.js').Identity} id @param {Uint8Array} mk @param {string} roomId @param {number} lamport @param {string} target */
export const makeRemove = (id, mk, roomId, lamport, target) => make(id, mk, roomId, lamport, OpType.REMOVE, fromHex(target));
/** @param {import('./identity.js').Identity} id @param {Uint8Array} mk @param {string} roomId @param {number} lamport @param {number} ttlS @param {number} version */
export function makeSetTimer(id, mk, roomId, lamport, ttlS, version) {
  if (!(Number.isInteger(ttlS) && ttlS >= 0 && ttlS <= MAX_TTL_S)) throw new RangeError('ttl out of range');
  if (!(Number.isInteger(version) && version >= 1 && version <= 0xffffffff)) throw new RangeError('room timer version out of range');
  return make(id, mk, roomId, lamport, OpType.SET_TIMER, concatBytes(u32(ttlS), u32(version)));
}

/** @param {import('./identity.js').Identity} id @param {Uint8Array} mk @param {string} roomId @param {number} lamport @param {string} target @param {number} role */
export function makeRole(id, mk, roomId, lamport, target, role) {
  if (role !== Role.MEMBER && role !== Role.ADMIN) throw new RangeError('unknown role');
  return make(id, mk, roomId, lamport, OpType.ROLE, concatBytes(fromHex(target), new Uint8Array([role])));
}
/** @param {import('./identity.js').Identity} id @param {Uint8Array} mk @param {string} roomId @param {number} lamport @param {string} target */
export const makeReadmit = (id, mk, roomId, lamport, target) => make(id, mk, roomId, lamport, OpType.READMIT, fromHex(target));
/** @param {import('./identity.js').Identity} id @param {Uint8Array} mk @param {string} roomId @param {number} lamport @param {boolean} announce */
export const makeSettings = (id, mk, roomId, lamport, announce) => make(id, mk, roomId, lamport, OpType.SETTINGS, u32(announce ? ANNOUNCE : 0));

/** Close the room admitting `admits` (sorted here, 1..1024 ids), or open it (`admits` null).
 * @param {import('./identity.js').Identity} id @param {Uint8Array} mk @param {string} roomId @param {number} lamport @param {string[]|null} admits */
export function makeAdmission(id, mk, roomId, lamport, admits) {
  return make(id, mk, roomId, lamport, OpType.ADMISSION, admissionBody(admits));
}

/** @param {string} roomId @param {string|null} [owner] the invite's owner (null: a legacy room) @returns {MembershipState} */
export const emptyState = (roomId, owner = null) => ({
  roomId, members: new Map(), removed: new Set(), timer: null, epoch: 0, owner, admins: new Set(), announceSince: 0, former: new Map(),
  closed: false, allowed: new Set(), requests: new Map(),
});

/** A current member with the admin role (owner, appointed admin, anyone in a legacy room). @param {MembershipState} s @param {string} peer */
export function isAdmin(s, peer) {
  if (!s.members.has(peer)) return false;
  return s.owner === null || peer === s.owner || s.admins.has(peer);
}

/** Announcement mode: may a chat envelope of `peer` at `lamport` be shown? @param {MembershipState} s @param {string} peer @param {number} lamport */
export const mayPost = (s, peer, lamport) => s.announceSince === 0 || lamport <= s.announceSince || isAdmin(s, peer);

/** @param {MembershipOp} a @param {MembershipOp} b */
function compareOps(a, b) {
  if (a.lamport !== b.lamport) return a.lamport - b.lamport;
  if (a.author !== b.author) return a.author < b.author ? -1 : 1;
  const x = toHex(a.digest), y = toHex(b.digest);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Ops whose MAC, signature and prekey passed, with the member key (hex) they passed under. An op's check
 * does not depend on the state (a peer id is the hash of its key), so it is done once per op: recomputing
 * n ops costs no crypto for the ops seen before (was O(n²) signature checks). @type {WeakMap<object, string>} */
const verifiedOps = new WeakMap();

/** The state after `op`; ProtocolError if not allowed. @param {MembershipState} s @param {MembershipOp} op @param {Uint8Array} memberKey @returns {Promise<MembershipState>} */
export async function applyOp(s, op, memberKey) {
  return step(s, op, memberKey, new Map(s.members));
}

/** applyOp onto `members`, a fresh copy of the state's members (changed only once the op is accepted).
 * @param {MembershipState} s @param {MembershipOp} op @param {Uint8Array} memberKey @param {Map<string, Member>} members @returns {Promise<MembershipState>} */
async function step(s, op, memberKey, members) {
  if (op.roomId !== s.roomId) throw new ProtocolError('wrong-room', 'op for another room');
  const keyHex = toHex(memberKey);
  const checked = verifiedOps.get(op) === keyHex;
  if (!checked && !(await hmacSha256Verify(memberKey, concatBytes(LABEL_MAC, opPrefix(op)), op.mac))) throw new ProtocolError('bad-mac', 'authentication tag mismatch');
  if (s.removed.has(op.author)) throw new ProtocolError('removed', 'author was removed from the room');
  const author = s.members.get(op.author);
  let authorKey;
  if (author) authorKey = author.bundle.ed25519;
  else if (op.op === OpType.ADD && op.target === op.author) authorKey = /** @type {PublicBundle} */ (op.bundle).ed25519;
  else throw new ProtocolError('not-member', 'author is not a member');
  if (!checked) await ed25519VerifyOrThrow(authorKey, concatBytes(LABEL_SIG, opPrefix(op), op.mac), op.signature);
  if (op.op === OpType.ADD) {
    const target = /** @type {string} */ (op.target), bundle = /** @type {PublicBundle} */ (op.bundle), prekey = /** @type {SignedPrekey} */ (op.prekey);
    if (s.removed.has(target)) throw new ProtocolError('removed', 'target was removed from the room');
    if (!checked) await verifyPrekey(prekey, bundle);
    verifiedOps.set(op, keyHex);
    const cur = s.members.get(target);
    if (cur && cur.prekey.createdAt >= prekey.createdAt) return s;
    const byAdmin = author !== undefined && isAdmin(s, op.author) && op.author !== target;
    const request = cur ? null : requestInstead(s, target, { bundle, prekey }, byAdmin); // closed: a join request
    if (request) return request;
    members.set(target, { bundle, prekey });
    if (!s.allowed.has(target) && !s.requests.has(target)) return { ...s, members };
    const allowed = new Set(s.allowed), requests = new Map(s.requests);
    allowed.delete(target);
    requests.delete(target);
    return { ...s, members, allowed, requests };
  }
  verifiedOps.set(op, keyHex);
  if (op.op === OpType.REMOVE) {
    const target = /** @type {string} */ (op.target);
    if (!s.members.has(target)) throw new ProtocolError('not-member', 'target is not a member');
    if (target !== op.author) {
      if (!isAdmin(s, op.author)) throw new ProtocolError('not-admin', 'only an admin may remove another member');
      if (target === s.owner) throw new ProtocolError('not-allowed', 'the owner cannot be removed by another member');
    }
    members.delete(target);
    const admins = new Set(s.admins);
    admins.delete(target);
    const former = new Map(s.former).set(target, /** @type {Member} */ (s.members.get(target)));
    return { ...s, members, removed: new Set([...s.removed, target]), admins, former, epoch: s.epoch + 1 };
  }
  if (!isAdmin(s, op.author)) throw new ProtocolError('not-admin', 'only an admin may do this');
  if (op.op === OpType.ROLE) {
    const target = /** @type {string} */ (op.target);
    if (s.owner === null) throw new ProtocolError('not-allowed', 'a legacy room has no roles');
    if (!s.members.has(target)) throw new ProtocolError('not-member', 'target is not a member');
    if (target === s.owner) throw new ProtocolError('not-allowed', "the owner's role cannot change");
    if ((op.role === Role.ADMIN) === s.admins.has(target)) return s;
    const admins = new Set(s.admins);
    if (op.role === Role.ADMIN) admins.add(target);
    else admins.delete(target);
    return { ...s, admins };
  }
  if (op.op === OpType.ADMISSION) return applyAdmission(s, op);
  if (op.op === OpType.READMIT) {
    const target = /** @type {string} */ (op.target);
    const record = s.former.get(target);
    if (!s.removed.has(target) && !s.members.has(target)) return admitAhead(s, target); // admit a not-yet-member
    if (!s.removed.has(target) || !record) throw new ProtocolError('not-removed', 'target is not a removed member');
    const removed = new Set(s.removed);
    removed.delete(target);
    const former = new Map(s.former);
    former.delete(target);
    const allowed = new Set(s.allowed);
    allowed.delete(target);
    return { ...s, members: new Map([...s.members, [target, record]]), removed, former, allowed, epoch: s.epoch + 1 };
  }
  if (op.op === OpType.SETTINGS) {
    const on = (/** @type {number} */ (op.flags) & ANNOUNCE) !== 0;
    return { ...s, announceSince: on ? (s.announceSince || Math.max(op.lamport, 1)) : 0 };
  }
  const [ttlS, version] = /** @type {[number, number]} */ (op.timer);
  return withTimer(s, { ttlS, version, author: op.author });
}

/** (author, ttl) of a is above b's. @param {Timer} a @param {Timer} b */
const outranks = (a, b) => a.author > b.author || (a.author === b.author && a.ttlS > b.ttlS);
/** @param {Timer} a @param {Timer} b */
const sameTimer = (a, b) => a.version === b.version && a.author === b.author && a.ttlS === b.ttlS;

/** Add an accepted SET_TIMER and walk the version chain as far as it reaches. @param {MembershipState} s @param {Timer} t */
function withTimer(s, t) {
  let timer = s.timer;
  let held = [...(s.timerHeld ?? [])];
  if (!held.some((h) => sameTimer(h, t))) held.push(t);
  for (;;) {
    const level = timer ? timer.version : 0;
    let step = held.filter((h) => h.version === level + 1);
    if (step.length === 0 && timer) {
      const cur = timer;
      step = held.filter((h) => h.version === level && outranks(h, cur));
    }
    if (step.length === 0) break;
    const best = step.reduce((a, b) => (outranks(b, a) ? b : a));
    timer = best;
    held = held.filter((h) => h.version >= best.version && !sameTimer(h, best));
  }
  const top = timer;
  held = held.filter((h) => top === null || h.version > top.version);
  return { ...s, timer, timerHeld: held };
}

/** Apply ops in canonical order (each op's crypto is checked once: see verifiedOps).
 * @param {string} roomId @param {MembershipOp[]} ops @param {Uint8Array} memberKey @param {string|null} [owner] */
export async function stateFromOps(roomId, ops, memberKey, owner = null) {
  let state = emptyState(roomId, owner);
  /** @type {MembershipOp[]} */
  const rejected = [];
  for (const op of [...ops].sort(compareOps)) {
    try {
      state = await applyOp(state, op, memberKey);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      rejected.push(op);
    }
  }
  return { state, rejected };
}

/** The same JSON shape as MembershipState.to_dict(). @param {MembershipState} s */
export function stateToDict(s) {
  return {
    room_id: s.roomId,
    members: Object.fromEntries([...s.members].sort(([a], [b]) => (a < b ? -1 : 1)).map(([pid, m]) => [pid, { bundle: bundleToDict(m.bundle), prekey: b64uEncode(prekeyToBytes(m.prekey)) }])),
    removed: [...s.removed].sort(),
    timer: s.timer === null ? null : { ttl_s: s.timer.ttlS, version: s.timer.version, author: s.timer.author },
    epoch: s.epoch,
    owner: s.owner,
    admins: [...s.admins].sort(),
    announce_since: s.announceSince,
    ...(s.closed || s.requests.size > 0 || s.allowed.size > 0 ? {
      closed: s.closed,
      allowed: [...s.allowed].sort(),
      requests: Object.fromEntries([...s.requests].sort(([a], [b]) => (a < b ? -1 : 1)).map(([pid, m]) => [pid, { bundle: bundleToDict(m.bundle), prekey: b64uEncode(prekeyToBytes(m.prekey)) }])),
    } : {}),
  };
}
