// The room: identity, membership, sender chains, envelopes and sync in one sans-IO object.
// Mirrors peer/core/room.py (PROTOCOL.md "Room protocol"). WebCrypto is async, so every entry point is
// async; they are serialised internally (one at a time, in call order), so callers may fire them freely.
//
// Rules (same as room.py):
// - Links: linkUp(peer) sends HANDSHAKE(0x01 || hello); on the peer's hello we answer 0x02 || finish;
//   when the peer's finish verifies, the pairwise session exists and the sync session starts (our sync
//   HELLO follows our FINISH). A failed handshake or an unknown bundle: takeDeadLinks() reports it.
// - Joining: the first time, we publish a self-ADD (bundle + signed prekey, MACed with the member key);
//   if the invite has a TTL and the room no timer, a SET_TIMER too. Membership = all MEMBERSHIP
//   envelopes in canonical order.
// - Validation: parse, right room, signed by the sender (a self-ADD under the bundle it carries, anything
//   else under the sender's bundle from membership); unknown senders: unknown-sender (asked again later).
// - Sender keys: a chain's initial state goes to every member, pairwise (PAIRWISE frame, forward
//   secret) to linked neighbours and sealed to the member's prekey in a SENDER_KEY envelope. Rotation
//   after 1000 messages, 7 days, or an epoch change.
// - Messages: CHAT envelopes open with the sender's receiver chain (or wait in `pending`); the message key
//   is kept (persisted) until expiry so history survives a reload; plaintext is never persisted.
// - Expiry: at expires_at the message, its key and its envelope are erased; a tombstone remains until
//   expires_at + skew.
// - Content (core/content.js): text, profile (display name, latest by (lamport, seq), expiry NEVER), edit
//   (the sender's OWN message only, else 'bad-edit'; latest by (lamport, seq) wins) and react (per
//   (reactor, emoji) the latest wins). Edits and reactions expire with their target; one arriving before
//   its target waits for it; when an edit/reaction is erased the target is shown without it.
// - Unsend: a signed TOMBSTONE envelope naming our own earlier CHAT seqs, applied with itself as proof.
// - Typing and seen (core/presence.js, APP frames over a ready link, never stored): a typing indicator
//   lasts 6 s unless renewed (we renew at most every 3 s); SEEN goes once per message to its sender only.
// - Erasure receipts (core/erasure.js): when we erase another member's CHAT message (expiry, unsend, or
//   at restore) we owe its sender a signed receipt, sent at the end of an entry point once a link with
//   the sender is ready (kept in memory until then); receipts for our own messages give "erased on N of M".
// - takePersist() must be stored before dataToSend() is transmitted.

import { ProtocolError } from './errors.js';
import { b64uEncode, concatBytes, equalBytes, fromHex, toHex, utf8 } from './bytes.js';
import {
  advance, createSenderKeyMessage, decodeSenderKeyMessage, encodeSenderKeyMessage, mustRotate, newSenderChain,
  receiverFromBytes, receiverFromSenderKey, receiverMessageKey, receiverToBytes, senderChainFromBytes, senderChainToBytes,
} from './chains.js';
import {
  Kind, decodeTombstone, encodeTombstone, openWithKey, parseEnvelope, sealEnvelope, sealUnchainedEnvelope, verifyEnvelope,
} from './envelope.js';
import {
  Handshake, generatePrekey, openFromPrekey, openPairwise, prekeyFromBytes, prekeyToBytes, sealPairwise, sealToPrekey,
} from './handshake.js';
import { publicBundle } from './identity.js';
import * as content from './content.js';
import { createReceipt, decodeReceipt, encodeReceipt, MAX_RECEIPT_SEQS, RECEIPT_TAG, verifyReceipt } from './erasure.js';
import { TYPING_RENEW_MS, TYPING_TTL_MS, decodePresence, encodeSeen, encodeTyping } from './presence.js';
import { keyOf } from './log.js';
import { OpType, decodeOp, encodeOp, emptyState, makeAdd, makeRemove, makeSetTimer, stateFromOps } from './membership.js';
import { SyncEngine } from './sync.js';
import * as wire from './wire.js';
import { MAX_PROOF, MAX_INT } from './wire.js';

export const DEFAULT_TTL_S = 24 * 3600;
export const NEVER = 2 ** 52;
export const PAIRWISE_AAD = utf8('ephemesh-v1 pairwise sender-key');
export const PREKEY_AAD = utf8('ephemesh-v1 prekey sender-key');
const HS_HELLO = 1, HS_FINISH = 2;

/**
 * @typedef {import('./identity.js').Identity} Identity
 * @typedef {import('./identity.js').PublicBundle} PublicBundle
 * @typedef {import('./log.js').LogEntry} LogEntry
 * @typedef {import('./envelope.js').Envelope} Envelope
 * @typedef {{id: string, sender: string, seq: number, lamport: number, sentAt: number, expiresAt: number, text: string,
 *   replyTo: string|null, edited: boolean, reactions: [string, string[]][]}} Message
 *   (reactions: [emoji, reactor peer ids sorted], sorted by emoji code points; only emoji with a reactor)
 * @typedef {{type:'message', message: Message} | {type:'updated', message: Message} | {type:'expired', id: string, reason: 'expired'|'unsent'}
 *   | {type:'joined', peer: string} | {type:'left', peer: string} | {type:'online', peer: string, online: boolean}
 *   | {type:'delivered', id: string, peer: string} | {type:'timer', ttlS: number} | {type:'profile', peer: string, name: string}
 *   | {type:'typing', peer: string, typing: boolean} | {type:'seen', id: string, by: string, count: number, of: number}
 *   | {type:'erased', id: string, by: string, count: number, of: number}} RoomEvent
 * @typedef {{envelopes: LogEntry[], erased: [string, number, number][], messageKeys: [string, number, number, Uint8Array][],
 *   states: Map<string, unknown>}} PersistBatch
 * @typedef {{envelopes: LogEntry[], tombstones: [string, number, number][], messageKeys: Map<string, Uint8Array>,
 *   states: Map<string, unknown>}} Snapshot
 * @typedef {{roomId: string, memberKey: Uint8Array, ttlS: number|null}} RoomInvite
 */

/** @param {string} sender @param {number} seq */
export const messageId = (sender, seq) => `${sender}:${seq}`;
/** "<sender>:<seq>" -> log key, or null if malformed. @param {string} id */
export function parseMessageId(id) {
  const i = typeof id === 'string' ? id.indexOf(':') : -1;
  if (i !== 32 || !/^[0-9a-f]{32}:[0-9]{1,16}$/.test(id)) return null;
  return { sender: id.slice(0, 32), seq: Number(id.slice(33)), key: keyOf(id.slice(0, 32), Number(id.slice(33))) };
}
/** Compare strings by code points (Python's str order). @param {string} a @param {string} b */
const cpCompare = (a, b) => {
  const x = [...a].map((c) => /** @type {number} */ (c.codePointAt(0))), y = [...b].map((c) => /** @type {number} */ (c.codePointAt(0)));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
};
/** @returns {PersistBatch} */
const emptyBatch = () => ({ envelopes: [], erased: [], messageKeys: [], states: new Map() });

export class Room {
  /** Use Room.create. @param {Identity} identity @param {RoomInvite} invite @param {{keeper?: boolean, syncConfig?: object}} opts */
  constructor(identity, invite, opts) {
    this.identity = identity;
    this.invite = invite;
    this.roomId = invite.roomId;
    this.peerId = identity.peerId;
    this.keeper = opts.keeper ?? false;
    this.sync = new SyncEngine(this.peerId, this.roomId, (d) => this.validate(d), {
      config: opts.syncConfig ?? {},
      authorizeTombstone: (t, held, now) => this.authorizeTombstone(t, held, now),
    });
    this.membership = emptyState(this.roomId);
    /** @type {Map<string, PublicBundle>} */
    this.bundles = new Map([[this.peerId, publicBundle(identity)]]);
    /** @type {Map<string, import('./membership.js').MembershipOp>} */
    this.ops = new Map();
    /** @type {Map<string, {handshake: Handshake|null, session: import('./handshake.js').PairwiseSession|null}>} */
    this.links = new Map();
    /** @type {[string, Uint8Array][]} */
    this.outbox = [];
    /** @type {string[]} */
    this.dead = [];
    this.persist = emptyBatch();
    /** @type {Map<string, Message>} as shown (edits and reactions applied) */
    this.msgs = new Map();
    /** @type {Map<string, Message>} as first sent */
    this.base = new Map();
    /** @type {Map<string, {lamport: number, seq: number, content: import('./content.js').EditContent|import('./content.js').ReactContent, target: string}>} edit/react envelopes */
    this.aux = new Map();
    /** @type {Map<string, Set<string>>} target key -> aux keys */
    this.auxByTarget = new Map();
    /** @type {Map<string, [number, number, string]>} peer -> (lamport, seq, name) */
    this.profiles = new Map();
    /** @type {Map<string, number>} peer -> typing indicator valid until */
    this.typing = new Map();
    /** @type {[boolean, number]} */
    this.typingSent = [false, 0];
    /** @type {Set<string>} keys of messages we sent SEEN for */
    this.seenSent = new Set();
    /** @type {Map<number, Set<string>>} own seq -> members that saw it */
    this.seenBy = new Map();
    /** @type {Map<string, Set<number>>} sender -> seqs we erased, not yet reported */
    this.receiptsOut = new Map();
    /** @type {Map<number, Set<string>>} own CHAT seq -> members that reported erasing it */
    this.erasedBy = new Map();
    /** @type {Map<string, Uint8Array>} */
    this.keys = new Map();
    /** @type {Map<string, import('./chains.js').ReceiverChain>} */
    this.rx = new Map();
    /** @type {Map<string, Envelope[]>} */
    this.pending = new Map();
    /** @type {Map<string, Set<string>>} */
    this.delivered = new Map();
    /** @type {Set<string>} */
    this.seenPrekeyMsgs = new Set();
    /** @type {Map<string, Set<string>>} chain id hex -> members given to */
    this.chainGiven = new Map();
    /** @type {Map<string, [string, number]>} CHAT key -> (chain id hex, index) */
    this.chatPos = new Map();
    /** @type {[string, string][]} */
    this.protocolErrors = [];
    this.seq = 0;
    /** @type {import('./chains.js').SenderChain|null} */
    this.chain = null;
    /** @type {import('./chains.js').SenderChain|null} */
    this.chainInitial = null;
    /** @type {import('./handshake.js').PrekeyPrivate|null} */
    this.prekey = null;
    /** @type {Promise<unknown>} */
    this.queue = Promise.resolve();
  }

  /**
   * Build the room (restoring a snapshot if given) and publish the self-ADD on first join.
   * @param {Identity} identity @param {RoomInvite} invite @param {number} now
   * @param {{keeper?: boolean, snapshot?: Snapshot|null, syncConfig?: object}} [opts]
   */
  static async create(identity, invite, now, opts = {}) {
    const room = new Room(identity, invite, opts);
    const states = opts.snapshot?.states ?? new Map();
    room.seq = Number(states.get('seq') ?? 0);
    room.sync.clock.observe(Number(states.get('lamport') ?? 0));
    if (states.has('chain/own')) room.chain = senderChainFromBytes(/** @type {Uint8Array} */ (states.get('chain/own')));
    if (states.has('chain/initial')) room.chainInitial = senderChainFromBytes(/** @type {Uint8Array} */ (states.get('chain/initial')));
    for (const [name, value] of states) {
      if (name.startsWith('chain/rx/')) {
        const rx = await receiverFromBytes(/** @type {Uint8Array} */ (value));
        room.rx.set(`${rx.sender}/${toHex(rx.chainId)}`, rx);
      } else if (name.startsWith('chain/given/')) {
        room.chainGiven.set(name.slice('chain/given/'.length), new Set(/** @type {string[]} */ (value)));
      }
    }
    const pk = /** @type {{privateKey: CryptoKey, signed: Uint8Array}|undefined} */ (states.get('prekey'));
    if (pk) {
      room.prekey = { privateKey: pk.privateKey, signed: prekeyFromBytes(pk.signed) };
    } else {
      room.prekey = await generatePrekey(identity, now);
      room.persist.states.set('prekey', { privateKey: room.prekey.privateKey, signed: prekeyToBytes(room.prekey.signed) });
    }
    room.seenPrekeyMsgs = new Set(/** @type {string[]} */ (states.get('prekey/seen') ?? []));
    if (opts.snapshot) await room.restore(opts.snapshot, now);
    if (!room.membership.members.has(room.peerId)) {
      const op = await makeAdd(identity, invite.memberKey, room.roomId, room.sync.clock.tick(), publicBundle(identity), room.prekey.signed);
      await room.publishUnchained(Kind.MEMBERSHIP, encodeOp(op), now);
      if (invite.ttlS && room.membership.timer === null) await room.doSetTimer(invite.ttlS, now);
    }
    return room;
  }

  /** Serialise an entry point. @template T @param {() => Promise<T>} fn @returns {Promise<T>} */
  run(fn) {
    const p = this.queue.then(async () => {
      const out = await fn();
      await this.flushReceipts();
      return out;
    });
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** Resume from the store; anything expired or deleted by now is erased, never shown. @param {Snapshot} snap @param {number} now */
  async restore(snap, now) {
    const log = this.sync.log;
    const entries = [...snap.envelopes].sort((a, b) => a.lamport - b.lamport || (a.sender < b.sender ? -1 : a.sender > b.sender ? 1 : a.seq - b.seq));
    const envs = entries.map((e) => parseEnvelope(e.data));
    for (let i = 0; i < entries.length; i++) {
      if (envs[i].kind === Kind.MEMBERSHIP) this.ops.set(keyOf(entries[i].sender, entries[i].seq), await decodeOp(envs[i].ciphertext));
    }
    await this.recomputeMembership(null, now);
    // unsends first, with their proof, so a restored member still answers stale copies with them
    const stateKeys = new Set(entries.filter((_, i) => envs[i].kind !== Kind.CHAT).map((e) => keyOf(e.sender, e.seq)));
    entries.forEach((e, i) => {
      if (envs[i].kind !== Kind.TOMBSTONE || e.expiresAt <= now) return;
      for (const seq of decodeTombstone(envs[i].ciphertext)) {
        if (!stateKeys.has(keyOf(e.sender, seq))) log.tombstone(e.sender, seq, this.unsendUntil(envs[i]), e.data);
      }
    });
    for (const [sender, seq, until] of snap.tombstones) {
      if (until <= now) continue;
      log.tombstone(sender, seq, until);
      if (sender !== this.peerId) this.oweReceipt(sender, seq); // erased (or never held) here: (re)report it
    }
    const restored = new Set();
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i], env = envs[i];
      const k = keyOf(entry.sender, entry.seq);
      if (env.kind === Kind.CHAT && env.sender === this.peerId && !this.erasedBy.has(env.seq)) this.erasedBy.set(env.seq, new Set());
      if (!log.add(entry, now)) {
        const until = Math.min(entry.expiresAt + log.skewMs, MAX_INT);
        if (until > now) log.tombstone(entry.sender, entry.seq, until);
        this.persist.erased.push([entry.sender, entry.seq, log.getTombstone(entry.sender, entry.seq)?.until ?? until]);
        if (env.kind === Kind.CHAT && env.sender !== this.peerId) this.oweReceipt(env.sender, env.seq);
        continue;
      }
      restored.add(k);
      this.sync.clock.observe(entry.lamport);
      if (env.kind === Kind.CHAT) this.chatPos.set(k, [toHex(env.chainId), env.chainIndex]);
      const key = snap.messageKeys.get(k);
      if (env.kind === Kind.CHAT && key) {
        this.keys.set(k, key);
        try {
          this.show(env, await openWithKey(env, key), []);
        } catch (e) {
          if (!(e instanceof ProtocolError)) throw e;
        }
      } else if (env.kind === Kind.CHAT && !this.keeper) {
        this.addPending(env);
      } else if (env.kind === Kind.SENDER_KEY && !this.keeper) {
        await this.takeSenderKey(env, now, []);
      }
    }
    for (const k of snap.messageKeys.keys()) {
      if (restored.has(k)) continue;
      const [sender, seq] = [k.slice(0, 32), Number(k.slice(33))];
      this.persist.erased.push([sender, seq, log.getTombstone(sender, seq)?.until ?? 0]);
    }
    await this.advanceInitial();
  }

  // ---------------------------------------------------------------- queries

  /** A verified bundle (from a signed signaling payload). @param {string} peer @param {PublicBundle} bundle */
  learnBundle(peer, bundle) {
    if (!this.bundles.has(peer)) this.bundles.set(peer, bundle);
  }

  /** @returns {Message[]} in the room's order (lamport, sender, seq) */
  messages() {
    return [...this.msgs.values()].sort((a, b) => a.lamport - b.lamport || (a.sender < b.sender ? -1 : a.sender > b.sender ? 1 : a.seq - b.seq));
  }

  online() {
    return new Set(this.sync.neighbours.filter((n) => this.sync.isReady(n)));
  }

  members() {
    return [...this.membership.members.keys()].sort();
  }

  get timerS() {
    if (this.membership.timer) return this.membership.timer.ttlS;
    return this.invite.ttlS || DEFAULT_TTL_S;
  }

  // ---------------------------------------------------------------- local actions

  /** Seal, sign, log and broadcast a chat message; ttlS null = room timer; 0 = no expiry. @param {string} text @param {number} now @param {{ttlS?: number|null, replyTo?: string|null}} [o] @returns {Promise<Message>} */
  sendText(text, now, o = {}) {
    return this.run(async () => {
      const ttl = o.ttlS ?? this.timerS;
      const expiresAt = ttl === 0 ? NEVER : now + ttl * 1000;
      const k = await this.sendContent(content.text(text, o.replyTo ?? null), now, expiresAt, []);
      const msg = /** @type {Message} */ (this.msgs.get(k));
      this.delivered.set(msg.id, new Set());
      return msg;
    });
  }

  /** Publish our display name in this room (room state: never expires). @param {string} name @param {number} now @returns {Promise<RoomEvent[]>} */
  setProfile(name, now) {
    return this.run(async () => {
      /** @type {RoomEvent[]} */
      const events = [];
      await this.sendContent(content.profile(content.cleanName(name)), now, NEVER, events);
      return events;
    });
  }

  /** Replace the body of one of our own messages, for everyone; the edit expires with it. @param {string} msgId @param {string} body @param {number} now @returns {Promise<Message>} */
  edit(msgId, body, now) {
    return this.run(async () => {
      const target = this.base.get(parseMessageId(msgId)?.key ?? '');
      if (!target || target.sender !== this.peerId) throw new Error('can only edit our own messages that are still here');
      await this.sendContent(content.edit(msgId, body), now, target.expiresAt, []);
      return /** @type {Message} */ (this.msgs.get(keyOf(target.sender, target.seq)));
    });
  }

  /** Add (or with on=false remove) our reaction to a message; it expires with the message. @param {string} msgId @param {string} emoji @param {number} now @param {boolean} [on] @returns {Promise<Message>} */
  react(msgId, emoji, now, on = true) {
    return this.run(async () => {
      const target = this.base.get(parseMessageId(msgId)?.key ?? '');
      if (!target) throw new Error('no such message');
      await this.sendContent(content.react(msgId, emoji, on), now, target.expiresAt, []);
      return /** @type {Message} */ (this.msgs.get(keyOf(target.sender, target.seq)));
    });
  }

  /** The display name `peer` set in this room, if any. @param {string} peer @returns {string|null} */
  displayName(peer) {
    return this.profiles.get(peer)?.[2] ?? null;
  }

  /** Seal content with our chain, log, broadcast and show it. @param {import('./content.js').Content} c @param {number} now @param {number} expiresAt @param {RoomEvent[]} events @returns {Promise<string>} the log key */
  async sendContent(c, now, expiresAt, events) {
    if (this.keeper) throw new Error('a keeper does not send messages');
    const plaintext = content.encodeContent(c);
    const chain = await this.currentChain(now);
    this.seq += 1;
    const lamport = this.sync.clock.tick();
    const [data, next, mk] = await sealEnvelope(this.identity, this.roomId, chain, { seq: this.seq, lamport, sentAt: now, expiresAt }, plaintext);
    this.chain = next;
    this.persist.states.set('chain/own', senderChainToBytes(next));
    this.persist.states.set('seq', this.seq);
    this.persist.states.set('lamport', lamport);
    const entry = await this.sync.publish(data, now);
    this.persist.envelopes.push(entry);
    const k = keyOf(this.peerId, this.seq);
    this.chatPos.set(k, [toHex(chain.chainId), chain.index]);
    this.keys.set(k, mk);
    this.erasedBy.set(this.seq, new Set());
    this.persist.messageKeys.push([this.peerId, this.seq, expiresAt, mk]);
    this.show(parseEnvelope(data), plaintext, events);
    return k;
  }

  // ---------------------------------------------------------------- typing, seen, erasure receipts

  /** Tell linked members we are (not) typing; renewals are rate-limited. @param {boolean} typing @param {number} now */
  setTyping(typing, now) {
    return this.run(async () => {
      const [wasTyping, at] = this.typingSent;
      if (typing === wasTyping && (!typing || now - at < TYPING_RENEW_MS)) return;
      this.typingSent = [typing, now];
      for (const peer of this.online()) this.sync.sendOpaque(peer, wire.FrameType.APP, encodeTyping(typing));
    });
  }

  /** @param {number} now @returns {string[]} members whose typing indicator is live */
  typingMembers(now) {
    return [...this.typing].filter(([, until]) => until > now).map(([p]) => p).sort();
  }

  /** We have shown these messages: tell each linked sender, once per message. @param {string[]} msgIds @param {number} now */
  markSeen(msgIds, now) {
    return this.run(async () => {
      void now;
      /** @type {Map<string, number[]>} */
      const out = new Map();
      for (const id of msgIds) {
        const p = parseMessageId(id);
        if (!p || p.sender === this.peerId || !this.base.has(p.key) || this.seenSent.has(p.key) || !this.sync.isReady(p.sender)) continue;
        this.seenSent.add(p.key);
        out.set(p.sender, [...(out.get(p.sender) ?? []), p.seq]);
      }
      for (const [peer, seqs] of out) this.sync.sendOpaque(peer, wire.FrameType.APP, encodeSeen(seqs));
    });
  }

  /** Members that said they have shown our message. @param {string} msgId @returns {Set<string>} */
  seenByMembers(msgId) {
    const p = parseMessageId(msgId);
    return new Set(p && p.sender === this.peerId ? this.seenBy.get(p.seq) ?? [] : []);
  }

  /** Members (other than us) whose signed receipt says they erased our message. @param {string} msgId @returns {Set<string>} */
  erasedOn(msgId) {
    const p = parseMessageId(msgId);
    return new Set(p && p.sender === this.peerId ? this.erasedBy.get(p.seq) ?? [] : []);
  }

  /** [N, M]: our message was erased on N of the M other current members. @param {string} msgId @returns {[number, number]} */
  erasure(msgId) {
    return [this.erasedOn(msgId).size, this.membership.members.size - 1];
  }

  /** @param {string} sender @param {number} seq */
  oweReceipt(sender, seq) {
    let set = this.receiptsOut.get(sender);
    if (!set) this.receiptsOut.set(sender, (set = new Set()));
    set.add(seq);
  }

  /** Send the receipts we owe to senders we are linked with (others wait; non-members are dropped). */
  async flushReceipts() {
    for (const [sender, seqSet] of [...this.receiptsOut]) {
      if (!this.membership.members.has(sender) && !this.membership.removed.has(sender)) this.receiptsOut.delete(sender);
      else if (this.sync.isReady(sender)) {
        this.receiptsOut.delete(sender);
        const seqs = [...seqSet].sort((a, b) => a - b);
        for (let i = 0; i < seqs.length; i += MAX_RECEIPT_SEQS) {
          const receipt = await createReceipt(this.identity, this.roomId, sender, seqs.slice(i, i + MAX_RECEIPT_SEQS));
          this.sync.sendOpaque(sender, wire.FrameType.APP, encodeReceipt(receipt));
        }
      }
    }
  }

  /** @param {string} neighbour @param {Uint8Array} body @param {number} now @param {RoomEvent[]} events */
  onPresence(neighbour, body, now, events) {
    let signal;
    try {
      signal = decodePresence(body);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.protocolErrors.push([neighbour, e.code]);
      return;
    }
    if (signal.type === 'typing') {
      const was = (this.typing.get(neighbour) ?? 0) > now;
      if (signal.typing) this.typing.set(neighbour, now + TYPING_TTL_MS);
      else this.typing.delete(neighbour);
      if (was !== signal.typing) events.push({ type: 'typing', peer: neighbour, typing: signal.typing });
      return;
    }
    const of = this.membership.members.size - 1;
    for (const seq of signal.seqs) {
      if (!this.base.has(keyOf(this.peerId, seq))) continue;
      let by = this.seenBy.get(seq);
      if (!by) this.seenBy.set(seq, (by = new Set()));
      if (by.has(neighbour)) continue;
      by.add(neighbour);
      events.push({ type: 'seen', id: messageId(this.peerId, seq), by: neighbour, count: by.size, of });
    }
  }

  /** @param {number} now @param {RoomEvent[]} events */
  expireTyping(now, events) {
    for (const [peer, until] of [...this.typing]) {
      if (until > now) continue;
      this.typing.delete(peer);
      events.push({ type: 'typing', peer, typing: false });
    }
  }

  /** @param {string} neighbour @param {Uint8Array} body @param {RoomEvent[]} events */
  async onReceipt(neighbour, body, events) {
    let receipt;
    try {
      receipt = decodeReceipt(body);
      if (receipt.roomId !== this.roomId) throw new ProtocolError('wrong-room', 'receipt for another room');
      const bundle = this.bundles.get(receipt.member);
      if (!bundle || (!this.membership.members.has(receipt.member) && !this.membership.removed.has(receipt.member))) {
        throw new ProtocolError('unknown-sender', 'receipt from a non-member');
      }
      await verifyReceipt(receipt, bundle.ed25519);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.protocolErrors.push([neighbour, e.code]);
      return;
    }
    if (receipt.sender !== this.peerId || receipt.member === this.peerId) return; // to the sender only, no relay
    const of = this.membership.members.size - 1;
    for (const seq of receipt.seqs) {
      const by = this.erasedBy.get(seq);
      if (!by || by.has(receipt.member)) continue;
      by.add(receipt.member);
      events.push({ type: 'erased', id: messageId(this.peerId, seq), by: receipt.member, count: by.size, of });
    }
  }

  /** Set the room's default lifetime (signed, versioned; highest version wins). @param {number} ttlS @param {number} now */
  setTimer(ttlS, now) {
    return this.run(async () => {
      const before = this.membership.timer;
      await this.doSetTimer(ttlS, now);
      const after = this.membership.timer;
      /** @type {RoomEvent[]} */
      const events = after && after !== before ? [{ type: 'timer', ttlS: after.ttlS }] : [];
      return events;
    });
  }

  /** @param {number} ttlS @param {number} now */
  async doSetTimer(ttlS, now) {
    const version = this.membership.timer ? this.membership.timer.version + 1 : 1;
    const op = await makeSetTimer(this.identity, this.invite.memberKey, this.roomId, this.sync.clock.tick(), ttlS, version);
    await this.publishUnchained(Kind.MEMBERSHIP, encodeOp(op), now);
  }

  /** @param {string} peer @param {number} now */
  removeMember(peer, now) {
    return this.run(async () => {
      const op = await makeRemove(this.identity, this.invite.memberKey, this.roomId, this.sync.clock.tick(), peer);
      await this.publishUnchained(Kind.MEMBERSHIP, encodeOp(op), now);
    });
  }

  // ---------------------------------------------------------------- links

  /** A data channel to `peer` opened: start the handshake. @param {string} peer @param {number} _now */
  linkUp(peer, _now) {
    return this.run(async () => {
      const bundle = this.bundles.get(peer);
      if (!bundle || this.membership.removed.has(peer)) {
        this.dead.push(peer);
        return;
      }
      const hs = await Handshake.create(this.identity, bundle, this.roomId);
      this.links.set(peer, { handshake: hs, session: null });
      this.outbox.push([peer, wire.encodeOpaque(wire.FrameType.HANDSHAKE, concatBytes(new Uint8Array([HS_HELLO]), hs.hello()))]);
    });
  }

  /** @param {string} peer @param {number} now @returns {Promise<RoomEvent[]>} */
  linkDown(peer, now) {
    return this.run(async () => {
      const link = this.links.get(peer);
      this.links.delete(peer);
      const wasOnline = this.sync.isReady(peer);
      this.sync.disconnect(peer, now);
      return link && wasOnline ? [{ type: 'online', peer, online: false }] : [];
    });
  }

  takeDeadLinks() {
    const d = this.dead;
    this.dead = [];
    return d;
  }

  /** @param {string} peer @param {Uint8Array} data @param {number} now @returns {Promise<RoomEvent[]>} */
  receive(peer, data, now) {
    return this.run(async () => {
      const link = this.links.get(peer);
      if (!link) return [];
      if (link.session === null) return this.receiveHandshake(peer, link, data, now);
      return this.handleSync(await this.sync.receive(peer, data, now), now);
    });
  }

  /** @param {string} peer @param {{handshake: Handshake|null, session: any}} link @param {Uint8Array} data @param {number} now @returns {Promise<RoomEvent[]>} */
  async receiveHandshake(peer, link, data, now) {
    try {
      const frame = wire.decodeFrame(data);
      if (frame.type !== wire.FrameType.HANDSHAKE || !frame.body.length) throw new ProtocolError('no-handshake', 'expected a handshake frame');
      const hs = /** @type {Handshake} */ (link.handshake);
      const step = frame.body[0], body = frame.body.slice(1);
      if (step === HS_HELLO) {
        const finish = await hs.onHello(body);
        this.outbox.push([peer, wire.encodeOpaque(wire.FrameType.HANDSHAKE, concatBytes(new Uint8Array([HS_FINISH]), finish))]);
        return [];
      }
      if (step === HS_FINISH) {
        link.session = await hs.onFinish(body);
        link.handshake = null;
        this.sync.connect(peer, now);
        return [];
      }
      throw new ProtocolError('bad-handshake', 'unknown handshake step');
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.protocolErrors.push([peer, e.code]);
      this.links.delete(peer);
      this.dead.push(peer);
      return [];
    }
  }

  // ---------------------------------------------------------------- sync events

  /** @param {import('./sync.js').SyncEvent[]} syncEvents @param {number} now */
  async handleSync(syncEvents, now) {
    /** @type {RoomEvent[]} */
    const events = [];
    for (const ev of syncEvents) {
      if (ev.type === 'entry-added') await this.onEntry(ev.entry, now, events);
      else if (ev.type === 'entry-expired') await this.erase(ev.sender, ev.seq, events);
      else if (ev.type === 'entry-deleted') await this.erase(ev.sender, ev.seq, events, 'unsent');
      else if (ev.type === 'acked') {
        // any of our chat messages still held (sent by this page or restored): once per member
        const k = keyOf(ev.sender, ev.seq);
        if (ev.sender === this.peerId && this.chatPos.has(k) && this.msgs.has(k)) {
          const mid = messageId(ev.sender, ev.seq);
          let set = this.delivered.get(mid);
          if (!set) this.delivered.set(mid, (set = new Set()));
          if (!set.has(ev.neighbour)) {
            set.add(ev.neighbour);
            events.push({ type: 'delivered', id: mid, peer: ev.neighbour });
          }
        }
      } else if (ev.type === 'neighbour-ready') {
        events.push({ type: 'online', peer: ev.neighbour, online: true });
        await this.giveCurrentChain(ev.neighbour, now);
      } else if (ev.type === 'neighbour-timed-out') {
        this.links.delete(ev.neighbour);
        this.dead.push(ev.neighbour);
        events.push({ type: 'online', peer: ev.neighbour, online: false });
      } else if (ev.type === 'opaque') {
        await this.onOpaque(ev.neighbour, ev.frameType, ev.body, now, events);
      } else if (ev.type === 'protocol-error') {
        this.protocolErrors.push([ev.neighbour, ev.code]);
        if (ev.code === 'wrong-room') this.dead.push(ev.neighbour);
      }
    }
    return events;
  }

  /** @param {string} neighbour @param {number} type @param {Uint8Array} body @param {number} now @param {RoomEvent[]} events */
  async onOpaque(neighbour, type, body, now, events) {
    const link = this.links.get(neighbour);
    if (type === wire.FrameType.APP && link && link.session) {
      if (body[0] === RECEIPT_TAG) await this.onReceipt(neighbour, body, events);
      else this.onPresence(neighbour, body, now, events);
      return;
    }
    if (type !== wire.FrameType.PAIRWISE || !link || !link.session) {
      this.protocolErrors.push([neighbour, 'unexpected-frame']);
      return;
    }
    try {
      const [session, pt] = await openPairwise(link.session, body, PAIRWISE_AAD);
      link.session = session;
      await this.acceptSenderKey(decodeSenderKeyMessage(pt), now, events);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.protocolErrors.push([neighbour, e.code]);
    }
  }

  /** @param {LogEntry} entry @param {number} now @param {RoomEvent[]} events */
  async onEntry(entry, now, events) {
    this.persist.envelopes.push(entry);
    const env = parseEnvelope(entry.data);
    if (env.kind === Kind.CHAT) this.chatPos.set(keyOf(entry.sender, entry.seq), [toHex(env.chainId), env.chainIndex]);
    if (env.kind === Kind.MEMBERSHIP) {
      this.ops.set(keyOf(entry.sender, entry.seq), await decodeOp(env.ciphertext));
      await this.recomputeMembership(events, now);
    } else if (env.kind === Kind.SENDER_KEY) {
      if (!this.keeper) await this.takeSenderKey(env, now, events);
    } else if (env.kind === Kind.TOMBSTONE) {
      await this.applyUnsend(env, entry.data, now, events);
    } else if (env.kind === Kind.CHAT && !this.keeper) {
      const rx = this.rx.get(`${env.sender}/${toHex(env.chainId)}`);
      if (!rx) this.addPending(env);
      else await this.openChat(env, events);
    }
  }

  /** @param {Envelope} env */
  addPending(env) {
    const k = `${env.sender}/${toHex(env.chainId)}`;
    const list = this.pending.get(k) ?? [];
    list.push(env);
    this.pending.set(k, list);
  }

  // ---------------------------------------------------------------- membership

  /** @param {RoomEvent[]|null} events @param {number} now */
  async recomputeMembership(events, now) {
    const before = this.membership;
    const { state } = await stateFromOps(this.roomId, [...this.ops.values()], this.invite.memberKey);
    this.membership = state;
    for (const [pid, m] of state.members) this.bundles.set(pid, m.bundle);
    if (events === null) return;
    for (const pid of [...state.members.keys()].filter((p) => !before.members.has(p)).sort()) {
      if (pid !== this.peerId) {
        events.push({ type: 'joined', peer: pid });
        await this.giveCurrentChain(pid, now);
      }
    }
    for (const pid of [...before.members.keys()].filter((p) => !state.members.has(p)).sort()) {
      events.push({ type: 'left', peer: pid });
      for (const k of [...this.rx.keys()]) if (k.startsWith(`${pid}/`)) this.rx.delete(k);
    }
    const t = state.timer, b = before.timer;
    if (t && (!b || b.ttlS !== t.ttlS || b.version !== t.version || b.author !== t.author)) events.push({ type: 'timer', ttlS: t.ttlS });
  }

  // ---------------------------------------------------------------- sender keys

  /** @param {number} now */
  async currentChain(now) {
    let chain = this.chain;
    if (!chain || mustRotate(chain, now, this.membership.epoch)) {
      chain = await newSenderChain({ epoch: this.membership.epoch, createdAt: now });
      this.chain = this.chainInitial = chain;
      this.persist.states.set('chain/own', senderChainToBytes(chain));
      this.persist.states.set('chain/initial', senderChainToBytes(chain));
      for (const pid of [...this.membership.members.keys()].sort()) if (pid !== this.peerId) await this.giveChain(pid, chain, now);
    }
    return chain;
  }

  /** @param {string} peer @param {number} now */
  async giveCurrentChain(peer, now) {
    if (this.chainInitial && this.chain && !mustRotate(this.chain, now, this.membership.epoch)) await this.giveChain(peer, this.chainInitial, now);
  }

  /** Hand `peer` our chain's initial state: pairwise if linked, and sealed to its prekey in the log. @param {string} peer @param {import('./chains.js').SenderChain} initial @param {number} now */
  async giveChain(peer, initial, now) {
    const cid = toHex(initial.chainId);
    let given = this.chainGiven.get(cid);
    if (!given) this.chainGiven.set(cid, (given = new Set()));
    if (given.has(peer) || this.membership.removed.has(peer)) return;
    const skm = encodeSenderKeyMessage(await createSenderKeyMessage(this.identity, this.roomId, initial));
    const link = this.links.get(peer);
    if (link && link.session && this.sync.isReady(peer)) {
      const [session, frame] = await sealPairwise(link.session, skm, PAIRWISE_AAD);
      link.session = session;
      this.sync.sendOpaque(peer, wire.FrameType.PAIRWISE, frame);
    }
    const member = this.membership.members.get(peer);
    if (!member) return;
    const sealed = await sealToPrekey(this.identity, member.bundle, member.prekey, skm, PREKEY_AAD, now);
    await this.publishUnchained(Kind.SENDER_KEY, sealed, now);
    given.add(peer);
    this.persist.states.set(`chain/given/${cid}`, [...given].sort());
  }

  /** @param {Envelope} env @param {number} now @param {RoomEvent[]} events */
  async takeSenderKey(env, now, events) {
    const payload = env.ciphertext;
    if (payload.length < 33 || !equalBytes(payload.subarray(17, 33), fromHex(this.peerId))) return;
    const sender = this.bundles.get(env.sender);
    if (!sender || !this.prekey) return;
    let opened;
    try {
      opened = await openFromPrekey(this.identity, this.prekey, sender, payload, PREKEY_AAD, now);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.protocolErrors.push([env.sender, e.code]);
      return;
    }
    const mid = b64uEncode(opened.msgId);
    if (this.seenPrekeyMsgs.has(mid)) return;
    this.seenPrekeyMsgs.add(mid);
    this.persist.states.set('prekey/seen', [...this.seenPrekeyMsgs].sort());
    try {
      await this.acceptSenderKey(decodeSenderKeyMessage(opened.plaintext), now, events);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.protocolErrors.push([env.sender, e.code]);
    }
  }

  /** @param {import('./chains.js').SenderKeyMessage} skm @param {number} _now @param {RoomEvent[]} events */
  async acceptSenderKey(skm, _now, events) {
    if (skm.roomId !== this.roomId) throw new ProtocolError('wrong-room', 'sender key for another room');
    const bundle = this.bundles.get(skm.sender);
    if (!bundle || !this.membership.members.has(skm.sender)) throw new ProtocolError('not-member', 'sender key from a non-member');
    const k = `${skm.sender}/${toHex(skm.chainId)}`;
    if (this.rx.has(k)) return;
    const rx = await receiverFromSenderKey(skm, bundle.ed25519);
    this.rx.set(k, rx);
    this.persist.states.set(`chain/rx/${k}`, receiverToBytes(rx));
    const waiting = (this.pending.get(k) ?? []).sort((a, b) => a.chainIndex - b.chainIndex);
    this.pending.delete(k);
    for (const env of waiting) await this.openChat(env, events);
  }

  // ---------------------------------------------------------------- chat

  /** @param {Envelope} env @param {RoomEvent[]} events */
  async openChat(env, events) {
    const k = keyOf(env.sender, env.seq);
    const ck = `${env.sender}/${toHex(env.chainId)}`;
    const rx = this.rx.get(ck);
    if (!rx || this.msgs.has(k)) return;
    let next, mk, plaintext;
    try {
      await verifyEnvelope(env, rx.senderKey);
      [next, mk] = await receiverMessageKey(rx, env.chainIndex);
      plaintext = await openWithKey(env, mk);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.protocolErrors.push([env.sender, e.code]);
      return;
    }
    this.rx.set(ck, next);
    this.persist.states.set(`chain/rx/${ck}`, receiverToBytes(next));
    this.keys.set(k, mk);
    this.persist.messageKeys.push([env.sender, env.seq, env.expiresAt, mk]);
    this.show(env, plaintext, events);
  }

  /** Apply opened content: a message, a display name, an edit or a reaction. @param {Envelope} env @param {Uint8Array} plaintext @param {RoomEvent[]} events */
  show(env, plaintext, events) {
    let c;
    try {
      c = content.decodeContent(plaintext);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.protocolErrors.push([env.sender, e.code]);
      return;
    }
    const k = keyOf(env.sender, env.seq);
    if (c.t === 'text') {
      this.base.set(k, Object.freeze({
        id: messageId(env.sender, env.seq), sender: env.sender, seq: env.seq, lamport: env.lamport, sentAt: env.sentAt,
        expiresAt: env.expiresAt, text: c.body, replyTo: c.replyTo, edited: false, reactions: [],
      }));
      this.render(k);
      events.push({ type: 'message', message: /** @type {Message} */ (this.msgs.get(k)) });
    } else if (c.t === 'profile') {
      const cur = this.profiles.get(env.sender);
      if (!cur || env.lamport > cur[0] || (env.lamport === cur[0] && env.seq > cur[1])) {
        this.profiles.set(env.sender, [env.lamport, env.seq, c.name]);
        events.push({ type: 'profile', peer: env.sender, name: c.name });
      }
    } else {
      const target = parseMessageId(c.target);
      if (!target || (c.t === 'edit' && target.sender !== env.sender)) {
        this.protocolErrors.push([env.sender, 'bad-edit']);
        return;
      }
      this.aux.set(k, { lamport: env.lamport, seq: env.seq, content: c, target: target.key });
      let set = this.auxByTarget.get(target.key);
      if (!set) this.auxByTarget.set(target.key, (set = new Set()));
      set.add(k);
      if (this.base.has(target.key)) {
        this.render(target.key);
        events.push({ type: 'updated', message: /** @type {Message} */ (this.msgs.get(target.key)) });
      }
    }
  }

  /** The message as shown: its latest edit by its sender and the reactions still on. @param {string} k */
  render(k) {
    const base = /** @type {Message} */ (this.base.get(k));
    let text = base.text, edited = false;
    /** @type {[number, number]} */
    let latest = [-1, -1];
    /** @type {Map<string, [number, number, boolean, string, string]>} (reactor, emoji) -> lamport, seq, on, reactor, emoji */
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
  }

  /** @param {string} sender @param {number} seq @param {RoomEvent[]} events @param {'expired'|'unsent'} [reason] */
  async erase(sender, seq, events, reason = 'expired') {
    const k = keyOf(sender, seq);
    const msg = this.msgs.get(k);
    this.msgs.delete(k);
    this.base.delete(k);
    this.keys.delete(k);
    const aux = this.aux.get(k);
    if (aux) { // an edit or reaction went: show the target without it
      this.aux.delete(k);
      this.auxByTarget.get(aux.target)?.delete(k);
      if (this.base.has(aux.target)) {
        this.render(aux.target);
        events.push({ type: 'updated', message: /** @type {Message} */ (this.msgs.get(aux.target)) });
      }
    }
    const tomb = this.sync.log.getTombstone(sender, seq);
    this.persist.erased.push([sender, seq, tomb ? tomb.until : 0]);
    for (const [pk, envs] of this.pending) this.pending.set(pk, envs.filter((e) => !(e.sender === sender && e.seq === seq)));
    const pos = this.chatPos.get(k);
    this.chatPos.delete(k);
    if (pos) {
      if (sender === this.peerId) await this.advanceInitial();
      else {
        this.dropSkippedKey(sender, pos[0], pos[1]);
        this.oweReceipt(sender, seq);
      }
    }
    if (msg) {
      this.delivered.delete(msg.id);
      events.push({ type: 'expired', id: msg.id, reason });
    }
  }

  /** Keep our stored initial chain state at the oldest message still held (erased keys cannot be re-derived). */
  async advanceInitial() {
    let init = this.chainInitial;
    const cur = this.chain;
    if (!init || !cur || toHex(init.chainId) !== toHex(cur.chainId)) return;
    const cid = toHex(cur.chainId);
    const live = [...this.chatPos].filter(([k, [c]]) => k.startsWith(this.peerId) && c === cid).map(([, [, i]]) => i);
    const target = live.length ? Math.min(...live) : cur.index;
    if (target <= init.index) return;
    while (init.index < target) [init] = await advance(init);
    this.chainInitial = init;
    this.persist.states.set('chain/initial', senderChainToBytes(init));
  }

  /** @param {string} sender @param {string} cid @param {number} index */
  dropSkippedKey(sender, cid, index) {
    const rx = this.rx.get(`${sender}/${cid}`);
    if (!rx || !rx.skipped.some(([i]) => i === index)) return;
    const next = Object.freeze({ ...rx, skipped: rx.skipped.filter(([i]) => i !== index) });
    this.rx.set(`${sender}/${cid}`, next);
    this.persist.states.set(`chain/rx/${sender}/${cid}`, receiverToBytes(next));
  }

  // ---------------------------------------------------------------- unsend

  /** Delete one of our own messages for everyone. @param {string} msgId @param {number} now @returns {Promise<RoomEvent[]>} */
  unsend(msgId, now) {
    return this.run(async () => {
      const [sender, seqText] = msgId.split(':');
      const seq = Number(seqText);
      const k = keyOf(sender, seq);
      if (sender !== this.peerId || !this.chatPos.has(k)) return [];
      const entry = this.sync.log.get(sender, seq);
      if (!entry) return [];
      const published = await this.publishUnchained(Kind.TOMBSTONE, encodeTombstone([seq]), now, Math.max(entry.expiresAt, now + 1));
      /** @type {RoomEvent[]} */
      const events = [];
      await this.applyUnsend(parseEnvelope(published.data), published.data, now, events);
      return events;
    });
  }

  /** @param {Envelope} env */
  unsendUntil(env) {
    return Math.min(env.expiresAt + this.sync.log.skewMs, MAX_INT);
  }

  /** Apply a verified TOMBSTONE envelope. @param {Envelope} env @param {Uint8Array} proof @param {number} now @param {RoomEvent[]} events */
  async applyUnsend(env, proof, now, events) {
    const until = this.unsendUntil(env);
    for (const seq of decodeTombstone(env.ciphertext)) {
      const held = this.sync.log.get(env.sender, seq);
      if (held && !this.deletable(held)) continue;
      if (this.sync.delete(env.sender, seq, until, proof) && held) await this.erase(env.sender, seq, events, 'unsent');
    }
  }

  /** Only CHAT messages can be unsent, and only while the tombstone fits the wire. @param {LogEntry} held */
  deletable(held) {
    return this.chatPos.has(keyOf(held.sender, held.seq)) && held.expiresAt + this.sync.log.skewMs <= MAX_INT;
  }

  /** A proof is the sender's signed TOMBSTONE envelope naming this (earlier) seq. @param {import('./log.js').Tombstone} tomb @param {LogEntry|null} held @param {number} _now */
  async authorizeTombstone(tomb, held, _now) {
    let env, seqs;
    try {
      env = parseEnvelope(tomb.proof);
      if (env.kind !== Kind.TOMBSTONE || env.roomId !== this.roomId || env.sender !== tomb.sender) return false;
      await this.verifyMemberEnvelope(env);
      seqs = decodeTombstone(env.ciphertext);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      return false;
    }
    if (!seqs.includes(tomb.seq) || tomb.seq >= env.seq || tomb.until > this.unsendUntil(env)) return false;
    return held === null || this.deletable(held);
  }

  /** @param {Envelope} env */
  async verifyMemberEnvelope(env) {
    const b = this.bundles.get(env.sender);
    if (!b || (!this.membership.members.has(env.sender) && !this.membership.removed.has(env.sender))) {
      throw new ProtocolError('unknown-sender', 'sender is not a known member');
    }
    await verifyEnvelope(env, b.ed25519);
  }

  // ---------------------------------------------------------------- publishing

  /** @param {number} kind @param {Uint8Array} payload @param {number} now @param {number} [expiresAt] */
  async publishUnchained(kind, payload, now, expiresAt = NEVER) {
    this.seq += 1;
    const lamport = this.sync.clock.tick();
    const data = await sealUnchainedEnvelope(this.identity, this.roomId, kind, { seq: this.seq, lamport, sentAt: now, expiresAt }, payload);
    this.persist.states.set('seq', this.seq);
    this.persist.states.set('lamport', lamport);
    const entry = await this.sync.publish(data, now);
    this.persist.envelopes.push(entry);
    if (kind === Kind.MEMBERSHIP) {
      this.ops.set(keyOf(entry.sender, entry.seq), await decodeOp(payload));
      await this.recomputeMembership(null, now);
    }
    return entry;
  }

  /** Called by the sync engine for every envelope. @param {Uint8Array} data @returns {Promise<LogEntry>} */
  async validate(data) {
    const env = parseEnvelope(data);
    if (env.roomId !== this.roomId) throw new ProtocolError('wrong-room', 'envelope for another room');
    let key;
    if (env.kind === Kind.MEMBERSHIP) {
      const op = await decodeOp(env.ciphertext);
      if (op.author !== env.sender) throw new ProtocolError('wrong-sender', 'op author differs from envelope sender');
      if (op.op === OpType.ADD && op.target === op.author) key = /** @type {PublicBundle} */ (op.bundle).ed25519;
      else {
        const b = this.bundles.get(env.sender);
        if (!b) throw new ProtocolError('unknown-sender', 'no bundle for the sender yet');
        key = b.ed25519;
      }
    } else {
      // an unsend travels as a tombstone proof too: bounded, and only earlier seqs of its own sender
      if (env.kind === Kind.TOMBSTONE && (data.length > MAX_PROOF || decodeTombstone(env.ciphertext).some((q) => q >= env.seq))) {
        throw new ProtocolError('bad-tombstone', 'unsend too large or naming a later seq');
      }
      await this.verifyMemberEnvelope(env);
      return Object.freeze({ sender: env.sender, seq: env.seq, lamport: env.lamport, sentAt: env.sentAt, expiresAt: env.expiresAt, data });
    }
    await verifyEnvelope(env, key);
    return Object.freeze({ sender: env.sender, seq: env.seq, lamport: env.lamport, sentAt: env.sentAt, expiresAt: env.expiresAt, data });
  }

  // ---------------------------------------------------------------- pumping

  /** @returns {[string, Uint8Array][]} */
  dataToSend() {
    const out = this.outbox;
    this.outbox = [];
    return [...out, ...this.sync.dataToSend()];
  }

  nextTimer() {
    const times = [this.sync.nextTimer(), ...this.typing.values()].filter((t) => t !== null && t !== undefined);
    return times.length ? Math.min(.../** @type {number[]} */ (times)) : null;
  }

  /** @param {number} now @returns {Promise<RoomEvent[]>} */
  handleTimer(now) {
    return this.run(async () => {
      const events = await this.handleSync(this.sync.handleTimer(now), now);
      this.expireTyping(now, events);
      return events;
    });
  }

  /** @returns {PersistBatch} */
  takePersist() {
    const batch = this.persist;
    this.persist = emptyBatch();
    if (batch.envelopes.length || batch.erased.length || batch.messageKeys.length || batch.states.size) {
      if (!batch.states.has('lamport')) batch.states.set('lamport', this.sync.clock.value);
    }
    return batch;
  }
}

