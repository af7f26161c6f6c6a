// Forwarded-attachment vectors (tests/vectors/forward_files.json, made by scripts/gen_vectors.py from the
// Python core): the "fwd" field on a "file" content item, present only when set, and its refusals.
// tests/core/test_forward_files_vectors.py checks the same file against Python.

import { assertEqual } from './runner.js';
import { fromHex, toHex } from '../core/bytes.js';
import { ProtocolError } from '../core/errors.js';
import { decodeContent, encodeContent, searchableText } from '../core/content.js';
import { fileContent } from '../core/files.js';

/** @param {any} f */
function fileOf(f) {
  const c = fileContent(f.name, f.size, f.mime, fromHex(f.manifest), fromHex(f.key));
  return f.from_name === null ? c : Object.freeze({ ...c, fwd: { fromName: f.from_name } });
}

/** @param {any} c */
const view = (c) => JSON.stringify({ ...c, manifest: toHex(c.manifest), key: toHex(c.key), fwd: c.fwd ?? null });

export const FORWARD_CHECKS = {
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
