// Attachments in the browser: the pump around core/files_transfer.js Transfers (mirrors peer/attachments.py).
//
// Rules:
// - One FileTransfers per App (room). Blobs (ciphertext, by id) are stored in IndexedDB
//   (store/blobs.js) once `restore(roomId, messages)` ran: in batches, one transaction per BATCH blobs
//   or per FLUSH_MS, and read back to serve or save. What is not yet written stays in memory (at most
//   MAX_UNWRITTEN bytes: past that the pump waits for the write, so a fast sender cannot make us hold
//   more). Only blobs are stored: the file key and name stay inside the message's envelope (store/room.js).
// - Resume: after a reload the blobs held are the download state; a file of which we hold anything is
//   fetched again at once (only what is missing is asked for), a fully held one is served and can be
//   saved. `fetched` counts blobs that arrived from other members since the page loaded.
// - Limits: 100 MB per file and 1 GB per room (core/files.js fileLimits), checked before sealing and
//   before fetching; a refusal is the file's `failed` text, shown under it. A browser that refuses to
//   store more (its own quota) fails the download with that reason.
// - Each link's "ephemesh-files" channel carries the transfer frames. Pacing: a frame is sent only
//   when the channel's bufferedAmount is 0 (bufferedamountlow at threshold 0), so at most one frame
//   waits in the browser's SCTP queue and chat frames are never stuck behind a file.
// - A file message's attachment is fetched at once when it is at most AUTO_FETCH bytes (so images show
//   their thumbnail and voice notes play without a click), else when the user asks (download button).
// - When its message expires or is unsent, the file's blobs (memory and IndexedDB), its object URL and its
//   state go; at start-up the blobs of files whose message is gone are erased before anything else.

import { b64uDecode, b64uEncode } from '../core/bytes.js';
import { randomBytes, sha256 } from '../core/crypto.js';
import { CHUNK_SIZE, FileLimitError, IDS_PER_INDEX, Sealer, checkFile, checkQuota, fileId, fileLimits, openChunk, openManifest, parseIndex } from '../core/files.js';
import { Transfers } from '../core/files_transfer.js';
import * as idb from '../store/blobs.js';

export const AUTO_FETCH = 25 * 1000 * 1000;
/** blobs per IndexedDB transaction, at most */
export const BATCH = 128;
/** a partial batch is written after this long */
export const FLUSH_MS = 50;
/** bytes received but not yet in IndexedDB, at most (the pump waits past this) */
export const MAX_UNWRITTEN = 8 * 1024 * 1024;
/** a download's progress reaches the page at most this often */
export const PROGRESS_MS = 150;
/** chunks decrypted at once when a file is saved */
const OPEN_BATCH = 64;

/**
 * @typedef {{fileId: string, messageId: string, name: string, size: number, mime: string, have: number, total: number,
 *   bytes: number, done: boolean, failed: string|null, thumbUrl: string|null, url: string|null, durationMs: number|null}} FileStatus
 */

/** @typedef {Pick<typeof idb, 'putBlobs'|'listBlobs'|'getBlob'|'fileBlobs'|'someBlobs'|'eraseFile'|'eraseExcept'>} BlobStore */

export class FileTransfers {
  /**
   * @param {{now?: () => number, onStatus?: (s: FileStatus) => void, limits?: import('../core/files.js').FileLimits, store?: BlobStore}} [opts]
   */
  constructor(opts = {}) {
    this.now = opts.now ?? Date.now;
    this.onStatus = opts.onStatus ?? (() => {});
    this.limits = opts.limits ?? fileLimits();
    this.engine = new Transfers(this.limits);
    /** @type {BlobStore} */
    this.store = opts.store ?? idb;
    /** @type {string|null} the room whose blobs are in IndexedDB (null: memory only) */
    this.roomId = null;
    /** @type {Map<string, {file: string, size: number}>} blob id (b64u) -> what it is (every blob held) */
    this.blobs = new Map();
    /** @type {Map<string, {file: string, data: Uint8Array}>} blobs not written yet (all of them without a room) */
    this.unwritten = new Map();
    /** @type {string[]} ids of `unwritten` not handed to a write yet */
    this.toWrite = [];
    this.unwrittenBytes = 0;
    /** @type {Promise<unknown>} IndexedDB writes and erasures, in order */
    this.writing = Promise.resolve();
    /** @type {ReturnType<typeof setTimeout>|null} */
    this.flushTimer = null;
    /** @type {Map<string, number>} when each file's progress was last published */
    this.shownAt = new Map();
    /** @type {ReturnType<typeof setTimeout>|null} */
    this.progressTimer = null;
    /** @type {Map<string, {message: any, status: FileStatus}>} */
    this.files = new Map();
    /** @type {Map<string, RTCDataChannel>} */
    this.channels = new Map();
    /** @type {Map<string, Uint8Array[]>} */
    this.queues = new Map();
    /** @type {Map<string, {req: number, id: Uint8Array}[]>} serve requests not answered yet, per neighbour */
    this.serving = new Map();
    /** @type {Set<string>} neighbours whose next blob is being read from IndexedDB */
    this.reading = new Set();
    /** @type {ReturnType<typeof setTimeout>|null} */
    this.timer = null;
    /** @type {Promise<unknown>} */
    this.pumping = Promise.resolve();
    /** @type {Map<string, Array<(ok: boolean) => void>>} */
    this.waiters = new Map();
    this.served = 0;
    /** engine calls handled (a test's sign that the pump moves) */
    this.pumps = 0;
    /** blobs that arrived from other members since this page loaded */
    this.fetched = 0;
    /** blobs found in IndexedDB when the room was restored */
    this.restored = 0;
    this.closed = false;
    /** fetch others' files up to this size as they arrive (larger ones wait for the download button) */
    this.autoFetch = AUTO_FETCH;
  }

  // ---------------------------------------------------------------- storage

  /**
   * Load what IndexedDB holds for the room (erasing first the blobs of files whose message is gone);
   * from then on blobs are written there. Call before the room's messages reach onMessage.
   * @param {string} roomId @param {Iterable<any>} messages the room's live messages
   */
  async restore(roomId, messages) {
    /** @type {Set<string>} */
    const live = new Set();
    for (const m of messages) if (m.file) live.add(fileId(m.file));
    try {
      await this.store.eraseExcept(roomId, live);
      const held = await this.store.listBlobs(roomId);
      this.roomId = roomId;
      this.restored = held.length;
      for (const [file, id, size] of held) if (!this.blobs.has(id)) this.blobs.set(id, { file, size });
      this.scheduleFlush(true);
    } catch (err) {
      console.warn('files: no IndexedDB, attachments stay in memory:', err instanceof Error ? err.name : err);
    }
  }

  /** Hold a blob: in memory until written. @param {string} file @param {string} id @param {Uint8Array} data */
  keep(file, id, data) {
    const old = this.unwritten.get(id);
    if (old) this.unwrittenBytes -= old.data.length;
    this.blobs.set(id, { file, size: data.length });
    this.unwritten.set(id, { file, data });
    this.unwrittenBytes += data.length;
    this.toWrite.push(id);
  }

  /** @param {boolean} [now] write a full batch now, else within FLUSH_MS */
  scheduleFlush(now = false) {
    if (this.roomId === null || this.closed || !this.toWrite.length) return;
    if (now || this.toWrite.length >= BATCH) {
      while (this.toWrite.length) this.flush(this.toWrite.splice(0, BATCH));
    } else if (this.flushTimer === null) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = null;
        this.scheduleFlush(true);
      }, FLUSH_MS);
    }
  }

  /** Write these unwritten blobs in one transaction (after the writes before). @param {string[]} ids */
  flush(ids) {
    const roomId = /** @type {string} */ (this.roomId);
    /** @type {{file: string, id: string, data: Uint8Array}[]} */
    const batch = [];
    for (const id of ids) {
      const b = this.unwritten.get(id);
      if (b) batch.push({ file: b.file, id, data: b.data });
    }
    if (!batch.length) return;
    this.writing = this.writing.then(async () => {
      // a file forgotten meanwhile is not written back
      const live = batch.filter((b) => this.unwritten.get(b.id)?.data === b.data);
      try {
        await this.store.putBlobs(roomId, live);
      } catch (err) {
        this.storeFailed(live.map((b) => b.file), err);
        return;
      }
      for (const b of live) {
        if (this.unwritten.get(b.id)?.data === b.data) {
          this.unwritten.delete(b.id);
          this.unwrittenBytes -= b.data.length;
        }
      }
    });
  }

  /** The browser would not store them (its quota): those downloads fail, saying why. @param {string[]} files @param {unknown} err */
  storeFailed(files, err) {
    const why = err instanceof DOMException && err.name === 'QuotaExceededError'
      ? 'this browser refused to store more attachments (its storage quota is full)'
      : `this browser could not store the attachment (${err instanceof Error ? err.name : 'IndexedDB error'})`;
    for (const file of new Set(files)) {
      const f = this.files.get(file);
      this.engine.cancel(file);
      this.dropBlobs(file);
      if (f) {
        f.status.failed = why;
        this.onStatus({ ...f.status });
      }
      this.settle(file, false);
    }
  }

  /** A blob's bytes (memory, else IndexedDB), or null. @param {string} id */
  async read(id) {
    const mem = this.unwritten.get(id);
    if (mem) return mem.data;
    const b = this.blobs.get(id);
    if (!b || this.roomId === null) return null;
    return this.store.getBlob(this.roomId, b.file, id);
  }

  /** Every blob of a file held here, by id. @param {string} file @returns {Promise<Map<string, Uint8Array>>} */
  async readFile(file) {
    const out = this.roomId === null ? new Map() : await this.store.fileBlobs(this.roomId, file);
    for (const [id, b] of this.unwritten) if (b.file === file) out.set(id, b.data);
    return out;
  }

  /** Forget a file's blobs here and in IndexedDB. @param {string} file */
  dropBlobs(file) {
    for (const [k, b] of [...this.blobs]) if (b.file === file) this.blobs.delete(k);
    for (const [k, b] of [...this.unwritten]) {
      if (b.file === file) {
        this.unwritten.delete(k);
        this.unwrittenBytes -= b.data.length;
      }
    }
    const roomId = this.roomId;
    if (roomId !== null) this.writing = this.writing.then(() => this.store.eraseFile(roomId, file)).catch((err) => console.warn('files: erase failed:', err));
  }

  /** Resolves once every write and erasure asked for so far is done. */
  async settled() {
    this.scheduleFlush(true);
    await this.writing;
  }

  // ---------------------------------------------------------------- links

  /** A link's files channel (offered or accepted). @param {string} peer @param {RTCDataChannel} ch */
  attach(peer, ch) {
    ch.binaryType = 'arraybuffer';
    ch.bufferedAmountLowThreshold = 0;
    const up = () => {
      if (ch.readyState !== 'open' || this.closed) return; // (closed before its deferred start)
      this.channels.set(peer, ch);
      this.queues.set(peer, []);
      this.serving.set(peer, []);
      this.run(() => this.engine.linkUp(peer, this.now()));
    };
    // Chromium 156: a message sent on a received channel from the task that delivered it (ondatachannel,
    // or a microtask of it) goes out, but stays counted in bufferedAmount for good; the pump, which sends
    // only at 0, then stalled (a page reloaded mid-download, linked by a Python offer: one 37-byte WANT
    // "buffered" forever). So a channel already open starts on the next task
    // (tests/browser/test_files_links.py).
    if (ch.readyState === 'open') setTimeout(up, 0);
    else ch.addEventListener('open', up);
    ch.addEventListener('message', (ev) => {
      if (!(ev.data instanceof ArrayBuffer)) return;
      const frame = new Uint8Array(ev.data);
      this.run(() => this.engine.receive(peer, frame, this.now()));
    });
    ch.addEventListener('bufferedamountlow', () => void setTimeout(() => this.drain(peer), 0));
    ch.addEventListener('close', () => {
      if (this.channels.get(peer) !== ch) return;
      this.channels.delete(peer);
      this.queues.delete(peer);
      this.serving.delete(peer);
      this.run(() => this.engine.linkDown(peer, this.now()));
    });
  }

  /**
   * Send what fits: queued frames first; a serve request is answered (its blob looked up, from memory or
   * IndexedDB, one read at a time per neighbour) only when nothing is queued and the channel is idle, so
   * it stays open in the engine (BUSY past serveWindow) and a WANT flood holds at most one blob per
   * neighbour.
   * @param {string} peer
   */
  drain(peer) {
    const ch = this.channels.get(peer), q = this.queues.get(peer), pending = this.serving.get(peer);
    if (!ch || !q || !pending) return;
    while (ch.readyState === 'open' && ch.bufferedAmount === 0) {
      if (q.length) ch.send(/** @type {Uint8Array<ArrayBuffer>} */ (q.shift()));
      else if (pending.length && !this.reading.has(peer)) {
        const r = /** @type {{req: number, id: Uint8Array}} */ (pending[0]);
        const key = b64uEncode(r.id);
        const mem = this.unwritten.get(key);
        if (mem || !this.blobs.has(key)) {
          pending.shift();
          this.answer(peer, r, mem ? mem.data : null);
          continue;
        }
        this.reading.add(peer);
        void this.read(key).catch(() => null).then((data) => {
          this.reading.delete(peer);
          if (this.serving.get(peer) !== pending || pending[0] !== r) return; // the link went meanwhile
          pending.shift();
          this.answer(peer, r, data);
          this.drain(peer);
        });
        break;
      } else break;
    }
  }

  /** @param {string} peer @param {{req: number, id: Uint8Array}} r @param {Uint8Array|null} data */
  answer(peer, r, data) {
    if (data) this.served++;
    this.engine.serve(peer, r.req, r.id, data);
    this.route();
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
      this.pumps++;
    });
    this.pumping = p.catch((err) => console.warn('files:', err));
    return p;
  }

  /** @param {string} file @param {boolean} ok */
  settle(file, ok) {
    for (const w of this.waiters.get(file) ?? []) w(ok);
    this.waiters.delete(file);
  }

  /** @param {import('../core/files_transfer.js').TransferEvent[]} events */
  async handle(events) {
    for (const ev of events) {
      if (ev.type === 'serve') {
        const pending = this.serving.get(ev.peer);
        if (pending) pending.push({ req: ev.req, id: ev.id });
        else this.engine.serve(ev.peer, ev.req, ev.id, null); // its link is going down
      } else if (ev.type === 'blob') {
        if (this.files.has(ev.file)) {
          this.keep(ev.file, b64uEncode(ev.id), ev.data);
          this.fetched++;
        }
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
          this.progressed(f.status);
        }
      } else if (ev.type === 'complete') {
        const f = this.files.get(ev.file);
        if (f) {
          this.scheduleFlush(true);
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
        this.settle(ev.file, Boolean(f?.status.done));
      } else if (ev.type === 'failed') {
        const f = this.files.get(ev.file);
        if (f) {
          f.status.failed = ev.code;
          this.onStatus({ ...f.status });
        }
        this.settle(ev.file, false);
      }
    }
    this.scheduleFlush();
    this.route();
    for (const peer of this.queues.keys()) this.drain(peer);
    this.arm();
    // back-pressure: while too much waits to be written, the pump (hence new requests) waits for it
    if (this.unwrittenBytes > MAX_UNWRITTEN && this.roomId !== null) await this.settled();
  }

  /**
   * Publish a download's progress at most every PROGRESS_MS (each publication re-renders the room; per
   * blob it cost more than the transfer itself). @param {FileStatus} status
   */
  progressed(status) {
    const at = this.now();
    const last = this.shownAt.get(status.fileId) ?? -Infinity;
    if (at - last >= PROGRESS_MS || status.have === status.total) {
      this.shownAt.set(status.fileId, at);
      this.onStatus({ ...status });
      return;
    }
    if (this.progressTimer === null) {
      this.progressTimer = setTimeout(() => {
        this.progressTimer = null;
        for (const f of this.files.values()) {
          if (!f.status.done && !f.status.failed && (this.shownAt.get(f.status.fileId) ?? -Infinity) < this.now() - PROGRESS_MS / 2) {
            this.shownAt.set(f.status.fileId, this.now());
            this.onStatus({ ...f.status });
          }
        }
      }, PROGRESS_MS);
    }
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

  /**
   * A file message arrived (or is ours, or was restored with the room): track it; fetch it when small,
   * when ours, or when we already hold part of it (a download to resume, or a file to serve and save).
   * @param {any} message @param {boolean} mine
   */
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
    if (ref.size <= this.autoFetch || mine || this.heldBytes(id) > 0) void this.fetch(message.id);
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
    this.dropBlobs(f.id);
    if (f.status.url) URL.revokeObjectURL(f.status.url);
    if (f.status.thumbUrl) URL.revokeObjectURL(f.status.thumbUrl);
    this.files.delete(f.id);
    this.settle(f.id, false);
  }

  /** Fetch (or resume) an attachment; resolves true once every blob is here and the file checks out. @param {string} messageId */
  fetch(messageId) {
    const f = this.byMessage(messageId);
    if (!f) return Promise.resolve(false);
    if (f.status.done) return Promise.resolve(true);
    /** @type {Promise<boolean>} */
    const done = new Promise((resolve) => {
      const list = this.waiters.get(f.id) ?? [];
      list.push(resolve);
      this.waiters.set(f.id, list);
    });
    this.run(async () => {
      if (!this.files.has(f.id) || this.engine.downloading().includes(f.id)) return [];
      const ref = f.message.file;
      const held = [...this.blobs].filter(([, b]) => b.file === f.id).map(([k]) => k);
      try {
        checkFile(this.limits, ref.size);
        checkQuota(this.limits, this.heldBytes() - this.heldBytes(f.id), ref.size);
        const metaIds = [b64uEncode(ref.manifest)];
        // the index blobs are named by the manifest: read it first, then them
        const first = await this.readSome(f.id, metaIds);
        const mblob = first.get(metaIds[0]);
        if (mblob) {
          try {
            const m = await openManifest(ref.key, mblob, ref);
            const more = await this.readSome(f.id, m.index.map(b64uEncode));
            for (const [k, v] of more) first.set(k, v);
          } catch {
            // a bad stored manifest: the engine refuses it and fetches it again
          }
        }
        return await this.engine.fetch(ref, this.now(), held, first);
      } catch (err) {
        if (!(err instanceof FileLimitError)) throw err;
        f.status.failed = err.message;
        this.onStatus({ ...f.status });
        this.settle(f.id, false);
        return [];
      }
    }).catch(() => this.settle(f.id, false));
    return done;
  }

  /** Those of `ids` held here (memory or IndexedDB). @param {string} file @param {string[]} ids */
  async readSome(file, ids) {
    /** @type {Map<string, Uint8Array>} */
    const out = new Map();
    const stored = [];
    for (const id of ids) {
      const mem = this.unwritten.get(id);
      if (mem) out.set(id, mem.data);
      else if (this.blobs.get(id)?.file === file) stored.push(id);
    }
    if (stored.length && this.roomId !== null) for (const [k, v] of await this.store.someBlobs(this.roomId, file, stored)) out.set(k, v);
    return out;
  }

  /** Decrypt and verify the whole file. @param {string} id @returns {Promise<Blob>} */
  async assemble(id) {
    const f = /** @type {{message: any}} */ (this.files.get(id));
    const ref = f.message.file;
    const blobs = await this.readFile(id);
    const mblob = blobs.get(b64uEncode(ref.manifest));
    if (!mblob) throw new Error('manifest missing');
    const m = await openManifest(ref.key, mblob, ref);
    const whole = new Uint8Array(m.size);
    for (let pos = 0; pos < m.index.length; pos++) {
      const ix = blobs.get(b64uEncode(m.index[pos]));
      if (!ix) throw new Error('index missing');
      const ids = parseIndex(ix, pos, m);
      for (let k0 = 0; k0 < ids.length; k0 += OPEN_BATCH) {
        const opened = await Promise.all(ids.slice(k0, k0 + OPEN_BATCH).map((cid, j) => {
          const c = blobs.get(b64uEncode(cid));
          if (!c) throw new Error('chunk missing');
          return openChunk(ref.key, m, pos * IDS_PER_INDEX + k0 + j, c);
        }));
        opened.forEach((p, j) => whole.set(p, (pos * IDS_PER_INDEX + k0 + j) * m.chunkSize));
      }
    }
    if (b64uEncode(await sha256(whole)) !== b64uEncode(m.digest)) throw new Error('the file does not match its manifest');
    return new Blob([whole], { type: m.mime });
  }

  /** Bytes of attachments held here (of one file, or all). @param {string} [file] */
  heldBytes(file) {
    let n = 0;
    for (const b of this.blobs.values()) if (file === undefined || b.file === file) n += b.size;
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
    for (const [k, c] of sealed) this.keep(fid, k, c);
    this.scheduleFlush(true);
    return out.content;
  }

  close() {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.flushTimer !== null) clearTimeout(this.flushTimer);
    if (this.progressTimer !== null) clearTimeout(this.progressTimer);
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

