// @name autocomplete in the composer: typing "@" and letters shows the members whose display name
// starts with them; picking one writes "@Name " into the text, which the send step (features.mentionsIn ->
// core/mentions.js) turns into a mention of that member's id.
//
// Rules:
// - The "@" counts where core/mentions.js counts it: at the start or after whitespace or an opening
//   bracket/quote; the query runs from it to the caret and has no whitespace or "@".
// - At most MAX_SHOWN names, ours never; sorted by name. Keyboard: ArrowDown/ArrowUp move, Enter or Tab
//   picks, Escape closes (and only closes: the composer's own Escape does not run). A click picks.
// - Accessible: the list is role=listbox with role=option items; the textarea carries aria-controls,
//   aria-expanded, aria-autocomplete=list and aria-activedescendant (the active option's id).
// - Built with DOM calls and textContent (never innerHTML).

export const MAX_SHOWN = 8;
const BEFORE = ' \t\n\r([{"\'';

/** @typedef {{id: string, name: string}} Candidate */

/**
 * The "@query" that ends at `caret`, or null. @param {string} text @param {number} caret
 * @returns {{start: number, query: string}|null}
 */
export function mentionQuery(text, caret) {
  const head = text.slice(0, caret);
  const at = head.lastIndexOf('@');
  if (at < 0 || (at > 0 && !BEFORE.includes(head[at - 1]))) return null;
  const query = head.slice(at + 1);
  if (!query || /[\s@]/u.test(query)) return null;
  return { start: at, query };
}

/** Candidates whose name starts with `query` (case-insensitive), sorted, at most MAX_SHOWN. @param {Candidate[]} all @param {string} query */
export function matching(all, query) {
  const q = query.toLowerCase();
  return all.filter((c) => c.name && c.name.toLowerCase().startsWith(q))
    .sort((a, b) => a.name.localeCompare(b.name) || (a.id < b.id ? -1 : 1))
    .slice(0, MAX_SHOWN);
}

/** The members an App's room can mention (not us), with their display names. @param {any} app @returns {Candidate[]} */
export function roomCandidates(app) {
  const room = app?.room;
  if (!room) return [];
  return room.members().filter((/** @type {string} */ p) => p !== app.identity.peerId)
    .map((/** @type {string} */ p) => ({ id: p, name: room.displayName(p) ?? '' }))
    .filter((/** @type {Candidate} */ c) => c.name);
}

/**
 * Wire the autocomplete to the composer's textarea and its listbox.
 * @param {HTMLTextAreaElement} input @param {HTMLElement} list @param {() => Candidate[]} candidates
 */
export function wireMentionAutocomplete(input, list, candidates) {
  /** @type {Candidate[]} */
  let shown = [];
  let active = 0;
  /** @type {{start: number, query: string}|null} */
  let at = null;

  input.setAttribute('aria-autocomplete', 'list');
  input.setAttribute('aria-controls', list.id);
  input.setAttribute('aria-expanded', 'false');
  list.setAttribute('role', 'listbox');

  const close = () => {
    shown = [];
    at = null;
    list.hidden = true;
    list.replaceChildren();
    input.setAttribute('aria-expanded', 'false');
    input.removeAttribute('aria-activedescendant');
  };

  const render = () => {
    list.replaceChildren(...shown.map((c, i) => {
      const li = document.createElement('li');
      li.id = `${list.id}-${i}`;
      li.className = 'mention-option';
      li.setAttribute('role', 'option');
      li.setAttribute('aria-selected', String(i === active));
      li.dataset.peer = c.id;
      li.textContent = c.name;
      return li;
    }));
    list.hidden = false;
    input.setAttribute('aria-expanded', 'true');
    input.setAttribute('aria-activedescendant', `${list.id}-${active}`);
  };

  const update = () => {
    at = mentionQuery(input.value, input.selectionStart ?? input.value.length);
    const found = at ? matching(candidates(), at.query) : [];
    if (!found.length) {
      close();
      return;
    }
    const keep = shown[active]?.id;
    shown = found;
    active = Math.max(0, found.findIndex((c) => c.id === keep));
    render();
  };

  /** @param {number} i */
  const pick = (i) => {
    const c = shown[i];
    if (!c || !at) return;
    const end = at.start + 1 + at.query.length;
    const insert = `@${c.name} `;
    input.value = input.value.slice(0, at.start) + insert + input.value.slice(end);
    const caret = at.start + insert.length;
    input.setSelectionRange(caret, caret);
    close();
    input.focus();
    input.dispatchEvent(new Event('input', { bubbles: true }));
  };

  input.addEventListener('input', update);
  input.addEventListener('click', update);
  input.addEventListener('blur', () => close());
  // capture: runs before the composer's own Enter (send) and Escape (cancel) handlers
  input.addEventListener('keydown', (e) => {
    if (list.hidden || !shown.length) return;
    const move = e.key === 'ArrowDown' ? 1 : e.key === 'ArrowUp' ? -1 : 0;
    if (move) {
      active = (active + move + shown.length) % shown.length;
      render();
    } else if ((e.key === 'Enter' && !e.shiftKey) || e.key === 'Tab') pick(active);
    else if (e.key === 'Escape') close();
    else return;
    e.preventDefault();
    e.stopImmediatePropagation();
  }, { capture: true });
  input.addEventListener('keyup', (e) => {
    if (e.key === 'ArrowLeft' || e.key === 'ArrowRight' || e.key === 'Home' || e.key === 'End') update();
  });
  // mousedown, not click: the textarea keeps its focus (no blur that would close the list first)
  list.addEventListener('mousedown', (e) => {
    const li = /** @type {HTMLElement|null} */ (/** @type {HTMLElement} */ (e.target).closest('li[role="option"]'));
    if (!li) return;
    e.preventDefault();
    pick(shown.findIndex((c) => c.id === li.dataset.peer));
  });
  return { close, update };
}
