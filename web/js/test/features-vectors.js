// Issue-15 vectors (tests/vectors/features.json, made by scripts/gen_vectors.py from the Python core):
// content with mentions / forward / location and their refusals, a 20,000-character text, @mention
// composing, search matching and the LASTSEEN APP body. tests/core/test_features_vectors.py checks the
// same file against Python.

import { assert, assertEqual, codeOf } from './runner.js';
import { fromHex, toHex, utf8 } from '../core/bytes.js';
import { sha256 } from '../core/crypto.js';
import { ContentTooLong, MAX_CONTENT, MAX_MENTIONS, decodeContent, encodeContent, location, searchableText, text } from '../core/content.js';
import { findMentions } from '../core/mentions.js';
import { SearchIndex } from '../core/search.js';
import { decodePresence, encodeLastSeen } from '../core/presence.js';

/** @type {(x: any) => any} */
const canon = (x) => (Array.isArray(x) ? x.map(canon) : x && typeof x === 'object'
  ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, canon(x[k])])) : x);
/** @param {string} what @param {unknown} a @param {unknown} b */
const same = (what, a, b) => assertEqual(JSON.stringify(canon(a)), JSON.stringify(canon(b)), what);

/** JSON fields (as Python encodes them) -> JS content. @param {any} f */
function contentOf(f) {
  const fwd = f.fwd ? { fromName: f.fwd.from_name } : null;
  if (f.t === 'location') return location(f.lat_e6, f.lon_e6, f.acc_m, fwd);
  return text(f.body, f.reply_to, f.mentions ?? [], fwd);
}

export const FEATURE_CHECKS = {
  /** @param {any} v */
  features: (v) => [
    ...v.valid.map((/** @type {any} */ c) => ({ name: `features ${c.name}: encode, decode, searchable text`, fn: async () => {
      const content = contentOf(c.content);
      assertEqual(toHex(encodeContent(content)), c.plaintext, 'plaintext');
      const back = decodeContent(fromHex(c.plaintext));
      same('decoded', back, content);
      assertEqual(searchableText(back), c.search, 'searchable text');
    } })),
    { name: 'features: refusals carry the recorded codes', fn: async () => {
      for (const b of v.bad) assertEqual(codeOf(() => decodeContent(fromHex(b.plaintext))), b.code, b.name);
    } },
    { name: 'features: a 20,000-character text encodes to the recorded bytes; over the limit is refused', fn: async () => {
      const long = text(v.long.char.repeat(v.long.count));
      assertEqual(toHex(await sha256(encodeContent(long))), v.long.sha256, 'long text');
      assertEqual(MAX_CONTENT, v.limits.max_content, 'max content');
      assertEqual(MAX_MENTIONS, v.limits.max_mentions, 'max mentions');
      let refused = null;
      try {
        encodeContent(text('a'.repeat(MAX_CONTENT)));
      } catch (e) {
        refused = e;
      }
      assert(refused instanceof ContentTooLong && /too long/.test(refused.message), 'over the limit: ContentTooLong');
      assertEqual(codeOf(() => decodeContent(utf8(`{"t":"text","body":"${'a'.repeat(MAX_CONTENT)}","reply_to":null}`))), 'bad-content', 'decode over limit');
    } },
    { name: 'features: @mentions compose as in Python', fn: async () => {
      for (const m of v.mentions) same(m.text, findMentions(m.text, v.names), m.want);
    } },
    { name: 'features: search matches as in Python', fn: async () => {
      const index = new SearchIndex();
      v.search.docs.forEach((/** @type {string} */ d, /** @type {number} */ i) => index.put(String(i), d));
      for (const q of v.search.queries) same(q.q, [...index.query(q.q)].map(Number).sort((a, b) => a - b), q.want);
    } },
    { name: 'features: LASTSEEN bodies', fn: async () => {
      for (const l of v.lastseen) {
        assertEqual(toHex(encodeLastSeen(l.share)), l.body, 'encode');
        same('decode', decodePresence(fromHex(l.body)), { type: 'lastseen', share: l.share });
      }
      for (const b of v.lastseen_bad) assertEqual(codeOf(() => decodePresence(fromHex(b))), 'bad-app-frame', b);
    } },
  ],
};
