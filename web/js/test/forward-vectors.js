// Forwarded-attachment vectors (tests/vectors/forward_files.json, made by scripts/gen_vectors.py from the
// Python core): the "fwd" field on a "file" content item, present only when set, and its refusals; and
// the KEEPER / KEEP_FILE APP bodies (tests/vectors/keeping.json). tests/core/test_forward_files_vectors.py
// and tests/core/test_keeping_vectors.py check the same files against Python.

import { assertEqual, codeOf } from './runner.js';
import { ProtocolError } from '../core/errors.js';
import { fromHex, toHex } from '../core/bytes.js';
import { decodeContent, encodeContent, searchableText } from '../core/content.js';
import { fileContent } from '../core/files.js';
import { Keeping, decodeKeepFile, encodeKeepFile, encodeKeeper } from '../core/room/keeping.js';

/** @param {any} f */
function fileOf(f) {
  const c = fileContent(f.name, f.size, f.mime, fromHex(f.manifest), fromHex(f.key));
  return f.from_name === null ? c : Object.freeze({ ...c, fwd: { fromName: f.from_name } });
}

/** @param {any} c */
const view = (c) => JSON.stringify({ ...c, manifest: toHex(c.manifest), key: toHex(c.key), fwd: c.fwd ?? null });

export const FORWARD_CHECKS = {
  /** @param {any} v */
  keeping: (v) => [
    { name: 'keeping: KEEPER and KEEP_FILE bodies as in Python', fn: async () => {
      assertEqual(toHex(encodeKeeper()), v.keeper, 'KEEPER');
      const kf = v.keep_file;
      const manifest = fromHex(kf.manifest), ids = kf.ids.map(fromHex);
      const frames = encodeKeepFile(kf.seq, manifest, ids);
      assertEqual(JSON.stringify(frames.map(toHex)), JSON.stringify(kf.frames), 'KEEP_FILE frames');
      const back = frames.map((f) => decodeKeepFile(f));
      assertEqual(JSON.stringify(back.map((f) => [f.seq, toHex(f.manifest), f.total, f.offset, f.ids.map(toHex)])),
        JSON.stringify([[kf.seq, kf.manifest, ids.length, 0, kf.ids.slice(0, 126)], [kf.seq, kf.manifest, ids.length, 126, kf.ids.slice(126)]]), 'decoded');
      assertEqual(toHex(encodeKeepFile(9, manifest, [])[0]), kf.empty, 'an empty list');
    } },
    { name: 'keeping: bad bodies carry the recorded codes', fn: async () => {
      for (const b of v.bad) assertEqual(codeOf(() => decodeKeepFile(fromHex(b.body))), b.code, b.name);
      for (const b of v.bad_keeper) assertEqual(codeOf(() => new Keeping(false).onKeeper('b'.repeat(32), fromHex(b), [])), 'bad-app-frame', b);
    } },
  ],
  /** @param {any} v */
  forward_files: (v) => [
    ...v.valid.map((/** @type {any} */ c) => ({ name: `forward_files ${c.name}: encode, decode, searchable text`, fn: async () => {
      const f = fileOf(c.file);
      assertEqual(toHex(encodeContent(f)), c.plaintext, 'plaintext');
      const back = decodeContent(fromHex(c.plaintext));
      assertEqual(view(back), view(f), 'decoded');
      assertEqual(searchableText(back), c.search, 'searchable text');
    } })),
    { name: 'forward_files: refusals carry the recorded codes', fn: async () => {
      for (const b of v.bad) {
        let code = null;
        try {
          decodeContent(fromHex(b.plaintext));
        } catch (e) {
          if (!(e instanceof ProtocolError)) throw e;
          code = e.code;
        }
        assertEqual(code, b.code, b.name);
      }
    } },
  ],
};
