// Issue 15 in the web client: mentions (compose + notify), search that forgets, forward, location, last
// seen. The App (app.js) and the view (view.js) call these; state lives in the room's store
// (features-state.js reduces the actions).
//
// Rules:
// - A mention of us notifies through the Notification API whether the tab is visible or hidden
//   (permission is asked on a user gesture: joining, creating a room, sending); like every notification
//   here it never contains message text.
// - Search runs in the room core's in-memory index; the store keeps only the query and matching ids,
//   and the view shows only ids still among the room's messages, so an expired or unsent message
//   leaves the results at once. Edits re-run the query.
// - Forward: a new message of ours in the other room, expiry no later than the original's (the core
//   refuses an expired one); an attachment is fetched if needed and re-sealed under a fresh key
//   (forward_files.js); errors become the banner.
// - Location: navigator.geolocation, shown as text and a geo: link; no map tiles are fetched.

import { findMentions } from '../core/mentions.js';
import { ContentTooLong, locationFromDegrees } from '../core/content.js';
import { forwardAttachment } from './forward_files.js';

/** @typedef {import('./app.js').App} App */
/** @typedef {import('./state.js').AppState} AppState */
/** @typedef {import('./state.js').Message} Message */

/** The member ids `@name`s in `text` name (members of the room other than us). @param {App} app @param {string} text */
export function mentionsIn(app, text) {
  const room = app.room;
  if (!room || !text.includes('@')) return [];
  const names = new Map(room.members().filter((p) => p !== app.identity.peerId).map((p) => [p, room.displayName(p)]));
  return findMentions(text, names);
}

/** Notify a mention (visible or hidden tab); never the text. @param {string} sender */
export function notifyMention(sender) {
  if (typeof Notification === 'undefined' || Notification.permission !== 'granted') return false;
  try {
    new Notification('ephemesh', { body: `${sender} mentioned you`, tag: 'ephemesh-mention' });
  } catch {
    return false; // e.g. a browser that allows notifications from a service worker only
  }
  return true;
}

/** A refused send, as the banner says it. @param {unknown} err */
export function sendRefusal(err) {
  if (err instanceof ContentTooLong) return { code: 'too-long', text: `Message not sent: ${err.message.replace(/^message too long: /, 'too long, ')}.` };
  return null;
}

/** Search the room shown (empty query: close the results). @param {App} app @param {string} q */
export function search(app, q) {
  const room = app.room;
  if (!room) return;
  if (!q.trim()) {
    app.store.dispatch({ type: 'search', search: null });
    return;
  }
  try {
    app.store.dispatch({ type: 'search', search: { q, ids: room.search(q).map((m) => m.id) } });
  } catch (err) {
    app.store.dispatch({ type: 'error', code: 'bad-search', text: err instanceof Error ? err.message : 'bad search' });
  }
}

/** Re-run the open search after an edit (or anything that changes what matches). @param {App} app */
export function refreshSearch(app) {
  const s = app.store.getState().search;
  if (s) search(app, s.q);
}

/** Share our position (the browser asks the user). @param {App} app @param {Geolocation} [geo] */
export async function shareLocation(app, geo = navigator.geolocation) {
  const room = app.room;
  if (!room || !geo) return false;
  /** @type {GeolocationPosition} */
  let pos;
  try {
    pos = await new Promise((resolve, reject) => geo.getCurrentPosition(resolve, reject, { enableHighAccuracy: true, timeout: 30_000 }));
  } catch (err) {
    const denied = /** @type {GeolocationPositionError} */ (err)?.code === 1;
    app.store.dispatch({ type: 'error', code: 'no-location', text: denied ? 'Location not shared: permission denied.' : 'Location not shared: position unavailable.' });
    return false;
  }
  const c = pos.coords;
  const message = await room.sendLocation(locationFromDegrees(c.latitude, c.longitude, Number.isFinite(c.accuracy) ? Math.min(c.accuracy, 1_000_000) : null), app.now(), { ttlS: app.store.getState().ttlS });
  app.store.dispatch({ type: 'message', message });
  await app.pump([]);
  return true;
}

/** Forward message `id` of `app`'s room to `target`'s room. @param {App} app @param {App} target @param {string} id */
export async function forward(app, target, id) {
  const source = app.room?.message(id) ?? null;
  if (!source || !target.room) {
    app.store.dispatch({ type: 'error', code: 'cannot-forward', text: 'Cannot forward: that message is gone (expired or unsent).' });
    return false;
  }
  const from = app.room?.displayName(source.sender) ?? source.sender.slice(0, 8);
  try {
    const message = source.file
      ? await forwardAttachment(app, target, source, from) // re-sealed under a fresh key (forward_files.js)
      : await target.room.forward(source, from, target.now(), { ttlS: target.store.getState().ttlS });
    target.store.dispatch({ type: 'message', message });
  } catch (err) {
    app.store.dispatch({ type: 'error', code: 'cannot-forward', text: `Cannot forward: ${err instanceof Error ? err.message.replace(/^cannot forward: /, '') : 'refused'}.` });
    return false;
  }
  await target.pump([]);
  return true;
}

/** @param {App} app */
export function refreshLastSeen(app) {
  const room = app.room;
  if (!room) return;
  app.store.dispatch({ type: 'last-seen', seen: Object.fromEntries(room.lastSeen(app.now())), share: room.shareLastSeen });
}

/** Opt in or out of showing when we were last online (this room). @param {App} app @param {boolean} share */
export async function setShareLastSeen(app, share) {
  const room = app.room;
  if (!room) return;
  await room.setShareLastSeen(share, app.now());
  await app.pump([]);
  refreshLastSeen(app);
}

// ---------------------------------------------------------------- view helpers

/** RFC 5870 geo: URI. @param {[number, number, number|null]} loc */
export function geoUri(loc) {
  const [lat, lon, acc] = loc;
  const uri = `geo:${(lat / 1e6).toFixed(6)},${(lon / 1e6).toFixed(6)}`;
  return acc === null ? uri : `${uri};u=${acc}`;
}

/** @param {[number, number, number|null]} loc */
export function locationText(loc) {
  const [lat, lon, acc] = loc;
  return `📍 ${(lat / 1e6).toFixed(6)}, ${(lon / 1e6).toFixed(6)}${acc === null ? '' : ` (±${acc} m)`}`;
}

/** "just now", "5 min ago", "3 h ago", "2 d ago". @param {number} at @param {number} now */
export function ago(at, now) {
  const s = Math.max(0, Math.floor((now - at) / 1000));
  if (s < 60) return s < 5 ? 'just now' : `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** The body of a message item: forwarded mark, text or location (+ geo: link). @param {Message} m @returns {HTMLElement[]} */
export function messageBody(m) {
  /** @type {HTMLElement[]} */
  const out = [];
  if (m.forwardedFrom !== undefined && m.forwardedFrom !== null) {
    const f = document.createElement('p');
    f.className = 'forwarded';
    f.textContent = `Forwarded from ${m.forwardedFrom}`;
    out.push(f);
  }
  const p = document.createElement('p');
  p.className = 'text';
  if (m.location) {
    p.textContent = `${locationText(m.location)} `;
    const a = document.createElement('a');
    a.className = 'geo';
    a.href = geoUri(m.location);
    a.textContent = 'open in maps';
    a.rel = 'noreferrer';
    p.append(a);
  } else p.textContent = m.text;
  out.push(p);
  return out;
}

/** The search results panel (only ids still shown: gone messages leave at once). @param {AppState} s @param {(peer: string) => string} name */
export function renderSearch(s, name) {
  const panel = document.getElementById('search-results');
  if (!panel) return;
  panel.hidden = !s.search;
  if (!s.search) {
    panel.replaceChildren();
    return;
  }
  const ids = new Set(s.search.ids);
  const hits = s.messages.filter((m) => ids.has(m.id));
  const head = document.createElement('li');
  head.className = 'search-head';
  head.textContent = hits.length ? `${hits.length} message${hits.length === 1 ? '' : 's'} match “${s.search.q}”` : `No message matches “${s.search.q}”`;
  panel.replaceChildren(head, ...hits.map((m) => {
    const li = document.createElement('li');
    li.className = 'search-hit';
    li.dataset.id = m.id;
    const text = m.location ? locationText(m.location) : m.text;
    li.textContent = `${name(m.sender)}: ${text.length > 120 ? `${text.slice(0, 120)}…` : text}`;
    return li;
  }));
}
