// Search that forgets: an in-memory index of the messages this member can read. Mirrors peer/core/search.py:
// the timeline owns it (a message enters when shown, is re-indexed on edit, leaves in the call that erases
// it); nothing of it is ever persisted. A query's whitespace-separated terms must all be substrings of the
// message's searchable text (lowercased, NFKC). At most MAX_QUERY characters and MAX_TERMS terms.

export const MAX_QUERY = 256;
export const MAX_TERMS = 16;

/** @param {string} s */
export const normalize = (s) => s.normalize('NFKC').toLowerCase();

/** The terms of a query; throws RangeError past the bounds. @param {string} query */
export function terms(query) {
  if ([...query].length > MAX_QUERY) throw new RangeError(`a search is at most ${MAX_QUERY} characters`);
  const words = normalize(query).split(/\s+/u).filter(Boolean);
  if (words.length > MAX_TERMS) throw new RangeError(`a search has at most ${MAX_TERMS} words`);
  return words;
}

export class SearchIndex {
  constructor() {
    /** @type {Map<string, string>} message key -> normalised text */
    this.text = new Map();
  }

  get size() {
    return this.text.size;
  }

  /** @param {string} key @param {string} text */
  put(key, text) {
    if (text) this.text.set(key, normalize(text));
    else this.text.delete(key);
  }

  /** @param {string} key */
  drop(key) {
    this.text.delete(key);
  }

  /** @param {string} query @returns {Set<string>} */
  query(query) {
    const words = terms(query);
    if (!words.length) return new Set();
    return new Set([...this.text].filter(([, t]) => words.every((w) => t.includes(w))).map(([k]) => k));
  }
}
