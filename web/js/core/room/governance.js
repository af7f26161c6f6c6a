// The governance API of the room coordinator: the admin actions (timer, removal and readmission, roles,
// announcement mode) and the closed-room admission actions (close, open, admit, join requests). Each
// checks the local role rules, then publishes one signed membership op; applying it is inbound.js's and
// the state is members.js'. Owns no state. Mirrors peer/core/room/governance.py; Room (room.js) extends it.

import { Kind } from '../envelope.js';
import { MAX_CLOSE_IDS, Role, encodeOp, makeAdmission, makeReadmit, makeRemove, makeRole, makeSetTimer, makeSettings } from '../membership.js';
import { Inbound } from './inbound.js';
import { NEVER } from './senderkeys.js';

/** @typedef {import('./room.js').RoomEvent} RoomEvent */

/** A local action this member's role does not allow (mirrors Python's PermissionError). */
export class PermissionError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'PermissionError';
  }
}
export class Governance extends Inbound {
  /** Serialise an entry point (implemented by Room). @template T @param {() => Promise<T>} _fn @returns {Promise<T>} */
  run(_fn) {
    throw new Error('implemented by Room');
  }

  /**
   * @override
   * @param {number} _kind @param {Uint8Array} _payload @param {number} _now @param {number} [_expiresAt] @param {RoomEvent[]} [_events]
   * @returns {Promise<import('../log.js').LogEntry>}
   */
  async publishUnchained(_kind, _payload, _now, _expiresAt, _events) {
    throw new Error('implemented by Room');
  }

  /** @param {number} ttlS @param {number} now @returns {Promise<RoomEvent[]>} */
  setTimer(ttlS, now) {
    return this.run(async () => {
      /** @type {RoomEvent[]} */
      const events = [];
      await this.doSetTimer(ttlS, now, events);
      return events;
    });
  }

  /** @param {number} ttlS @param {number} now @param {RoomEvent[]} events */
  async doSetTimer(ttlS, now, events) {
    if (!this.membersPart.isAdmin(this.peerId)) throw new PermissionError('only an admin may change the room timer');
    const t = this.membersPart.timer;
    const op = await makeSetTimer(this.identity, this.invite.memberKey, this.roomId, this.sync.tick(), ttlS, t ? t.version + 1 : 1);
    await this.publishUnchained(Kind.MEMBERSHIP, encodeOp(op), now, NEVER, events);
  }

  /** Remove `peer` (admins only; never the owner) or leave, if it is us. @param {string} peer @param {number} now @returns {Promise<RoomEvent[]>} */
  removeMember(peer, now) {
    return this.run(async () => {
      if (peer !== this.peerId && !this.membersPart.isAdmin(this.peerId)) throw new PermissionError('only an admin may remove another member');
      if (!this.membersPart.isMember(peer)) throw new Error('not a member');
      if (peer !== this.peerId && peer === this.membersPart.state.owner) throw new PermissionError('the owner cannot be removed');
      const op = await makeRemove(this.identity, this.invite.memberKey, this.roomId, this.sync.tick(), peer);
      return this.publishOp(encodeOp(op), now);
    });
  }

  /** Leave for good (only an admin can readmit us). @param {number} now */
  leave(now) {
    return this.removeMember(this.peerId, now);
  }

  /** Appoint or demote an admin (admins only; not in a legacy room; never the owner). @param {string} peer @param {boolean} admin @param {number} now @returns {Promise<RoomEvent[]>} */
  setAdmin(peer, admin, now) {
    return this.run(async () => {
      if (this.membersPart.state.owner === null) throw new PermissionError('this room has no roles (its invite names no owner)');
      if (!this.membersPart.isAdmin(this.peerId)) throw new PermissionError('only an admin may change roles');
      if (!this.membersPart.isMember(peer) || peer === this.membersPart.state.owner) throw new Error('not a member whose role can change');
      const op = await makeRole(this.identity, this.invite.memberKey, this.roomId, this.sync.tick(), peer, admin ? Role.ADMIN : Role.MEMBER);
      return this.publishOp(encodeOp(op), now);
    });
  }

  /** Let a removed member back in (admins only). @param {string} peer @param {number} now @returns {Promise<RoomEvent[]>} */
  readmit(peer, now) {
    return this.run(async () => {
      if (!this.membersPart.isAdmin(this.peerId)) throw new PermissionError('only an admin may readmit');
      if (!this.membersPart.isRemoved(peer)) throw new Error('not a removed member');
      const op = await makeReadmit(this.identity, this.invite.memberKey, this.roomId, this.sync.tick(), peer);
      return this.publishOp(encodeOp(op), now);
    });
  }

  /** Close the room (admins only; not a legacy room): only current members and those an admin admits.
   * @param {number} now @returns {Promise<RoomEvent[]>} */
  closeAdmission(now) {
    return this.run(async () => {
      if (this.membersPart.state.owner === null) throw new PermissionError('a legacy room (its invite names no owner) cannot be closed');
      if (!this.membersPart.isAdmin(this.peerId)) throw new PermissionError('only an admin may close the room');
      const members = [...this.membersPart.state.members.keys()].sort();
      if (members.length > MAX_CLOSE_IDS) throw new Error(`a room of more than ${MAX_CLOSE_IDS} members cannot be closed`);
      const op = await makeAdmission(this.identity, this.invite.memberKey, this.roomId, this.sync.tick(), members);
      return this.publishOp(encodeOp(op), now);
    });
  }

  /** Reopen a closed room (admins only); pending join requests are admitted. @param {number} now @returns {Promise<RoomEvent[]>} */
  openAdmission(now) {
    return this.run(async () => {
      if (!this.membersPart.isAdmin(this.peerId)) throw new PermissionError('only an admin may open the room');
      if (!this.membersPart.state.closed) throw new Error('the room is not closed');
      const op = await makeAdmission(this.identity, this.invite.memberKey, this.roomId, this.sync.tick(), null);
      return this.publishOp(encodeOp(op), now);
    });
  }

  /** Admit `peer` into a closed room (admins only). @param {string} peer @param {number} now @returns {Promise<RoomEvent[]>} */
  admit(peer, now) {
    return this.run(async () => {
      if (!this.membersPart.isAdmin(this.peerId)) throw new PermissionError('only an admin may admit');
      if (!this.membersPart.state.closed) throw new Error('the room is not closed');
      if (this.membersPart.isMember(peer) || this.membersPart.isRemoved(peer)) throw new Error('already a member, or removed (readmit a removed member)');
      const op = await makeReadmit(this.identity, this.invite.memberKey, this.roomId, this.sync.tick(), peer);
      return this.publishOp(encodeOp(op), now);
    });
  }

  /** Closed room: peer ids that asked to join. @returns {string[]} */
  joinRequests() {
    return this.membersPart.requests();
  }

  /** Announcement mode on/off (admins only). @param {boolean} on @param {number} now @returns {Promise<RoomEvent[]>} */
  setAnnounce(on, now) {
    return this.run(async () => {
      if (!this.membersPart.isAdmin(this.peerId)) throw new PermissionError('only an admin may change room settings');
      const op = await makeSettings(this.identity, this.invite.memberKey, this.roomId, this.sync.tick(), on);
      return this.publishOp(encodeOp(op), now);
    });
  }

  /** @param {string} peer */
  isAdmin(peer) {
    return this.membersPart.isAdmin(peer);
  }

  admins() {
    return this.membersPart.admins();
  }

  /** @param {Uint8Array} op @param {number} now */
  async publishOp(op, now) {
    /** @type {RoomEvent[]} */
    const events = [];
    await this.publishUnchained(Kind.MEMBERSHIP, op, now, NEVER, events);
    return events;
  }
}
