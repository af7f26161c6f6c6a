// App state: one plain object, changed only by reduce(state, action). Pure and sans-IO (time is
// passed in actions), so tests can drive the UI by dispatching actions.
//
// Rules:
// - Messages are kept in the room's shared order (lamport, sender, seq) — the order every member
//   shows — and removed once now >= expiresAt ('tick') or when the room erased them ('message-gone').
//   The view never shows an expired message.
// - A member's `link` is the mesh link state ('open' = handshake done, reachable); `self` is always
//   'self'. `path` (direct/relayed) and `reason` (why unreachable) come from the mesh's link info.
// - `delivered[id]` lists members that acknowledged one of our messages; a message nobody has
//   acknowledged yet is shown as pending, never as sent.
// - `error` holds at most one user-facing error {code, text}; 'dismiss-error' clears it.
// - `names` holds display names from signed profiles (room state); nameOf() falls back to a short peer id
//   ('You' for ourselves before we set one). 'message-updated' replaces a shown message (edit, reactions).
// - `receipts[id]` counts, for our own messages, members that saw it and that reported erasing it (of M).
// - Our own messages leave a text-less "ghost" for GHOST_MS after they are erased, so "erased on N of M"
//   (receipts arrive after expiry) stays visible; ghosts never hold plaintext.
// - The composer is in one mode at a time: plain, replying to `replyTo`, or editing `editing`.

import { reduceFeatures } from './features-state.js';

export const GHOST_MS = 60_000;
export const REACTIONS = ['👍', '❤️', '😂', '🎉', '😮', '😢'];

export const TTL_CHOICES = [
  { s: 5, label: '5 seconds' },
  { s: 30, label: '30 seconds' },
  { s: 300, label: '5 minutes' },
  { s: 3600, label: '1 hour' },
  { s: 86400, label: '1 day' },
  { s: 604800, label: '1 week' },
];

/**
 * @typedef {{ peer: string, name: string, link: 'self'|'connecting'|'open'|'failed'|'closed',
 *   path?: 'direct'|'relayed'|null, reason?: string|null }} Member
 * @typedef {{ id: string, sender: string, text: string, sentAt: number, expiresAt: number, lamport?: number, seq?: number,
 *   replyTo?: string|null, edited?: boolean, reactions?: [string, string[]][], mentions?: string[], mentioned?: boolean,
 *   forwardedFrom?: string|null, location?: [number, number, number|null]|null }} Message
 * @typedef {{ seen: number, erased: number, of: number }} Receipts
 * @typedef {{ id: string, sender: string, sentAt: number, lamport?: number, seq?: number, goneAt: number, reason: string }} Ghost
 * @typedef {{ code: string, text: string }} UiError
 * @typedef {{
 *   screen: 'welcome'|'room', displayName: string,
 *   connection: 'offline'|'connecting'|'online'|'unreachable'|'elsewhere',
 *   roomId: string|null, inviteUrl: string|null, roomTtlS: number, ttlS: number,
 *   self: string|null, members: Record<string, Member>, messages: Message[],
 *   error: UiError|null, safetyOpen: boolean, safety: Record<string, string>, now: number,
 *   names: Record<string, string>, typing: string[], receipts: Record<string, Receipts>, delivered: Record<string, string[]>,
 *   replyTo: string|null, editing: string|null, picker: string|null, ghosts: Ghost[],
 *   roles: {owner: string|null, admins: string[], announce: boolean, removed: string[], closed: boolean, requests: string[]},
 *   search: {q: string, ids: string[]}|null, lastSeen: Record<string, number>, shareLastSeen: boolean,
 * }} AppState
 */

/** @param {number} now @returns {AppState} */
export function initialState(now) {
  return {
    screen: 'welcome', displayName: '', connection: 'offline', roomId: null, inviteUrl: null,
    roomTtlS: 3600, ttlS: 3600, self: null, members: {}, messages: [], error: null,
    safetyOpen: false, safety: {}, now, names: {}, typing: [], receipts: {}, delivered: {}, replyTo: null, editing: null, picker: null, ghosts: [],
    roles: { owner: null, admins: [], announce: false, removed: [], closed: false, requests: [] },
    search: null, lastSeen: {}, shareLastSeen: true, // issue 15 (features-state.js)
  };
}

/** The name shown for `peer`: its display name, else 'You' for us, else a short id. @param {AppState} s @param {string} peer */
export function nameOf(s, peer) {
  return s.names[peer] || (peer === s.self ? 'You' : peer.slice(0, 8));
}

/** @param {Message} a @param {Message} b */
function order(a, b) {
  if (a.lamport !== undefined && b.lamport !== undefined) {
    return a.lamport - b.lamport || (a.sender < b.sender ? -1 : a.sender > b.sender ? 1 : 0) || (a.seq ?? 0) - (b.seq ?? 0);
  }
  return a.sentAt - b.sentAt || (a.sender < b.sender ? -1 : a.sender > b.sender ? 1 : 0) || (a.id < b.id ? -1 : 1);
}

/**
 * @param {AppState} s @param {any} a action
 * @returns {AppState}
 */
export function reduce(s, a) {
  switch (a.type) {
    case 'set-name':
      return { ...s, displayName: String(a.name).slice(0, 64) };
    case 'connecting':
      return { ...s, connection: 'connecting', error: null };
    case 'connected':
      return { ...s, connection: 'online', self: a.peer, members: { ...s.members, [a.peer]: { peer: a.peer, name: s.displayName || 'You', link: 'self' } } };
    case 'elsewhere':
      return { ...s, connection: 'elsewhere', error: { code: 'elsewhere', text: 'This identity is connected from another window or device. Trying again in 30 s.' } };
    case 'unreachable':
      return { ...s, connection: 'unreachable', error: { code: 'server-unreachable', text: 'The server cannot be reached. Retrying…' } };
    case 'enter-room':
      return { ...s, screen: 'room', roomId: a.roomId, inviteUrl: a.inviteUrl, roomTtlS: a.ttlS ?? s.roomTtlS, ttlS: a.ttlS ?? s.ttlS };
    case 'member': {
      const prev = s.members[a.peer];
      if (prev?.link === 'self') return s;
      return { ...s, members: { ...s.members, [a.peer]: { peer: a.peer, name: a.name ?? prev?.name ?? a.peer.slice(0, 8), link: a.link ?? prev?.link ?? 'connecting' } } };
    }
    case 'roles':
      return { ...s, roles: { owner: a.owner ?? null, admins: [...a.admins], announce: Boolean(a.announce), removed: [...(a.removed ?? [])], closed: Boolean(a.closed), requests: [...(a.requests ?? [])] } };
    case 'link-info': {
      const i = a.info;
      const prev = s.members[i.peer];
      if (prev?.link === 'self') return s;
      const link = i.state === 'unreachable' ? 'failed' : i.state === 'connecting' ? 'connecting' : 'open';
      const path = i.state === 'direct' || i.state === 'relayed' ? i.state : null;
      return { ...s, members: { ...s.members, [i.peer]: { peer: i.peer, name: prev?.name ?? i.peer.slice(0, 8), link, path, reason: i.reason ?? null } } };
    }
    case 'delivered': {
      const had = s.delivered[a.id] ?? [];
      if (had.includes(a.peer)) return s;
      return { ...s, delivered: { ...s.delivered, [a.id]: [...had, a.peer] } };
    }
    case 'member-gone': {
      const members = { ...s.members };
      if (members[a.peer]?.link !== 'self') delete members[a.peer];
      return { ...s, members };
    }
    case 'message': {
      if (a.message.expiresAt <= s.now || s.messages.some((m) => m.id === a.message.id)) return s;
      return { ...s, messages: [...s.messages, a.message].sort(order) };
    }
    case 'message-updated': {
      const i = s.messages.findIndex((m) => m.id === a.message.id);
      if (i < 0) return s;
      const messages = [...s.messages];
      messages[i] = a.message;
      return { ...s, messages };
    }
    case 'message-gone': {
      const gone = s.messages.filter((m) => m.id === a.id);
      return dropGone({ ...s, messages: s.messages.filter((m) => m.id !== a.id), ghosts: addGhosts(s, gone, s.now, a.reason ?? 'expired') });
    }
    case 'tick': {
      const gone = s.messages.filter((m) => m.expiresAt <= a.now);
      const ghosts = addGhosts(s, gone, a.now, 'expired').filter((g) => g.goneAt + GHOST_MS > a.now);
      return dropGone({ ...s, now: a.now, messages: s.messages.filter((m) => m.expiresAt > a.now), ghosts });
    }
    case 'profile':
      return { ...s, names: { ...s.names, [a.peer]: String(a.name) } };
    case 'typing':
      return { ...s, typing: [...a.peers] };
    case 'receipt': {
      const prev = s.receipts[a.id] ?? { seen: 0, erased: 0, of: 0 };
      return { ...s, receipts: { ...s.receipts, [a.id]: { seen: a.seen ?? prev.seen, erased: a.erased ?? prev.erased, of: a.of } } };
    }
    case 'reply':
      return { ...s, replyTo: a.id, editing: null, picker: null };
    case 'edit':
      return { ...s, editing: a.id, replyTo: null, picker: null };
    case 'compose-reset':
      return { ...s, editing: null, replyTo: null };
    case 'picker':
      return { ...s, picker: a.id };
    case 'set-ttl':
      return { ...s, ttlS: a.ttlS };
    case 'set-room-ttl':
      return { ...s, roomTtlS: a.ttlS, ttlS: a.ttlS };
    case 'error':
      return { ...s, error: { code: a.code, text: a.text } };
    case 'dismiss-error':
      return { ...s, error: null };
    case 'safety-open':
      return { ...s, safetyOpen: a.open };
    case 'safety-number':
      return { ...s, safety: { ...s.safety, [a.peer]: a.number } };
    default:
      return reduceFeatures(s, a);
  }
}

/** Ghosts (no text) for our own messages that just went. @param {AppState} s @param {Message[]} gone @param {number} now @param {string} reason @returns {Ghost[]} */
function addGhosts(s, gone, now, reason) {
  const mine = gone.filter((m) => m.sender === s.self && !s.ghosts.some((g) => g.id === m.id));
  if (!mine.length) return s.ghosts;
  return [...s.ghosts, ...mine.map((m) => ({ id: m.id, sender: m.sender, sentAt: m.sentAt, lamport: m.lamport, seq: m.seq, goneAt: now, reason }))];
}

/** Leave reply/edit/picker modes whose message is gone. @param {AppState} s @returns {AppState} */
function dropGone(s) {
  const has = (/** @type {string|null} */ id) => id === null || s.messages.some((m) => m.id === id);
  if (has(s.replyTo) && has(s.editing) && has(s.picker)) return s;
  return { ...s, replyTo: has(s.replyTo) ? s.replyTo : null, editing: has(s.editing) ? s.editing : null, picker: has(s.picker) ? s.picker : null };
}

/** A tiny store: getState, dispatch, subscribe (listeners get the new state). */
export function createStore(/** @type {AppState} */ initial) {
  let state = initial;
  /** @type {Set<(s: AppState) => void>} */
  const listeners = new Set();
  return {
    getState: () => state,
    /** @param {{type: string} & Record<string, any>} action */
    dispatch(action) {
      const next = reduce(state, action);
      if (next !== state) {
        state = next;
        for (const l of listeners) l(state);
      }
    },
    /** @param {(s: AppState) => void} fn */
    subscribe(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
}

/** "4:59", "1:02:03", "2d 3h" — remaining time until `expiresAt`. */
export function formatRemaining(/** @type {number} */ ms) {
  const t = Math.max(0, Math.ceil(ms / 1000));
  const d = Math.floor(t / 86400), h = Math.floor((t % 86400) / 3600), m = Math.floor((t % 3600) / 60), sec = t % 60;
  if (d > 0) return `${d}d ${h}h`;
  const pad = (/** @type {number} */ n) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(sec)}` : `${m}:${pad(sec)}`;
}

/** Human label for a TTL in seconds. */
export function ttlLabel(/** @type {number} */ s) {
  return TTL_CHOICES.find((c) => c.s === s)?.label ?? `${s} s`;
}
