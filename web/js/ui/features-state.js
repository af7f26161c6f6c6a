// Store actions of issue 15 (reduced by state.js for actions it does not know): search results (query
// and matching ids only: the messages themselves stay in `messages`, so a gone one leaves the results),
// last seen of members (ms) and our own last-seen preference.

/** @typedef {import('./state.js').AppState} AppState */

/** @param {AppState} s @param {any} a @returns {AppState} */
export function reduceFeatures(s, a) {
  switch (a.type) {
    case 'search':
      return { ...s, search: a.search ? { q: String(a.search.q), ids: [...a.search.ids] } : null };
    case 'last-seen':
      return { ...s, lastSeen: { ...a.seen }, shareLastSeen: Boolean(a.share) };
    default:
      return s;
  }
}
