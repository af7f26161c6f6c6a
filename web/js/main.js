// Entry point of index.html: the tab's ownership of the identity, the room list, and the DOM bindings.
//
// Rules:
// - One tab of this browser (origin) owns the identity's connection: the holder of the Web Lock
//   LOCK. Another tab shows plainly that ephemesh is open elsewhere, forwards an invite it was opened with
//   to the owner (BroadcastChannel), and takes over by itself when the owner closes (its lock request
//   waits in the queue), or at once with "Use ephemesh in this tab" (steal: the old owner stops and
//   shows the notice). No flip-flop: ownership changes only when the lock does.
// - The owner shows many rooms in one page, all over ONE signaling connection (net/hub.js): a room list
//   (switch, leave, "+" to create or join one) with unread counts and each room's last message. Each room
//   has its own App and store; the view renders the room shown. The list is kept in localStorage
//   (`ephemesh.rooms`: invite fragments, which never leave the browser). Leaving a room in this browser
//   (✕) drops it from the list and erases every record the page stored of it (ui/leave.js).
// - Unread: messages of others that arrived while their room was not shown (or the page was hidden); a
//   room's stored history is not unread when the page (re)opens it.
import { createStore, initialState } from './ui/state.js';
import { coalescedView, createView, fillTtlSelect, viewStats } from './ui/view.js';
import { App, closeApp } from './ui/app.js';
import { wireAttachments } from './ui/attachments.js';
import { makeThumbnail } from './net/files.js';
import { loadOrCreateIdentity } from './store/identity.js';
import { SignalingHub } from './net/hub.js';
import { wsUrlOf } from './net/bootstraps.js';
import { ed25519Sign } from './core/crypto.js';
import { deriveRoomKeys, parseFragment } from './core/invite.js';
import * as features from './ui/features.js';
import { roomCandidates, wireMentionAutocomplete } from './ui/autocomplete.js';
import { forgetRoom } from './ui/leave.js';

const LOCK = 'ephemesh-identity';
const ROOMS_KEY = 'ephemesh.rooms';
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

// WebCrypto (crypto.subtle) exists only in a secure context: https://, or http://localhost. Say so
// instead of failing on the first key operation.
if (!globalThis.isSecureContext || !globalThis.crypto?.subtle) {
  const text = `This page needs a secure connection: end-to-end encryption (WebCrypto) is only available over https:// ` +
    `or on http://localhost, and this page was opened at ${location.origin}. Ask the server's admin to put it behind ` +
    `HTTPS (see docs/deploy.md: Caddy gets a certificate automatically), or open it on the server machine as http://localhost.`;
  const notice = createStore(initialState(Date.now()));
  const showNotice = createView();
  notice.subscribe(showNotice);
  notice.dispatch({ type: 'error', code: 'insecure-context', text });
  for (const b of document.querySelectorAll('button[type="submit"]')) /** @type {HTMLButtonElement} */ (b).disabled = true;
  throw new Error('insecure context: WebCrypto unavailable');
}
const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
const identity = await loadOrCreateIdentity();
const channel = typeof BroadcastChannel === 'undefined' ? null : new BroadcastChannel('ephemesh');

/**
 * @typedef {{ app: App, store: ReturnType<typeof createStore>, seen: Set<string>, roomId: string|null }} RoomCtx
 */

/** @type {SignalingHub|null} */
let hub = null;
/** @type {Map<string, SignalingHub>} hubs of the invites' other servers (several bootstraps), by WebSocket URL */
const otherHubs = new Map();

/** The hub of `server` (an invite's extra signaling server), shared by every room listing it. @param {string} server */
function hubFor(server) {
  const url = wsUrlOf(server);
  if (url === wsUrl && hub) return hub;
  let h = otherHubs.get(url);
  if (!h) {
    h = new SignalingHub({ url, publicKey: identity.publicKey, sign: (m) => ed25519Sign(identity.signingKey, m) });
    otherHubs.set(url, h);
  }
  return h;
}
/** @type {Map<string, RoomCtx>} */
const rooms = new Map();
/** @type {RoomCtx|null} */
let lobby = null;
/** @type {RoomCtx|null} */
let current = null;
let render = createView();
/** @type {(() => void)|null} */
let unbind = null;
/** Render the room shown now if a render is pending (coalescedView): for code reading the DOM right after a dispatch. */
let flushView = () => {};
let owner = false;
/** @type {AbortController|null} */
let waiting = null;

/** @param {boolean} active @returns {RoomCtx} */
function newCtx(active) {
  const store = createStore(initialState(Date.now()));
  store.dispatch({ type: 'set-name', name: localStorage.getItem('ephemesh.name') ?? '' });
  const app = new App({ store, identity, wsUrl, hub: /** @type {SignalingHub} */ (hub), hubFor, active });
  /** @type {RoomCtx} */
  const ctx = { app, store, seen: new Set(), roomId: null };
  store.subscribe(() => onRoomChange(ctx));
  return ctx;
}

/** @param {RoomCtx} ctx */
function onRoomChange(ctx) {
  if (ctx === current && document.visibilityState === 'visible') markAllSeen(ctx);
  roomsView.schedule(); // once per burst of dispatches, of any room
}
/** The room list, rendered like the room view: at most once per task turn after dispatches. */
const roomsView = coalescedView(renderRooms, () => undefined);

/** @param {RoomCtx} ctx */
function markAllSeen(ctx) {
  for (const m of ctx.store.getState().messages) ctx.seen.add(m.id);
}

/** @param {RoomCtx} ctx */
function unread(ctx) {
  const s = ctx.store.getState();
  return s.messages.filter((m) => m.sender !== s.self && !ctx.seen.has(m.id)).length;
}

function saveRooms() {
  localStorage.setItem(ROOMS_KEY, JSON.stringify([...rooms.values()].map((c) => c.app.fragment).filter(Boolean)));
}

/** @returns {string[]} */
function savedRooms() {
  try {
    const list = JSON.parse(localStorage.getItem(ROOMS_KEY) ?? '[]');
    return Array.isArray(list) ? list.filter((f) => typeof f === 'string').slice(0, 64) : [];
  } catch {
    return [];
  }
}

/** Show `ctx` (a room, or the lobby with the welcome screen). @param {RoomCtx} ctx */
function show(ctx) {
  if (current && current !== ctx) current.app.active = false;
  current = ctx;
  ctx.app.active = true;
  unbind?.();
  $('messages').replaceChildren();
  render = createView();
  // a dispatch only schedules one render of the latest state (ui/view.js coalescedView); the first is now
  const view = coalescedView(render, () => ctx.store.getState());
  const off = ctx.store.subscribe(view.schedule);
  unbind = () => { off(); view.close(); };
  flushView = view.flush;
  render(ctx.store.getState());
  if (ctx.app.fragment && location.hash !== `#${ctx.app.fragment}`) history.replaceState(null, '', `#${ctx.app.fragment}`);
  markAllSeen(ctx);
  void ctx.app.markSeen();
  renderRooms();
}

/** The room id an invite names, or null if it is not valid. @param {string} frag */
async function roomIdOf(frag) {
  try {
    const invite = parseFragment(frag);
    return (await deriveRoomKeys(invite.secret, invite.owner)).roomId;
  } catch {
    return null;
  }
}

/** @param {string} fragOrUrl @returns {string} */
function fragmentOf(fragOrUrl) {
  return fragOrUrl.includes('#') ? fragOrUrl.slice(fragOrUrl.indexOf('#') + 1) : fragOrUrl;
}

/** Open an invite: switch to its room if it is in the list, else join it (shown unless background). */
async function openInvite(/** @type {string} */ fragOrUrl, background = false) {
  const frag = fragmentOf(fragOrUrl);
  const roomId = await roomIdOf(frag);
  const known = roomId ? rooms.get(roomId) : undefined;
  if (known) {
    if (!background) show(known);
    return;
  }
  if (!roomId) {
    // an invalid invite: the lobby shows the error
    if (lobby) await lobby.app.openFragment(frag);
    return;
  }
  const ctx = background ? newCtx(false) : /** @type {RoomCtx} */ (lobby);
  if (!background) lobby = newCtx(false);
  ctx.roomId = roomId;
  rooms.set(roomId, ctx);
  saveRooms();
  const opened = ctx.app.openFragment(frag, { background });
  markAllSeen(ctx);
  if (!background) show(ctx);
  await opened;
  markAllSeen(ctx); // its stored history is not unread
  saveRooms();
}

/**
 * Stop following a room in this browser: it leaves the room list and every record of it is erased
 * (ui/leave.js). Resolves when the erasure is done. @param {string} roomId @returns {Promise<void>}
 */
function leaveRoom(roomId) {
  const ctx = rooms.get(roomId);
  if (!ctx) return Promise.resolve();
  rooms.delete(roomId);
  saveRooms();
  const erased = forgetRoom(ctx.app, roomId);
  if (current === ctx) {
    const next = rooms.values().next().value;
    if (next) show(next);
    else {
      history.replaceState(null, '', location.pathname);
      show(/** @type {RoomCtx} */ (lobby));
    }
  } else renderRooms();
  return erased;
}

function renderRooms() {
  const list = $('room-list');
  if (!list) return;
  list.replaceChildren(...[...rooms.entries()].map(([roomId, ctx]) => {
    const s = ctx.store.getState();
    const last = s.messages[s.messages.length - 1];
    const n = unread(ctx);
    const li = document.createElement('li');
    li.dataset.room = roomId;
    li.dataset.unread = String(n);
    li.setAttribute('aria-current', String(ctx === current));
    const open = document.createElement('button');
    open.type = 'button';
    open.className = 'room-open';
    open.dataset.room = roomId;
    const label = document.createElement('span');
    label.className = 'room-label';
    label.textContent = `Room ${roomId.slice(0, 6)}`;
    open.append(label);
    if (n) {
      const badge = document.createElement('span');
      badge.className = 'unread';
      badge.textContent = String(n);
      badge.setAttribute('aria-label', `${n} unread`);
      open.append(badge);
    }
    const excerpt = document.createElement('span');
    excerpt.className = 'room-last';
    excerpt.textContent = last ? (last.location ? features.locationText(last.location) : last.text) : 'No messages yet';
    open.append(excerpt);
    open.setAttribute('aria-label', `Room ${roomId.slice(0, 6)}${n ? `, ${n} unread` : ''}`);
    const leave = document.createElement('button');
    leave.type = 'button';
    leave.className = 'room-leave';
    leave.dataset.leave = roomId;
    leave.textContent = '✕';
    leave.setAttribute('aria-label', `Leave room ${roomId.slice(0, 6)} in this browser`);
    li.append(open, leave);
    return li;
  }));
}

// -- ownership ------------------------------------------------------------------------------------------

/** Run this tab as the owner: one hub, every saved room, the invite in the URL. */
async function start() {
  if (owner) return;
  owner = true;
  $('elsewhere').hidden = true;
  hub = new SignalingHub({ url: wsUrl, publicKey: identity.publicKey, sign: (m) => ed25519Sign(identity.signingKey, m) });
  lobby = newCtx(true);
  const hash = location.hash.length > 1 ? location.hash.slice(1) : null;
  const hashRoom = hash ? await roomIdOf(hash) : null;
  show(lobby);
  for (const frag of savedRooms()) {
    if (hashRoom && (await roomIdOf(frag)) === hashRoom) continue;
    await openInvite(frag, true);
  }
  if (hash) await openInvite(hash);
  else {
    const first = rooms.values().next().value;
    if (first) show(first);
  }
}

/** Another tab took the identity over: stop everything and say so. */
function stop() {
  if (!owner) return;
  owner = false;
  for (const ctx of rooms.values()) closeApp(ctx.app);
  if (lobby) closeApp(lobby.app);
  rooms.clear();
  lobby = current = null;
  unbind?.();
  unbind = null;
  hub?.close();
  hub = null;
  for (const h of otherHubs.values()) h.close();
  otherHubs.clear();
  showElsewhere(false);
  waitForLock();
}

/** @param {boolean} forwarded */
function showElsewhere(forwarded) {
  $('welcome').hidden = true;
  $('room').hidden = true;
  $('error').hidden = true;
  $('elsewhere').hidden = false;
  $('elsewhere-forwarded').hidden = !forwarded;
}

/**
 * Hold the lock until the page closes; if it is stolen, stop. `granted` learns at once whether we got it.
 * @param {LockOptions} options @param {(got: boolean) => void} [granted]
 */
function holdLock(options, granted) {
  return navigator.locks.request(LOCK, options, async (lock) => {
    granted?.(Boolean(lock));
    if (!lock) return false;
    await start();
    await new Promise(() => undefined); // held for the life of the page
    return true;
  }).catch((err) => {
    if (err?.name === 'AbortError' && owner) stop(); // stolen by another tab
    return false;
  });
}

/** Queue for the lock: this tab takes over when the owner closes. */
function waitForLock() {
  waiting?.abort();
  waiting = new AbortController();
  void holdLock({ signal: waiting.signal });
}

async function boot() {
  if (!navigator.locks) {
    await start(); // no Web Locks (very old browser): run alone
    return;
  }
  /** @type {boolean} */
  const got = await new Promise((resolve) => void holdLock({ ifAvailable: true }, resolve));
  if (got) return;
  const hash = location.hash.length > 1 ? location.hash.slice(1) : null;
  if (hash) channel?.postMessage({ type: 'open', fragment: hash });
  showElsewhere(Boolean(hash && channel));
  waitForLock();
}

$('use-here').addEventListener('click', () => {
  waiting?.abort();
  waiting = null;
  void holdLock({ steal: true });
});

channel?.addEventListener('message', (ev) => {
  const msg = ev.data;
  if (owner && msg && msg.type === 'open' && typeof msg.fragment === 'string' && msg.fragment.length < 4096) {
    void openInvite(msg.fragment, true);
  }
});

/** @type {any} */ (window).ephemesh = {
  get app() { return (current ?? lobby)?.app ?? { room: null }; }, // (before this tab owns anything: no room)
  get store() { return (current ?? lobby)?.store ?? createStore(initialState(Date.now())); },
  identity,
  shell: {
    get owner() { return owner; },
    get hub() { return hub; },
    rooms,
    unread,
    show: (/** @type {string} */ roomId) => { const c = rooms.get(roomId); if (c) show(c); },
    renders: () => viewStats.renders, // test hook: how many times the room view rendered
    openInvite,
    leaveRoom,
  },
};

// -- DOM bindings (they act on the room shown) ------------------------------------------------------------

const app = () => /** @type {App} */ (current?.app);
const store = () => /** @type {RoomCtx} */ (current).store;

const savedName = localStorage.getItem('ephemesh.name') ?? '';
/** @type {HTMLInputElement} */ ($('name-input')).value = savedName;
fillTtlSelect(/** @type {HTMLSelectElement} */ ($('welcome-ttl')), 3600);

function askNotifications() {
  if (typeof Notification !== 'undefined' && Notification.permission === 'default') void Notification.requestPermission();
}

$('welcome-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  if (!owner || !lobby) return;
  const name = /** @type {HTMLInputElement} */ ($('name-input')).value.trim();
  localStorage.setItem('ephemesh.name', name);
  lobby.store.dispatch({ type: 'set-name', name });
  askNotifications();
  const ctx = lobby;
  lobby = newCtx(false);
  await ctx.app.createRoom(Number(/** @type {HTMLSelectElement} */ ($('welcome-ttl')).value));
  const roomId = ctx.app.roomId;
  if (!roomId) return;
  ctx.roomId = roomId;
  rooms.set(roomId, ctx);
  saveRooms();
  show(ctx);
});
$('join-form').addEventListener('submit', (e) => {
  e.preventDefault();
  askNotifications();
  if (owner) void openInvite(/** @type {HTMLInputElement} */ ($('invite-input')).value.trim());
});
$('room-list').addEventListener('click', (e) => {
  const target = /** @type {HTMLElement} */ (e.target);
  const leave = /** @type {HTMLElement|null} */ (target.closest('[data-leave]'));
  if (leave?.dataset.leave) { void leaveRoom(leave.dataset.leave).catch((err) => console.warn('leave: erase failed:', err)); return; }
  const open = /** @type {HTMLElement|null} */ (target.closest('.room-open'));
  const ctx = open?.dataset.room ? rooms.get(open.dataset.room) : undefined;
  if (ctx) show(ctx);
});
$('room-add').addEventListener('click', () => {
  if (!lobby) return;
  history.replaceState(null, '', location.pathname);
  show(lobby);
});
$('error-dismiss').addEventListener('click', () => store().dispatch({ type: 'dismiss-error' }));
$('ttl-select').addEventListener('change', (e) => store().dispatch({ type: 'set-ttl', ttlS: Number(/** @type {HTMLSelectElement} */ (e.target).value) }));
$('room-ttl-select').addEventListener('change', (e) => void app().setRoomTimer(Number(/** @type {HTMLSelectElement} */ (e.target).value)));
$('invite-copy').addEventListener('click', () => {
  const url = store().getState().inviteUrl;
  if (url) void navigator.clipboard?.writeText(url).catch(() => undefined);
});
$('members-toggle').addEventListener('click', () => {
  const open = $('members').classList.toggle('open');
  $('members-toggle').setAttribute('aria-expanded', String(open));
});
$('safety-open').addEventListener('click', () => store().dispatch({ type: 'safety-open', open: true }));
$('safety').addEventListener('close', () => store().dispatch({ type: 'safety-open', open: false }));

const input = /** @type {HTMLTextAreaElement} */ ($('composer-input'));
async function send() {
  askNotifications(); // a user gesture: mentions of us can notify
  const text = input.value;
  input.value = '';
  if (!(await app().sendText(text)) && !input.value) input.value = text;
}
function cancelCompose() {
  if (store().getState().editing) input.value = '';
  store().dispatch({ type: 'compose-reset' });
}
// @name autocomplete (ui/autocomplete.js); registered first: its keys (Enter, Tab, Escape) win while it is open
wireMentionAutocomplete(input, $('mention-list'), () => roomCandidates(current?.app));
$('composer').addEventListener('submit', (e) => { e.preventDefault(); void send(); });
input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); void send(); }
  if (e.key === 'Escape') cancelCompose();
});
input.addEventListener('input', () => void app().typed(input.value.trim().length > 0));
$('compose-cancel').addEventListener('click', () => { cancelCompose(); input.focus(); });
$('room-name-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const field = /** @type {HTMLInputElement} */ ($('room-name-input'));
  void app().setDisplayName(field.value).then((ok) => { if (ok) field.value = ''; });
});
// Member actions (rendered by view.js for admins): remove, readmit, admin, unadmin; announcement mode; leave.
$('members').addEventListener('click', (e) => {
  const btn = /** @type {HTMLElement|null} */ (/** @type {HTMLElement} */ (e.target).closest('button[data-action]'));
  const action = btn?.dataset.action;
  if (action === 'remove' || action === 'readmit' || action === 'admin' || action === 'unadmin') void app().memberAction(action, btn?.dataset.id ?? '');
  else if (action === 'announce-on' || action === 'announce-off') void app().memberAction(action);
  else if (action === 'close' || action === 'open') void app().memberAction(action); // closed room: admins approve joins
  else if (action === 'admit') void app().memberAction(action, btn?.dataset.id ?? '');
});
$('leave-room').addEventListener('click', () => {
  if (confirm('Leave this room for good? Only an admin can let you back in.')) void app().memberAction('leave');
});
// Message actions (buttons rendered by view.js): reply, react picker, react, edit, unsend.
$('messages').addEventListener('click', (e) => {
  const btn = /** @type {HTMLElement|null} */ (/** @type {HTMLElement} */ (e.target).closest('button[data-action]'));
  const id = btn?.dataset.id;
  if (!btn || !id) return;
  const action = btn.dataset.action;
  if (action === 'reply') { store().dispatch({ type: 'reply', id }); input.focus(); }
  else if (action === 'forward') openForward(id);
  else if (action === 'edit') {
    store().dispatch({ type: 'edit', id });
    input.value = store().getState().messages.find((m) => m.id === id)?.text ?? '';
    input.focus();
  } else if (action === 'unsend') void app().unsend(id);
  else if (action === 'picker') {
    const open = store().getState().picker === id;
    store().dispatch({ type: 'picker', id: open ? null : id });
    flushView(); // the picker's buttons exist only once rendered
    if (!open) /** @type {HTMLElement|null} */ (document.querySelector(`#messages li[data-id="${CSS.escape(id)}"] .picker button`))?.focus();
  } else if (action === 'react' && btn.dataset.emoji) void app().react(id, btn.dataset.emoji);
  else if (action === 'fetch-file') void app().fetchFile(id);
});
// Attachments: attach button, drag and drop, paste an image, voice notes (ui/attachments.js).
wireAttachments({
  send: (blob, name, mime, o) => app().sendFile(blob, name, mime, o),
  thumbnail: makeThumbnail,
  error: (text) => store().dispatch({ type: 'error', code: 'attachment', text }),
});
$('messages').addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && store().getState().picker) store().dispatch({ type: 'picker', id: null });
});
// Issue 15: search, location, forward, last seen (ui/features.js does the work).
$('search-form').addEventListener('submit', (e) => e.preventDefault());
$('search-input').addEventListener('input', (e) => features.search(app(), /** @type {HTMLInputElement} */ (e.target).value));
$('share-location').addEventListener('click', () => void features.shareLocation(app()));
$('search-results').addEventListener('click', (e) => { // a hit: show that message
  const hit = /** @type {HTMLElement|null} */ (/** @type {HTMLElement} */ (e.target).closest('li[data-id]'));
  const li = hit?.dataset.id ? document.querySelector(`#messages li[data-id="${CSS.escape(hit.dataset.id)}"]`) : null;
  li?.scrollIntoView({ block: 'center' });
});
$('lastseen-toggle').addEventListener('change', (e) => void features.setShareLastSeen(app(), /** @type {HTMLInputElement} */ (e.target).checked));
/** @type {string|null} */
let forwarding = null;
/** Pick the room to forward message `id` to (the other rooms of this page). @param {string} id */
function openForward(id) {
  forwarding = id;
  const others = [...rooms.entries()].filter(([, c]) => c !== current);
  $('forward-list').replaceChildren(...(others.length ? others.map(([roomId]) => {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'secondary';
    b.dataset.forwardRoom = roomId;
    b.textContent = `Room ${roomId.slice(0, 6)}`;
    li.append(b);
    return li;
  }) : [Object.assign(document.createElement('li'), { textContent: 'Join or create another room first (＋).' })]));
  /** @type {HTMLDialogElement} */ ($('forward')).showModal();
}
$('forward-list').addEventListener('click', (e) => {
  const b = /** @type {HTMLElement|null} */ (/** @type {HTMLElement} */ (e.target).closest('button[data-forward-room]'));
  const target = b?.dataset.forwardRoom ? rooms.get(b.dataset.forwardRoom) : undefined;
  /** @type {HTMLDialogElement} */ ($('forward')).close();
  if (target && forwarding) void features.forward(app(), target.app, forwarding);
  forwarding = null;
});
document.addEventListener('visibilitychange', () => {
  if (current && document.visibilityState === 'visible') {
    markAllSeen(current);
    renderRooms();
  }
  void current?.app.markSeen();
});

// Live countdowns and expiry: one tick per second drives every room.
setInterval(() => {
  const now = Date.now();
  for (const ctx of rooms.values()) ctx.store.dispatch({ type: 'tick', now });
  lobby?.store.dispatch({ type: 'tick', now });
}, 1000);

await boot();
