// Replay a recorded trace (tests/vectors/traces/*.json, made by scripts/gen_traces.py with the Python
// core) against the JS room core, step by step, byte for byte. Format: peer/tracing.py. Returns the
// mismatches (empty = the two cores behaved identically).

import { b64uDecode, b64uEncode, concatBytes, utf8 } from '../core/bytes.js';
import { u64 } from '../core/codec.js';
import { deterministicRng } from '../core/crypto.js';
import { identityFromBytes, publicBundle } from '../core/identity.js';
import { deriveRoomKeys, parseInvite } from '../core/invite.js';
import { Room } from '../core/room.js';
import { fileContent, fileInfoJson } from '../core/files.js';
import { replayFilesPart } from './files-trace.js';

/** Python's json.dumps of a list of strings. @param {string[]} xs */
const pyList = (xs) => `[${xs.map((x) => JSON.stringify(x)).join(', ')}]`;

/** JSON with sorted keys, to compare documents whatever their key order. @param {unknown} v @returns {string} */
export function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = /** @type {Record<string, unknown>} */ (v);
    return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v === undefined ? null : v);
}

/** @param {import('../core/room/timeline.js').Message} m @param {string} [event] */
function messageJson(m, event = 'message') {
  /** @type {Record<string, unknown>} */
  const doc = {
    event, id: m.id, sender: m.sender, lamport: m.lamport, seq: m.seq, sent_at: m.sentAt, expires_at: m.expiresAt,
    text: m.text, reply_to: m.replyTo, edited: m.edited, reactions: Object.fromEntries(m.reactions),
    ...featureJson(m),
  };
  if (m.file) doc.file = fileInfoJson(m.file);
  return doc;
}

/** The issue-15 fields of Message.to_json(), present only when set. @param {import('../core/room/timeline.js').Message} m */
function featureJson(m) {
  /** @type {Record<string, unknown>} */
  const o = {};
  if (m.mentions?.length) { o.mentions = [...m.mentions]; o.mentioned = m.mentioned; }
  if (m.forwardedFrom !== null && m.forwardedFrom !== undefined) o.forwarded_from = m.forwardedFrom;
  if (m.location) o.location = { lat_e6: m.location[0], lon_e6: m.location[1], acc_m: m.location[2] };
  return o;
}

/** @type {WeakMap<Room, Map<string, Uint8Array[]>>} the blob ids a trace gives an author's files (keep_files) */
const TRACE_BLOBS = new WeakMap();
/** @param {Room} room */
function traceBlobs(room) {
  let table = TRACE_BLOBS.get(room);
  if (!table) {
    const t = /** @type {Map<string, Uint8Array[]>} */ (new Map());
    TRACE_BLOBS.set(room, t);
    room.setBlobIds((m) => t.get(b64uEncode(m)) ?? null);
    table = t;
  }
  return table;
}
/** A file content item of a trace step. @param {any} f */
const traceFile = (f) => fileContent(f.name, f.size, f.mime, b64uDecode(f.manifest), b64uDecode(f.key));

/** Issue-15 steps (peer/tracing.py _apply_features). @param {Room} room @param {string} what @param {any} a @param {number} now @param {(label: string) => string} pid */
async function featureStep(room, what, a, now, pid) {
  if (what === 'send_text') return messageJson(await room.sendText(a.text, now, { ttlS: a.ttl_s ?? null, replyTo: a.reply_to ?? null, mentions: (a.mentions ?? []).map(pid) }));
  if (what === 'send_location') return messageJson(await room.sendLocation({ t: 'location', latE6: a.lat_e6, lonE6: a.lon_e6, accM: a.acc_m ?? null }, now, { ttlS: a.ttl_s ?? null }));
  if (what === 'forward') {
    const source = room.message(a.source);
    if (!source) return { refused: 'gone' };
    try {
      return messageJson(await room.forward(source, a.from_name, now + (a.later_ms ?? 0), { ttlS: a.ttl_s ?? null }));
    } catch {
      return { refused: 'expired' };
    }
  }
  if (what === 'keep_files') { room.setKeepFiles(a.on); return null; }
  if (what === 'kept') {
    return room.takeKept().map((n) => (n.type === 'kept'
      ? { kept: `${n.sender}:${n.seq}`, expires_at: n.expiresAt, file: b64uEncode(n.manifest), blobs: n.ids.length }
      : { gone: n.messageId, reason: n.reason }));
  }
  if (what === 'send_file') {
    if (a.file.blobs) traceBlobs(room).set(a.file.manifest, a.file.blobs.map(b64uDecode));
    return messageJson(await room.sendFile(traceFile(a.file), now, { ttlS: a.ttl_s ?? null }));
  }
  if (what === 'forward_file') {
    const source = room.message(a.source);
    if (!source) return { refused: 'gone' };
    try {
      return messageJson(await room.forwardFile(source, traceFile(a.sealed), a.from_name, now + (a.later_ms ?? 0), { ttlS: a.ttl_s ?? null }));
    } catch (err) {
      const text = err instanceof Error ? err.message : '';
      return { refused: text.includes('expired') ? 'expired' : text.includes('fresh key') ? 'reused-key' : 'not-the-file' };
    }
  }
  if (what === 'search') return room.search(a.q).map((m) => m.id);
  if (what === 'last_seen') return Object.fromEntries(room.lastSeen(now));
  if (what === 'share_last_seen') { await room.setShareLastSeen(a.share, now); return null; }
  throw new Error(`unknown step ${what}`);
}

/** The Python `to_json()` of a JS room event. @param {any} ev */
export function eventJson(ev) {
  switch (ev.type) {
    case 'message': return messageJson(ev.message);
    case 'updated': return messageJson(ev.message, 'updated');
    case 'expired': return { event: 'expired', id: ev.id, reason: ev.reason };
    case 'joined': case 'left': return { event: ev.type, peer: ev.peer };
    case 'online': return { event: ev.online ? 'online' : 'offline', peer: ev.peer };
    case 'delivered': return { event: 'delivered', id: ev.id, peer: ev.peer };
    case 'timer': return { event: 'timer', ttl_s: ev.ttlS };
    case 'profile': return { event: 'profile', peer: ev.peer, name: ev.name };
    case 'typing': return { event: 'typing', peer: ev.peer, typing: ev.typing };
    case 'seen': case 'erased': return { event: ev.type, id: ev.id, by: ev.by, count: ev.count, of: ev.of };
    case 'remote-error': return { event: 'remote-error', peer: ev.peer, code: ev.code, count: ev.count, closed: ev.closed };
    case 'roles': return { event: 'roles', owner: ev.owner, admins: ev.admins, announce: ev.announce };
    case 'admission': return { event: 'admission', closed: ev.closed, requests: ev.requests };
    default: return { event: `unknown:${ev.type}` };
  }
}

/** The canonical persisted view (peer/tracing.py): every state as base64url of its Python bytes. @param {string} name @param {any} value */
function stateBytes(name, value) {
  if (name === 'seq' || name === 'lamport') return utf8(String(value));
  if (name === 'prekey') return value.signed;
  if (name.startsWith('prekey/old/')) return concatBytes(value.signed, u64(value.eraseAt));
  if (name === 'prekey/seen' || name.startsWith('chain/given/')) return utf8(pyList(value));
  return value;
}

/** @param {import('../core/room/persist.js').PersistBatch} b */
export function persistJson(b) {
  if (b.empty()) return null;
  return {
    envelopes: b.envelopes.map((e) => b64uEncode(e.data)),
    erased: b.erased.map(([s, q, u]) => [s, q, u]),
    message_keys: b.messageKeys.map(([s, q, x, k]) => [s, q, x, b64uEncode(k)]),
    states: Object.fromEntries([...b.states].sort(([x], [y]) => (x < y ? -1 : 1)).map(([k, v]) => [k, b64uEncode(stateBytes(k, v))])),
    deleted: [...b.deleted].sort(),
  };
}

/** What a store that applied a room's batches holds (mirrors peer/core/persist.py Snapshot.apply). */
class Stored {
  constructor() {
    /** @type {Map<string, import('../core/log.js').LogEntry>} */
    this.envelopes = new Map();
    /** @type {Map<string, [string, number, number]>} */
    this.tombstones = new Map();
    /** @type {Map<string, Uint8Array>} */
    this.messageKeys = new Map();
    /** @type {Map<string, unknown>} */
    this.states = new Map();
  }

  /** @param {import('../core/room/persist.js').PersistBatch} b */
  apply(b) {
    for (const e of b.envelopes) {
      const k = `${e.sender}:${e.seq}`;
      if (!this.tombstones.has(k) && !this.envelopes.has(k)) this.envelopes.set(k, e);
    }
    for (const [s, q, , key] of b.messageKeys) this.messageKeys.set(`${s}:${q}`, key);
    for (const [n, v] of b.states) this.states.set(n, v);
    for (const n of b.deleted) this.states.delete(n);
    for (const [s, q, u] of b.erased) {
      const k = `${s}:${q}`;
      this.envelopes.delete(k);
      this.messageKeys.delete(k);
      this.tombstones.set(k, [s, q, Math.max(u, this.tombstones.get(k)?.[2] ?? 0)]);
    }
  }

  /** @returns {import('../core/room/persist.js').Snapshot} */
  snapshot() {
    return { envelopes: [...this.envelopes.values()], tombstones: [...this.tombstones.values()], messageKeys: new Map(this.messageKeys), states: new Map(this.states) };
  }
}

/**
 * @param {any} doc a recorded trace
 * @param {{stopAtFirst?: boolean}} [o]
 * @returns {Promise<{steps: number, problems: string[]}>}
 */
export async function replayTrace(doc, o = {}) {
  if (doc.part) return replayPartTrace(doc);
  const inv = parseInvite(doc.invite);
  const keys = await deriveRoomKeys(inv.secret, inv.owner);
  const invite = { roomId: keys.roomId, memberKey: keys.memberKey, ttlS: inv.ttlS, owner: inv.owner };
  /** @type {Map<string, string>} */
  const labels = new Map(Object.entries(doc.peers).map(([label, p]) => [/** @type {any} */ (p).peer_id, label]));
  /** @type {Map<string, any>} */
  const identities = new Map();
  for (const [label, p] of Object.entries(doc.peers)) identities.set(label, await identityFromBytes(b64uDecode(/** @type {any} */ (p).identity)));
  /** @type {Map<string, Room>} */
  const rooms = new Map();
  /** @type {Map<string, Stored>} */
  const stored = new Map(Object.keys(doc.peers).map((label) => [label, new Stored()]));
  /** @type {string[]} */
  const problems = [];
  const pid = (/** @type {string} */ label) => doc.peers[label].peer_id;
  let i = 0;
  for (const st of doc.steps) {
    const { peer: label, do: what, at: now } = st;
    const a = st.args ?? {};
    /** @type {any} */
    let result = null;
    /** @type {any[]} */
    let events = [];
    if (what === 'create') {
      const spec = doc.peers[label];
      rooms.set(label, await Room.create(identities.get(label), invite, now, { keeper: spec.keeper, rng: deterministicRng(b64uDecode(spec.rng_seed)) }));
    } else if (what === 'restart') {
      const snapshot = /** @type {Stored} */ (stored.get(label)).snapshot();
      const opts = { keeper: doc.peers[label].keeper, rng: deterministicRng(b64uDecode(a.rng_seed)), snapshot };
      rooms.set(label, await Room.create(identities.get(label), invite, now, opts));
    } else {
      const room = /** @type {Room} */ (rooms.get(label));
      if (what === 'learn') room.learnBundle(pid(a.of), publicBundle(identities.get(a.of)));
      else if (what === 'link_up') await room.linkUp(pid(a.with), now);
      else if (what === 'link_down') events = await room.linkDown(pid(a.with), now);
      else if (what === 'receive') events = await room.receive(pid(a.from), b64uDecode(a.frame), now);
      else if (what === 'timer') events = await room.handleTimer(now);

      else if (what === 'set_profile') events = await room.setProfile(a.name, now);
      else if (what === 'edit') result = messageJson(await room.edit(a.target, a.body, now));
      else if (what === 'react') result = messageJson(await room.react(a.target, a.emoji, now, a.on));
      else if (what === 'unsend') events = await room.unsend(a.target, now);
      else if (what === 'set_timer') events = await room.setTimer(a.ttl_s, now);
      else if (what === 'remove') events = await room.removeMember(pid(a.member), now);
      else if (what === 'set_admin') events = await room.setAdmin(pid(a.member), a.admin, now);
      else if (what === 'readmit') events = await room.readmit(pid(a.member), now);
      else if (what === 'set_announce') events = await room.setAnnounce(a.on, now);
      else if (what === 'close_admission') events = await room.closeAdmission(now);
      else if (what === 'open_admission') events = await room.openAdmission(now);
      else if (what === 'admit') events = await room.admit(pid(a.member), now);
      else if (what === 'join_requests') result = { requests: room.joinRequests(), members: [...room.membersPart.state.members.keys()].sort() };
      else if (what === 'leave') events = await room.leave(now);
      else if (what === 'typing') await room.setTyping(a.typing, now);
      else if (what === 'seen') await room.markSeen(a.ids, now);
      else if (what === 'enable_reach') await room.enableReach(a.hints, now);
      else if (what === 'relay_signal') result = await room.relaySignal(pid(a.to), a.payload, now);
      else if (what === 'relay_state') result = { relayed: room.takeRelayed(), reachable: room.reachable(now), hints: room.reachHints() };
      else result = await featureStep(room, what, a, now, pid);
    }
    const room = /** @type {Room} */ (rooms.get(label));
    const batch = room.takePersist();
    /** @type {Stored} */ (stored.get(label)).apply(batch);
    /** @type {Record<string, any>} */
    const got = {
      events: events.map(eventJson),
      result,
      persist: persistJson(batch),
      frames: room.dataToSend().map(([to, data]) => [labels.get(to) ?? to, b64uEncode(data)]),
      dead: room.takeDeadLinks().map((d) => labels.get(d) ?? d),
      timer: room.nextTimer(),
    };
    for (const field of ['events', 'result', 'frames', 'persist', 'dead', 'timer']) {
      if (canonical(st[field] ?? null) !== canonical(got[field])) {
        problems.push(`step ${i} (${label} ${what} at ${now}): ${field} differs: want ${canonical(st[field] ?? null).slice(0, 400)} got ${canonical(got[field]).slice(0, 400)}`);
      }
    }
    if (problems.length && (o.stopAtFirst ?? true)) break;
    i += 1;
  }
  return { steps: i, problems };
}

/**
 * Replay a part trace (one part driven through its API; see peer/tracing.py run_part) against the JS part.
 * @param {any} doc @returns {Promise<{steps: number, problems: string[]}>}
 */
export async function replayPartTrace(doc) {
  if (doc.part === 'files') return replayFilesPart(doc);
  const { Timeline } = await import('../core/room/timeline.js');
  const { Parking } = await import('../core/room/parking.js');
  const { Presence } = await import('../core/room/presence.js');
  const { decodeContent } = await import('../core/content.js');
  const { keyOf } = await import('../core/log.js');
  const p = doc.params;
  const tl = new Timeline(p.self_id ?? '');
  const pk = new Parking(p.per_neighbour, p.total, p.ttl_ms);
  const pr = new Presence();
  const { AddBudget } = await import('../core/room/admission.js');
  const budget = new AddBudget(p.per_window, p.window_ms);
  const { Distribution } = await import('../core/room/distribution.js');
  const dist = new Distribution(p.per_window, p.window_ms);
  /** @type {Record<string, any>} */
  const ids = {};
  /** @type {Record<string, any>} */
  const links = {};
  /** @type {Record<string, string>} */
  const other = { X: 'Y', Y: 'X' };
  if (doc.part === 'links') {
    const { Links } = await import('../core/room/links.js');
    for (const [label, v] of Object.entries(p.identities)) ids[label] = await identityFromBytes(b64uDecode(/** @type {string} */ (v)));
    for (const label of Object.keys(ids)) links[label] = new Links(ids[label], p.room_id, deterministicRng(b64uDecode(p.rng_seeds[label])));
  }
  /** @param {any} op @param {Record<string, any>} out */
  const linksOp = async (op, out) => {
    const { ProtocolError } = await import('../core/errors.js');
    const me = links[op.at], peer = ids[other[op.at]].peerId, self = ids[op.at].peerId;
    if (op.op === 'up') await me.up(peer, op.known ? publicBundle(ids[other[op.at]]) : null);
    else if (op.op === 'deliver') {
      const frames = me.takeOutbox();
      out.frames = frames.map((/** @type {[string, Uint8Array]} */ [, f]) => b64uEncode(f));
      out.results = [];
      for (const [, f] of frames) out.results.push(await links[other[op.at]].onHandshake(self, f));
    } else if (op.op === 'handshake') out.result = await me.onHandshake(peer, b64uDecode(op.frame));
    else if (op.op === 'fault') out.result = me.fault(peer, op.code);
    else if (op.op === 'seal') {
      const sealed = await me.seal(peer, utf8(op.plaintext));
      out.result = sealed === null ? null : b64uEncode(sealed);
      if (sealed !== null) out.opened = new TextDecoder().decode(await links[other[op.at]].open(self, sealed));
    } else if (op.op === 'open') {
      try {
        out.result = new TextDecoder().decode(await me.open(peer, b64uDecode(op.frame)));
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
        out.result = e.code;
      }
    } else if (op.op === 'close') out.result = me.close(peer);
    else if (op.op === 'down') out.result = me.down(peer);
    out.state = me.state(peer);
    out.dead = me.takeDead();
  };
  /** @type {string[]} */
  const problems = [];
  let i = 0;
  for (const op of doc.ops) {
    /** @type {any[]} */
    const events = [];
    /** @type {Record<string, any>} */
    const out = {};
    if (doc.part === 'timeline') {
      if (op.op === 'apply') {
        const m = op.meta;
        out.code = tl.apply({ sender: m.sender, seq: m.seq, lamport: m.lamport, sentAt: m.sent_at, expiresAt: m.expires_at }, decodeContent(utf8(op.content)), events);
      } else if (op.op === 'erase') tl.erase(keyOf(op.sender, op.seq), op.reason, events);
      else if (op.op === 'track') tl.trackDelivery(op.id);
      else if (op.op === 'ack') tl.onAck(op.neighbour, op.sender, op.seq, events);
      else if (op.op === 'seen') tl.onSeen(op.member, op.seqs, op.of, events);
      out.events = events.map(eventJson);
      out.messages = tl.messages().map((m) => messageJson(m));
    } else if (doc.part === 'parking') {
      if (op.op === 'park') pk.park(op.neighbour, op.sender, b64uDecode(op.data), op.now);
      else if (op.op === 'take') out.taken = pk.take(op.sender).map(([n, d]) => [n, b64uEncode(d)]);
      else if (op.op === 'drop') pk.dropNeighbour(op.neighbour);
      else if (op.op === 'expire') out.dropped = pk.expire(op.now);
      else if (op.op === 'defaults') {
        const d = new Parking();
        out.defaults = [d.perNeighbour, d.total, d.ttlMs];
      }
      out.size = pk.size;
      out.deadline = pk.nextDeadline();
    } else if (doc.part === 'presence') {
      if (op.op === 'set_typing') out.sent = pr.setTyping(op.typing, op.now, new Set(op.online)).map(([q, b]) => [q, b64uEncode(b)]);
      else if (op.op === 'on_typing') pr.onTyping(op.peer, op.typing, op.now, events);
      else if (op.op === 'seen') out.sent = pr.seen(op.keys.map((/** @type {[string, number]} */ [s, q]) => ({ sender: s, seq: q, key: keyOf(s, q) }))).map(([q, b]) => [q, b64uEncode(b)]);
      else if (op.op === 'expire') pr.expire(op.now, events);
      out.events = events.map(eventJson);
      out.typing = pr.typingMembers(op.now ?? 0);
      out.deadline = pr.nextDeadline();
    } else if (doc.part === 'admission') {
      if (op.op === 'charge') out.ok = budget.charge(op.neighbour, op.now);
      else if (op.op === 'defaults') {
        const d = new AddBudget();
        out.defaults = [d.perWindow, d.windowMs];
      }
      out.tracked = budget.size;
    } else if (doc.part === 'distribution') {
      if (op.op === 'offer') out.serve = dist.offer(op.peer, op.now);
      else if (op.op === 'shown_life') dist.shownLife(op.peer);
      else if (op.op === 'enqueue') dist.enqueue(op.peer);
      else if (op.op === 'due') out.serve = dist.due(op.now);
      else if (op.op === 'drop') dist.drop(op.peer);
      else if (op.op === 'defaults') {
        const d = new Distribution();
        out.defaults = [d.perWindow, d.windowMs];
      }
      out.waiting = dist.size;
    } else if (doc.part === 'links') {
      await linksOp(op, out);
    } else {
      throw new Error(`unknown part ${doc.part}`);
    }
    if (canonical(op.out) !== canonical(out)) {
      problems.push(`op ${i} (${doc.part} ${op.op}): want ${canonical(op.out).slice(0, 400)} got ${canonical(out).slice(0, 400)}`);
      break;
    }
    i += 1;
  }
  return { steps: i, problems };
}
