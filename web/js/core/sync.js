// Sans-IO sync engine: keeps one room's log in sync with every neighbour. Mirrors peer/core/sync.py
// (PROTOCOL.md "Sync"). The only difference: `validate` is async (WebCrypto), so receive() is async;
// callers must not interleave calls (the room serialises them).
//
// Rules (one session per neighbour):
// - connect() queues HELLO first. ENVELOPES/WANT/ACK/TOMBSTONES before the neighbour's HELLO: no-hello.
// - HELLO for another room: wrong-room, the session is ignored from then on.
// - HELLO is re-sent every resyncMs (anti-entropy). The serving part (sync_serve.js, whose header states
//   its rules) builds our HELLO, makes the WANTs after each HELLO, answers WANT, ACK and TOMBSTONES and
//   keeps every per-neighbour budget. Output queues are keyed: a key is queued once per link.
// - The equivocation check (sync_check.js): after each HELLO we send DIGESTS of the senders whose marks
//   we share; DIGESTS/HASH_WANT/HASHES go to it; a differing envelope it finds is WANTed, so it meets the
//   equivocation rule (both versions: the key is void) even when nobody relays.
// - A duplicate (peekKey says we have seen its key) is acked (or answered with its tombstone) without
//   validation. Every other envelope goes through validate; a ProtocolError drops that envelope only
//   and yields 'envelope-refused' (with the envelope, so the room may park it). A new entry is added,
//   ACKed to the neighbour and relayed to every other neighbour not known to have it, except an entry
//   received from its author: the others got it from the author too, so a HELLO goes to them
//   announceDelayMs later instead (lazy relay).
// - An entry more than maxLamportJump ahead of our clock is refused (lamport-jump).
// - PING every heartbeatMs; silence for deadAfterMs: neighbour-timed-out, session dropped.

import { ProtocolError } from './errors.js';
import { LamportClock } from './clock.js';
import { Log, RangeSet, keyOf } from './log.js';
import { DEFAULT_SYNC_CONFIG, Session, toRangeMap } from './sync_events.js';
import { Serve } from './sync_serve.js';
import { Check } from './sync_check.js';
import * as wire from './wire.js';

/**
 * @typedef {import('./log.js').LogEntry} LogEntry
 * @typedef {import('./log.js').Tombstone} Tombstone
 * @typedef {import('./sync_events.js').SyncEvent} SyncEvent
 */

export { DEFAULT_SYNC_CONFIG } from './sync_events.js';

/** @param {Uint8Array} a @param {Uint8Array} b */
const sameBytes = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

export class SyncEngine {
  /**
   * @param {string} selfId @param {string} roomId
   * @param {(data: Uint8Array) => Promise<LogEntry>} validate
   * @param {{config?: Partial<typeof DEFAULT_SYNC_CONFIG>, authorizeTombstone?: (t: Tombstone, held: LogEntry|null, now: number) => Promise<boolean>,
   *   peekKey?: (data: Uint8Array) => [string, number], eager?: (entry: LogEntry) => boolean,
   *   knownSender?: (sender: string) => boolean}} [opts]
   */
  constructor(selfId, roomId, validate, opts = {}) {
    this.selfId = selfId;
    this.roomId = roomId;
    this.config = { ...DEFAULT_SYNC_CONFIG, ...(opts.config ?? {}) };
    this.log = new Log(this.config.skewMs);
    this.clock = new LamportClock();
    this.validate = validate;
    this.peek = opts.peekKey ?? null;
    /** entries always relayed at once, even when received from their author (room state) */
    this.eager = opts.eager ?? null;
    /** @type {number|null} */
    this.announceAt = null;
    /** @type {Map<string, Session>} */
    this.sessions = new Map();
    this.protocolErrors = 0;
    this.serve = new Serve(this.config, this.log, {
      live: () => this.live(), error: (n, code) => this.error(n, code),
      authorizeTombstone: opts.authorizeTombstone ?? null, knownSender: opts.knownSender ?? null,
      selfId: this.selfId,
    });
    this.check = new Check(this.config, this.log);
  }

  get neighbours() {
    return [...this.sessions.values()].filter((s) => !s.rejected).map((s) => s.neighbour);
  }

  /** @param {string} n */
  isReady(n) {
    const s = this.sessions.get(n);
    return !!s && s.ready && !s.rejected;
  }

  /** Start (or restart) a session: queue HELLO. @param {string} neighbour @param {number} now */
  connect(neighbour, now) {
    if (neighbour === this.selfId) throw new Error('cannot connect to self');
    this.drop(neighbour);
    const s = new Session(neighbour, now, this.config);
    s.control.push(this.hello());
    this.sessions.set(neighbour, s);
  }

  /** @param {string} neighbour @param {number} now */
  disconnect(neighbour, now) {
    if (this.drop(neighbour)) this.rerequest(now);
  }

  /** @param {string} neighbour */
  drop(neighbour) {
    const s = this.sessions.get(neighbour);
    if (!s) return false;
    this.sessions.delete(neighbour);
    this.serve.end(neighbour);
    this.check.end(neighbour);
    return true;
  }

  /** @param {number} now */
  rerequest(now) {
    for (const s of this.sessions.values()) if (s.ready && !s.rejected) this.serve.request(s, now);
  }

  // -------------------------------------------------- hooks for the room (nothing reaches into log/clock)

  get skewMs() {
    return this.log.skewMs;
  }

  get lamport() {
    return this.clock.value;
  }

  tick() {
    return this.clock.tick();
  }

  /** @param {number} lamport */
  observe(lamport) {
    this.clock.observe(lamport);
  }

  /** @param {string} sender @param {number} seq */
  entry(sender, seq) {
    return this.log.get(sender, seq);
  }

  /** @param {string} sender @param {number} seq */
  tombstoneOf(sender, seq) {
    return this.log.getTombstone(sender, seq);
  }

  /** Put back a stored entry at restart (no relay, no event); false if expired or tombstoned. @param {LogEntry} entry @param {number} now */
  restore(entry, now) {
    if (!this.log.add(entry, now)) return false;
    this.clock.observe(entry.lamport);
    return true;
  }

  /** @param {string} sender @param {number} seq @param {number} until @param {Uint8Array} [proof] */
  restoreTombstone(sender, seq, until, proof = new Uint8Array(0)) {
    this.log.tombstone(sender, seq, until, proof);
  }

  /** Feed one envelope back as if `neighbour` had just sent it; dropped if that session is gone. @param {string} neighbour @param {Uint8Array} data @param {number} now @returns {Promise<SyncEvent[]>} */
  async offer(neighbour, data, now) {
    const s = this.sessions.get(neighbour);
    if (!s || s.rejected || !s.ready) return [];
    return this.onEnvelopes(s, [data], now);
  }

  /** Add a locally created envelope and push it to every neighbour (`entry`: built, so trusted, by the caller). @param {Uint8Array} data @param {number} now @param {LogEntry|null} [trusted] */
  async publish(data, now, trusted = null) {
    const entry = trusted ?? await this.validate(data);
    if (!this.log.add(entry, now)) throw new Error('duplicate, tombstoned or expired entry');
    this.clock.observe(entry.lamport);
    this.relay(entry, null);
    return entry;
  }

  /** Explicit local deletion. @param {string} sender @param {number} seq @param {number} until @param {Uint8Array} proof */
  delete(sender, seq, until, proof) {
    if (!this.log.tombstone(sender, seq, until, proof)) return false;
    this.serve.tellTombstone(sender, seq, false);
    return true;
  }

  /** @param {string} neighbour @param {number} type @param {Uint8Array} body */
  sendOpaque(neighbour, type, body) {
    const s = this.sessions.get(neighbour);
    if (!s || s.rejected) throw new Error(`no session with ${neighbour}`);
    s.control.push(wire.encodeOpaque(type, body));
  }

  /** Drain the outbox. @returns {[string, Uint8Array][]} */
  dataToSend() {
    /** @type {[string, Uint8Array][]} */
    const out = [];
    for (const [n, s] of this.sessions) {
      if (s.rejected || !(s.control.length || s.envs.size || s.voids.size || s.tombs.size || s.acks.size)) continue;
      const frames = s.control;
      if (s.envs.size || s.voids.size) frames.push(...wire.encodeEnvelopes([...s.envs.values(), ...[...s.voids.values()].flat()]));
      if (s.tombs.size) frames.push(...wire.encodeTombstones([...s.tombs.values()]));
      if (s.acks.size) frames.push(...wire.encodeAck(toRangeMap(s.acks)));
      for (const f of frames) out.push([n, f]);
      s.control = []; s.envs = new Map(); s.voids = new Map(); s.tombs = new Map(); s.acks = new Map();
    }
    return out;
  }

  /** @returns {number|null} */
  nextTimer() {
    const times = [];
    const d = this.log.nextDeadline();
    if (d !== null) times.push(d);
    if (this.announceAt !== null) times.push(this.announceAt);
    for (const s of this.sessions.values()) {
      if (s.rejected) continue;
      times.push(s.nextPing, s.lastHeard + this.config.deadAfterMs, s.nextHello);
      if (s.retryAt !== null) times.push(s.retryAt);
    }
    return times.length ? Math.min(...times) : null;
  }

  /** @param {number} now @returns {SyncEvent[]} */
  handleTimer(now) {
    /** @type {SyncEvent[]} */
    const events = [];
    this.serve.logPruned(); // expire() may prune tombstones
    for (const [sender, seq] of this.log.expire(now)) {
      events.push({ type: 'entry-expired', sender, seq });
      // no tombstone: the clock jumped past expiresAt + skew and it was pruned in the same call
      if (this.log.getTombstone(sender, seq)) this.serve.tellTombstone(sender, seq, true);
    }
    const c = this.config;
    if (this.announceAt !== null && now >= this.announceAt) {
      this.announceAt = null;
      const hello = this.hello();
      for (const s of this.live()) {
        if (!s.ready) continue;
        s.control.push(hello);
        s.nextHello = now + c.resyncMs;
      }
    }
    let dropped = false;
    for (const s of [...this.sessions.values()]) {
      if (s.rejected) continue;
      if (now >= s.lastHeard + c.deadAfterMs) {
        events.push({ type: 'neighbour-timed-out', neighbour: s.neighbour });
        this.drop(s.neighbour);
        dropped = true;
        continue;
      }
      if (now >= s.nextPing) {
        s.pingNonce += 1;
        s.control.push(wire.encodePing(s.pingNonce));
        s.nextPing = now + c.heartbeatMs;
      }
      if (now >= s.nextHello) {
        s.control.push(this.hello());
        s.nextHello = now + c.resyncMs;
      }
      if (s.retryAt !== null && now >= s.retryAt) {
        s.retryAt = null;
        if (s.ready) this.serve.request(s, now);
      }
    }
    if (dropped) this.rerequest(now);
    return events;
  }

  /** @param {string} neighbour @param {Uint8Array} data @param {number} now @returns {Promise<SyncEvent[]>} */
  async receive(neighbour, data, now) {
    const s = this.sessions.get(neighbour);
    if (!s) return [this.error(neighbour, 'no-session')];
    if (s.rejected) return [];
    s.lastHeard = now;
    let frame;
    try {
      frame = wire.decodeFrame(data);
    } catch (e) {
      if (e instanceof ProtocolError) return [this.error(neighbour, e.code)];
      throw e;
    }
    switch (frame.type) {
      case wire.FrameType.HELLO: return this.onHello(s, frame, now);
      case wire.FrameType.PING: s.control.push(wire.encodePong(frame.nonce)); return [];
      case wire.FrameType.PONG: return [];
      case wire.FrameType.HANDSHAKE: case wire.FrameType.PAIRWISE: case wire.FrameType.APP:
        return [{ type: 'opaque', neighbour, frameType: frame.type, body: frame.body }];
      default: break;
    }
    if (!s.ready) return [this.error(neighbour, 'no-hello')];
    if (frame.type === wire.FrameType.ENVELOPES) return this.onEnvelopes(s, frame.items, now);
    if (frame.type === wire.FrameType.WANT) { this.serve.onWant(s, frame.ranges, now); return []; }
    if (frame.type === wire.FrameType.ACK) return this.serve.onAck(s, frame.ranges);
    if (frame.type === wire.FrameType.DIGESTS) { await this.check.onDigests(s, frame.items, now); return []; }
    if (frame.type === wire.FrameType.HASH_WANT) { await this.check.onHashWant(s, frame, now); return []; }
    if (frame.type === wire.FrameType.HASHES) { await this.check.onHashes(s, frame, now); return []; }
    return this.serve.onTombstones(s, /** @type {{items: Tombstone[]}} */ (frame).items, now);
  }

  /** @param {Session} s @param {{roomId: string, have: import('./log.js').RangeMap}} frame @param {number} now @returns {Promise<SyncEvent[]>} */
  async onHello(s, frame, now) {
    if (frame.roomId !== this.roomId) {
      s.rejected = true;
      this.serve.releaseAll(s.neighbour);
      return [this.error(s.neighbour, 'wrong-room')];
    }
    /** @type {SyncEvent[]} */
    const events = [];
    s.remoteHave = new Map([...frame.have].map(([k, v]) => [k, new RangeSet(v)]));
    this.serve.onHello(s); // the newer HELLO replaces the older one
    if (!s.ready) {
      s.ready = true;
      events.push({ type: 'neighbour-ready', neighbour: s.neighbour });
      this.serve.showErased(s);
    }
    events.push(...this.serve.helloAcks(s, this.selfId));
    this.serve.request(s, now);
    await this.check.summary(s, now);
    return events;
  }

  /** @param {Session} s @param {Uint8Array[]} items @param {number} now */
  async onEnvelopes(s, items, now) {
    /** @type {SyncEvent[]} */
    const events = [];
    /** @type {string[]} */
    const refill = [];
    for (const item of items) {
      if (this.peek) {
        let sender, seq;
        try {
          [sender, seq] = this.peek(item);
        } catch (e) {
          if (!(e instanceof ProtocolError)) throw e;
          events.push(this.error(s.neighbour, e.code));
          continue;
        }
        const held = this.log.get(sender, seq);
        if (held && !sameBytes(held.data, item)) { // same key, other bytes
          events.push(...(await this.equivocation(s, held, item, now, null)));
          continue;
        }
        if (this.log.seen(sender, seq)) { // a duplicate: no need to verify it again
          s.mark(sender, seq);
          this.serve.resolve(keyOf(sender, seq));
          if (this.log.holds(sender, seq)) {
            let rs = s.acks.get(sender);
            if (!rs) s.acks.set(sender, (rs = new RangeSet()));
            rs.add(seq);
          } else {
            const tomb = this.log.getTombstone(sender, seq);
            if (tomb) s.tombs.set(keyOf(sender, seq), tomb); // a stale copy: answer with the tombstone
          }
          continue;
        }
      }
      let entry;
      try {
        entry = await this.validate(item);
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
        this.protocolErrors += 1;
        events.push({ type: 'envelope-refused', neighbour: s.neighbour, code: e.code, data: item });
        continue;
      }
      if (entry.lamport > this.clock.value + this.config.maxLamportJump) {
        events.push(this.error(s.neighbour, 'lamport-jump'));
        continue;
      }
      const { sender, seq } = entry;
      const held = this.log.get(sender, seq);
      if (held && !sameBytes(held.data, entry.data)) {
        events.push(...(await this.equivocation(s, held, item, now, entry)));
        continue;
      }
      const drained = this.serve.resolve(keyOf(sender, seq));
      if (drained) refill.push(drained);
      s.mark(sender, seq);
      if (this.log.add(entry, now)) {
        this.clock.observe(entry.lamport);
        events.push({ type: 'entry-added', entry });
        const lazy = this.eager === null || !this.eager(entry);
        if (lazy && entry.sender === s.neighbour && this.config.announceDelayMs >= 0) {
          if (this.announceAt === null) this.announceAt = now + this.config.announceDelayMs;
        } else {
          this.relay(entry, s.neighbour);
          const author = this.sessions.get(sender);
          if (author && author.ready && !author.rejected) {
            // it reached us through someone else: tell its author it is delivered here
            let rs = author.acks.get(sender);
            if (!rs) author.acks.set(sender, (rs = new RangeSet()));
            rs.add(seq);
          }
        }
      }
      if (this.log.holds(sender, seq)) {
        let rs = s.acks.get(sender);
        if (!rs) s.acks.set(sender, (rs = new RangeSet()));
        rs.add(seq);
      } else {
        const tomb = this.log.getTombstone(sender, seq);
        if (tomb) s.tombs.set(keyOf(sender, seq), tomb);
      }
    }
    for (const n of refill) { // a finished pull: ask for the next chunk right away
      const r = this.sessions.get(n);
      if (r && r.ready && this.serve.idle(n)) this.serve.request(r, now);
    }
    return events;
  }

  /** What `neighbour` makes us hold, per structure (tests, monitoring). @param {string} neighbour */
  budgetCounts(neighbour) {
    const s = this.sessions.get(neighbour);
    const c = this.serve.counts(neighbour);
    if (!s) return { foreignTombstones: c.foreignTombstones };
    let remoteHaveRanges = 0;
    for (const rs of s.remoteHave.values()) remoteHaveRanges += rs.ranges().length;
    return {
      inflight: c.inflight, pending: c.pending, attempts: c.attempts, unservable: c.unservable,
      remoteHaveRanges, control: s.control.length, envs: s.envs.size, voids: s.voids.size, tombs: s.tombs.size,
      served: c.served, foreignTombstones: c.foreignTombstones, ...this.check.counts(neighbour),
    };
  }

  /** How many keys are wanted from some neighbour and not settled yet. */
  pendingWants() {
    return this.serve.pending();
  }

  live() {
    return [...this.sessions.values()].filter((s) => !s.rejected);
  }

  /** Our HELLO as it would be sent now (nothing is queued). */
  hello() {
    return this.serve.hello(this.roomId);
  }

  /** @param {string} neighbour @param {string} code @returns {SyncEvent} */
  error(neighbour, code) {
    this.protocolErrors += 1;
    return { type: 'protocol-error', neighbour, code };
  }

  /**
   * `item` claims `held`'s key with other bytes: void the key if the sender signed both (see log.js).
   * @param {Session} s @param {LogEntry} held @param {Uint8Array} item @param {number} _now @param {LogEntry|null} other
   * @returns {Promise<SyncEvent[]>}
   */
  async equivocation(s, held, item, _now, other) {
    s.mark(held.sender, held.seq);
    this.serve.resolve(keyOf(held.sender, held.seq));
    if (other === null) {
      try {
        other = await this.validate(item);
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
        this.protocolErrors += 1; // not the sender's: junk under a known key, not equivocation
        return [{ type: 'envelope-refused', neighbour: s.neighbour, code: e.code, data: item }];
      }
    }
    const until = Math.min(Math.max(held.expiresAt, other.expiresAt) + this.log.skewMs, wire.MAX_INT);
    if (!this.log.void(held.sender, held.seq, held.data, other.data, until)) return [];
    for (const x of this.live()) {
      x.voids.set(keyOf(held.sender, held.seq), [held.data, other.data]);
      x.mark(held.sender, held.seq);
    }
    return [{ type: 'entry-voided', sender: held.sender, seq: held.seq, neighbour: s.neighbour }];
  }

  /** @param {LogEntry} entry @param {string|null} exclude */
  relay(entry, exclude) {
    for (const s of this.live()) {
      if (s.neighbour !== exclude && !s.has(entry.sender, entry.seq)) {
        s.envs.set(keyOf(entry.sender, entry.seq), entry.data);
        s.mark(entry.sender, entry.seq);
      }
    }
  }
}
