// Relay (a part of the room): signaling relayed through linked members, and gossip of reachability.
// Mirrors peer/core/room/relay.py (its header states the wire and the rules; PROTOCOL.md "Signaling
// through the mesh"). RELAY 0x20 and REACH 0x21 are APP frame bodies on READY links.

import { concatBytes, fromHex, toHex, utf8 } from '../bytes.js';
import { ed25519VerifyOrThrow, sha256 } from '../crypto.js';
import { ProtocolError } from '../errors.js';
import { sign } from '../identity.js';

export const RELAY_TAG = 0x20;
export const REACH_TAG = 0x21;
export const LABEL_RELAY = concatBytes(utf8('ephemesh-v1 relay-id'), new Uint8Array([0]));
export const LABEL_REACH = concatBytes(utf8('ephemesh-v1 reach'), new Uint8Array([0]));
export const MAX_HOPS = 4;
export const DEFAULT_HOPS = 3;
export const MAX_RELAY_PAYLOAD = 32_768;
export const FANOUT = 4;
export const ROUTE_WIDTH = 2;
export const SEEN_TTL_MS = 240_000;
export const MAX_SEEN = 4096;
export const MAX_INBOX = 64;
export const MAX_LINKS = 64;
export const MAX_HINTS = 8;
export const MAX_TTL_S = 600;
export const TTL_S = 90;
export const REFRESH_MS = 30_000;
export const MIN_INTERVAL_MS = 2_000;
export const MAX_SKEW_MS = 120_000;
export const MAX_ANNOUNCERS = 256;
export const MAX_HANDOVER = 64;
export const MAX_PENDING = 64;
export const MAX_SERVERS = 16;
export const SERVERS_STATE = 'reach/servers';
export const RELAY_BURST = 32, RELAY_RATE = 8;
export const REACH_BURST = 96, REACH_RATE = 4;
const KIND = /^[a-z0-9-]{1,16}$/;
const URL_RE = /^[\x21-\x7e]{1,256}$/;
const MAX_INT = 2 ** 53 - 1;

/**
 * @typedef {[string, string]} Hint (kind, url)
 * @typedef {{hops: number, id: Uint8Array, sender: string, to: string, payload: string}} RelayFrame
 * @typedef {{announcer: string, ts: number, ttlS: number, links: string[], hints: Hint[], sig: Uint8Array, raw: Uint8Array}} Reach
 * @typedef {[string, Uint8Array][]} Out (neighbour, APP body)
 * @typedef {import('../identity.js').Identity} Identity
 * @typedef {import('../identity.js').PublicBundle} PublicBundle
 */

const isAscii = (/** @type {Uint8Array} */ b) => b.every((x) => x < 0x80);
const ascii = (/** @type {Uint8Array} */ b) => String.fromCharCode(...b);
const cmp = (/** @type {string} */ x, /** @type {string} */ y) => (x < y ? -1 : x > y ? 1 : 0);
const expires = (/** @type {Reach} */ r) => r.ts + r.ttlS * 1000;

/** @param {string} sender @param {string} to @param {string} payload */
export async function relayId(sender, to, payload) {
  return (await sha256(concatBytes(LABEL_RELAY, fromHex(sender), fromHex(to), utf8(payload)))).slice(0, 16);
}

/** @param {number} hops @param {string} sender @param {string} to @param {string} payload */
export async function encodeRelay(hops, sender, to, payload) {
  if (!(hops >= 1 && hops <= MAX_HOPS) || !/^[\x00-\x7f]*$/.test(payload) || !(payload.length > 0 && payload.length <= MAX_RELAY_PAYLOAD)) {
    throw new Error('bad relay frame');
  }
  return concatBytes(new Uint8Array([RELAY_TAG, hops]), await relayId(sender, to, payload), fromHex(sender), fromHex(to), utf8(payload));
}

/** Parse a RELAY body; ProtocolError('bad-relay') on anything malformed. @param {Uint8Array} body @returns {Promise<RelayFrame>} */
export async function decodeRelay(body) {
  if (body.length < 2 + 48 + 1 || body[0] !== RELAY_TAG || body.length > 2 + 48 + MAX_RELAY_PAYLOAD) {
    throw new ProtocolError('bad-relay', 'bad relay frame length or tag');
  }
  const hops = body[1];
  if (!(hops >= 1 && hops <= MAX_HOPS)) throw new ProtocolError('bad-relay', 'hop limit out of range');
  const raw = body.subarray(50);
  if (!isAscii(raw)) throw new ProtocolError('bad-relay', 'payload is not ASCII');
  const sender = toHex(body.subarray(18, 34)), to = toHex(body.subarray(34, 50));
  let payload = '';
  for (let i = 0; i < raw.length; i += 8192) payload += ascii(raw.subarray(i, i + 8192));
  if (sender === to) throw new ProtocolError('bad-relay', 'relay to oneself');
  const id = await relayId(sender, to, payload);
  if (!id.every((x, i) => x === body[2 + i])) throw new ProtocolError('bad-relay', 'relay id is not the hash of the frame');
  return { hops, id, sender, to, payload };
}

/** @param {string} roomId @param {Uint8Array} body */
export const reachSigned = (roomId, body) => concatBytes(LABEL_REACH, fromHex(roomId), body.subarray(1, body.length - 64));

/**
 * @param {Identity} identity @param {string} roomId @param {number} ts @param {number} ttlS
 * @param {Iterable<string>} links @param {Hint[]} hints
 */
export async function encodeReach(identity, roomId, ts, ttlS, links, hints) {
  const me = identity.peerId;
  const ids = [...new Set(links)].filter((p) => p !== me).sort(cmp).slice(0, MAX_LINKS);
  const hs = hints.slice(0, MAX_HINTS);
  if (!(Number.isInteger(ts) && ts >= 0 && ts <= MAX_INT) || !(ttlS >= 1 && ttlS <= MAX_TTL_S)) throw new Error('bad reach ts/ttl');
  const head = new Uint8Array(11);
  const dv = new DataView(head.buffer);
  dv.setUint32(0, Math.floor(ts / 2 ** 32));
  dv.setUint32(4, ts % 2 ** 32);
  dv.setUint16(8, ttlS);
  head[10] = ids.length;
  /** @type {Uint8Array[]} */
  const out = [new Uint8Array([REACH_TAG]), fromHex(me), head, ...ids.map(fromHex), new Uint8Array([hs.length])];
  for (const [kind, url] of hs) {
    if (!KIND.test(kind) || !URL_RE.test(url)) throw new Error('bad reach hint');
    out.push(new Uint8Array([kind.length]), utf8(kind), new Uint8Array([url.length >> 8, url.length & 0xff]), utf8(url));
  }
  const unsigned = concatBytes(...out, new Uint8Array(64));
  const sig = await sign(identity, reachSigned(roomId, unsigned));
  return concatBytes(unsigned.subarray(0, unsigned.length - 64), sig);
}

/** Parse a REACH body (signature checked by the caller); ProtocolError('bad-reach'). @param {Uint8Array} body @returns {Reach} */
export function decodeReach(body) {
  const bad = (/** @type {string} */ why) => new ProtocolError('bad-reach', why);
  if (body.length < 1 + 16 + 11 + 1 + 64 || body[0] !== REACH_TAG) throw bad('bad reach frame length or tag');
  const end = body.length - 64;
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const announcer = toHex(body.subarray(1, 17));
  const hi = dv.getUint32(17), lo = dv.getUint32(21);
  const ttlS = dv.getUint16(25), n = body[27];
  if (hi > 0x1fffff || !(ttlS >= 1 && ttlS <= MAX_TTL_S) || n > MAX_LINKS) throw bad('ts, ttl or link count out of range');
  const ts = hi * 2 ** 32 + lo;
  let pos = 28;
  if (pos + 16 * n + 1 > end) throw bad('truncated');
  /** @type {string[]} */
  const links = [];
  for (let i = 0; i < n; i++) links.push(toHex(body.subarray(pos + 16 * i, pos + 16 * i + 16)));
  if (links.some((p, i) => i > 0 && links[i - 1] >= p) || links.includes(announcer)) throw bad('links not strictly increasing or naming the announcer');
  pos += 16 * n;
  const h = body[pos];
  pos += 1;
  if (h > MAX_HINTS) throw bad('too many hints');
  /** @type {Hint[]} */
  const hints = [];
  for (let i = 0; i < h; i++) {
    if (pos + 1 > end) throw bad('truncated');
    const klen = body[pos];
    const kindB = body.subarray(pos + 1, Math.min(pos + 1 + klen, end));
    pos += 1 + klen;
    if (pos + 2 > end) throw bad('truncated');
    const ulen = (body[pos] << 8) | body[pos + 1];
    const urlB = body.subarray(pos + 2, Math.min(pos + 2 + ulen, end));
    pos += 2 + ulen;
    if (pos > end || kindB.length !== klen || urlB.length !== ulen) throw bad('truncated');
    if (!isAscii(kindB) || !isAscii(urlB)) throw bad('hint not ASCII');
    const kind = ascii(kindB), url = ascii(urlB);
    if (!KIND.test(kind) || !URL_RE.test(url)) throw bad('bad hint');
    hints.push([kind, url]);
  }
  if (pos !== end) throw bad('trailing bytes');
  return { announcer, ts, ttlS, links, hints, sig: body.slice(end), raw: body };
}

/** A token bucket in milli-tokens (integers, like the Python core). */
class Bucket {
  /** @param {number} burst @param {number} rate @param {number} now */
  constructor(burst, rate, now) {
    this.burst = burst * 1000;
    this.rate = rate;
    this.tokens = burst * 1000;
    this.at = now;
  }

  /** @param {number} now */
  take(now) {
    if (now > this.at) {
      this.tokens = Math.min(this.burst, this.tokens + (now - this.at) * this.rate);
      this.at = now;
    }
    if (this.tokens < 1000) return false;
    this.tokens -= 1000;
    return true;
  }
}

export class Relay {
  /** @param {Identity} identity @param {string} roomId */
  constructor(identity, roomId) {
    this.identity = identity;
    this.me = identity.peerId;
    this.roomId = roomId;
    /** @type {Map<string, number>} relay id (hex) -> forget at */
    this.seen = new Map();
    /** @type {[string, string][]} */
    this.inbox = [];
    /** @type {Map<string, Bucket>} */
    this.relayBuckets = new Map();
    /** @type {Map<string, Bucket>} */
    this.reachBuckets = new Map();
    /** @type {Map<string, Reach>} announcer -> newest fresh announcement */
    this.table = new Map();
    /** @type {Hint[]} */
    this.hints = [];
    this.enabled = false;
    /** @type {Set<string>} */
    this.linked = new Set();
    /** @type {number|null} */
    this.announcedAt = null;
    /** @type {number|null} */
    this.due = null;
    this.lastTs = -1;
    /** @type {string[]} */
    this.servers = [];
    /** @type {Map<string, [string, Uint8Array]>} announcer -> (from, body), held until it is known */
    this.pending = new Map();
    this.dropped = 0;
    this.changes = 0; // bumped whenever the announcements held change (adapters recompute reachable)
  }

  /** @param {Map<string, unknown>} states */
  load(states) {
    const raw = states.get(SERVERS_STATE);
    if (raw instanceof Uint8Array && raw.length) {
      const urls = JSON.parse(ascii(raw));
      this.servers = (Array.isArray(urls) ? urls : []).filter((u) => typeof u === 'string' && URL_RE.test(u)).slice(0, MAX_SERVERS);
    }
  }

  reachHints() {
    return [...this.servers];
  }

  /** @param {Set<string>} online @param {(p: string) => boolean} isMember @param {number} now */
  reachable(online, isMember, now) {
    /** @type {Set<string>} */
    const named = new Set();
    for (const r of this.table.values()) {
      if (expires(r) > now) {
        named.add(r.announcer);
        for (const p of r.links) named.add(p);
      }
    }
    return [...named].filter((p) => p !== this.me && !online.has(p) && isMember(p)).sort(cmp);
  }

  takeRelayed() {
    const out = this.inbox;
    this.inbox = [];
    return out;
  }

  /** @returns {number|null} */
  nextDeadline() {
    const times = this.due !== null ? [this.due] : [];
    for (const r of this.table.values()) times.push(expires(r));
    return times.length ? Math.min(...times) : null;
  }

  /** @param {string} announcer */
  takePending(announcer) {
    const held = this.pending.get(announcer) ?? null;
    this.pending.delete(announcer);
    return held;
  }

  /** @param {string} peer */
  dropNeighbour(peer) {
    this.relayBuckets.delete(peer);
    this.reachBuckets.delete(peer);
  }

  /** @param {string} peer */
  forget(peer) {
    if (this.table.delete(peer)) this.changes += 1;
  }

  // ---------------------------------------------------------------- relay

  /** @param {string} to @param {Set<string>} online @param {Set<string>} exclude @param {number} now */
  routes(to, online, exclude, now) {
    if (online.has(to)) return [to];
    const candidates = [...online].filter((n) => !exclude.has(n)).sort(cmp);
    const via = candidates.filter((n) => {
      const r = this.table.get(n);
      return r !== undefined && expires(r) > now && r.links.includes(to);
    });
    return via.length ? via.slice(0, ROUTE_WIDTH) : candidates.slice(0, FANOUT);
  }

  /** @param {Uint8Array} rid @param {number} now */
  remember(rid, now) {
    for (const [k, until] of this.seen) {
      if (until > now) break;
      this.seen.delete(k);
    }
    const key = toHex(rid);
    if (this.seen.has(key)) return false;
    while (this.seen.size >= MAX_SEEN) this.seen.delete(/** @type {string} */ (this.seen.keys().next().value));
    this.seen.set(key, now + SEEN_TTL_MS);
    return true;
  }

  /** @param {string} to @param {string} payload @param {Set<string>} online @param {number} now @returns {Promise<Out>} */
  async originate(to, payload, online, now) {
    const body = await encodeRelay(DEFAULT_HOPS, this.me, to, payload);
    this.remember(body.subarray(2, 18), now);
    return this.routes(to, online, new Set([to]), now).map((n) => [n, body]);
  }

  /**
   * A RELAY body from a linked neighbour: [frames to forward, unblamed refusal code or null]; throws
   * ProtocolError for what the neighbour is blamed for.
   * @param {string} neighbour @param {Uint8Array} body @param {Set<string>} online @param {(p: string) => boolean} isRemoved @param {number} now
   * @returns {Promise<[Out, string|null]>}
   */
  async onRelay(neighbour, body, online, isRemoved, now) {
    const frame = await decodeRelay(body);
    let bucket = this.relayBuckets.get(neighbour);
    if (!bucket) this.relayBuckets.set(neighbour, (bucket = new Bucket(RELAY_BURST, RELAY_RATE, now)));
    if (!bucket.take(now)) return [[], 'relay-budget'];
    const fresh = this.remember(frame.id, now);
    if (frame.sender === this.me) {
      if (fresh) throw new ProtocolError('bad-relay', 'a payload from us that we never sent');
      this.dropped += 1;
      return [[], null];
    }
    if (!fresh) {
      this.dropped += 1;
      return [[], null];
    }
    if (isRemoved(frame.sender) || isRemoved(frame.to)) return [[], 'relay-refused'];
    if (frame.to === this.me) {
      if (this.inbox.length >= MAX_INBOX) this.inbox.shift();
      this.inbox.push([frame.sender, frame.payload]);
      return [[], null];
    }
    if (frame.hops <= 1) {
      this.dropped += 1;
      return [[], null];
    }
    const fwd = await encodeRelay(frame.hops - 1, frame.sender, frame.to, frame.payload);
    return [this.routes(frame.to, online, new Set([neighbour, frame.sender]), now).map((n) => [n, fwd]), null];
  }

  // ---------------------------------------------------------------- reach

  /** @param {Hint[]} hints @param {number} now */
  enable(hints, now) {
    const hs = hints.slice(0, MAX_HINTS);
    for (const [kind, url] of hs) if (!KIND.test(kind) || !URL_RE.test(url)) throw new Error('bad reach hint');
    this.hints = hs;
    this.enabled = true;
    this.due = now;
  }

  /** @param {Set<string>} online @param {number} now @returns {Out} */
  onLinks(online, now) {
    const added = [...online].filter((p) => !this.linked.has(p));
    const changed = added.length > 0 || online.size !== this.linked.size;
    this.linked = new Set(online);
    /** @type {Out} */
    let out = [];
    if (!this.enabled) return out;
    if (added.length) {
      const fresh = [...this.table.values()].filter((r) => expires(r) > now).sort((x, y) => y.ts - x.ts || cmp(x.announcer, y.announcer)).slice(0, MAX_HANDOVER);
      out = added.sort(cmp).flatMap((n) => fresh.filter((r) => r.announcer !== n).map((r) => /** @type {[string, Uint8Array]} */ ([n, r.raw])));
    }
    if (changed) {
      const earliest = this.announcedAt === null ? now : this.announcedAt + MIN_INTERVAL_MS;
      const at = Math.max(now, earliest);
      this.due = this.due === null ? at : Math.min(this.due, at);
    }
    return out;
  }

  /** @param {number} now @returns {Promise<Out>} */
  async tick(now) {
    for (const [a, r] of [...this.table]) {
      if (expires(r) <= now) {
        this.table.delete(a);
        this.changes += 1;
      }
    }
    if (!this.enabled || this.due === null || now < this.due) return [];
    const ts = Math.max(now, this.lastTs + 1);
    this.lastTs = ts;
    this.announcedAt = now;
    this.due = now + REFRESH_MS;
    if (!this.linked.size) return [];
    const body = await encodeReach(this.identity, this.roomId, ts, TTL_S, this.linked, this.hints);
    return [...this.linked].sort(cmp).map((n) => [n, body]);
  }

  /**
   * A REACH body from a linked neighbour: [frames to forward, unblamed refusal code or null]; throws
   * ProtocolError ('bad-reach', 'bad-signature') for what the neighbour is blamed for.
   * @param {string} neighbour @param {Uint8Array} body @param {Set<string>} online
   * @param {(p: string) => PublicBundle|null} memberBundle @param {number} now @param {import('./persist.js').PersistBatch} persist
   * @returns {Promise<[Out, string|null]>}
   */
  async onReach(neighbour, body, online, memberBundle, now, persist) {
    const reach = decodeReach(body);
    let bucket = this.reachBuckets.get(neighbour);
    if (!bucket) this.reachBuckets.set(neighbour, (bucket = new Bucket(REACH_BURST, REACH_RATE, now)));
    if (!bucket.take(now)) return [[], 'reach-budget'];
    if (reach.announcer === this.me) return [[], null];
    const held = this.table.get(reach.announcer);
    if (held !== undefined && reach.ts <= held.ts) return [[], null];
    if (Math.abs(now - reach.ts) > MAX_SKEW_MS) return [[], 'reach-stale'];
    const bundle = memberBundle(reach.announcer);
    if (bundle === null) { // its ADD may be on its way (a newcomer): held until it is known
      this.pending.delete(reach.announcer);
      this.pending.set(reach.announcer, [neighbour, body]);
      while (this.pending.size > MAX_PENDING) this.pending.delete(/** @type {string} */ (this.pending.keys().next().value));
      return [[], null];
    }
    await ed25519VerifyOrThrow(bundle.ed25519, reachSigned(this.roomId, body), reach.sig);
    if (held === undefined && this.table.size >= MAX_ANNOUNCERS) {
      const oldest = [...this.table.values()].sort((x, y) => x.ts - y.ts || cmp(x.announcer, y.announcer))[0];
      this.table.delete(oldest.announcer);
    }
    this.table.set(reach.announcer, reach);
    this.changes += 1;
    this.learnServers(reach, persist);
    const skip = new Set([neighbour, reach.announcer, ...reach.links]); // the announcer's own links got it first-hand
    return [[...online].filter((n) => !skip.has(n)).sort(cmp).map((n) => [n, body]), null];
  }

  /** @param {Reach} reach @param {import('./persist.js').PersistBatch} persist */
  learnServers(reach, persist) {
    const urls = reach.hints.filter(([kind]) => kind === 'server').map(([, url]) => url);
    if (!urls.length) return;
    const merged = [...new Set([...urls, ...this.servers])].slice(0, MAX_SERVERS);
    if (merged.length !== this.servers.length || merged.some((u, i) => u !== this.servers[i])) {
      this.servers = merged;
      persist.put(SERVERS_STATE, utf8(JSON.stringify(merged)));
    }
  }
}
