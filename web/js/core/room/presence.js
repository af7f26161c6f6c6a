// Typing and seen (mirrors peer/core/room/presence.py): ephemeral, direct links only. setTyping tells
// linked members (a repeated "typing" at most every TYPING_RENEW_MS); an indicator lasts TYPING_TTL_MS
// unless renewed; markSeen tells each linked sender once per message. Persists nothing.

// Last seen (issue 15): a member's time of link-down, shown for members offline now, within the room timer,
// never for a member that sent LASTSEEN share=0; a member that opts out sees no one's. Memory only; our own
// preference persists as state 'presence/last_seen' = 'off'.

import { TYPING_RENEW_MS, TYPING_TTL_MS, encodeLastSeen, encodeSeen, encodeTyping } from '../presence.js';
import { utf8 } from '../bytes.js';

export const LAST_SEEN_STATE = 'presence/last_seen';

export class Presence {
  constructor() {
    /** @type {Map<string, number>} peer -> typing indicator valid until */
    this.typing = new Map();
    /** @type {[boolean, number]} */
    this.typingSent = [false, 0];
    /** @type {Set<string>} */
    this.seenSent = new Set();
    /** @type {Map<string, number>} member -> when its link last went down (memory only) */
    this.lastSeenAt = new Map();
    /** @type {Set<string>} members that asked not to be shown */
    this.hidden = new Set();
    this.shareLastSeen = true;
  }

  /** @param {Map<string, unknown>} states */
  load(states) {
    const v = states.get(LAST_SEEN_STATE);
    this.shareLastSeen = !(v instanceof Uint8Array && new TextDecoder().decode(v) === 'off');
  }

  /** @param {boolean} share @param {Set<string>} online @param {import('./persist.js').PersistBatch} persist @returns {[string, Uint8Array][]} */
  setShare(share, online, persist) {
    if (share === this.shareLastSeen) return [];
    this.shareLastSeen = share;
    if (share) persist.delete(LAST_SEEN_STATE);
    else persist.put(LAST_SEEN_STATE, utf8('off'));
    const body = encodeLastSeen(share);
    return [...online].sort().map((p) => /** @type {[string, Uint8Array]} */ ([p, body]));
  }

  /** @param {string} peer @returns {[string, Uint8Array][]} */
  onOnline(peer) {
    this.lastSeenAt.delete(peer);
    return this.shareLastSeen ? [] : [[peer, encodeLastSeen(false)]];
  }

  /** @param {string} peer @param {number} now */
  onOffline(peer, now) {
    this.lastSeenAt.set(peer, now);
  }

  /** @param {string} peer @param {boolean} share */
  onShare(peer, share) {
    if (share) this.hidden.delete(peer);
    else this.hidden.add(peer);
  }

  /** @param {number} now @param {Set<string>} online @param {number|null} horizonMs @returns {Map<string, number>} */
  lastSeen(now, online, horizonMs) {
    if (horizonMs !== null) for (const [p, t] of [...this.lastSeenAt]) if (now - t > horizonMs) this.lastSeenAt.delete(p);
    if (!this.shareLastSeen) return new Map();
    return new Map([...this.lastSeenAt].filter(([p]) => !online.has(p) && !this.hidden.has(p)).sort(([a], [b]) => (a < b ? -1 : 1)));
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
