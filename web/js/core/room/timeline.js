// Timeline: what the room shows. A pure projection of opened content; no crypto, no persistence.
// Mirrors peer/core/room/timeline.py: text = a message; profile = display name (latest (lamport, seq));
// edit = new body for the sender's OWN message (latest wins); react = per (reactor, emoji) the latest
// wins; edits/reactions may arrive before their target. Receipts: 'delivered' once per (own message,
// neighbour that ACKed), 'seen' once per (own message, member that showed it).

import { keyOf } from '../log.js';
import { searchableText } from '../content.js';
import { SearchIndex } from '../search.js';

/**
 * @typedef {{id: string, sender: string, seq: number, lamport: number, sentAt: number, expiresAt: number, text: string,
 *   replyTo: string|null, edited: boolean, reactions: [string, string[]][], mentions: string[], mentioned: boolean,
 *   forwardedFrom: string|null, location: [number, number, number|null]|null,
 *   file?: import('../files.js').FileContent}} Message
 * @typedef {{sender: string, seq: number, lamport: number, sentAt: number, expiresAt: number}} Meta
 * @typedef {import('./room.js').RoomEvent} RoomEvent
 */

/** @param {string} sender @param {number} seq */
export const messageId = (sender, seq) => `${sender}:${seq}`;

/** "<sender>:<seq>" -> parts and log key, or null if malformed. @param {string} id */
export function parseMessageId(id) {
  const i = typeof id === 'string' ? id.indexOf(':') : -1;
  if (i !== 32 || !/^[0-9a-f]{32}:[0-9]{1,16}$/.test(id)) return null;
  return { sender: id.slice(0, 32), seq: Number(id.slice(33)), key: keyOf(id.slice(0, 32), Number(id.slice(33))) };
}

/** Compare strings by code points (Python's str order). @param {string} a @param {string} b */
export const cpCompare = (a, b) => {
  const x = [...a].map((c) => /** @type {number} */ (c.codePointAt(0))), y = [...b].map((c) => /** @type {number} */ (c.codePointAt(0)));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
};

export class Timeline {
  /** @param {string} selfId */
  constructor(selfId) {
    this.selfId = selfId;
    /** @type {Map<string, Message>} as shown */
    this.msgs = new Map();
    /** @type {Map<string, Message>} as first sent */
    this.base = new Map();
    /** @type {Map<string, {lamport: number, seq: number, content: any, target: string}>} edit/react envelopes */
    this.aux = new Map();
    /** @type {Map<string, Set<string>>} target key -> aux keys */
    this.auxByTarget = new Map();
    /** @type {Map<string, [number, number, string]>} peer -> (lamport, seq, name) */
    this.profiles = new Map();
    /** @type {Map<string, Set<string>>} */
    this.delivered = new Map();
    /** @type {Map<number, Set<string>>} */
    this.seenBy = new Map();
    /** @type {Map<string, import('../content.js').TextContent|import('../content.js').LocationContent>} content of each message as sent */
    this.content = new Map();
    this.search = new SearchIndex();
  }

  /** Sorted by the log's effective lamports when given (an author cannot place a message before its own
   * previous one), else by lamport; then sender, seq. @param {Map<string, number>} [eff] @returns {Message[]} */
  messages(eff) {
    const lam = (/** @type {Message} */ m) => eff?.get(keyOf(m.sender, m.seq)) ?? m.lamport;
    return [...this.msgs.values()].sort((a, b) => lam(a) - lam(b) || (a.sender < b.sender ? -1 : a.sender > b.sender ? 1 : a.seq - b.seq));
  }

  /** @param {string} peer */
  displayName(peer) {
    return this.profiles.get(peer)?.[2] ?? null;
  }

  /** Show one opened content; returns an error code if it is malformed for its type. @param {Meta} m @param {import('../content.js').Content} c @param {RoomEvent[]} events @returns {string|null} */
  apply(m, c, events) {
    const k = keyOf(m.sender, m.seq);
    if (c.t === 'text' || c.t === 'location') {
      this.content.set(k, c);
      const mentions = c.t === 'text' ? [...(c.mentions ?? [])] : [];
      this.base.set(k, Object.freeze({
        id: messageId(m.sender, m.seq), sender: m.sender, seq: m.seq, lamport: m.lamport, sentAt: m.sentAt,
        expiresAt: m.expiresAt, text: c.t === 'text' ? c.body : '', replyTo: c.t === 'text' ? c.replyTo : null, edited: false, reactions: [],
        mentions, mentioned: mentions.includes(this.selfId) && m.sender !== this.selfId, forwardedFrom: c.fwd?.fromName ?? null,
        location: c.t === 'location' ? /** @type {[number, number, number|null]} */ ([c.latE6, c.lonE6, c.accM]) : null,
      }));
      this.render(k);
      events.push({ type: 'message', message: /** @type {Message} */ (this.msgs.get(k)) });
      return null;
    }
    if (c.t === 'file') {
      this.base.set(k, Object.freeze({
        id: messageId(m.sender, m.seq), sender: m.sender, seq: m.seq, lamport: m.lamport, sentAt: m.sentAt,
        expiresAt: m.expiresAt, text: '', replyTo: null, edited: false, reactions: [], mentions: [], mentioned: false,
        forwardedFrom: c.fwd?.fromName ?? null, location: null, file: c,
      }));
      this.render(k);
      events.push({ type: 'message', message: /** @type {Message} */ (this.msgs.get(k)) });
      return null;
    }
    if (c.t === 'profile') {
      const cur = this.profiles.get(m.sender);
      if (!cur || m.lamport > cur[0] || (m.lamport === cur[0] && m.seq > cur[1])) {
        this.profiles.set(m.sender, [m.lamport, m.seq, c.name]);
        events.push({ type: 'profile', peer: m.sender, name: c.name });
      }
      return null;
    }
    const target = parseMessageId(c.target);
    if (!target || (c.t === 'edit' && target.sender !== m.sender)) return 'bad-edit';
    this.aux.set(k, { lamport: m.lamport, seq: m.seq, content: c, target: target.key });
    let set = this.auxByTarget.get(target.key);
    if (!set) this.auxByTarget.set(target.key, (set = new Set()));
    set.add(k);
    if (this.base.has(target.key)) {
      this.render(target.key);
      events.push({ type: 'updated', message: /** @type {Message} */ (this.msgs.get(target.key)) });
    }
    return null;
  }

  /** @param {string} k */
  render(k) {
    const base = /** @type {Message} */ (this.base.get(k));
    let text = base.text, edited = false;
    /** @type {[number, number]} */
    let latest = [-1, -1];
    /** @type {Map<string, [number, number, boolean, string, string]>} */
    const votes = new Map();
    for (const auxKey of this.auxByTarget.get(k) ?? []) {
      const a = /** @type {{lamport: number, seq: number, content: any}} */ (this.aux.get(auxKey));
      const later = (/** @type {[number, number, ...unknown[]]} */ o) => a.lamport > o[0] || (a.lamport === o[0] && a.seq > o[1]);
      if (a.content.t === 'edit' && later(latest)) {
        text = a.content.body; edited = true; latest = [a.lamport, a.seq];
      } else if (a.content.t === 'react') {
        const reactor = auxKey.slice(0, 32);
        const vote = `${reactor}\n${a.content.emoji}`;
        const prev = votes.get(vote);
        if (!prev || later(prev)) votes.set(vote, [a.lamport, a.seq, a.content.on, reactor, a.content.emoji]);
      }
    }
    /** @type {Map<string, string[]>} */
    const byEmoji = new Map();
    for (const [, , on, reactor, emoji] of votes.values()) if (on) byEmoji.set(emoji, [...(byEmoji.get(emoji) ?? []), reactor]);
    /** @type {[string, string[]][]} */
    const reactions = [...byEmoji].map(([e, peers]) => /** @type {[string, string[]]} */ ([e, peers.sort()])).sort((x, y) => cpCompare(x[0], y[0]));
    this.msgs.set(k, Object.freeze({ ...base, text, edited, reactions }));
    const shown = this.content.get(k);
    if (base.file) this.search.put(k, `${base.file.name} ${text} ${searchableText(base.file)}`.trim()); // an attachment: by its file name (and caption)
    else this.search.put(k, shown ? searchableText(shown.t === 'text' && edited ? { ...shown, body: text } : shown) : '');
  }

  /** The content a message was sent with (for forwarding). @param {string} k */
  contentOf(k) {
    return this.content.get(k) ?? null;
  }

  /** The edit and reaction envelopes that refer to `k` (held or waiting for it), sorted. @param {string} k */
  referring(k) {
    return [...(this.auxByTarget.get(k) ?? [])].sort();
  }

  /** The message an edit or reaction envelope refers to (null for anything else). @param {string} k */
  targetKey(k) {
    return this.aux.get(k)?.target ?? null;
  }

  /** @param {string} k @param {'expired'|'unsent'|'equivocation'} reason @param {RoomEvent[]} events */
  erase(k, reason, events) {
    const msg = this.msgs.get(k);
    this.msgs.delete(k);
    this.base.delete(k);
    this.content.delete(k);
    this.search.drop(k);
    const aux = this.aux.get(k);
    if (aux) {
      this.aux.delete(k);
      this.auxByTarget.get(aux.target)?.delete(k);
      if (this.base.has(aux.target)) {
        this.render(aux.target);
        events.push({ type: 'updated', message: /** @type {Message} */ (this.msgs.get(aux.target)) });
      }
    }
    if (msg) {
      this.delivered.delete(msg.id);
      events.push({ type: 'expired', id: msg.id, reason });
    }
  }

  /** @param {string} msgId */
  trackDelivery(msgId) {
    this.delivered.set(msgId, new Set());
  }

  /** @param {string} neighbour @param {string} sender @param {number} seq @param {RoomEvent[]} events */
  onAck(neighbour, sender, seq, events) {
    // any of our messages still shown (sent by this page or restored): once per member
    if (sender !== this.selfId || !this.msgs.has(keyOf(sender, seq))) return;
    const mid = messageId(sender, seq);
    let set = this.delivered.get(mid);
    if (!set) this.delivered.set(mid, (set = new Set()));
    if (!set.has(neighbour)) {
      set.add(neighbour);
      events.push({ type: 'delivered', id: mid, peer: neighbour });
    }
  }

  /** @param {string} member @param {number[]} seqs @param {number} of @param {RoomEvent[]} events */
  onSeen(member, seqs, of, events) {
    for (const seq of seqs) {
      if (!this.base.has(keyOf(this.selfId, seq))) continue;
      let by = this.seenBy.get(seq);
      if (!by) this.seenBy.set(seq, (by = new Set()));
      if (by.has(member)) continue;
      by.add(member);
      events.push({ type: 'seen', id: messageId(this.selfId, seq), by: member, count: by.size, of });
    }
  }
}
