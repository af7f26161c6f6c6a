// Erasure receipts (mirrors peer/core/room/receipts.py): we owe a signed receipt to the sender of every
// CHAT message of theirs we erase, sent once linked (chunks of MAX_RECEIPT_SEQS; dropped for senders that
// are not and never were members); a receipt from a known sender about OUR message counts once per
// (message, member): 'erased' ("erased on N of M"). To the sender only, no relay. Persists nothing.

import { ProtocolError } from '../errors.js';
import { MAX_RECEIPT_SEQS, createReceipt, decodeReceipt, encodeReceipt, verifyReceipt } from '../erasure.js';
import { messageId } from './timeline.js';

export class Receipts {
  /** @param {import('../identity.js').Identity} identity @param {string} roomId */
  constructor(identity, roomId) {
    this.identity = identity;
    this.selfId = identity.peerId;
    this.roomId = roomId;
    /** @type {Map<string, Set<number>>} sender -> seqs we erased, not yet reported */
    this.owed = new Map();
    /** @type {Map<number, Set<string>>} own CHAT seq -> members that reported erasing it */
    this.erasedBy = new Map();
  }

  /** @param {string} sender @param {number} seq */
  owe(sender, seq) {
    if (sender === this.selfId) return;
    let set = this.owed.get(sender);
    if (!set) this.owed.set(sender, (set = new Set()));
    set.add(seq);
  }

  /** @param {number} seq */
  track(seq) {
    if (!this.erasedBy.has(seq)) this.erasedBy.set(seq, new Set());
  }

  /** @param {number} seq */
  erasedOn(seq) {
    return new Set(this.erasedBy.get(seq) ?? []);
  }

  /**
   * @param {Uint8Array} body @param {(peer: string) => import('../identity.js').PublicBundle|null} known
   * @param {number} of @param {import('./room.js').RoomEvent[]} events
   */
  async onReceipt(body, known, of, events) {
    const receipt = decodeReceipt(body);
    if (receipt.roomId !== this.roomId) throw new ProtocolError('wrong-room', 'receipt for another room');
    const bundle = known(receipt.member);
    if (!bundle) throw new ProtocolError('unknown-sender', 'receipt from a non-member');
    await verifyReceipt(receipt, bundle.ed25519);
    if (receipt.sender !== this.selfId || receipt.member === this.selfId) return;
    for (const seq of receipt.seqs) {
      const by = this.erasedBy.get(seq);
      if (!by || by.has(receipt.member)) continue;
      by.add(receipt.member);
      events.push({ type: 'erased', id: messageId(this.selfId, seq), by: receipt.member, count: by.size, of });
    }
  }

  /** Receipts to send now: [sender, APP body]. @param {Set<string>} known @param {Set<string>} ready @returns {Promise<[string, Uint8Array][]>} */
  async flush(known, ready) {
    /** @type {[string, Uint8Array][]} */
    const out = [];
    for (const [sender, seqSet] of [...this.owed]) {
      if (!known.has(sender)) this.owed.delete(sender);
      else if (ready.has(sender)) {
        this.owed.delete(sender);
        const seqs = [...seqSet].sort((a, b) => a - b);
        for (let i = 0; i < seqs.length; i += MAX_RECEIPT_SEQS) {
          out.push([sender, encodeReceipt(await createReceipt(this.identity, this.roomId, sender, seqs.slice(i, i + MAX_RECEIPT_SEQS)))]);
        }
      }
    }
    return out;
  }
}
