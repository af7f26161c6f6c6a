// Entry point of index.html: builds the store, view, identity and App, and binds the DOM.
import { createStore, initialState } from './ui/state.js';
import { createView, fillTtlSelect } from './ui/view.js';
import { App } from './ui/app.js';
import { loadOrCreateIdentity } from './store/identity.js';

const store = createStore(initialState(Date.now()));
const render = createView();
store.subscribe(render);
render(store.getState());

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

// WebCrypto (crypto.subtle) exists only in a secure context: https://, or http://localhost. Say so
// instead of failing on the first key operation.
if (!globalThis.isSecureContext || !globalThis.crypto?.subtle) {
  const text = `This page needs a secure connection: end-to-end encryption (WebCrypto) is only available over https:// ` +
    `or on http://localhost, and this page was opened at ${location.origin}. Ask the server's admin to put it behind ` +
    `HTTPS (see docs/deploy.md: Caddy gets a certificate automatically), or open it on the server machine as http://localhost.`;
  store.dispatch({ type: 'error', code: 'insecure-context', text });
  for (const b of document.querySelectorAll('button[type="submit"]')) /** @type {HTMLButtonElement} */ (b).disabled = true;
  throw new Error('insecure context: WebCrypto unavailable');
}
const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
const identity = await loadOrCreateIdentity();
const app = new App({ store, identity, wsUrl });
/** @type {any} */ (window).ephemesh = { app, store, identity };

const savedName = localStorage.getItem('ephemesh.name') ?? '';
/** @type {HTMLInputElement} */ ($('name-input')).value = savedName;
store.dispatch({ type: 'set-name', name: savedName });
fillTtlSelect(/** @type {HTMLSelectElement} */ ($('welcome-ttl')), 3600);

function askNotifications() {
  if (typeof Notification !== 'undefined' && Notification.permission === 'default') void Notification.requestPermission();
}

$('welcome-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const name = /** @type {HTMLInputElement} */ ($('name-input')).value.trim();
  localStorage.setItem('ephemesh.name', name);
  store.dispatch({ type: 'set-name', name });
  askNotifications();
  void app.createRoom(Number(/** @type {HTMLSelectElement} */ ($('welcome-ttl')).value));
});
$('join-form').addEventListener('submit', (e) => {
  e.preventDefault();
  askNotifications();
  void app.openFragment(/** @type {HTMLInputElement} */ ($('invite-input')).value.trim());
});
$('error-dismiss').addEventListener('click', () => store.dispatch({ type: 'dismiss-error' }));
$('ttl-select').addEventListener('change', (e) => store.dispatch({ type: 'set-ttl', ttlS: Number(/** @type {HTMLSelectElement} */ (e.target).value) }));
$('room-ttl-select').addEventListener('change', (e) => void app.setRoomTimer(Number(/** @type {HTMLSelectElement} */ (e.target).value)));
$('invite-copy').addEventListener('click', () => {
  const url = store.getState().inviteUrl;
  if (url) void navigator.clipboard?.writeText(url).catch(() => undefined);
});
$('members-toggle').addEventListener('click', () => {
  const open = $('members').classList.toggle('open');
  $('members-toggle').setAttribute('aria-expanded', String(open));
});
$('safety-open').addEventListener('click', () => store.dispatch({ type: 'safety-open', open: true }));
$('safety').addEventListener('close', () => store.dispatch({ type: 'safety-open', open: false }));

const input = /** @type {HTMLTextAreaElement} */ ($('composer-input'));
async function send() {
  const text = input.value;
  input.value = '';
  if (!(await app.sendText(text)) && !input.value) input.value = text;
}
function cancelCompose() {
  if (store.getState().editing) input.value = '';
  store.dispatch({ type: 'compose-reset' });
}
$('composer').addEventListener('submit', (e) => { e.preventDefault(); void send(); });
input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); void send(); }
  if (e.key === 'Escape') cancelCompose();
});
input.addEventListener('input', () => void app.typed(input.value.trim().length > 0));
$('compose-cancel').addEventListener('click', () => { cancelCompose(); input.focus(); });
$('room-name-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const field = /** @type {HTMLInputElement} */ ($('room-name-input'));
  void app.setDisplayName(field.value).then((ok) => { if (ok) field.value = ''; });
});
// Message actions (buttons rendered by view.js): reply, react picker, react, edit, unsend.
$('messages').addEventListener('click', (e) => {
  const btn = /** @type {HTMLElement|null} */ (/** @type {HTMLElement} */ (e.target).closest('button[data-action]'));
  const id = btn?.dataset.id;
  if (!btn || !id) return;
  const action = btn.dataset.action;
  if (action === 'reply') { store.dispatch({ type: 'reply', id }); input.focus(); }
  else if (action === 'edit') {
    store.dispatch({ type: 'edit', id });
    input.value = store.getState().messages.find((m) => m.id === id)?.text ?? '';
    input.focus();
  } else if (action === 'unsend') void app.unsend(id);
  else if (action === 'picker') {
    const open = store.getState().picker === id;
    store.dispatch({ type: 'picker', id: open ? null : id });
    if (!open) /** @type {HTMLElement|null} */ (document.querySelector(`#messages li[data-id="${CSS.escape(id)}"] .picker button`))?.focus();
  } else if (action === 'react' && btn.dataset.emoji) void app.react(id, btn.dataset.emoji);
});
$('messages').addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && store.getState().picker) store.dispatch({ type: 'picker', id: null });
});
document.addEventListener('visibilitychange', () => void app.markSeen());

// Live countdowns and expiry: one tick per second drives the whole view.
setInterval(() => store.dispatch({ type: 'tick', now: Date.now() }), 1000);

if (location.hash.length > 1) void app.openFragment(location.hash.slice(1));
