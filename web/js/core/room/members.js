// Membership: the signed ops in the log, the state they give, and THE rule for "who is a known sender".
// Mirrors peer/core/room/members.py:
// - State is recomputed from every MEMBERSHIP op held, in canonical order.
// - A sender is known iff it is, or was, a member: knownSender() is the only place that decides it.
// - A bundle learned from signaling only lets us link with a peer; it never makes it a known sender.
// - Who may do what (roles, announcement mode) is decided by the membership state (owner from the
//   invite): isAdmin(), mayPost().
// - Persists nothing (ops are envelopes in the log).
// - Placement: an envelope of S other than S's self-ADD needs a lamport above the lowest accepted ADD of S.

import { ProtocolError } from '../errors.js';
import { OpType, emptyState, isAdmin, mayPost, stateFromOps } from '../membership.js';

/** @typedef {import('../identity.js').PublicBundle} PublicBundle */

export class Members {
  /** @param {string} roomId @param {Uint8Array} memberKey @param {string} selfId @param {PublicBundle} own @param {string|null} [owner] */
  constructor(roomId, memberKey, selfId, own, owner = null) {
    this.roomId = roomId;
    this.memberKey = memberKey;
    this.selfId = selfId;
    this.owner = owner;
    /** @type {ReturnType<typeof emptyState>} */
    this.state = emptyState(roomId, owner);
    /** @type {Map<string, import('../membership.js').MembershipOp>} */
    this.ops = new Map();
    /** @type {Map<string, PublicBundle>} every member ever (ADD seen) */
    this.bundles = new Map([[selfId, own]]);
    /** @type {Map<string, PublicBundle>} from signaling: for links only */
    this.learned = new Map();
    /** @type {Map<string, number>} member -> lowest lamport of an accepted ADD of it */
    this.admittedAt = new Map();
  }

  /** `backdated` unless `lamport` is above the lowest accepted ADD of `sender` (PROTOCOL.md, "Order"). @param {string} sender @param {number} lamport */
  checkPlacement(sender, lamport) {
    const floor = this.admittedAt.get(sender);
    if (floor !== undefined && lamport <= floor) throw new ProtocolError('backdated', "envelope placed before its author's ADD");
  }

  /** The bundle of `peer` iff it is or was a member, else null. @param {string} peer @returns {PublicBundle|null} */
  knownSender(peer) {
    if (this.state.members.has(peer) || this.state.removed.has(peer)) return this.bundles.get(peer) ?? null;
    return null;
  }

  /** @param {string} peer @returns {PublicBundle|null} */
  linkBundle(peer) {
    if (this.state.removed.has(peer)) return null;
    return this.bundles.get(peer) ?? this.learned.get(peer) ?? null;
  }

  /** @param {string} peer @param {PublicBundle} bundle */
  learn(peer, bundle) {
    if (!this.learned.has(peer)) this.learned.set(peer, bundle);
  }

  get epoch() {
    return this.state.epoch;
  }

  get timer() {
    return this.state.timer;
  }

  /** @param {string} peer */
  member(peer) {
    return this.state.members.get(peer) ?? null;
  }

  /** @param {string} peer */
  isMember(peer) {
    return this.state.members.has(peer);
  }

  /** @param {string} peer */
  isRemoved(peer) {
    return this.state.removed.has(peer);
  }

  /** @param {string} peer */
  isAdmin(peer) {
    return isAdmin(this.state, peer);
  }

  /** Announcement mode: a non-admin's chat envelope after the switch is not shown. @param {string} peer @param {number} lamport */
  mayPost(peer, lamport) {
    return mayPost(this.state, peer, lamport);
  }

  /** @returns {string[]} current admins (the owner included; every member in a legacy room) */
  admins() {
    return admins(this.state);
  }

  /** @returns {string[]} closed room: peer ids that asked to join (their ADD admitted no one), ascending */
  requests() {
    return [...this.state.requests.keys()].sort();
  }

  others() {
    return [...this.state.members.keys()].filter((p) => p !== this.selfId).sort();
  }

  countOthers() {
    return this.state.members.size - 1;
  }

  /** @param {string} key @param {import('../membership.js').MembershipOp} op */
  addOp(key, op) {
    this.ops.set(key, op);
  }

  /** Drop the op held under `key`; true if there was one. @param {string} key */
  forgetOp(key) {
    return this.ops.delete(key);
  }

  /** @returns {Promise<{joined: string[], left: string[], timer: {ttlS: number, version: number, author: string}|null, roles: boolean, admission: boolean}>} */
  async recompute() {
    const before = this.state;
    const { state, rejected } = await stateFromOps(this.roomId, [...this.ops.values()], this.memberKey, this.owner);
    this.state = state;
    const refused = new Set(rejected);
    /** @type {Map<string, number>} */
    const admitted = new Map();
    for (const op of this.ops.values()) {
      if (op.op !== OpType.ADD || refused.has(op)) continue;
      const target = /** @type {string} */ (op.target);
      admitted.set(target, Math.min(admitted.get(target) ?? op.lamport, op.lamport));
    }
    this.admittedAt = admitted;
    for (const [pid, m] of state.members) this.bundles.set(pid, m.bundle);
    const joined = [...state.members.keys()].filter((p) => !before.members.has(p) && p !== this.selfId).sort();
    const left = [...before.members.keys()].filter((p) => !state.members.has(p)).sort();
    const t = state.timer, b = before.timer;
    const changed = t && (!b || b.ttlS !== t.ttlS || b.version !== t.version || b.author !== t.author);
    const announceChanged = (before.announceSince > 0) !== (state.announceSince > 0);
    const roles = state.owner === null ? announceChanged : announceChanged || admins(before).join() !== admins(state).join();
    const admission = before.closed !== state.closed || [...before.requests.keys()].sort().join() !== [...state.requests.keys()].sort().join();
    return { joined, left, timer: changed ? t : null, roles, admission };
  }
}

/** @param {ReturnType<typeof emptyState>} s */
const admins = (s) => [...s.members.keys()].filter((p) => isAdmin(s, p)).sort();
