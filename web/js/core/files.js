// Attachments, the file format: sealed, content-addressed chunks, the index and the manifest (sans-IO).
// Mirrors peer/core/files.py (PROTOCOL.md "Attachments"); same encodings, same rules, same error codes.
// Owns: the "file" content item, the limits (fileLimits, FileLimitError), the file keys, the manifest,
// sealing (Sealer) and opening (openChunk) of chunks, and the index blobs. Holds no state beyond a Sealer
// in progress; persists nothing (the adapters store the blobs). The transfer protocol that moves the
// blobs is files_transfer.js.
//
// Blobs: chunk i = AES-256-GCM(HKDF(K, "ephemesh/file/v1/chunk"), u32(0)||u64(i), pt,
//   "ephemesh/file/v1/chunk"||u64(i)||u8(last)); index blobs = 2,048 chunk ids each (raw);
//   manifest = AES-256-GCM(HKDF(K, "ephemesh/file/v1/manifest"), zero nonce, JSON, "ephemesh/file/v1/manifest").
// Every blob is named by SHA-256 of its bytes.

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
const CHUNK_INFO = utf8('ephemesh/file/v1/chunk');
const MANIFEST_INFO = utf8('ephemesh/file/v1/manifest');

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

/** @typedef {{t: 'file', name: string, size: number, mime: string, manifest: Uint8Array, key: Uint8Array, fwd?: {fromName: string}|null}} FileContent */

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
export function fileContentObj(c) {
  /** @type {Record<string, unknown>} */
  const obj = { t: 'file', name: c.name, size: c.size, mime: c.mime, manifest: b64uEncode(c.manifest), key: b64uEncode(c.key) };
  if (c.fwd) obj.fwd = { from_name: c.fwd.fromName }; // only when set: other file content stays byte-identical
  return obj;
}

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
