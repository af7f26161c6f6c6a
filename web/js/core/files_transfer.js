// Attachments, the transfer protocol: the frame codec, transfer events and the Transfers engine (sans-IO).
// Mirrors peer/core/files_transfer.py (PROTOCOL.md "Attachments"); same rules, same error codes, same
// scheduling order (the recorded trace part_files checks both cores op by op).
// Owns: one room's transfers, both sides: the downloads under way (what each still needs, holds, and which
// neighbour lacks what), the requests in flight with their deadlines, the per-neighbour bounds (window
// requests we keep open, serveWindow requests we answer), the per-neighbour remote-error counters and the
// neighbours ignored past their budget. Persists nothing: the adapters store the verified blobs it hands
// out ('blob' events) and resume a download with them. The file format it verifies against (manifest,
// index, limits) is files.js.
//
// Frames on the "ephemesh-files" channel:
//   0x01 WANT u32 req id[32] | 0x02 BLOB u32 req id[32] bytes | 0x03 NONE ... | 0x04 BUSY ...

import { b64uDecode, b64uEncode, concatBytes } from './bytes.js';
import { sha256, u32 } from './crypto.js';
import { ProtocolError } from './errors.js';
import { FileLimitError, ID_LEN, MAX_BLOB, checkFile, fileId, fileLimits, manifestInfoJson, openManifest, parseIndex } from './files.js';

/** @typedef {import('./files.js').FileContent} FileContent */
/** @typedef {import('./files.js').FileLimits} FileLimits */
/** @typedef {import('./files.js').Manifest} Manifest */

export const WANT = 1, BLOB = 2, NONE = 3, BUSY = 4;
export const HEAD = 1 + 4 + ID_LEN;
export const MAX_FRAME = HEAD + MAX_BLOB;
export const FILES_LABEL = 'ephemesh-files';
const MAX_REQ = 2 ** 32 - 1;

// ---------------------------------------------------------------- frames

/** @param {number} kind @param {number} req @param {Uint8Array} id @param {Uint8Array} [data] */
export function encodeFrame(kind, req, id, data = new Uint8Array(0)) {
  if (![WANT, BLOB, NONE, BUSY].includes(kind) || !Number.isInteger(req) || req < 0 || req > MAX_REQ || id.length !== ID_LEN) throw new Error('bad frame');
  if ((kind !== BLOB && data.length) || data.length > MAX_BLOB) throw new Error('bad frame payload');
  return concatBytes(new Uint8Array([kind]), u32(req), id, data);
}

/** @param {Uint8Array} f @returns {[number, number, Uint8Array, Uint8Array]} */
export function decodeFrame(f) {
  if (f.length < HEAD || f.length > MAX_FRAME) throw new ProtocolError('bad-frame', 'transfer frame of a bad length');
  const kind = f[0];
  if (![WANT, BLOB, NONE, BUSY].includes(kind) || (kind !== BLOB && f.length !== HEAD)) throw new ProtocolError('bad-frame', 'unknown transfer frame');
  const req = new DataView(f.buffer, f.byteOffset, f.byteLength).getUint32(1);
  return [kind, req, f.slice(5, HEAD), f.slice(HEAD)];
}

// ---------------------------------------------------------------- the engine

/**
 * @typedef {{type: 'serve', peer: string, req: number, id: Uint8Array}
 *   | {type: 'blob', file: string, id: Uint8Array, data: Uint8Array, role: string}
 *   | {type: 'progress', file: string, have: number, total: number, bytes: number}
 *   | {type: 'manifest', file: string, manifest: Manifest}
 *   | {type: 'complete', file: string}
 *   | {type: 'failed', file: string, code: string}
 *   | {type: 'transfer-error', peer: string, code: string, count: number, closed: boolean}} TransferEvent
 */

/** Python's to_json() of a transfer event. @param {TransferEvent} ev */
export function transferEventJson(ev) {
  switch (ev.type) {
    case 'serve': return { event: 'serve', peer: ev.peer, req: ev.req, id: b64uEncode(ev.id) };
    case 'blob': return { event: 'blob', file: ev.file, id: b64uEncode(ev.id), role: ev.role, len: ev.data.length };
    case 'progress': return { event: 'progress', file: ev.file, have: ev.have, total: ev.total, bytes: ev.bytes };
    case 'manifest': return { event: 'manifest', file: ev.file, ...manifestInfoJson(ev.manifest) };
    case 'complete': return { event: 'complete', file: ev.file };
    case 'failed': return { event: 'failed', file: ev.file, code: ev.code };
    default: return { event: 'transfer-error', peer: ev.peer, code: ev.code, count: ev.count, closed: ev.closed };
  }
}

class Download {
  /** @param {FileContent} ref */
  constructor(ref) {
    this.ref = ref;
    this.file = fileId(ref);
    const m = b64uEncode(ref.manifest);
    /** @type {Manifest|null} */
    this.manifest = null;
    /** @type {Map<string, string>} */
    this.role = new Map([[m, 'manifest']]);
    /** @type {Map<string, number>} */
    this.position = new Map();
    /** @type {Map<string, null>} needed, not in flight (ordered) */
    this.pending = new Map([[m, null]]);
    /** @type {Set<string>} */
    this.held = new Set();
    /** @type {Set<string>} */
    this.chunkIds = new Set();
    /** held ∩ chunkIds, kept as both grow: O(1) per blob, not O(n) */
    this.nChunksHeld = 0;
    /** @type {Map<string, Set<string>>} */
    this.lacking = new Map();
    /** @type {number|null} */
    this.retryAt = null;
  }

  /** @param {string} id */
  hold(id) {
    if (this.held.has(id)) return;
    this.held.add(id);
    if (this.chunkIds.has(id)) this.nChunksHeld++;
  }

  /** @param {string} id */
  addChunkId(id) {
    if (this.chunkIds.has(id)) return;
    this.chunkIds.add(id);
    if (this.held.has(id)) this.nChunksHeld++;
  }

  chunksHeld() {
    return this.nChunksHeld;
  }
}

/** One room's transfers, both sides (see peer/core/files_transfer.py Transfers). */
export class Transfers {
  /** @param {FileLimits} [limits] */
  constructor(limits) {
    this.limits = limits ?? fileLimits();
    /** @type {string[]} */
    this.peers = [];
    /** @type {Map<string, number>} */
    this.serving = new Map();
    /** @type {Map<string, Download>} */
    this.downloads = new Map();
    /** @type {Map<string, {peer: string, req: number, file: string, id: string, deadline: number}>} key `${peer}/${req}` */
    this.inflight = new Map();
    /** @type {Map<string, number>} */
    this.perPeer = new Map();
    this.nextReq = 0;
    /** @type {Map<string, Map<string, number>>} */
    this.errors = new Map();
    /** @type {Set<string>} */
    this.ignored = new Set();
    /** @type {[string, Uint8Array][]} */
    this.out = [];
    this.turn = 0;
  }

  downloading() { return [...this.downloads.keys()].sort(); }

  /** @param {string} file @returns {[number, number]|null} */
  progress(file) {
    const d = this.downloads.get(file);
    return d ? [d.chunksHeld(), d.manifest ? d.manifest.chunks : 0] : null;
  }

  /** @param {string} peer */
  openRequests(peer) { return this.perPeer.get(peer) ?? 0; }

  dataToSend() {
    const out = this.out;
    this.out = [];
    return out;
  }

  nextTimer() {
    const times = [...this.inflight.values()].map((v) => v.deadline);
    for (const d of this.downloads.values()) if (d.retryAt !== null) times.push(d.retryAt);
    return times.length ? Math.min(...times) : null;
  }

  /** @param {string} peer @param {number} now @returns {TransferEvent[]} */
  linkUp(peer, now) {
    if (!this.peers.includes(peer)) this.peers.push(peer);
    for (const d of this.downloads.values()) for (const l of d.lacking.values()) l.delete(peer);
    /** @type {TransferEvent[]} */
    const events = [];
    this.schedule(now);
    return events;
  }

  /** @param {string} peer @param {number} now @returns {TransferEvent[]} */
  linkDown(peer, now) {
    this.peers = this.peers.filter((p) => p !== peer);
    this.serving.delete(peer);
    this.ignored.delete(peer);
    this.errors.delete(peer);
    for (const [k, v] of [...this.inflight]) if (v.peer === peer) this.requeue(k);
    this.schedule(now);
    return [];
  }

  /**
   * Start (or resume) fetching `ref`; `held`: ids (b64u) of its blobs already stored; `meta`: stored manifest and index blobs by id (b64u).
   * @param {FileContent} ref @param {number} now @param {Iterable<string>} [held] @param {Map<string, Uint8Array>} [meta] @returns {Promise<TransferEvent[]>}
   */
  async fetch(ref, now, held = [], meta = new Map()) {
    checkFile(this.limits, ref.size);
    /** @type {TransferEvent[]} */
    const events = [];
    const file = fileId(ref);
    if (this.downloads.has(file)) return events;
    if (this.downloads.size >= this.limits.maxDownloads) throw new FileLimitError('too-many-downloads', `${this.limits.maxDownloads} downloads are under way`);
    const d = new Download(ref);
    this.downloads.set(file, d);
    const heldSet = new Set(held);
    const mid = b64uEncode(ref.manifest);
    const mblob = meta.get(mid);
    if (mblob && b64uEncode(await sha256(mblob)) === mid) {
      await this.accept(d, mid, mblob, events, false);
      for (const indexId of [...d.position.keys()]) {
        const blob = meta.get(indexId);
        if (this.downloads.has(file) && blob && b64uEncode(await sha256(blob)) === indexId) await this.accept(d, indexId, blob, events, false);
      }
    }
    if (!this.downloads.has(file)) return events;
    for (const id of heldSet) {
      if (d.chunkIds.has(id)) {
        d.pending.delete(id);
        d.hold(id);
      }
    }
    if (d.manifest) events.push({ type: 'progress', file, have: d.chunksHeld(), total: d.manifest.chunks, bytes: this.bytes(d) });
    this.maybeDone(d, events);
    this.schedule(now);
    return events;
  }

  /** @param {string} file */
  cancel(file) {
    if (!this.downloads.delete(file)) return;
    for (const [k, v] of [...this.inflight]) {
      if (v.file === file) {
        this.inflight.delete(k);
        this.perPeer.set(v.peer, (this.perPeer.get(v.peer) ?? 0) - 1);
      }
    }
  }

  /** @param {Download} d */
  bytes(d) {
    return d.manifest ? Math.min(d.manifest.size, d.chunksHeld() * d.manifest.chunkSize) : 0;
  }

  /** @param {Download} d @param {string} id @param {Uint8Array} data @param {TransferEvent[]} events @param {boolean} store */
  async accept(d, id, data, events, store) {
    const role = d.role.get(id) ?? 'chunk';
    d.pending.delete(id);
    d.lacking.delete(id);
    const raw = b64uDecode(id);
    if (role === 'manifest') {
      let m;
      try {
        m = await openManifest(d.ref.key, data, d.ref);
        checkFile(this.limits, m.size);
      } catch (err) {
        if (!(err instanceof ProtocolError || err instanceof FileLimitError)) throw err;
        this.fail(d, err.code, events);
        return;
      }
      d.manifest = m;
      d.hold(id);
      if (store) events.push({ type: 'blob', file: d.file, id: raw, data, role });
      events.push({ type: 'manifest', file: d.file, manifest: m });
      m.index.forEach((ix, pos) => {
        const k = b64uEncode(ix);
        if (!d.role.has(k)) {
          d.role.set(k, 'index');
          d.position.set(k, pos);
          d.pending.set(k, null);
        }
      });
    } else if (role === 'index') {
      let ids;
      try {
        ids = parseIndex(data, /** @type {number} */ (d.position.get(id)), /** @type {Manifest} */ (d.manifest));
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        this.fail(d, err.code, events);
        return;
      }
      d.hold(id);
      if (store) events.push({ type: 'blob', file: d.file, id: raw, data, role });
      for (const c of ids) {
        const k = b64uEncode(c);
        if (!d.role.has(k)) {
          d.role.set(k, 'chunk');
          d.addChunkId(k);
          if (!d.held.has(k)) d.pending.set(k, null);
        }
      }
    } else {
      d.hold(id);
      events.push({ type: 'blob', file: d.file, id: raw, data, role });
      const m = /** @type {Manifest} */ (d.manifest);
      events.push({ type: 'progress', file: d.file, have: d.chunksHeld(), total: m.chunks, bytes: this.bytes(d) });
    }
  }

  /** @param {Download} d @param {string} code @param {TransferEvent[]} events */
  fail(d, code, events) {
    this.cancel(d.file);
    events.push({ type: 'failed', file: d.file, code });
  }

  /** @param {Download} d @param {TransferEvent[]} events */
  maybeDone(d, events) {
    if (d.manifest && d.pending.size === 0 && this.downloads.has(d.file) && d.position.size === d.manifest.index.length
      && d.chunksHeld() === d.manifest.chunks && ![...this.inflight.values()].some((v) => v.file === d.file)) {
      this.downloads.delete(d.file);
      events.push({ type: 'complete', file: d.file });
    }
  }

  /** @param {string} key */
  requeue(key) {
    const v = /** @type {{peer: string, req: number, file: string, id: string, deadline: number}} */ (this.inflight.get(key));
    this.inflight.delete(key);
    this.perPeer.set(v.peer, (this.perPeer.get(v.peer) ?? 0) - 1);
    const d = this.downloads.get(v.file);
    if (d && !d.held.has(v.id)) {
      d.pending.set(v.id, null);
      let l = d.lacking.get(v.id);
      if (!l) d.lacking.set(v.id, (l = new Set()));
      l.add(v.peer);
    }
  }

  /** @param {number} now */
  schedule(now) {
    const peers = this.peers.filter((p) => !this.ignored.has(p));
    if (!peers.length || !this.downloads.size) return;
    let progress = true;
    while (progress) {
      progress = false;
      for (let k = 0; k < peers.length; k++) {
        const peer = peers[(this.turn + k) % peers.length];
        if ((this.perPeer.get(peer) ?? 0) >= this.limits.window) continue;
        const pick = this.pick(peer);
        if (!pick) continue;
        const [d, id] = pick;
        d.pending.delete(id);
        const req = this.nextReq;
        this.nextReq = (this.nextReq + 1) % (MAX_REQ + 1);
        this.inflight.set(`${peer}/${req}`, { peer, req, file: d.file, id, deadline: now + this.limits.requestTimeoutMs });
        this.perPeer.set(peer, (this.perPeer.get(peer) ?? 0) + 1);
        this.out.push([peer, encodeFrame(WANT, req, b64uDecode(id))]);
        progress = true;
      }
      this.turn += 1;
    }
    for (const d of this.downloads.values()) {
      if (d.pending.size && d.retryAt === null) {
        let any = false;
        outer: for (const b of d.pending.keys()) for (const p of peers) if (!d.lacking.get(b)?.has(p)) { any = true; break outer; }
        if (!any) d.retryAt = now + this.limits.retryMs;
      }
    }
  }

  /** @param {string} peer @returns {[Download, string]|null} */
  pick(peer) {
    for (const d of this.downloads.values()) for (const id of d.pending.keys()) if (!d.lacking.get(id)?.has(peer)) return [d, id];
    return null;
  }

  /** @param {number} now @returns {TransferEvent[]} */
  handleTimer(now) {
    for (const [k, v] of [...this.inflight]) if (v.deadline <= now) this.requeue(k);
    for (const d of this.downloads.values()) {
      if (d.retryAt !== null && d.retryAt <= now) {
        d.retryAt = null;
        d.lacking.clear();
      }
    }
    this.schedule(now);
    return [];
  }

  /** @param {string} peer @param {string} code @param {TransferEvent[]} events */
  error(peer, code, events) {
    let codes = this.errors.get(peer);
    if (!codes) this.errors.set(peer, (codes = new Map()));
    codes.set(code, (codes.get(code) ?? 0) + 1);
    let total = 0;
    for (const n of codes.values()) total += n;
    const closed = total >= this.limits.errorBudget;
    if (closed) {
      this.ignored.add(peer);
      for (const [k, v] of [...this.inflight]) if (v.peer === peer) this.requeue(k);
    }
    events.push({ type: 'transfer-error', peer, code, count: /** @type {number} */ (codes.get(code)), closed });
  }

  /** @param {string} peer @param {Uint8Array} frame @param {number} now @returns {Promise<TransferEvent[]>} */
  async receive(peer, frame, now) {
    /** @type {TransferEvent[]} */
    const events = [];
    if (this.ignored.has(peer)) return events;
    let kind, req, id, data;
    try {
      [kind, req, id, data] = decodeFrame(frame);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.error(peer, err.code, events);
      return events;
    }
    if (kind === WANT) {
      if ((this.serving.get(peer) ?? 0) >= this.limits.serveWindow) {
        this.out.push([peer, encodeFrame(BUSY, req, id)]);
        this.error(peer, 'want-flood', events);
        return events;
      }
      this.serving.set(peer, (this.serving.get(peer) ?? 0) + 1);
      events.push({ type: 'serve', peer, req, id });
      return events;
    }
    const key = `${peer}/${req}`;
    const open = this.inflight.get(key);
    const idText = b64uEncode(id);
    if (!open || open.id !== idText) {
      this.error(peer, 'unsolicited', events);
      return events;
    }
    const d = this.downloads.get(open.file);
    if (kind === BLOB) {
      if (b64uEncode(await sha256(data)) !== idText) {
        this.requeue(key);
        this.error(peer, 'bad-hash', events);
      } else {
        this.inflight.delete(key);
        this.perPeer.set(peer, (this.perPeer.get(peer) ?? 0) - 1);
        if (d && !d.held.has(idText)) {
          await this.accept(d, idText, data, events, true);
          this.maybeDone(d, events);
        }
      }
    } else {
      this.requeue(key);
    }
    this.schedule(now);
    return events;
  }

  /** Answer a serve request (`data` null: we do not hold it). @param {string} peer @param {number} req @param {Uint8Array} id @param {Uint8Array|null} data */
  serve(peer, req, id, data) {
    if ((this.serving.get(peer) ?? 0) <= 0) return;
    this.serving.set(peer, (this.serving.get(peer) ?? 0) - 1);
    if (data && data.length <= MAX_BLOB) this.out.push([peer, encodeFrame(BLOB, req, id, data)]);
    else this.out.push([peer, encodeFrame(NONE, req, id)]);
  }
}
