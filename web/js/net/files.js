// Attachments in the browser: the pump around core/files_transfer.js Transfers (mirrors peer/attachments.py).
//
// Rules:
// - One FileTransfers per App (room). Blobs live in memory only (ciphertext, by id); closing the tab
//   forgets them (v1; IndexedDB would give no control over erasure anyway: keys are what we erase).
// - Each link's "ephemesh-files" channel carries the transfer frames. Pacing: a frame is sent only
//   when the channel's bufferedAmount is 0 (bufferedamountlow at threshold 0), so at most one frame
//   waits in the browser's SCTP queue and chat frames are never stuck behind a file.
// - A file message's attachment is fetched at once when it is at most AUTO_FETCH bytes (so images show
//   their thumbnail and voice notes play without a click), else when the user asks (download button).
// - When its message expires or is unsent, the file's blobs, its object URL and its state go.

import { b64uDecode, b64uEncode } from '../core/bytes.js';
import { randomBytes, sha256 } from '../core/crypto.js';
import { CHUNK_SIZE, IDS_PER_INDEX, Sealer, checkFile, checkQuota, fileId, fileLimits, openChunk, openManifest, parseIndex } from '../core/files.js';
import { Transfers } from '../core/files_transfer.js';

export const AUTO_FETCH = 25 * 1000 * 1000;

/**
 * @typedef {{fileId: string, messageId: string, name: string, size: number, mime: string, have: number, total: number,
 *   bytes: number, done: boolean, failed: string|null, thumbUrl: string|null, url: string|null, durationMs: number|null}} FileStatus
 */

export class FileTransfers {
  /**
   * @param {{now?: () => number, onStatus?: (s: FileStatus) => void, limits?: import('../core/files.js').FileLimits}} [opts]
   */
  constructor(opts = {}) {
    this.now = opts.now ?? Date.now;
    this.onStatus = opts.onStatus ?? (() => {});
    this.limits = opts.limits ?? fileLimits();
    this.engine = new Transfers(this.limits);
    /** @type {Map<string, {file: string, data: Uint8Array}>} blob id (b64u) -> blob */
    this.blobs = new Map();
    /** @type {Map<string, {message: any, status: FileStatus}>} */
    this.files = new Map();
    /** @type {Map<string, RTCDataChannel>} */
    this.channels = new Map();
    /** @type {Map<string, Uint8Array[]>} */
    this.queues = new Map();
    /** @type {Map<string, {req: number, id: Uint8Array}[]>} serve requests not answered yet, per neighbour */
    this.serving = new Map();
    /** @type {ReturnType<typeof setTimeout>|null} */
    this.timer = null;
    /** @type {Promise<unknown>} */
    this.pumping = Promise.resolve();
    /** @type {Map<string, Array<(ok: boolean) => void>>} */
    this.waiters = new Map();
    this.served = 0;
    this.closed = false;
    /** fetch others' files up to this size as they arrive (larger ones wait for the download button) */
    this.autoFetch = AUTO_FETCH;
  }

  // ---------------------------------------------------------------- links

  /** A link's files channel (offered or accepted). @param {string} peer @param {RTCDataChannel} ch */
  attach(peer, ch) {
    ch.binaryType = 'arraybuffer';
    ch.bufferedAmountLowThreshold = 0;
    const up = () => {
      this.channels.set(peer, ch);
      this.queues.set(peer, []);
      this.serving.set(peer, []);
      this.run(() => this.engine.linkUp(peer, this.now()));
    };
    if (ch.readyState === 'open') up();
    else ch.addEventListener('open', up);
    ch.addEventListener('message', (ev) => {
      if (!(ev.data instanceof ArrayBuffer)) return;
      const frame = new Uint8Array(ev.data);
      this.run(() => this.engine.receive(peer, frame, this.now()));
    });
    ch.addEventListener('bufferedamountlow', () => this.drain(peer));
    ch.addEventListener('close', () => {
      if (this.channels.get(peer) !== ch) return;
      this.channels.delete(peer);
      this.queues.delete(peer);
      this.serving.delete(peer);
      this.run(() => this.engine.linkDown(peer, this.now()));
    });
  }

  /**
   * Send what fits: queued frames first; a serve request is answered (its blob looked up) only when
   * nothing is queued and the channel is idle, so it stays open in the engine (BUSY past serveWindow)
   * and a WANT flood holds at most one blob per neighbour.
   * @param {string} peer
   */
  drain(peer) {
    const ch = this.channels.get(peer), q = this.queues.get(peer), pending = this.serving.get(peer);
    if (!ch || !q || !pending) return;
    while (ch.readyState === 'open' && ch.bufferedAmount === 0) {
      if (q.length) ch.send(/** @type {Uint8Array<ArrayBuffer>} */ (q.shift()));
      else if (pending.length) {
        const r = /** @type {{req: number, id: Uint8Array}} */ (pending.shift());
        const blob = this.blobs.get(b64uEncode(r.id));
        if (blob) this.served++;
        this.engine.serve(peer, r.req, r.id, blob ? blob.data : null);
        this.route();
      } else break;
    }
  }

  route() {
    for (const [peer, frame] of this.engine.dataToSend()) this.queues.get(peer)?.push(frame);
  }

  // ---------------------------------------------------------------- the pump

  /** Run one engine call, then handle its events and transmit — one at a time, in order. @param {() => any} call */
  run(call) {
    const p = this.pumping.then(async () => {
      if (this.closed) return;
      const events = await call();
      await this.handle(events ?? []);
    });
    this.pumping = p.catch((err) => console.warn('files:', err));
    return p;
  }

  /** @param {import('../core/files_transfer.js').TransferEvent[]} events */
  async handle(events) {
    for (const ev of events) {
      if (ev.type === 'serve') {
        const pending = this.serving.get(ev.peer);
        if (pending) pending.push({ req: ev.req, id: ev.id });
        else this.engine.serve(ev.peer, ev.req, ev.id, null); // its link is going down
      } else if (ev.type === 'blob') {
        if (this.files.has(ev.file)) this.blobs.set(b64uEncode(ev.id), { file: ev.file, data: ev.data });
      } else if (ev.type === 'manifest') {
        const f = this.files.get(ev.file);
        if (f) {
          const m = ev.manifest;
          if (m.thumb && m.thumbMime && !f.status.thumbUrl) f.status.thumbUrl = URL.createObjectURL(new Blob([/** @type {Uint8Array<ArrayBuffer>} */ (m.thumb)], { type: m.thumbMime }));
          f.status.durationMs = m.durationMs;
          f.status.total = m.chunks;
          this.onStatus({ ...f.status });
        }
      } else if (ev.type === 'progress') {
        const f = this.files.get(ev.file);
        if (f) {
          Object.assign(f.status, { have: ev.have, total: ev.total, bytes: ev.bytes });
          this.onStatus({ ...f.status });
        }
      } else if (ev.type === 'complete') {
        const f = this.files.get(ev.file);
        if (f) {
          try {
            const blob = await this.assemble(ev.file);
            f.status.url = URL.createObjectURL(blob);
            f.status.done = true;
            f.status.bytes = f.status.size;
          } catch (err) {
            f.status.failed = err instanceof Error ? err.message : 'bad file';
          }
          this.onStatus({ ...f.status });
        }
        for (const w of this.waiters.get(ev.file) ?? []) w(true);
        this.waiters.delete(ev.file);
      } else if (ev.type === 'failed') {
        const f = this.files.get(ev.file);
        if (f) {
          f.status.failed = ev.code;
          this.onStatus({ ...f.status });
        }
        for (const w of this.waiters.get(ev.file) ?? []) w(false);
        this.waiters.delete(ev.file);
      }
    }
    this.route();
    for (const peer of this.queues.keys()) this.drain(peer);
    this.arm();
  }

  arm() {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const when = this.engine.nextTimer();
    if (when === null || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.run(() => this.engine.handleTimer(this.now()));
    }, Math.max(0, when - this.now()));
  }

  // ---------------------------------------------------------------- messages

  /** A file message arrived (or is ours): track it; fetch it when small. @param {any} message @param {boolean} mine */
  onMessage(message, mine) {
    const ref = message.file;
    if (!ref) return;
    const id = fileId(ref);
    if (!this.files.has(id)) {
      /** @type {FileStatus} */
      const status = {
        fileId: id, messageId: message.id, name: ref.name, size: ref.size, mime: ref.mime, have: 0, total: 0, bytes: 0,
        done: false, failed: null, thumbUrl: null, url: null, durationMs: null,
      };
      this.files.set(id, { message, status });
      this.onStatus({ ...status });
    }
    if (ref.size <= this.autoFetch || mine) void this.fetch(message.id);
  }

  /** @param {string} messageId */
  byMessage(messageId) {
    for (const [id, f] of this.files) if (f.message.id === messageId) return { id, ...f };
    return null;
  }

  /** The message went (expired or unsent): forget its file everywhere here. @param {string} messageId */
  forget(messageId) {
    const f = this.byMessage(messageId);
    if (!f) return;
    this.engine.cancel(f.id);
    for (const [k, b] of [...this.blobs]) if (b.file === f.id) this.blobs.delete(k);
    if (f.status.url) URL.revokeObjectURL(f.status.url);
    if (f.status.thumbUrl) URL.revokeObjectURL(f.status.thumbUrl);
    this.files.delete(f.id);
    for (const w of this.waiters.get(f.id) ?? []) w(false);
    this.waiters.delete(f.id);
  }

  /** Fetch (or resume) an attachment; resolves true once every blob is here and the file checks out. @param {string} messageId */
  fetch(messageId) {
    const f = this.byMessage(messageId);
    if (!f) return Promise.resolve(false);
    if (f.status.done) return Promise.resolve(true);
    const done = new Promise((resolve) => {
      const list = this.waiters.get(f.id) ?? [];
      list.push(resolve);
      this.waiters.set(f.id, list);
    });
    const held = [...this.blobs].filter(([, b]) => b.file === f.id).map(([k]) => k);
    /** @type {Map<string, Uint8Array>} */
    const meta = new Map();
    for (const k of held) meta.set(k, /** @type {{data: Uint8Array}} */ (this.blobs.get(k)).data);
    this.run(() => this.engine.fetch(f.message.file, this.now(), held, meta));
    return /** @type {Promise<boolean>} */ (done);
  }

  /** Decrypt and verify the whole file. @param {string} id @returns {Promise<Blob>} */
  async assemble(id) {
    const f = /** @type {{message: any}} */ (this.files.get(id));
    const ref = f.message.file;
    const mblob = this.blobs.get(b64uEncode(ref.manifest));
    if (!mblob) throw new Error('manifest missing');
    const m = await openManifest(ref.key, mblob.data, ref);
    /** @type {Uint8Array[]} */
    const parts = [];
    for (let pos = 0; pos < m.index.length; pos++) {
      const ix = this.blobs.get(b64uEncode(m.index[pos]));
      if (!ix) throw new Error('index missing');
      const ids = parseIndex(ix.data, pos, m);
      for (let k = 0; k < ids.length; k++) {
        const c = this.blobs.get(b64uEncode(ids[k]));
        if (!c) throw new Error('chunk missing');
        parts.push(await openChunk(ref.key, m, pos * IDS_PER_INDEX + k, c.data));
      }
    }
    const whole = new Uint8Array(m.size);
    let off = 0;
    for (const p of parts) { whole.set(p, off); off += p.length; }
    if (b64uEncode(await sha256(whole)) !== b64uEncode(m.digest)) throw new Error('the file does not match its manifest');
    return new Blob([whole], { type: m.mime });
  }

  /** Bytes of attachments held here. */
  heldBytes() {
    let n = 0;
    for (const b of this.blobs.values()) n += b.data.length;
    return n;
  }

  /** The index and chunk ids of a file we hold (ours: the core asks only for its own), for KEEP_FILE
   * offers to keepers (core/room/keeping.js); null without its manifest. @param {Uint8Array} manifest @returns {Uint8Array[]|null} */
  blobIdsOf(manifest) {
    const fid = b64uEncode(manifest);
    if (this.blobs.get(fid)?.file !== fid) return null;
    const ids = [];
    for (const [k, b] of this.blobs) if (b.file === fid && k !== fid) ids.push(b64uDecode(k));
    return ids;
  }

  /**
   * Seal a file into blobs held here; returns the content item to send in a message.
   * @param {Blob} blob @param {string} name @param {string} mime
   * @param {{thumb?: Uint8Array|null, thumbMime?: string|null, durationMs?: number|null}} [o]
   */
  async seal(blob, name, mime, o = {}) {
    checkFile(this.limits, blob.size);
    checkQuota(this.limits, this.heldBytes(), blob.size);
    const data = new Uint8Array(await blob.arrayBuffer());
    const s = new Sealer(randomBytes(32), data.length, CHUNK_SIZE);
    /** @type {[string, Uint8Array][]} */
    const sealed = [];
    for (let i = 0; i < s.chunks; i++) {
      const [id, c] = await s.seal(i, data.subarray(i * CHUNK_SIZE, (i + 1) * CHUNK_SIZE));
      sealed.push([b64uEncode(id), c]);
    }
    const out = await s.finish(name, mime, await sha256(data), o);
    const fid = fileId(out.content);
    sealed.push([b64uEncode(out.content.manifest), out.manifestBlob]);
    for (const b of out.indexBlobs) sealed.push([b64uEncode(await sha256(b)), b]);
    for (const [k, c] of sealed) this.blobs.set(k, { file: fid, data: c });
    return out.content;
  }

  close() {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    for (const f of this.files.values()) {
      if (f.status.url) URL.revokeObjectURL(f.status.url);
      if (f.status.thumbUrl) URL.revokeObjectURL(f.status.thumbUrl);
    }
  }
}

/** A small JPEG thumbnail (<= 32 KiB) of an image blob, or null. @param {Blob} blob @returns {Promise<Uint8Array|null>} */
export async function makeThumbnail(blob) {
  try {
    const bmp = await createImageBitmap(blob);
    for (const side of [240, 160, 96]) {
      const scale = Math.min(1, side / Math.max(bmp.width, bmp.height));
      const canvas = new OffscreenCanvas(Math.max(1, Math.round(bmp.width * scale)), Math.max(1, Math.round(bmp.height * scale)));
      const ctx = canvas.getContext('2d');
      if (!ctx) return null;
      ctx.drawImage(bmp, 0, 0, canvas.width, canvas.height);
      const out = new Uint8Array(await (await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.7 })).arrayBuffer());
      if (out.length <= 32 * 1024) return out;
    }
  } catch {
    return null;
  }
  return null;
}

