// The room coordinator: the public API, routing to the parts that own the state. Mirrors
// peer/core/room/room.py (its header states the rules that span parts). WebCrypto is async, so every
// entry point is async; they are serialised internally (one at a time, in call order).
// Parts: links (+ parking), membersPart (the one "known sender" rule), keys (sender keys), timeline
// (pure projection), receipts (erasure receipts), presence (typing/seen). takePersist() must be stored
// before dataToSend() is transmitted.

import * as content from '../content.js';
import { Kind, encodeTombstone } from '../envelope.js';
import { publicBundle } from '../identity.js';
import { keyOf } from '../log.js';
import { encodeOp, makeAdd } from '../membership.js';
import * as wire from '../wire.js';
import { PermissionError } from './governance.js';
import { Publishing } from './publishing.js';
import { restore } from './restore.js';
import { NEVER } from './senderkeys.js';
import { parseMessageId } from './timeline.js';

export { messageId, parseMessageId } from './timeline.js';
export { ERROR_BUDGET } from './links.js';

export const DEFAULT_TTL_S = 24 * 3600;

export { PermissionError };
export { NEVER };

/**
 * @typedef {import('./timeline.js').Message} Message
 * @typedef {{type:'message', message: Message} | {type:'updated', message: Message} | {type:'expired', id: string, reason: 'expired'|'unsent'|'equivocation'}
 *   | {type:'joined', peer: string} | {type:'left', peer: string} | {type:'online', peer: string, online: boolean}
 *   | {type:'delivered', id: string, peer: string} | {type:'timer', ttlS: number} | {type:'profile', peer: string, name: string}
 *   | {type:'typing', peer: string, typing: boolean} | {type:'seen', id: string, by: string, count: number, of: number}
 *   | {type:'erased', id: string, by: string, count: number, of: number}
 *   | {type:'remote-error', peer: string, code: string, count: number, closed: boolean}
 *   | {type:'roles', owner: string|null, admins: string[], announce: boolean}
 *   | {type:'admission', closed: boolean, requests: string[]}} RoomEvent
 * @typedef {import('./persist.js').PersistBatch} PersistBatch
 * @typedef {import('./persist.js').Snapshot} Snapshot
 * @typedef {import('./inbound.js').RoomInvite} RoomInvite
 * @typedef {import('./inbound.js').RoomOptions} RoomOptions
 */

export class Room extends Publishing {
  /**
   * Build the room (restoring a snapshot if given) and publish the self-ADD on first join.
   * @param {import('../identity.js').Identity} identity @param {RoomInvite} invite @param {number} now
   * @param {RoomOptions & {snapshot?: Snapshot|null}} [opts]
   */
  static async create(identity, invite, now, opts = {}) {
    const room = new Room(identity, invite, opts);
    const states = opts.snapshot?.states ?? new Map();
    room.seq = Number(states.get('seq') ?? 0);
    room.sync.observe(Number(states.get('lamport') ?? 0));
    await room.keys.load(states, now, room.persist);
    room.relay.load(states);
    room.presence.load(states);
    if (opts.snapshot) await restore(room, opts.snapshot, now);
    if (!room.membersPart.isMember(room.peerId)) {
      const op = await makeAdd(identity, invite.memberKey, room.roomId, room.sync.tick(), publicBundle(identity), room.keys.prekey);
      await room.publishUnchained(Kind.MEMBERSHIP, encodeOp(op), now);
      if (invite.ttlS && room.membersPart.timer === null && room.membersPart.isAdmin(room.peerId)) await room.doSetTimer(invite.ttlS, now, []);
    }
    return room;
  }

  /** @type {Promise<unknown>} */
  queue = Promise.resolve();

  /** Serialise an entry point; receipts owed go out at its end. @override @template T @param {() => Promise<T>} fn @returns {Promise<T>} */
  run(fn) {
    const p = this.queue.then(async () => {
      const out = await fn();
      const known = new Set([...this.membership.members.keys(), ...this.membership.removed]);
      for (const [sender, body] of await this.receipts.flush(known, this.online())) this.sync.sendOpaque(sender, wire.FrameType.APP, body);
      return out;
    });
    this.queue = p.catch(() => undefined);
    return p;
  }

  // ---------------------------------------------------------------- queries

  get membership() {
    return this.membersPart.state;
  }

  get profiles() {
    return this.timeline.profiles;
  }

  /** A verified bundle (from a signed signaling payload). @param {string} peer @param {import('../identity.js').PublicBundle} bundle */
  learnBundle(peer, bundle) {
    this.membersPart.learn(peer, bundle);
  }

  messages() {
    return this.timeline.messages(this.sync.log.effectiveLamports());
  }


  members() {
    return [...this.membership.members.keys()].sort();
  }

  get timerS() {
    return this.membersPart.timer ? this.membersPart.timer.ttlS : this.invite.ttlS || DEFAULT_TTL_S;
  }

  /** @param {string} peer */
  displayName(peer) {
    return this.timeline.displayName(peer);
  }

  /** @param {number} now */
  typingMembers(now) {
    return this.presence.typingMembers(now);
  }

  /** @param {string} msgId */
  seenByMembers(msgId) {
    const p = parseMessageId(msgId);
    return new Set(p && p.sender === this.peerId ? this.timeline.seenBy.get(p.seq) ?? [] : []);
  }

  /** @param {string} msgId */
  erasedOn(msgId) {
    const p = parseMessageId(msgId);
    return p && p.sender === this.peerId ? this.receipts.erasedOn(p.seq) : new Set();
  }

  /** @param {string} msgId @returns {[number, number]} */
  erasure(msgId) {
    return [this.erasedOn(msgId).size, this.membersPart.countOthers()];
  }

  /** @param {string} msgId */
  deliveredTo(msgId) {
    return new Set(this.timeline.delivered.get(msgId) ?? []);
  }

  /** Remote errors counted against `peer`, by code. @param {string} peer */
  errorCounts(peer) {
    return new Map(this.errors.get(peer) ?? []);
  }

  /** Every remote error counted so far: [peer, code, count], sorted. @returns {[string, string, number][]} */
  errorSummary() {
    /** @type {[string, string, number][]} */
    const out = [];
    for (const [p, codes] of this.errors) for (const [c, n] of codes) out.push([p, c, n]);
    return out.sort((a, b) => (a[0] + a[1] < b[0] + b[1] ? -1 : 1));
  }

  // ---------------------------------------------------------------- sending

  /** @param {string} text @param {number} now @param {{ttlS?: number|null, replyTo?: string|null, mentions?: string[]}} [o] @returns {Promise<Message>} */
  sendText(text, now, o = {}) {
    return this.run(async () => {
      const wanted = [...new Set(o.mentions ?? [])];
      if (wanted.some((p) => !this.membersPart.isMember(p))) throw new Error('can only mention current members');
      return this.sendMessage(content.text(text, o.replyTo ?? null, wanted), now, this.expiry(now, o.ttlS ?? null));
    });
  }

  /** @param {number} now @param {number|null} ttlS */
  expiry(now, ttlS) {
    const ttl = ttlS ?? this.timerS;
    return ttl === 0 ? NEVER : now + ttl * 1000;
  }

  /** @param {import('../content.js').TextContent|import('../content.js').LocationContent} c @param {number} now @param {number} expiresAt */
  async sendMessage(c, now, expiresAt) {
    const k = await this.sendContent(c, now, expiresAt, []);
    const msg = /** @type {Message} */ (this.timeline.msgs.get(k));
    this.timeline.trackDelivery(msg.id);
    return msg;
  }

  // ---------------------------------------------------------------- issue 15: location, forward, search, last seen

  /** Share a position. @param {import('../content.js').LocationContent} where @param {number} now @param {{ttlS?: number|null}} [o] @returns {Promise<Message>} */
  sendLocation(where, now, o = {}) {
    return this.run(() => this.sendMessage(content.location(where.latE6, where.lonE6, where.accM), now, this.expiry(now, o.ttlS ?? null)));
  }

  /** Send `source` (a message shown in another room, or this one) here as a new message of ours marked
   * forwarded: new keys, expiry no later than the source's. Throws if the source has expired.
   * @param {Message} source @param {string} fromName @param {number} now @param {{ttlS?: number|null}} [o] @returns {Promise<Message>} */
  forward(source, fromName, now, o = {}) {
    return this.run(async () => {
      if (source.expiresAt <= now) throw new Error('cannot forward: that message has expired');
      if (source.file) throw new Error('cannot forward an attachment without re-sealing it (see forwardFile)');
      const fwd = Object.freeze({ fromName: source.forwardedFrom ?? content.cleanName(fromName) });
      const c = source.location ? content.location(source.location[0], source.location[1], source.location[2], fwd) : content.text(source.text, null, [], fwd);
      return this.sendMessage(c, now, Math.min(source.expiresAt, this.expiry(now, o.ttlS ?? null)));
    });
  }

  /** When a forward of `source` sent now would expire: min(source's, now + ttl); throws if it has expired.
   * @param {Message} source @param {number} now @param {{ttlS?: number|null}} [o] */
  forwardExpiry(source, now, o = {}) {
    if (source.expiresAt <= now) throw new Error('cannot forward: that message has expired');
    return Math.min(source.expiresAt, this.expiry(now, o.ttlS ?? null));
  }

  /** Forward the attachment `source` as `sealed`: the same file re-sealed by the caller under a FRESH key
   * (new chunks, manifest and id; PROTOCOL.md "Forwarded attachments"), sent as a new message of ours marked
   * forwarded, expiring no later than the source. Throws if the source expired, is not an attachment, or
   * `sealed` reuses its key or is another file.
   * @param {Message} source @param {import('../files.js').FileContent} sealed @param {string} fromName @param {number} now
   * @param {{ttlS?: number|null}} [o] @returns {Promise<Message>} */
  forwardFile(source, sealed, fromName, now, o = {}) {
    return this.run(async () => {
      const expiresAt = this.forwardExpiry(source, now, o);
      const ref = source.file;
      if (!ref) throw new Error('cannot forward: that message is not an attachment');
      const same = (/** @type {Uint8Array} */ a, /** @type {Uint8Array} */ b) => a.length === b.length && a.every((x, i) => x === b[i]);
      if (same(sealed.key, ref.key) || same(sealed.manifest, ref.manifest)) throw new Error('cannot forward: an attachment must be re-sealed under a fresh key');
      if (sealed.name !== ref.name || sealed.size !== ref.size || sealed.mime !== ref.mime) throw new Error("cannot forward: the re-sealed file is not the original's");
      const fwd = Object.freeze({ fromName: source.forwardedFrom ?? content.cleanName(fromName) });
      const c = Object.freeze({ ...sealed, fwd });
      const k = await this.sendContent(c, now, expiresAt, []);
      const msg = /** @type {Message} */ (this.timeline.msgs.get(k));
      this.timeline.trackDelivery(msg.id);
      this.sendApp(this.keeping.onSent(msg.seq, c));
      return msg;
    });
  }

  /** A keeper: hold attachments (announce KEEPER on links that become ready from now on). @param {boolean} on */
  setKeepFiles(on) {
    this.keeping.holdsFiles = on && this.keeper;
  }

  /** A member: how to learn the blob ids (index blobs and chunks) of a file of ours from its manifest id
   * (null: not held), for the KEEP_FILE offers to keepers (keeping.js). @param {import('./keeping.js').BlobIds} lookup */
  setBlobIds(lookup) {
    this.keeping.blobIds = lookup;
  }

  /** A keeper: the files authors offered it and those whose message was erased since (keeping.js). */
  takeKept() {
    return this.keeping.take();
  }

  /** A message as shown now (null once expired, unsent or never arrived). @param {string} msgId @returns {Message|null} */
  message(msgId) {
    const p = parseMessageId(msgId);
    return (p && this.timeline.msgs.get(p.key)) ?? null;
  }

  /** Messages shown here matching every word of `query`, in room order (memory only). @param {string} query @returns {Message[]} */
  search(query) {
    const keys = this.timeline.search.query(query);
    return this.messages().filter((m) => keys.has(keyOf(m.sender, m.seq)));
  }

  /** Member -> when we last saw it online (ms), for members offline now, within the room timer; empty while we opt out. @param {number} now @returns {Map<string, number>} */
  lastSeen(now) {
    const horizon = this.timerS ? this.timerS * 1000 : null;
    const seen = this.presence.lastSeen(now, this.online(), horizon);
    return new Map([...seen].filter(([p]) => this.membership.members.has(p)));
  }

  get shareLastSeen() {
    return this.presence.shareLastSeen;
  }

  /** Opt in or out (this room only) of members showing when they last saw us. @param {boolean} share @param {number} now */
  setShareLastSeen(share, now) {
    return this.run(async () => {
      for (const [peer, body] of this.presence.setShare(share, this.online(), this.persist)) this.sync.sendOpaque(peer, wire.FrameType.APP, body);
    });
  }

  /**
   * Send an attachment's content item (its blobs sealed and stored by the caller first; see files.js);
   * it rides the log like a text: order, expiry, unsend.
   * @param {import('../files.js').FileContent} ref @param {number} now @param {{ttlS?: number|null}} [o] @returns {Promise<Message>}
   */
  sendFile(ref, now, o = {}) {
    return this.run(async () => {
      const ttl = o.ttlS ?? this.timerS;
      const expiresAt = ttl === 0 ? NEVER : now + ttl * 1000;
      const k = await this.sendContent(ref, now, expiresAt, []);
      const msg = /** @type {Message} */ (this.timeline.msgs.get(k));
      this.timeline.trackDelivery(msg.id);
      this.sendApp(this.keeping.onSent(msg.seq, ref));
      return msg;
    });
  }

  /** @param {string} name @param {number} now @returns {Promise<RoomEvent[]>} */
  setProfile(name, now) {
    return this.run(async () => {
      /** @type {RoomEvent[]} */
      const events = [];
      await this.sendContent(content.profile(content.cleanName(name)), now, NEVER, events);
      return events;
    });
  }

  /** @param {string} msgId @param {string} body @param {number} now @returns {Promise<Message>} */
  edit(msgId, body, now) {
    return this.run(async () => {
      const target = this.timeline.base.get(parseMessageId(msgId)?.key ?? '');
      if (!target || target.sender !== this.peerId || target.location) throw new Error('can only edit our own text messages that are still here');
      await this.sendContent(content.edit(msgId, body), now, target.expiresAt, []);
      return /** @type {Message} */ (this.timeline.msgs.get(keyOf(target.sender, target.seq)));
    });
  }

  /** @param {string} msgId @param {string} emoji @param {number} now @param {boolean} [on] @returns {Promise<Message>} */
  react(msgId, emoji, now, on = true) {
    return this.run(async () => {
      const target = this.timeline.base.get(parseMessageId(msgId)?.key ?? '');
      if (!target) throw new Error('no such message');
      await this.sendContent(content.react(msgId, emoji, on), now, target.expiresAt, []);
      return /** @type {Message} */ (this.timeline.msgs.get(keyOf(target.sender, target.seq)));
    });
  }

  /** @param {string} msgId @param {number} now @returns {Promise<RoomEvent[]>} */
  unsend(msgId, now) {
    return this.run(async () => {
      const p = parseMessageId(msgId);
      if (!p || p.sender !== this.peerId || !this.keys.isChat(p.key)) return [];
      const entry = this.sync.entry(p.sender, p.seq);
      if (!entry) return [];
      const expiresAt = Math.max(entry.expiresAt, now + 1);
      // the unsend names our own edits and reactions of it too (members erase everyone's by rule anyway)
      const seqs = [p.seq];
      for (const aux of this.timeline.referring(p.key)) {
        const i = aux.lastIndexOf(':');
        const [s, q] = [aux.slice(0, i), Number(aux.slice(i + 1))];
        if (s === this.peerId && this.sync.entry(s, q)) seqs.push(q);
      }
      const published = await this.publishUnchained(Kind.TOMBSTONE, encodeTombstone(seqs), now, expiresAt);
      /** @type {RoomEvent[]} */
      const events = [];
      await this.applyUnsend(this.peerId, seqs, expiresAt, published.data, now, events);
      return events;
    });
  }

  /** @param {boolean} typing @param {number} now */
  setTyping(typing, now) {
    return this.run(async () => {
      for (const [peer, body] of this.presence.setTyping(typing, now, this.online())) this.sync.sendOpaque(peer, wire.FrameType.APP, body);
    });
  }

  /** @param {string[]} msgIds @param {number} _now */
  markSeen(msgIds, _now) {
    return this.run(async () => {
      const keys = msgIds.map(parseMessageId).filter(
        (k) => k !== null && k.sender !== this.peerId && this.timeline.base.has(k.key) && this.sync.isReady(k.sender),
      );
      for (const [peer, body] of this.presence.seen(/** @type {{sender: string, seq: number, key: string}[]} */ (keys))) {
        this.sync.sendOpaque(peer, wire.FrameType.APP, body);
      }
    });
  }

  // ---------------------------------------------------------------- signaling through the mesh (relay.js)

  /** Announce our linked members and `hints` ([kind, url]) to linked members, now and when links change.
   * @param {[string, string][]} hints @param {number} now */
  enableReach(hints, now) {
    return this.run(async () => this.relay.enable(hints, now));
  }

  /** Send a sealed signaling payload for `to` through linked members; false if there is none.
   * @param {string} to @param {string} payload @param {number} now @returns {Promise<boolean>} */
  relaySignal(to, payload, now) {
    return this.run(async () => {
      if (this.membersPart.isRemoved(to)) return false;
      const out = await this.relay.originate(to, payload, this.online(), now);
      this.sendApp(out);
      return out.length > 0;
    });
  }

  /** Signaling payloads relayed to us: [claimed sender, payload], to open like the server's. */
  takeRelayed() {
    return this.relay.takeRelayed();
  }

  /** Members that linked members announce (fresh) and that we are not linked with. @param {number} now */
  reachable(now) {
    return this.relay.reachable(this.online(), (p) => this.membersPart.isMember(p), now);
  }

  /** Signaling server URLs learned from members (persisted; newest first). */
  reachHints() {
    return this.relay.reachHints();
  }

  /** A counter that moves whenever the announcements held change (reachable() may differ). */
  get reachChanges() {
    return this.relay.changes;
  }

  // ---------------------------------------------------------------- links and pumping

  /** @param {string} peer @param {number} _now */
  linkUp(peer, _now) {
    return this.run(() => this.links.up(peer, this.membersPart.linkBundle(peer)));
  }

  /** @param {string} peer @param {number} now @returns {Promise<RoomEvent[]>} */
  linkDown(peer, now) {
    return this.run(async () => {
      const had = this.links.down(peer);
      const wasOnline = this.sync.isReady(peer);
      if (had && wasOnline) this.presence.onOffline(peer, now);
      this.sync.disconnect(peer, now);
      this.parking.dropNeighbour(peer);
      this.relay.dropNeighbour(peer);
      this.keeping.onDown(peer);
      this.sendApp(this.relay.onLinks(this.online(), now));
      return had && wasOnline ? [{ type: 'online', peer, online: false }] : [];
    });
  }

  takeDeadLinks() {
    return this.links.takeDead();
  }

  /** @param {string} peer @param {Uint8Array} data @param {number} now @returns {Promise<RoomEvent[]>} */
  receive(peer, data, now) {
    return this.run(async () => {
      const state = this.links.state(peer);
      if (state === 'handshaking') {
        const [ready, code] = await this.links.onHandshake(peer, data);
        if (ready) this.sync.connect(peer, now);
        if (code !== null) {
          this.errorsTotal += 1;
          return [{ type: 'remote-error', peer, code, count: 1, closed: true }];
        }
        return [];
      }
      if (state !== 'ready') return [];
      this.inbound = /** @type {[string, number]} */ ([peer, now]); // the admission budget charges new self-ADDs to `peer`
      let events;
      try {
        events = await this.route(await this.sync.receive(peer, data, now), now);
      } finally {
        this.inbound = null;
      }
      return this.settle(events, now);
    });
  }

  /** @returns {[string, Uint8Array][]} */
  dataToSend() {
    return [...this.links.takeOutbox(), ...this.sync.dataToSend()];
  }

  nextTimer() {
    const times = [this.sync.nextTimer(), this.presence.nextDeadline(), this.parking.nextDeadline(), this.keys.prekeyDeadline(this.membersPart.isMember(this.peerId)), this.distribution.nextDeadline(), this.keys.rxDeadline(), this.relay.nextDeadline()].filter((t) => t !== null);
    return times.length ? Math.min(.../** @type {number[]} */ (times)) : null;
  }

  /** @param {number} now @returns {Promise<RoomEvent[]>} */
  handleTimer(now) {
    return this.run(async () => {
      const events = await this.route(this.sync.handleTimer(now), now);
      this.presence.expire(now, events);
      this.parking.expire(now);
      await this.serveWaiting(now);
      this.keys.expireRx(now, this.persist);
      await this.rotatePrekey(now, events);
      const out = await this.settle(events, now);
      this.sendApp(await this.relay.tick(now));
      return out;
    });
  }
}
