// DOM rendering of AppState. Keyed updates for messages so aria-live announces only additions.
// Text is always set with textContent (never innerHTML): message text cannot inject markup.

import { TTL_CHOICES, formatRemaining, ttlLabel } from './state.js';

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** Stable colour from a peer id. @param {string} peer */
function hue(peer) {
  return parseInt(peer.slice(0, 6), 16) % 360;
}

/** @param {string} name @param {string} peer */
function avatar(name, peer) {
  const el = document.createElement('span');
  el.className = 'avatar';
  el.setAttribute('aria-hidden', 'true');
  el.style.background = `hsl(${hue(peer)} 55% 48%)`;
  el.textContent = (name.trim()[0] || '?').toUpperCase();
  return el;
}

const LINK_TEXT = { self: 'you', open: 'online', connecting: 'connecting…', failed: 'unreachable', closed: 'offline' };

export function fillTtlSelect(/** @type {HTMLSelectElement} */ select, /** @type {number} */ value) {
  if (select.options.length === 0) {
    for (const c of TTL_CHOICES) select.add(new Option(c.label, String(c.s)));
  }
  select.value = String(value);
}

/** Render function bound to the document. */
export function createView() {
  /** @type {Map<string, HTMLLIElement>} */
  const rendered = new Map();

  /** @param {import('./state.js').AppState} s */
  return function render(s) {
    $('welcome').hidden = s.screen !== 'welcome';
    $('room').hidden = s.screen !== 'room';
    $('error').hidden = !s.error;
    $('error-text').textContent = s.error?.text ?? '';
    if (s.screen !== 'room') return;

    $('room-title').textContent = s.roomId ? `Room ${s.roomId.slice(0, 6)}` : 'Room';
    const conn = $('conn-state');
    conn.dataset.state = s.connection;
    conn.textContent = { offline: 'offline', connecting: 'connecting…', online: 'connected', unreachable: 'server unreachable' }[s.connection];
    $('room-timer').textContent = `Timer ${ttlLabel(s.roomTtlS)}`;
    $('room-timer').setAttribute('aria-label', `Room timer: messages disappear after ${ttlLabel(s.roomTtlS)}`);
    fillTtlSelect(/** @type {HTMLSelectElement} */ ($('ttl-select')), s.ttlS);
    fillTtlSelect(/** @type {HTMLSelectElement} */ ($('room-ttl-select')), s.roomTtlS);

    const members = Object.values(s.members).sort((a, b) => (a.link === 'self' ? -1 : b.link === 'self' ? 1 : a.name.localeCompare(b.name)));
    const list = $('member-list');
    list.replaceChildren(...members.map((m) => {
      const li = document.createElement('li');
      li.dataset.link = m.link;
      li.dataset.peer = m.peer;
      const info = document.createElement('div');
      const name = document.createElement('div');
      name.textContent = m.name;
      const state = document.createElement('div');
      state.className = 'member-state';
      state.textContent = LINK_TEXT[m.link];
      info.append(name, state);
      li.append(avatar(m.name, m.peer), info);
      li.setAttribute('aria-label', `${m.name}, ${LINK_TEXT[m.link]}`);
      return li;
    }));
    const online = members.filter((m) => m.link === 'open' || m.link === 'self').length;
    $('member-count').textContent = `${online}/${members.length} online`;

    const box = $('messages');
    const live = new Set(s.messages.map((m) => m.id));
    for (const [id, li] of rendered) if (!live.has(id)) { li.remove(); rendered.delete(id); }
    let before = null;
    for (let i = s.messages.length - 1; i >= 0; i--) {
      const m = s.messages[i];
      let li = rendered.get(m.id);
      if (!li) {
        li = document.createElement('li');
        li.className = m.sender === s.self ? 'msg mine' : 'msg';
        li.dataset.id = m.id;
        const from = document.createElement('p');
        from.className = 'from';
        from.textContent = s.members[m.sender]?.name ?? m.sender.slice(0, 8);
        const text = document.createElement('p');
        text.className = 'text';
        text.textContent = m.text;
        const meta = document.createElement('div');
        meta.className = 'meta';
        const time = document.createElement('time');
        time.dateTime = new Date(m.sentAt).toISOString();
        time.textContent = new Date(m.sentAt).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
        const exp = document.createElement('span');
        exp.className = 'expiry';
        meta.append(time, exp);
        li.append(from, text, meta);
        box.insertBefore(li, before);
        rendered.set(m.id, li);
        box.scrollTop = box.scrollHeight;
      }
      li.classList.toggle('mine', m.sender === s.self);
      const left = m.expiresAt - s.now;
      const exp = /** @type {HTMLElement} */ (li.querySelector('.expiry'));
      exp.textContent = formatRemaining(left);
      exp.setAttribute('aria-label', `disappears in ${formatRemaining(left)}`);
      li.classList.toggle('soon', left < 60_000);
      before = li;
    }
    $('empty').hidden = s.messages.length > 0;

    const dlg = /** @type {HTMLDialogElement} */ ($('safety'));
    if (s.safetyOpen && !dlg.open) dlg.showModal();
    if (!s.safetyOpen && dlg.open) dlg.close();
    if (s.safetyOpen) {
      $('safety-list').replaceChildren(...members.filter((m) => m.link !== 'self').map((m) => {
        const li = document.createElement('li');
        const who = document.createElement('strong');
        who.textContent = m.name;
        const digits = document.createElement('div');
        digits.className = 'digits';
        digits.textContent = s.safety[m.peer] ?? 'Waiting for this member’s key…';
        li.append(who, digits);
        return li;
      }));
    }
  };
}
