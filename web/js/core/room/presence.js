// Typing and seen (mirrors peer/core/room/presence.py): ephemeral, direct links only. setTyping tells
// linked members (a repeated "typing" at most every TYPING_RENEW_MS); an indicator lasts TYPING_TTL_MS
// unless renewed; markSeen tells each linked sender once per message. Persists nothing.

import { TYPING_RENEW_MS, TYPING_TTL_MS, encodeSeen, encodeTyping } from '../presence.js';

export class Presence {
  constructor() {
    /** @type {Map<string, number>} peer -> typing indicator valid until */
    this.typing = new Map();
    /** @type {[boolean, number]} */
    this.typingSent = [false, 0];
    /** @type {Set<string>} */
    this.seenSent = new Set();
  }

  /** @param {boolean} typing @param {number} now @param {Set<string>} online @returns {[string, Uint8Array][]} */
  setTyping(typing, now, online) {
    const [was, at] = this.typingSent;
    if (typing === was && (!typing || now - at < TYPING_RENEW_MS)) return [];
    this.typingSent = [typing, now];
    const body = encodeTyping(typing);
    return [...online].sort().map((p) => /** @type {[string, Uint8Array]} */ ([p, body]));
  }

  /** @param {number} now */
  typingMembers(now) {
    return [...this.typing].filter(([, until]) => until > now).map(([p]) => p).sort();
  }

  /** @param {string} peer @param {boolean} typing @param {number} now @param {import('./room.js').RoomEvent[]} events */
  onTyping(peer, typing, now, events) {
    const was = (this.typing.get(peer) ?? 0) > now;
    if (typing) this.typing.set(peer, now + TYPING_TTL_MS);
    else this.typing.delete(peer);
    if (was !== typing) events.push({ type: 'typing', peer, typing });
  }

  /** @param {{sender: string, seq: number, key: string}[]} keys @returns {[string, Uint8Array][]} */
  seen(keys) {
    /** @type {Map<string, number[]>} */
    const out = new Map();
    for (const k of keys) {
      if (this.seenSent.has(k.key)) continue;
      this.seenSent.add(k.key);
      out.set(k.sender, [...(out.get(k.sender) ?? []), k.seq]);
    }
    return [...out].map(([p, seqs]) => /** @type {[string, Uint8Array]} */ ([p, encodeSeen(seqs)]));
  }

  /** @param {string} key */
  forget(key) {
    this.seenSent.delete(key);
  }

  /** @param {number} now @param {import('./room.js').RoomEvent[]} events */
  expire(now, events) {
    for (const [peer, until] of [...this.typing]) {
      if (until > now) continue;
      this.typing.delete(peer);
      events.push({ type: 'typing', peer, typing: false });
    }
  }

  nextDeadline() {
    return this.typing.size ? Math.min(...this.typing.values()) : null;
  }
}
