// tests/vectors/files.json (scripts/gen_vectors.py, the Python core) against core/files.js.

import { assert, assertEqual } from './runner.js';
import { fromHex, toHex } from '../core/bytes.js';
import { sha256 } from '../core/crypto.js';
import { ProtocolError } from '../core/errors.js';
import { decodeContent, encodeContent } from '../core/content.js';
import { Sealer, manifestObj, openChunk, openManifest, parseIndex } from '../core/files.js';
import { decodeFrame, encodeFrame } from '../core/files_transfer.js';

/** @param {any} c @param {string} field */
const bytesOf = (c, field) => {
  const b = fromHex(c[field]);
  const out = new Uint8Array(c.zero_fill_to ?? b.length);
  out.set(b);
  return out;
};

/** @param {() => unknown} fn @param {string} code @param {string} what */
async function refused(fn, code, what) {
  try {
    await fn();
  } catch (err) {
    if (err instanceof ProtocolError && err.code === code) return;
    throw new Error(`${what}: wrong error ${err instanceof ProtocolError ? err.code : err}`);
  }
  throw new Error(`${what}: accepted`);
}

/** @type {Record<string, (v: any) => {name: string, fn: () => Promise<void>}[]>} */
export const FILES_CHECKS = {
  files: (v) => [
    { name: 'sealing reproduces the vector', fn: async () => {
      const key = fromHex(v.key), plain = fromHex(v.plaintext);
      const s = new Sealer(key, plain.length, v.chunk_size);
      for (let i = 0; i < v.chunks.length; i++) {
        const [id, blob] = await s.seal(i, plain.slice(i * 1024, (i + 1) * 1024));
        assertEqual(toHex(id), v.chunks[i].id, `chunk ${i} id`);
        assertEqual(toHex(blob), v.chunks[i].blob, `chunk ${i} blob`);
      }
      const m = v.manifest.fields;
      const out = await s.finish(m.name, m.mime, await sha256(plain), { thumb: fromHex('89' + toHex(new TextEncoder().encode('thumb'))), thumbMime: 'image/jpeg', durationMs: 1500 });
      assertEqual(toHex(out.indexBlobs[0]), v.index, 'index');
      assertEqual(toHex(out.manifestBlob), v.manifest.blob, 'manifest');
      assertEqual(toHex(encodeContent(out.content)), v.content.plaintext, 'content');
    } },
    { name: 'opening the vector', fn: async () => {
      const key = fromHex(v.key);
      const ref = /** @type {any} */ (decodeContent(fromHex(v.content.plaintext)));
      assertEqual(ref.t, 'file', 'content type');
      const m = await openManifest(key, fromHex(v.manifest.blob), ref);
      /** @param {Record<string, unknown>} o */
      const sorted = (o) => JSON.stringify(Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1))));
      assertEqual(sorted(manifestObj(m)), sorted(v.manifest.fields), 'manifest fields');
      const ids = parseIndex(fromHex(v.index), 0, m);
      assertEqual(ids.map(toHex).join(','), v.chunks.map((/** @type {any} */ c) => c.id).join(','), 'index ids');
      let hex = '';
      for (let i = 0; i < v.chunks.length; i++) hex += toHex(await openChunk(key, m, i, fromHex(v.chunks[i].blob)));
      assertEqual(hex, v.plaintext, 'plaintext');
      await refused(() => openManifest(key, fromHex(v.manifest.blob), { ...ref, name: v.mismatch.name }), v.mismatch.code, 'mismatch');
    } },
    { name: 'frames decode and encode', fn: async () => {
      for (const c of v.frames) {
        const [kind, req, id, data] = decodeFrame(fromHex(c.hex));
        assert(kind === c.kind && req === c.req && toHex(id) === c.id && toHex(data) === c.data, c.name);
        assertEqual(toHex(encodeFrame(c.kind, c.req, fromHex(c.id), fromHex(c.data))), c.hex, c.name);
      }
    } },
    { name: 'bad frames, manifests and content items are refused with the recorded codes', fn: async () => {
      for (const c of v.bad_frames) await refused(() => decodeFrame(bytesOf(c, 'hex')), c.code, c.name);
      for (const c of v.bad_manifests) await refused(() => openManifest(fromHex(v.key), bytesOf(c, 'blob')), c.code, c.name);
      for (const c of v.bad_content) await refused(() => decodeContent(fromHex(c.plaintext)), c.code, c.name);
    } },
  ],
};
