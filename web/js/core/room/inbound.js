// The receive side of the room coordinator: validation, routing of sync events to the parts, and the
// flows that span parts. Mirrors peer/core/room/inbound.py; Governance, Publishing, then Room (room.js), extend it.

import { ProtocolError } from '../errors.js';
import { decodeSenderKeyMessage } from '../chains.js';
import * as content from '../content.js';
import { HEADER_LEN, Kind, decodeTombstone, envelopeKey, openWithKey, parseEnvelope, verifyEnvelope } from '../envelope.js';
import { RECEIPT_TAG } from '../erasure.js';
import { publicBundle } from '../identity.js';
import { keyOf } from '../log.js';
import { DEFAULT_POLICY } from '../chains.js';
import { OpType, decodeOp } from '../membership.js';
import { decodePresence } from '../presence.js';
import { SyncEngine } from '../sync.js';
import * as wire from '../wire.js';
import { MAX_INT, MAX_PROOF } from '../wire.js';
import { AddBudget } from './admission.js';
import { Distribution } from './distribution.js';
import { KEEPER_TAG, KEEP_FILE_TAG, Keeping } from './keeping.js';
import { Links } from './links.js';
import { Members } from './members.js';
import { Parking } from './parking.js';
import { emptyBatch } from './persist.js';
import { Presence } from './presence.js';
import { Receipts } from './receipts.js';
import { REACH_TAG, RELAY_TAG, Relay } from './relay.js';
import { SenderKeys } from './senderkeys.js';
import { Timeline } from './timeline.js';

/**
 * @typedef {import('../identity.js').Identity} Identity
 * @typedef {import('../identity.js').PublicBundle} PublicBundle
 * @typedef {import('../log.js').LogEntry} LogEntry
 * @typedef {import('../envelope.js').Envelope} Envelope
 * @typedef {import('./room.js').RoomEvent} RoomEvent
 * @typedef {{roomId: string, memberKey: Uint8Array, ttlS: number|null, owner?: string|null}} RoomInvite
 * @typedef {{keeper?: boolean, syncConfig?: object, rng?: import('../crypto.js').Rng, chainPolicy?: typeof DEFAULT_POLICY}} RoomOptions
 */

export class Inbound {
  /** @param {Identity} identity @param {RoomInvite} invite @param {RoomOptions} opts */
  constructor(identity, invite, opts) {
    this.identity = identity;
    this.invite = invite;
    this.roomId = invite.roomId;
    this.peerId = identity.peerId;
    this.keeper = opts.keeper ?? false;
    this.sync = new SyncEngine(this.peerId, this.roomId, (d) => this.validate(d), {
      config: opts.syncConfig ?? {},
      authorizeTombstone: (t, held, now) => this.authorizeTombstone(t, held, now),
      peekKey: envelopeKey,
      // relayed at once even from its author (an equivocated version meets the other): an unsend, or a
      // membership op other than an ADD (REMOVE, SET_TIMER); payload byte 1 is the op type
      eager: (entry) => entry.data[1] === Kind.TOMBSTONE || (entry.data[1] === Kind.MEMBERSHIP && entry.data[HEADER_LEN + 5] !== OpType.ADD),
      // membership is the authority on senders: tombstones naming anyone else are refused
      knownSender: (peer) => this.membersPart.knownSender(peer) !== null,
    });
    this.membersPart = new Members(this.roomId, invite.memberKey, this.peerId, publicBundle(identity), invite.owner ?? null);
    this.links = new Links(identity, this.roomId, opts.rng);
    this.parking = new Parking();
    this.admission = new AddBudget();
    this.distribution = new Distribution();
    /** @type {[string, number]|null} (neighbour, now) of the frame being received, else null */
    this.inbound = null;
    this.keys = new SenderKeys(identity, this.roomId, opts.chainPolicy ?? DEFAULT_POLICY, opts.rng);
    this.timeline = new Timeline(this.peerId);
    this.receipts = new Receipts(identity, this.roomId);
    this.presence = new Presence();
    this.relay = new Relay(identity, this.roomId);
    this.keeping = new Keeping(this.keeper);
    this.persist = emptyBatch();
    /** @type {Map<string, Envelope>} parsed by validate, reused by onEntry (one parse) */
    this.fresh = new Map();
    /** @type {string[]} senders that just became known: their parked envelopes go back */
    this.knownNew = [];
    /** @type {Map<string, Map<string, number>>} peer -> code -> count */
    this.errors = new Map();
    this.errorsTotal = 0;
    this.seq = 0;
  }

  /** @param {number} _kind @param {Uint8Array} _payload @param {number} _now @param {number} [_expiresAt] @returns {Promise<LogEntry>} */
  async publishUnchained(_kind, _payload, _now, _expiresAt) {
    throw new Error('implemented by Room');
  }

  /** @returns {Set<string>} */
  online() {
    return new Set(this.sync.neighbours.filter((n) => this.sync.isReady(n)));
  }

  /** RELAY / REACH (see relay.js): blamed errors throw; paced refusals count unblamed.
   * @param {string} peer @param {Uint8Array} body @param {number} now @param {RoomEvent[]} events */
  async onRelayFrame(peer, body, now, events) {
    const online = this.online();
    const [out, refused] = body[0] === RELAY_TAG
      ? await this.relay.onRelay(peer, body, online, (p) => this.membersPart.isRemoved(p), now)
      : await this.relay.onReach(peer, body, online, (p) => (this.membersPart.isMember(p) ? this.membersPart.knownSender(p) : null), now, this.persist);
    this.sendApp(out);
    if (refused !== null) this.fault(peer, refused, now, events, false);
  }

  /** KEEPER / KEEP_FILE (keeping.js); a malformed body throws (blamed). @param {string} peer @param {Uint8Array} body @param {number} now */
  onKeepFrame(peer, body, now) {
    if (body[0] === KEEPER_TAG) {
      const own = this.timeline.messages(this.sync.log.effectiveLamports())
        .filter((m) => m.sender === this.peerId && m.file && m.expiresAt > now)
        .sort((a, b) => a.seq - b.seq)
        .map((m) => /** @type {[number, any]} */ ([m.seq, m.file]));
      this.sendApp(this.keeping.onKeeper(peer, body, own));
    } else {
      this.keeping.onKeepFile(peer, body, (sender, seq) => {
        const entry = this.sync.entry(sender, seq);
        if (!entry || entry.expiresAt <= now || parseEnvelope(entry.data).kind !== Kind.CHAT) return null;
        return entry.expiresAt;
      });
    }
  }

  /** @param {[string, Uint8Array][]} frames */
  sendApp(frames) {
    for (const [neighbour, body] of frames) if (this.sync.isReady(neighbour)) this.sync.sendOpaque(neighbour, wire.FrameType.APP, body);
  }

  /** What to store before dataToSend() is transmitted (then a fresh delta starts). @returns {import('./persist.js').PersistBatch} */
  takePersist() {
    const batch = this.persist;
    this.persist = emptyBatch();
    if (!batch.empty() && !batch.states.has('lamport')) batch.states.set('lamport', this.sync.lamport);
    return batch;
  }

  // ---------------------------------------------------------------- validation

  /** @param {string} sender @returns {PublicBundle} */
  known(sender) {
    const b = this.membersPart.knownSender(sender);
    if (!b) throw new ProtocolError('unknown-sender', 'sender is not a known member');
    return b;
  }

  /** Called by the sync engine for every new envelope. @param {Uint8Array} data @returns {Promise<LogEntry>} */
  async validate(data) {
    const env = parseEnvelope(data);
    if (env.roomId !== this.roomId) throw new ProtocolError('wrong-room', 'envelope for another room');
    let key;
    if (env.kind === Kind.MEMBERSHIP) {
      const op = await decodeOp(env.ciphertext);
      if (op.author !== env.sender) throw new ProtocolError('wrong-sender', 'op author differs from envelope sender');
      const selfAdd = op.op === OpType.ADD && op.target === op.author;
      if (!selfAdd) this.membersPart.checkPlacement(env.sender, env.lamport);
      else if (this.inbound !== null && this.membersPart.knownSender(op.author) === null) {
        const [neighbour, now] = this.inbound; // a new identity: charged before any signature check
        if (!this.admission.charge(neighbour, now)) throw new ProtocolError('add-budget', 'too many new members from this neighbour');
      }
      key = selfAdd ? /** @type {PublicBundle} */ (op.bundle).ed25519 : this.known(env.sender).ed25519;
    } else {
      // an unsend travels as a tombstone proof too: bounded, and only earlier seqs of its own sender
      if (env.kind === Kind.TOMBSTONE && (data.length > MAX_PROOF || decodeTombstone(env.ciphertext).some((q) => q >= env.seq))) {
        throw new ProtocolError('bad-tombstone', 'unsend too large or naming a later seq');
      }
      this.membersPart.checkPlacement(env.sender, env.lamport);
      key = this.known(env.sender).ed25519;
    }
    await verifyEnvelope(env, key);
    this.fresh.set(keyOf(env.sender, env.seq), env);
    return Object.freeze({ sender: env.sender, seq: env.seq, lamport: env.lamport, sentAt: env.sentAt, expiresAt: env.expiresAt, data });
  }

  /** @param {import('../log.js').Tombstone} tomb @param {LogEntry|null} held @param {number} _now */
  async authorizeTombstone(tomb, held, _now) {
    let env, seqs;
    try {
      env = parseEnvelope(tomb.proof);
      if (env.kind !== Kind.TOMBSTONE || env.roomId !== this.roomId || env.sender !== tomb.sender) return false;
      await verifyEnvelope(env, this.known(env.sender).ed25519);
      seqs = decodeTombstone(env.ciphertext);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      return false;
    }
    if (!seqs.includes(tomb.seq) || tomb.seq >= env.seq || tomb.until > this.unsendUntil(env.expiresAt)) return false;
    return held === null || this.deletable(held);
  }

  /** @param {number} expiresAt */
  unsendUntil(expiresAt) {
    return Math.min(expiresAt + this.sync.skewMs, MAX_INT);
  }

  /** @param {LogEntry} held */
  deletable(held) {
    return this.keys.isChat(keyOf(held.sender, held.seq)) && held.expiresAt + this.sync.skewMs <= MAX_INT;
  }

  // ---------------------------------------------------------------- routing

  /** @param {RoomEvent[]} events @param {number} now */
  async settle(events, now) {
    while (this.knownNew.length) {
      const known = /** @type {string} */ (this.knownNew.shift());
      for (const [neighbour, data] of this.parking.take(known)) {
        this.inbound = /** @type {[string, number]} */ ([neighbour, now]);
        events.push(...await this.route(await this.sync.offer(neighbour, data, now), now));
      }
      const held = this.relay.takePending(known);
      if (held !== null && this.links.isReady(held[0])) await this.onRelayFrame(held[0], held[1], now, events);
    }
    this.inbound = null;
    this.fresh.clear();
    this.sendApp(this.relay.onLinks(this.online(), now));
    return events;
  }

  /** @param {import('../sync.js').SyncEvent[]} syncEvents @param {number} now @returns {Promise<RoomEvent[]>} */
  async route(syncEvents, now) {
    /** @type {RoomEvent[]} */
    const events = [];
    for (const ev of syncEvents) {
      if (ev.type === 'entry-added') await this.onEntry(ev.entry, now, events);
      else if (ev.type === 'entry-expired') await this.erase(ev.sender, ev.seq, events, 'expired');
      else if (ev.type === 'entry-deleted') await this.erase(ev.sender, ev.seq, events, 'unsent');
      else if (ev.type === 'entry-voided') { // the author signed two versions: neither counts
        await this.erase(ev.sender, ev.seq, events, 'equivocation');
        if (this.membersPart.forgetOp(keyOf(ev.sender, ev.seq))) await this.onMembership(events, now);
        this.fault(ev.sender, 'equivocation', now, events, false);
      }
      else if (ev.type === 'acked') this.timeline.onAck(ev.neighbour, ev.sender, ev.seq, events);
      else if (ev.type === 'neighbour-ready') {
        events.push({ type: 'online', peer: ev.neighbour, online: true });
        this.distribution.drop(ev.neighbour); // linked: served at once
        await this.giveLiveChains(ev.neighbour, now);
        for (const [to, body] of this.presence.onOnline(ev.neighbour)) this.sync.sendOpaque(to, wire.FrameType.APP, body); // last seen opt-out
        this.sendApp(this.keeping.onReady(ev.neighbour));
      } else if (ev.type === 'neighbour-timed-out') {
        this.links.close(ev.neighbour);
        this.keeping.onDown(ev.neighbour);
        this.parking.dropNeighbour(ev.neighbour);
        events.push({ type: 'online', peer: ev.neighbour, online: false });
      } else if (ev.type === 'opaque') {
        await this.onOpaque(ev.neighbour, ev.frameType, ev.body, now, events);
      } else if (ev.type === 'envelope-refused' && ev.code === 'unknown-sender') {
        this.parking.park(ev.neighbour, envelopeKey(ev.data)[0], ev.data, now);
      } else if (ev.type === 'envelope-refused' && ev.code === 'add-budget') { // paced, not blamed
        this.fault(ev.neighbour, ev.code, now, events, false);
      } else if (ev.type === 'envelope-refused' || ev.type === 'protocol-error') {
        this.fault(ev.neighbour, ev.code, now, events);
        if (ev.code === 'wrong-room') this.links.close(ev.neighbour);
      }
    }
    return events;
  }

  /** Count a remote error against `peer`; `link`: blame its link (budget) too. @param {string} peer @param {string} code @param {number} now @param {RoomEvent[]} events @param {boolean} [link] */
  fault(peer, code, now, events, link = true) {
    this.errorsTotal += 1;
    let counts = this.errors.get(peer);
    if (!counts) this.errors.set(peer, (counts = new Map()));
    counts.set(code, (counts.get(code) ?? 0) + 1);
    let closed = false;
    if (link) {
      closed = this.links.fault(peer, code)[1];
      if (closed) {
        this.sync.disconnect(peer, now);
        this.parking.dropNeighbour(peer);
      }
    }
    events.push({ type: 'remote-error', peer, code, count: /** @type {number} */ (counts.get(code)), closed });
  }

  /** @param {string} peer @param {number} type @param {Uint8Array} body @param {number} now @param {RoomEvent[]} events */
  async onOpaque(peer, type, body, now, events) {
    try {
      if (!this.links.isReady(peer)) throw new ProtocolError('unexpected-frame', 'no authenticated link');
      if (type === wire.FrameType.APP && (body[0] === RELAY_TAG || body[0] === REACH_TAG)) {
        await this.onRelayFrame(peer, body, now, events);
      } else if (type === wire.FrameType.APP && (body[0] === KEEPER_TAG || body[0] === KEEP_FILE_TAG)) {
        this.onKeepFrame(peer, body, now);
      } else if (type === wire.FrameType.APP && body[0] === RECEIPT_TAG) {
        await this.receipts.onReceipt(body, (p) => this.membersPart.knownSender(p), this.membersPart.countOthers(), events);
      } else if (type === wire.FrameType.APP) {
        const signal = decodePresence(body);
        if (signal.type === 'typing') this.presence.onTyping(peer, signal.typing, now, events);
        else if (signal.type === 'lastseen') this.presence.onShare(peer, signal.share);
        else this.timeline.onSeen(peer, signal.seqs, this.membersPart.countOthers(), events);
      } else if (type === wire.FrameType.PAIRWISE) {
        const skm = decodeSenderKeyMessage(await this.links.open(peer, body));
        // not a member yet: its ADD is on its way, the copy sealed to our prekey follows it in the log
        // a keeper never opens anything, so it keeps no receiver chain (a stolen keeper home re-derives nothing)
        if (this.membersPart.isMember(skm.sender) && !this.keeper) await this.acceptSenderKey(skm, events);
      } else {
        throw new ProtocolError('unexpected-frame', 'frame type not expected here');
      }
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.fault(peer, e.code, now, events);
    }
  }

  /** @param {LogEntry} entry @param {number} now @param {RoomEvent[]} events */
  async onEntry(entry, now, events) {
    this.persist.envelopes.push(entry);
    const k = keyOf(entry.sender, entry.seq);
    const env = this.fresh.get(k) ?? parseEnvelope(entry.data);
    this.fresh.delete(k);
    if (env.kind === Kind.CHAT) {
      this.keys.holdChat(env);
      if (this.keeper) {
        this.keeping.onChat(entry.sender, entry.seq, entry.expiresAt);
        return;
      }
      if (this.keys.canOpen(env)) await this.openChat(env, now, events);
      else this.keys.wait(env);
    } else if (env.kind === Kind.MEMBERSHIP) {
      const op = await decodeOp(env.ciphertext);
      this.membersPart.addOp(k, op);
      await this.onMembership(events, now);
      if (op.op === OpType.ADD) return; // an ADD alone does not show life (distribution.js)
    } else if (env.kind === Kind.SENDER_KEY) {
      if (!this.keeper) await this.takeSenderKey(env, now, events);
    } else if (env.kind === Kind.TOMBSTONE) {
      await this.applyUnsend(env.sender, decodeTombstone(env.ciphertext), env.expiresAt, entry.data, now, events);
    }
    this.distribution.shownLife(env.sender);
  }

  /** @param {RoomEvent[]} events @param {number} now */
  async onMembership(events, now) {
    const change = await this.membersPart.recompute();
    for (const pid of change.joined) {
      events.push({ type: 'joined', peer: pid });
      await this.offerChains(pid, now);
    }
    for (const pid of change.left) {
      events.push({ type: 'left', peer: pid });
      this.distribution.drop(pid);
      this.keys.forgetSender(pid, this.persist);
      this.relay.forget(pid);
      if (pid !== this.peerId && this.links.close(pid)) this.sync.disconnect(pid, now); // nothing more, not even ciphertext
    }
    this.knownNew.push(...change.joined, ...change.left);
    if (change.timer) events.push({ type: 'timer', ttlS: change.timer.ttlS });
    const st = this.membersPart.state;
    if (change.roles) events.push({ type: 'roles', owner: st.owner, admins: this.membersPart.admins(), announce: st.announceSince > 0 });
    if (change.admission) events.push({ type: 'admission', closed: st.closed, requests: this.membersPart.requests() });
  }

  // ---------------------------------------------------------------- sender keys and chat

  /** `peer` is owed our live chains: at once if linked, else paced (distribution.js). @param {string} peer @param {number} now */
  async offerChains(peer, now) {
    if (this.sync.isReady(peer) || this.distribution.offer(peer, now)) await this.giveLiveChains(peer, now);
  }

  /** Members whose chains waited for the distribution window (handleTimer). @param {number} now */
  async serveWaiting(now) {
    for (const peer of this.distribution.due(now)) {
      if (this.membersPart.isMember(peer) && !this.membersPart.isRemoved(peer)) await this.giveLiveChains(peer, now);
    }
  }

  /** Every live chain of ours (its messages are in the log) to a member we learned late. @param {string} peer @param {number} now */
  async giveLiveChains(peer, now) {
    for (const [init] of this.keys.initialsForLateJoiner(this.membersPart.epoch, now)) await this.giveChain(peer, init, now);
  }

  /** @param {string} peer @param {import('../chains.js').SenderChain} initial @param {number} now */
  async giveChain(peer, initial, now) {
    if (this.keys.wasGiven(peer, initial.chainId) || this.membersPart.isRemoved(peer)) return;
    if (this.membersPart.state.closed && !this.membersPart.isMember(peer)) return; // closed room: a join request gets nothing until admitted
    const skm = await this.keys.senderKeyMessage(initial);
    if (this.sync.isReady(peer)) {
      const frame = await this.links.seal(peer, skm);
      if (frame) this.sync.sendOpaque(peer, wire.FrameType.PAIRWISE, frame);
    }
    const member = this.membersPart.member(peer);
    if (!member) return; // not a member yet: it gets the key when its ADD arrives
    const sealed = await this.keys.sealFor(member.bundle, member.prekey, skm, now);
    await this.publishUnchained(Kind.SENDER_KEY, sealed, now, this.keys.senderKeyExpiryOf(initial.chainId)); // erased with the chain's window
    this.keys.markGiven(peer, initial.chainId, this.persist);
  }

  /** @param {Envelope} env @param {number} now @param {RoomEvent[]} events */
  async takeSenderKey(env, now, events) {
    const sender = this.membersPart.knownSender(env.sender);
    if (!sender) return;
    try {
      const opened = await this.keys.openSealed(env, sender, now, this.persist);
      if (opened) {
        const skm = decodeSenderKeyMessage(opened);
        await this.acceptSenderKey(skm, events);
        // the chain's receiver state goes when its SENDER_KEY envelopes do (its window ended)
        this.keys.expireRxAt(skm.sender, skm.chainId, env.expiresAt, this.persist);
      }
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.fault(env.sender, e.code, now, events, false);
    }
  }

  /** @param {import('../chains.js').SenderKeyMessage} skm @param {RoomEvent[]} events */
  async acceptSenderKey(skm, events) {
    if (skm.roomId !== this.roomId) throw new ProtocolError('wrong-room', 'sender key for another room');
    const member = this.membersPart.member(skm.sender);
    if (!member) throw new ProtocolError('not-member', 'sender key from a non-member');
    for (const env of await this.keys.accept(skm, member.bundle, this.persist)) await this.openChat(env, 0, events);
  }

  /** @param {Envelope} env @param {number} now @param {RoomEvent[]} events */
  async openChat(env, now, events) {
    if (this.keys.messageKeys.has(keyOf(env.sender, env.seq))) return;
    let plaintext;
    try {
      plaintext = await this.keys.openChat(env, this.persist);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.fault(env.sender, e.code, now, events, false);
      return;
    }
    await this.show(env, plaintext, now, events);
  }

  /** @param {Envelope} env @param {Uint8Array} plaintext @param {number} now @param {RoomEvent[]} events */
  async show(env, plaintext, now, events) {
    let c;
    try {
      c = content.decodeContent(plaintext);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.fault(env.sender, e.code, now, events, false);
      return;
    }
    if ((c.t === 'text' || c.t === 'edit' || c.t === 'location' || c.t === 'file') && !this.membersPart.mayPost(env.sender, env.lamport)) return; // announcement mode
    const meta = { sender: env.sender, seq: env.seq, lamport: env.lamport, sentAt: env.sentAt, expiresAt: env.expiresAt };
    const code = this.timeline.apply(meta, c, events);
    if (code !== null) { this.fault(env.sender, code, now, events, false); return; }
    const target = this.timeline.targetKey(keyOf(env.sender, env.seq));
    if (target !== null) {
      const [ts, tq] = splitKey(target);
      if (this.sync.tombstoneOf(ts, tq)) await this.eraseReferring(target, events); // its message is gone here
    }
  }

  /** @param {Envelope} env @param {Uint8Array} mk */
  async openRestored(env, mk) {
    this.keys.messageKeys.set(keyOf(env.sender, env.seq), mk);
    try {
      await this.show(env, await openWithKey(env, mk), 0, []);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
    }
  }

  // ---------------------------------------------------------------- erasing

  /** @param {string} sender @param {number[]} seqs @param {number} expiresAt @param {Uint8Array} proof @param {number} now @param {RoomEvent[]} events */
  async applyUnsend(sender, seqs, expiresAt, proof, now, events) {
    const until = this.unsendUntil(expiresAt);
    for (const seq of [...seqs].sort((x, y) => y - x)) { // edits/reactions before the message they refer to
      const held = this.sync.entry(sender, seq);
      if (held && !this.deletable(held)) continue;
      if (this.sync.delete(sender, seq, until, proof) && held) await this.erase(sender, seq, events, 'unsent');
    }
  }

  /** Forget a message in every part. @param {string} sender @param {number} seq @param {RoomEvent[]} events @param {'expired'|'unsent'|'equivocation'} reason */
  async erase(sender, seq, events, reason) {
    const k = keyOf(sender, seq);
    await this.eraseReferring(k, events); // and every edit or reaction that refers to it, whoever wrote it
    this.timeline.erase(k, reason, events);
    this.keeping.erased(sender, seq, reason);
    const tomb = this.sync.tombstoneOf(sender, seq);
    this.persist.erased.push([sender, seq, tomb ? tomb.until : 0]);
    if (await this.keys.erase(sender, seq, this.persist)) this.receipts.owe(sender, seq);
    this.presence.forget(k);
  }

  /** Erase here the edits and reactions that refer to the erased message `k` (every member applies the
   * same rule; the local tombstone, not relayed, keeps sync from fetching them back).
   * @param {string} k @param {RoomEvent[]} events */
  async eraseReferring(k, events) {
    for (const aux of this.timeline.referring(k)) {
      const [s, q] = splitKey(aux);
      const held = this.sync.entry(s, q);
      if (held) this.sync.restoreTombstone(s, q, held.expiresAt + this.sync.skewMs);
      if (held || this.keys.isChat(aux) || this.keys.messageKeys.has(aux)) await this.erase(s, q, events, 'unsent');
      else this.timeline.erase(aux, 'unsent', events);
    }
  }
}

/** @param {string} key @returns {[string, number]} the (sender, seq) of a keyOf() key */
function splitKey(key) {
  const i = key.lastIndexOf(':');
  return [key.slice(0, i), Number(key.slice(i + 1))];
}
