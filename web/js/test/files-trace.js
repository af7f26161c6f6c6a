// Replay the part_files trace (peer/tracing_files.py) against the JS attachments engine (core/files_transfer.js):
// the same small network of Transfers engines, the same ops, the same recorded outputs.

import { b64uDecode, b64uEncode, fromUtf8, utf8 } from '../core/bytes.js';
import { deterministicRng, sha256 } from '../core/crypto.js';
import { encodeContent } from '../core/content.js';
import { Sealer, fileLimits, manifestInfoJson, openChunk, openManifest, parseIndex } from '../core/files.js';
import { Transfers, decodeFrame, transferEventJson } from '../core/files_transfer.js';

/** @param {unknown} v @returns {string} */
function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = /** @type {Record<string, unknown>} */ (v);
    return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v === undefined ? null : v);
}

class Net {
  /** @param {any} p */
  constructor(p) {
    const l = p.limits;
    const limits = fileLimits({
      maxFile: l.max_file, window: l.window, serveWindow: l.serve_window, requestTimeoutMs: l.request_timeout_ms,
      retryMs: l.retry_ms, errorBudget: l.error_budget,
    });
    /** @type {string[]} */
    this.names = [...p.nodes].sort();
    /** @type {Map<string, Transfers>} */
    this.nodes = new Map(p.nodes.map((/** @type {string} */ n) => [n, new Transfers(limits)]));
    /** @type {Map<string, Map<string, Uint8Array>>} */
    this.stores = new Map(p.nodes.map((/** @type {string} */ n) => [n, new Map()]));
    this.corrupt = new Set(p.corrupt ?? []);
    this.mute = new Set(p.mute ?? []);
    /** @type {Set<string>} */
    this.links = new Set();
    /** @type {[string, string, Uint8Array][]} */
    this.queue = [];
    /** @type {Map<string, any>} */
    this.files = new Map();
    /** @type {number} */
    this.now = p.t0;
  }

  /** @param {string} a @param {string} b */
  static key(a, b) { return a < b ? `${a}|${b}` : `${b}|${a}`; }

  /** @param {string} name */
  node(name) { return /** @type {Transfers} */ (this.nodes.get(name)); }

  /** @param {string} name */
  store(name) { return /** @type {Map<string, Uint8Array>} */ (this.stores.get(name)); }

  /** @param {string} name @param {import('../core/files_transfer.js').TransferEvent[]} events @param {Record<string, any[]>} out @param {boolean} [serve] */
  handle(name, events, out, serve = true) {
    for (const ev of events) {
      (out[name] ??= []).push(transferEventJson(ev));
      if (ev.type === 'serve' && serve) {
        let data = this.store(name).get(b64uEncode(ev.id)) ?? null;
        if (data && this.corrupt.has(name)) data = new Uint8Array(data.length);
        this.node(name).serve(ev.peer, ev.req, ev.id, data);
      } else if (ev.type === 'blob') this.store(name).set(b64uEncode(ev.id), ev.data);
    }
  }

  collect() {
    for (const name of this.names) for (const [to, f] of this.node(name).dataToSend()) this.queue.push([name, to, f]);
  }

  /** @param {number} limit @param {Record<string, any[]>} events @param {any[]} frames */
  async run(limit, events, frames) {
    this.collect();
    let n = 0;
    while (this.queue.length && n < limit) {
      const [src, dst, frame] = /** @type {[string, string, Uint8Array]} */ (this.queue.shift());
      if (!this.links.has(Net.key(src, dst)) || this.mute.has(dst)) continue;
      n += 1;
      const [kind, req, id, data] = decodeFrame(frame);
      frames.push([src, dst, kind, req, b64uEncode(id), data.length]);
      this.handle(dst, await this.node(dst).receive(src, frame, this.now), events);
      this.collect();
    }
  }
}

/** @param {any} doc @returns {Promise<{steps: number, problems: string[]}>} */
export async function replayFilesPart(doc) {
  const net = new Net(doc.params);
  /** @type {string[]} */
  const problems = [];
  let i = 0;
  for (const op of doc.ops) {
    /** @type {Record<string, any[]>} */
    const events = {};
    /** @type {any[]} */
    const frames = [];
    /** @type {Record<string, any>} */
    const out = {};
    if (op.op === 'seal') {
      const data = await deterministicRng(utf8(op.seed))(op.size);
      const key = await deterministicRng(utf8(`${op.seed}/key`))(32);
      const s = new Sealer(key, op.size, op.chunk);
      const store = net.store(op.at);
      for (let c = 0; c < s.chunks; c++) {
        const [id, blob] = await s.seal(c, data.slice(c * op.chunk, (c + 1) * op.chunk));
        store.set(b64uEncode(id), blob);
      }
      const sealed = await s.finish(op.name, op.mime, await sha256(data), {
        thumb: op.thumb ? b64uDecode(op.thumb) : null, thumbMime: op.thumb_mime ?? null, durationMs: op.duration_ms ?? null,
      });
      store.set(b64uEncode(sealed.content.manifest), sealed.manifestBlob);
      for (const b of sealed.indexBlobs) store.set(b64uEncode(await sha256(b)), b);
      net.files.set(op.label, sealed.content);
      out.content = fromUtf8(encodeContent(sealed.content));
      out.manifest = b64uEncode(sealed.manifestBlob);
      out.index = sealed.indexBlobs.map(b64uEncode);
      out.chunks = sealed.chunkIds.map(b64uEncode);
    } else if (op.op === 'open') {
      const ref = net.files.get(op.label);
      const store = net.store(op.at);
      const m = await openManifest(ref.key, /** @type {Uint8Array} */ (store.get(b64uEncode(ref.manifest))), ref);
      const ids = [];
      for (let pos = 0; pos < m.index.length; pos++) ids.push(...parseIndex(/** @type {Uint8Array} */ (store.get(b64uEncode(m.index[pos]))), pos, m));
      const parts = [];
      for (let c = 0; c < ids.length; c++) parts.push(await openChunk(ref.key, m, c, /** @type {Uint8Array} */ (store.get(b64uEncode(ids[c])))));
      const total = parts.reduce((n, p) => n + p.length, 0);
      const plain = new Uint8Array(total);
      let off = 0;
      for (const p of parts) { plain.set(p, off); off += p.length; }
      out.ok = b64uEncode(await sha256(plain)) === b64uEncode(m.digest);
      out.manifest = manifestInfoJson(m);
    } else if (op.op === 'link' || op.op === 'unlink') {
      const { a, b } = op;
      if (op.op === 'link') {
        net.links.add(Net.key(a, b));
        net.handle(a, net.node(a).linkUp(b, net.now), events);
        net.handle(b, net.node(b).linkUp(a, net.now), events);
      } else {
        net.links.delete(Net.key(a, b));
        net.handle(a, net.node(a).linkDown(b, net.now), events);
        net.handle(b, net.node(b).linkDown(a, net.now), events);
      }
    } else if (op.op === 'fetch') {
      net.handle(op.at, await net.node(op.at).fetch(net.files.get(op.label), net.now), events);
    } else if (op.op === 'run') {
      await net.run(op.frames ?? 100_000, events, frames);
    } else if (op.op === 'timer') {
      net.now = op.now;
      for (const name of net.names) net.handle(name, net.node(name).handleTimer(net.now), events);
    } else if (op.op === 'inject') {
      const got = await net.node(op.at).receive(op.from, b64uDecode(op.frame), net.now);
      net.handle(op.at, got, events, op.serve ?? true);
    } else {
      throw new Error(`unknown files op ${op.op}`);
    }
    net.collect();
    out.events = events;
    out.frames = frames;
    out.timers = Object.fromEntries(net.names.map((n) => [n, net.node(n).nextTimer()]));
    out.held = Object.fromEntries(net.names.map((n) => [n, net.store(n).size]));
    if (canonical(op.out) !== canonical(out)) {
      problems.push(`op ${i} (files ${op.op}): want ${canonical(op.out).slice(0, 600)} got ${canonical(out).slice(0, 600)}`);
      break;
    }
    i += 1;
  }
  return { steps: i, problems };
}
