// Attachments: sealed, content-addressed chunks, a manifest, and the chunk transfer protocol (sans-IO).
// Mirrors peer/core/files.py (PROTOCOL.md "Attachments"); same encodings, same rules, same error codes,
// same scheduling order (the recorded trace part_files checks both cores op by op).
//
// Blobs: chunk i = AES-256-GCM(HKDF(K, "ephemesh/file/v1/chunk"), u32(0)||u64(i), pt,
//   "ephemesh/file/v1/chunk"||u64(i)||u8(last)); index blobs = 2,048 chunk ids each (raw);
//   manifest = AES-256-GCM(HKDF(K, "ephemesh/file/v1/manifest"), zero nonce, JSON, "ephemesh/file/v1/manifest").
// Every blob is named by SHA-256 of its bytes. Frames on the "ephemesh-files" channel:
//   0x01 WANT u32 req id[32] | 0x02 BLOB u32 req id[32] bytes | 0x03 NONE ... | 0x04 BUSY ...

import { b64uDecode, b64uEncode, concatBytes, fromUtf8, utf8 } from './bytes.js';
import { aesGcmOpen, aesGcmSeal, hkdfSha256, sha256, u32, u64 } from './crypto.js';
import { ProtocolError } from './errors.js';

export const FILE_VERSION = 1;
export const CHUNK_SIZE = 16 * 1024; // the default (small frames keep chat fast behind a transfer)
export const MAX_CHUNK = 64 * 1024;
export const MIN_CHUNK = 1024;
export const TAG = 16;
export const MAX_BLOB = MAX_CHUNK + TAG;
export const IDS_PER_INDEX = 2048;
export const MAX_MANIFEST = 48 * 1024;
export const MAX_THUMB = 32 * 1024;
export const MAX_FILE_NAME = 255;
export const MAX_MIME = 127;
export const MAX_DURATION_MS = 24 * 3600 * 1000;
export const MAX_FILE_SIZE_HARD = 2 ** 40;
export const ID_LEN = 32;
export const WANT = 1, BLOB = 2, NONE = 3, BUSY = 4;
export const HEAD = 1 + 4 + ID_LEN;
export const MAX_FRAME = HEAD + MAX_BLOB;
export const FILES_LABEL = 'ephemesh-files';
const CHUNK_INFO = utf8('ephemesh/file/v1/chunk');
const MANIFEST_INFO = utf8('ephemesh/file/v1/manifest');
const MAX_REQ = 2 ** 32 - 1;

export class FileLimitError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(message);
    this.name = 'FileLimitError';
    this.code = code;
  }
}

const fmt = (/** @type {number} */ n) => n.toLocaleString('en-US');

/**
 * @typedef {{maxFile: number, roomQuota: number, window: number, serveWindow: number, requestTimeoutMs: number,
 *   retryMs: number, errorBudget: number, maxDownloads: number}} FileLimits
 */
/** @param {Partial<FileLimits>} [o] @returns {FileLimits} */
export function fileLimits(o = {}) {
  return {
    maxFile: 100 * 1000 * 1000, roomQuota: 1000 * 1000 * 1000, window: 16, serveWindow: 32, requestTimeoutMs: 10_000,
    retryMs: 2_000, errorBudget: 64, maxDownloads: 64, ...o,
  };
}

/** @param {FileLimits} limits @param {number} size */
export function checkFile(limits, size) {
  if (size > Math.min(limits.maxFile, MAX_FILE_SIZE_HARD)) {
    throw new FileLimitError('file-too-large', `file of ${fmt(size)} bytes is over the ${fmt(limits.maxFile)}-byte limit per file`);
  }
}

/** @param {FileLimits} limits @param {number} used @param {number} size */
export function checkQuota(limits, used, size) {
  if (used + size > limits.roomQuota) {
    throw new FileLimitError('room-quota', `this room already holds ${fmt(used)} bytes of attachments; ${fmt(size)} more would pass its ${fmt(limits.roomQuota)}-byte quota`);
  }
}

// ---------------------------------------------------------------- the content item

/** @typedef {{t: 'file', name: string, size: number, mime: string, manifest: Uint8Array, key: Uint8Array}} FileContent */

const cpLen = (/** @type {string} */ s) => [...s].length;

/** @param {unknown} v @returns {string} */
function fname(v) {
  if (typeof v !== 'string' || cpLen(v) < 1 || cpLen(v) > MAX_FILE_NAME || /[/\\\x00-\x1f\x7f]/.test(v) || v === '.' || v === '..') {
    throw new ProtocolError('bad-content', 'bad file name');
  }
  return v;
}

/** @param {unknown} v @returns {string} */
function mime(v) {
  if (typeof v !== 'string' || v.length < 1 || v.length > MAX_MIME || !/^[A-Za-z0-9/.+\-_]+$/.test(v) || v.split('/').length !== 2) {
    throw new ProtocolError('bad-content', 'bad mime type');
  }
  return v;
}

/** @param {unknown} v @param {number} [limit] @returns {number} */
function size(v, limit = MAX_FILE_SIZE_HARD) {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > limit) throw new ProtocolError('bad-content', 'bad size');
  return v;
}

/** @param {unknown} v @param {number} [len] */
function bytesOf(v, len) {
  const b = b64uDecode(v);
  if (len !== undefined && b.length !== len) throw new ProtocolError('bad-length', `expected ${len} bytes`);
  return b;
}

/** @param {string} name @param {number} sz @param {string} mt @param {Uint8Array} manifest @param {Uint8Array} key @returns {FileContent} */
export const fileContent = (name, sz, mt, manifest, key) => Object.freeze({ t: 'file', name, size: sz, mime: mt, manifest, key });

/** @param {FileContent} c */
export const fileContentObj = (c) => ({ t: 'file', name: c.name, size: c.size, mime: c.mime, manifest: b64uEncode(c.manifest), key: b64uEncode(c.key) });

/** @param {Record<string, unknown>} obj @returns {FileContent} */
export function decodeFileContent(obj) {
  let manifest, key;
  try {
    manifest = bytesOf(obj.manifest, ID_LEN);
    key = bytesOf(obj.key, 32);
  } catch {
    throw new ProtocolError('bad-content', 'bad file reference');
  }
  return fileContent(fname(obj.name), size(obj.size), mime(obj.mime), manifest, key);
}

/** The id adapters name a file by: its manifest id, base64url. @param {FileContent} c */
export const fileId = (c) => b64uEncode(c.manifest);

/** What a UI / listen --json shows (never the key). @param {FileContent} c */
export const fileInfoJson = (c) => ({ name: c.name, size: c.size, mime: c.mime, id: fileId(c) });

// ---------------------------------------------------------------- sealing and opening

/** @param {Uint8Array} k */
export const chunkKey = (k) => hkdfSha256(k, new Uint8Array(0), CHUNK_INFO, 32);
/** @param {Uint8Array} k */
export const manifestKey = (k) => hkdfSha256(k, new Uint8Array(0), MANIFEST_INFO, 32);
const chunkNonce = (/** @type {number} */ i) => concatBytes(u32(0), u64(i));
const chunkAad = (/** @type {number} */ i, /** @type {boolean} */ last) => concatBytes(CHUNK_INFO, u64(i), new Uint8Array([last ? 1 : 0]));
/** @param {number} sz @param {number} chunk */
export const chunkCount = (sz, chunk) => Math.ceil(sz / chunk);

/**
 * @typedef {{name: string, size: number, mime: string, chunkSize: number, chunks: number, index: Uint8Array[],
 *   digest: Uint8Array, thumb: Uint8Array|null, thumbMime: string|null, durationMs: number|null}} Manifest
 */

/** @param {Manifest} m */
export function manifestObj(m) {
  return {
    v: FILE_VERSION, name: m.name, size: m.size, mime: m.mime, chunk: m.chunkSize, n: m.chunks,
    index: m.index.map(b64uEncode), sha256: b64uEncode(m.digest), thumb: m.thumb === null ? null : b64uEncode(m.thumb),
    thumb_mime: m.thumbMime, duration_ms: m.durationMs,
  };
}

/** @param {Manifest} m */
export const manifestInfoJson = (m) => ({
  name: m.name, size: m.size, mime: m.mime, chunks: m.chunks, thumb_mime: m.thumbMime,
  thumb: m.thumb === null ? null : b64uEncode(m.thumb), duration_ms: m.durationMs,
});

/** @param {Uint8Array} key @param {Manifest} m */
export async function sealManifest(key, m) {
  const blob = await aesGcmSeal(await manifestKey(key), new Uint8Array(12), utf8(JSON.stringify(manifestObj(m))), MANIFEST_INFO);
  if (blob.length > MAX_MANIFEST) throw new FileLimitError('manifest-too-large', `manifest of ${fmt(blob.length)} bytes over ${fmt(MAX_MANIFEST)}`);
  return blob;
}

/** Open and validate a sealed manifest (against the message's content when given). @param {Uint8Array} key @param {Uint8Array} blob @param {FileContent|null} [ref] @returns {Promise<Manifest>} */
export async function openManifest(key, blob, ref = null) {
  if (blob.length > MAX_MANIFEST) throw new ProtocolError('bad-manifest', 'manifest too large');
  let plain;
  try {
    plain = await aesGcmOpen(await manifestKey(key), new Uint8Array(12), blob, MANIFEST_INFO);
  } catch {
    throw new ProtocolError('bad-manifest', "manifest does not open under the message's key");
  }
  /** @type {any} */
  let obj;
  try {
    obj = JSON.parse(fromUtf8(plain));
  } catch {
    throw new ProtocolError('bad-manifest', 'not UTF-8 JSON');
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj) || obj.v !== FILE_VERSION) throw new ProtocolError('bad-manifest', 'unknown manifest version');
  /** @type {Manifest} */
  let m;
  try {
    const name = fname(obj.name), mt = mime(obj.mime), sz = size(obj.size), chunk = size(obj.chunk, MAX_CHUNK), n = size(obj.n);
    if (chunk < MIN_CHUNK || n !== chunkCount(sz, chunk)) throw new ProtocolError('bad-manifest', 'chunk count does not match the size');
    if (!Array.isArray(obj.index) || obj.index.length !== Math.ceil(n / IDS_PER_INDEX)) throw new ProtocolError('bad-manifest', 'index count does not match the chunks');
    const index = obj.index.map((/** @type {unknown} */ i) => bytesOf(i, ID_LEN));
    const digest = bytesOf(obj.sha256, 32);
    const thumb = obj.thumb === null || obj.thumb === undefined ? null : bytesOf(obj.thumb);
    const tm = obj.thumb_mime ?? null;
    if (thumb !== null && (thumb.length > MAX_THUMB || tm === null)) throw new ProtocolError('bad-manifest', 'bad thumbnail');
    const dur = obj.duration_ms ?? null;
    m = {
      name, size: sz, mime: mt, chunkSize: chunk, chunks: n, index, digest, thumb,
      thumbMime: tm === null ? null : mime(tm), durationMs: dur === null ? null : size(dur, MAX_DURATION_MS),
    };
  } catch (err) {
    if (err instanceof ProtocolError && err.code === 'bad-manifest') throw err;
    throw new ProtocolError('bad-manifest', err instanceof ProtocolError ? err.detail : 'bad manifest');
  }
  if (ref && (m.name !== ref.name || m.size !== ref.size || m.mime !== ref.mime)) throw new ProtocolError('bad-manifest', 'manifest does not match the message');
  return m;
}

/** The chunk ids in index blob `position`. @param {Uint8Array} blob @param {number} position @param {Manifest} m */
export function parseIndex(blob, position, m) {
  const want = Math.min(IDS_PER_INDEX, m.chunks - position * IDS_PER_INDEX);
  if (want <= 0 || blob.length !== want * ID_LEN) throw new ProtocolError('bad-index', 'index blob of the wrong length');
  const out = [];
  for (let i = 0; i < blob.length; i += ID_LEN) out.push(blob.slice(i, i + ID_LEN));
  return out;
}

/** Seal a file chunk by chunk, then finish with the plaintext's SHA-256. */
export class Sealer {
  /** @param {Uint8Array} key @param {number} sz @param {number} [chunkSize] */
  constructor(key, sz, chunkSize = CHUNK_SIZE) {
    if (key.length !== 32 || chunkSize < MIN_CHUNK || chunkSize > MAX_CHUNK) throw new Error('bad file key or chunk size');
    this.key = key; this.size = sz; this.chunkSize = chunkSize; this.chunks = chunkCount(sz, chunkSize);
    /** @type {Uint8Array[]} */
    this.ids = [];
    /** @type {Promise<Uint8Array>|null} */
    this.ck = null;
  }

  /** @param {number} i @param {Uint8Array} plain @returns {Promise<[Uint8Array, Uint8Array]>} [id, blob] */
  async seal(i, plain) {
    const last = i === this.chunks - 1;
    const expected = last ? this.size - i * this.chunkSize : this.chunkSize;
    if (i !== this.ids.length || plain.length !== expected) throw new Error('chunks must be sealed in order, each chunk_size bytes but the last');
    this.ck ??= chunkKey(this.key);
    const blob = await aesGcmSeal(await this.ck, chunkNonce(i), plain, chunkAad(i, last));
    const id = await sha256(blob);
    this.ids.push(id);
    return [id, blob];
  }

  /**
   * @param {string} name @param {string} mt @param {Uint8Array} digest
   * @param {{thumb?: Uint8Array|null, thumbMime?: string|null, durationMs?: number|null}} [o]
   */
  async finish(name, mt, digest, o = {}) {
    if (this.ids.length !== this.chunks) throw new Error('not every chunk was sealed');
    const thumb = o.thumb ?? null;
    if (thumb !== null && thumb.length > MAX_THUMB) throw new FileLimitError('thumb-too-large', `thumbnail of ${fmt(thumb.length)} bytes over ${fmt(MAX_THUMB)}`);
    const indexBlobs = [];
    for (let i = 0; i < this.ids.length; i += IDS_PER_INDEX) indexBlobs.push(concatBytes(...this.ids.slice(i, i + IDS_PER_INDEX)));
    const index = [];
    for (const b of indexBlobs) index.push(await sha256(b));
    /** @type {Manifest} */
    const manifest = {
      name, size: this.size, mime: mt, chunkSize: this.chunkSize, chunks: this.chunks, index, digest, thumb,
      thumbMime: thumb !== null ? o.thumbMime ?? null : null, durationMs: o.durationMs ?? null,
    };
    const blob = await sealManifest(this.key, manifest);
    const content = fileContent(fname(name), this.size, mime(mt), await sha256(blob), this.key);
    await openManifest(this.key, blob, content);
    return { content, manifest, manifestBlob: blob, indexBlobs, chunkIds: this.ids };
  }
}

/** Decrypt chunk i (AEAD-verified, bound to its position and the end). @param {Uint8Array} key @param {Manifest} m @param {number} i @param {Uint8Array} blob */
export async function openChunk(key, m, i, blob) {
  const last = i === m.chunks - 1;
  let plain;
  try {
    plain = await aesGcmOpen(await chunkKey(key), chunkNonce(i), blob, chunkAad(i, last));
  } catch {
    throw new ProtocolError('bad-chunk', 'chunk does not open');
  }
  const expected = last ? m.size - i * m.chunkSize : m.chunkSize;
  if (plain.length !== expected) throw new ProtocolError('bad-chunk', 'chunk of the wrong length');
  return plain;
}

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
    /** @type {Map<string, Set<string>>} */
    this.lacking = new Map();
    /** @type {number|null} */
    this.retryAt = null;
  }

  chunksHeld() {
    let n = 0;
    for (const id of this.held) if (this.chunkIds.has(id)) n++;
    return n;
  }
}

/** One room's transfers, both sides (see peer/core/files.py Transfers). */
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
        d.held.add(id);
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
      d.held.add(id);
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
      d.held.add(id);
      if (store) events.push({ type: 'blob', file: d.file, id: raw, data, role });
      for (const c of ids) {
        const k = b64uEncode(c);
        if (!d.role.has(k)) {
          d.role.set(k, 'chunk');
          d.chunkIds.add(k);
          if (!d.held.has(k)) d.pending.set(k, null);
        }
      }
    } else {
      d.held.add(id);
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
