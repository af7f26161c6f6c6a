// Composing mentions: "@name" in a typed message -> the peer ids it names. Mirrors peer/core/mentions.py
// (same rules): "@" at the start or after whitespace or an opening bracket/quote; the longest member
// display name that follows (case-insensitive) and ends at the end, whitespace or punctuation; else 4+ hex
// digits that start exactly one member's peer id. Each member once, in order, at most MAX_MENTIONS.

import { MAX_MENTIONS } from './content.js';

const BEFORE = ' \t\n\r([{"\'';
const AFTER_OK = new Set([...' \t\n\r.,;:!?)]}"\'']);
const HEX = /^[0-9a-f]+$/;

/** @param {string} text @param {Map<string, string|null>|Record<string, string|null>} names peer id -> display name @returns {string[]} */
export function findMentions(text, names) {
  const entries = names instanceof Map ? [...names] : Object.entries(names);
  /** @type {string[]} */
  const found = [];
  const lowered = text.toLowerCase();
  const candidates = entries.filter(([, n]) => n).map(([p, n]) => /** @type {[string, string]} */ ([/** @type {string} */ (n).toLowerCase(), p]))
    .sort((x, y) => y[0].length - x[0].length || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0));
  let i = lowered.indexOf('@');
  while (i !== -1 && found.length < MAX_MENTIONS) {
    if (i === 0 || BEFORE.includes(lowered[i - 1])) {
      const rest = lowered.slice(i + 1);
      let hit = candidates.find(([n]) => rest.startsWith(n) && (rest.length === n.length || AFTER_OK.has(rest[n.length])))?.[1] ?? null;
      if (hit === null) {
        let word = rest.trimStart() === rest ? (rest.split(/\s/u)[0] ?? '') : '';
        while (word && AFTER_OK.has(word[word.length - 1])) word = word.slice(0, -1);
        if (word.length >= 4 && HEX.test(word)) {
          const ids = entries.map(([p]) => p).filter((p) => p.startsWith(word));
          hit = ids.length === 1 ? ids[0] : null;
        }
      }
      if (hit !== null && !found.includes(hit)) found.push(hit);
    }
    i = lowered.indexOf('@', i + 1);
  }
  return found;
}
