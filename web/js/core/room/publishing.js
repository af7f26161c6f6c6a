// The send side of the room coordinator: publishing our envelopes (unchained ones signed as is; content
// sealed with our sender chain, rotated first when due) and the daily prekey rotation. Owns our `seq`.
// Mirrors peer/core/room/publishing.py; Room (room.js) extends it.

import * as content from '../content.js';
import { Kind, sealUnchainedEnvelope } from '../envelope.js';
import { publicBundle } from '../identity.js';
import { keyOf } from '../log.js';
import { decodeOp, encodeOp, makeAdd } from '../membership.js';
import { Governance, PermissionError } from './governance.js';
import { NEVER } from './senderkeys.js';

/** @typedef {import('./room.js').RoomEvent} RoomEvent */

export class Publishing extends Governance {
  /** Our prekey is due: publish a fresh self-ADD carrying the new one (see senderkeys.js). @param {number} now @param {RoomEvent[]} events */
  async rotatePrekey(now, events) {
    const signed = await this.keys.rotatePrekeyIfDue(now, this.persist, this.membersPart.isMember(this.peerId));
    if (!signed) return;
    const op = await makeAdd(this.identity, this.invite.memberKey, this.roomId, this.sync.tick(), publicBundle(this.identity), signed);
    await this.publishUnchained(Kind.MEMBERSHIP, encodeOp(op), now, NEVER, events);
  }

  /**
   * @override
   * @param {number} kind @param {Uint8Array} payload @param {number} now @param {number} [expiresAt] @param {RoomEvent[]} [events]
   */
  async publishUnchained(kind, payload, now, expiresAt = NEVER, events = []) {
    this.seq += 1;
    const lamport = this.sync.tick();
    const t = { seq: this.seq, lamport, sentAt: now, expiresAt };
    const data = await sealUnchainedEnvelope(this.identity, this.roomId, kind, t, payload);
    this.persist.put('seq', this.seq);
    this.persist.put('lamport', lamport);
    const own = Object.freeze({ sender: this.peerId, ...t, data });
    const entry = await this.sync.publish(data, now, own);
    this.persist.envelopes.push(entry);
    if (kind === Kind.MEMBERSHIP) {
      this.membersPart.addOp(keyOf(entry.sender, entry.seq), await decodeOp(payload));
      await this.onMembership(events, now);
    }
    return entry;
  }

  /** @param {import('../content.js').Content} c @param {number} now @param {number} expiresAt @param {RoomEvent[]} events @returns {Promise<string>} the log key */
  async sendContent(c, now, expiresAt, events) {
    if (this.keeper) throw new Error('a keeper does not send messages');
    if ((c.t === 'text' || c.t === 'edit' || c.t === 'location' || c.t === 'file') && !this.membersPart.mayPost(this.peerId, this.sync.lamport + 1)) {
      throw new PermissionError('announcement mode: only admins post');
    }
    const plaintext = content.encodeContent(c);
    const rotated = await this.keys.rotateIfDue(now, this.membersPart.epoch, expiresAt, this.persist);
    if (rotated) { // to every member: at once if linked, else paced (distribution.js)
      for (const pid of this.membersPart.others()) {
        if (this.sync.isReady(pid) || this.keys.holdsLiveChain(pid) || this.distribution.offer(pid, now)) await this.giveChain(pid, rotated, now);
      }
    }
    this.seq += 1;
    const lamport = this.sync.tick();
    const data = await this.keys.seal(this.seq, lamport, now, expiresAt, plaintext, this.persist);
    this.persist.put('seq', this.seq);
    this.persist.put('lamport', lamport);
    const own = Object.freeze({ sender: this.peerId, seq: this.seq, lamport, sentAt: now, expiresAt, data });
    this.persist.envelopes.push(await this.sync.publish(data, now, own)); // ours: no need to verify
    this.receipts.track(this.seq);
    this.timeline.apply({ sender: this.peerId, seq: this.seq, lamport, sentAt: now, expiresAt }, c, events);
    return keyOf(this.peerId, this.seq);
  }
}
