// DOM rendering of AppState. Keyed updates for messages so aria-live announces only additions.
// Text is always set with textContent (never innerHTML): message text cannot inject markup.
// Every message action is a real <button> (keyboard reachable, labelled); main.js handles them by
// delegation on #messages through their data-action / data-id / data-emoji attributes.

import { attachmentView } from './attachments.js';
import { REACTIONS, TTL_CHOICES, formatRemaining, nameOf, ttlLabel } from './state.js';
import { ago, messageBody, renderSearch } from './features.js';

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
const REASON_TEXT = { 'no-route': 'no route', 'timed-out': 'timed out', 'handshake-refused': 'handshake refused' };

/** What the member list says about a member's link. @param {import('./state.js').Member} m */
export function linkText(m) {
  if (m.link === 'open' && m.path) return m.path;
  if (m.link === 'failed' && m.reason) return `unreachable (${REASON_TEXT[/** @type {keyof typeof REASON_TEXT} */ (m.reason)] ?? m.reason})`;
  return LINK_TEXT[m.link];
}

/** The header pill: never "connected" while no other member is reachable. @param {import('./state.js').AppState} s */
export function connectionText(s) {
  if (s.connection !== 'online') return { offline: 'offline', connecting: 'connecting…', online: 'connected', unreachable: 'server unreachable', elsewhere: 'open elsewhere' }[s.connection];
  const others = Object.values(s.members).filter((m) => m.link !== 'self');
  if (others.some((m) => m.link === 'open')) return 'connected';
  if (others.some((m) => m.link === 'connecting')) return 'connecting to members…';
  if (others.some((m) => m.link === 'failed')) return 'no member reachable';
  return 'waiting for members';
}

export function fillTtlSelect(/** @type {HTMLSelectElement} */ select, /** @type {number} */ value) {
  if (select.options.length === 0) {
    for (const c of TTL_CHOICES) select.add(new Option(c.label, String(c.s)));
  }
  select.value = String(value);
}

/** @param {string} tag @param {string} cls @param {string} [text] */
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Closed room: the state line, the admins' close/open toggle and the "asks to join" list with Admit.
 * @param {import('./state.js').AppState} s @param {boolean} iAmAdmin */
function renderAdmission(s, iAmAdmin) {
  $('admission-state').textContent = s.roles.closed ? 'Closed: admins approve new members' : '';
  const toggle = /** @type {HTMLButtonElement} */ ($('admission-toggle'));
  toggle.hidden = !iAmAdmin || s.roles.owner === null; // a legacy room cannot be closed
  toggle.textContent = s.roles.closed ? 'Open the room' : 'Approve new members';
  toggle.dataset.action = s.roles.closed ? 'open' : 'close';
  $('request-list').replaceChildren(...(iAmAdmin && s.roles.closed ? s.roles.requests : []).map((peer) => {
    const li = el('li', 'request', `${peer.slice(0, 8)} · asks to join `);
    li.append(actionButton('admit', peer, 'Admit', `Admit ${peer.slice(0, 8)}`));
    return li;
  }));
}

/** @param {string} action @param {string} id @param {string} text @param {string} label @param {Record<string, string>} [data] */
function actionButton(action, id, text, label, data = {}) {
  const b = /** @type {HTMLButtonElement} */ (el('button', `act act-${action}`, text));
  b.type = 'button';
  b.dataset.action = action;
  b.dataset.id = id;
  for (const [k, v] of Object.entries(data)) b.dataset[k] = v;
  b.setAttribute('aria-label', label);
  return b;
}

/** Short one-line excerpt. @param {string} text */
const excerpt = (text) => (text.length > 80 ? `${text.slice(0, 80)}…` : text).replace(/\s+/g, ' ');

/**
 * Fill the dynamic parts of one message item (name, quote, text, reactions, receipts, actions).
 * @param {HTMLElement} li @param {import('./state.js').AppState} s @param {import('./state.js').Message} m
 */
function fillMessage(li, s, m) {
  const mine = m.sender === s.self;
  const from = nameOf(s, m.sender);
  const target = m.replyTo ? s.messages.find((x) => x.id === m.replyTo) : undefined;
  const r = s.receipts[m.id];
  const reactions = m.reactions ?? [];
  const att = s.attachments?.[m.id];
  const sig = JSON.stringify([from, m.text, m.edited, reactions, m.replyTo, target?.text, target && nameOf(s, target.sender), mine, r, s.delivered[m.id]?.length ?? 0,
    s.picker === m.id, s.replyTo === m.id, s.editing === m.id, s.self, m.file ?? null, att ?? null]);
  if (li.dataset.sig === sig) return;
  li.dataset.sig = sig;
  li.classList.toggle('mine', mine);
  li.classList.toggle('selected', s.replyTo === m.id || s.editing === m.id);
  /** @type {HTMLElement[]} */
  const parts = [el('p', 'from', from)];
  if (m.replyTo) {
    const q = el('blockquote', 'quote');
    q.append(el('span', 'quote-from', target ? nameOf(s, target.sender) : ''), el('span', 'quote-text', target ? excerpt(target.text) : 'Message no longer available'));
    q.setAttribute('aria-label', target ? `In reply to ${nameOf(s, target.sender)}: ${excerpt(target.text)}` : 'In reply to a message that is gone');
    parts.push(q);
  }
  if (m.file) parts.push(attachmentView(m, att));
  if (m.file && !m.text) {
    const fwd = messageBody(m).filter((e) => e.className === 'forwarded');
    parts.push(...fwd);
  } else parts.push(...messageBody(m));
  li.classList.toggle('mentioned', Boolean(m.mentioned));
  if (reactions.length) {
    const row = el('div', 'reactions');
    row.setAttribute('role', 'group');
    row.setAttribute('aria-label', 'Reactions');
    for (const [emoji, peers] of reactions) {
      const b = actionButton('react', m.id, `${emoji} ${peers.length}`, `${emoji} ${peers.length}: ${peers.map((p) => nameOf(s, p)).join(', ')}`, { emoji });
      b.classList.add('chip');
      b.setAttribute('aria-pressed', String(s.self !== null && peers.includes(s.self)));
      row.append(b);
    }
    parts.push(row);
  }
  const meta = el('div', 'meta');
  if (m.edited) meta.append(el('span', 'edited', 'edited'));
  const time = /** @type {HTMLTimeElement} */ (el('time', ''));
  time.dateTime = new Date(m.sentAt).toISOString();
  time.textContent = new Date(m.sentAt).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  meta.append(time, el('span', 'expiry'));
  if (mine) {
    const to = s.delivered[m.id]?.length ?? 0;
    meta.append(to === 0 ? el('span', 'pending', 'pending') : el('span', 'delivered', `delivered to ${to}`));
  }
  if (mine && r && r.seen > 0) meta.append(el('span', 'seen', `seen by ${r.seen}`));
  parts.push(meta);
  const actions = el('div', 'actions');
  actions.setAttribute('role', 'group');
  actions.setAttribute('aria-label', 'Message actions');
  actions.append(actionButton('reply', m.id, 'Reply', `Reply to ${from}`));
  actions.append(actionButton('forward', m.id, 'Forward', `Forward ${from}'s message to another room`));
  const open = s.picker === m.id;
  const pick = actionButton('picker', m.id, 'React', 'Add a reaction');
  pick.setAttribute('aria-expanded', String(open));
  actions.append(pick);
  if (mine) actions.append(actionButton('edit', m.id, 'Edit', 'Edit this message'), actionButton('unsend', m.id, 'Unsend', 'Unsend this message for everyone'));
  parts.push(actions);
  if (open) {
    const picker = el('div', 'picker');
    picker.setAttribute('role', 'group');
    picker.setAttribute('aria-label', 'Pick a reaction');
    for (const emoji of REACTIONS) picker.append(actionButton('react', m.id, emoji, `React ${emoji}`, { emoji }));
    parts.push(picker);
  }
  li.replaceChildren(...parts);
}

/** @param {HTMLElement} li @param {import('./state.js').AppState} s @param {import('./state.js').Ghost} g */
function fillGhost(li, s, g) {
  const r = s.receipts[g.id];
  const sig = JSON.stringify([r, g.reason]);
  if (li.dataset.sig === sig) return;
  li.dataset.sig = sig;
  const what = g.reason === 'unsent' ? 'You unsent a message' : 'Your message disappeared';
  const erased = r && r.of ? `erased on ${r.erased} of ${r.of}` : 'waiting for erasure reports';
  li.replaceChildren(el('p', 'text', what), el('div', 'meta', erased));
}

/** How many times any view rendered (a test hook: tests count renders over a burst of dispatches). */
export const viewStats = { renders: 0 };

/**
 * Coalesced rendering: `schedule()` (subscribed to the store) only marks the view dirty and queues one
 * render of the LATEST state in a later task, so a burst of dispatches (a sync, a file's progress, pings
 * every few ms) renders once instead of once per dispatch. The task is a MessageChannel message, not
 * requestAnimationFrame (which does not run in hidden tabs: they must keep updating) nor setTimeout
 * (clamped and throttled in background tabs). `flush()` renders now if dirty (for code that reads the
 * DOM right after a dispatch, e.g. to focus a button the render adds); `close()` drops a pending render.
 * @template T @param {(s: T) => void} render @param {() => T} getState
 */
export function coalescedView(render, getState) {
  let dirty = false;
  let closed = false;
  const channel = new MessageChannel();
  const flush = () => {
    if (!dirty || closed) return;
    dirty = false;
    render(getState());
  };
  channel.port1.onmessage = flush;
  return {
    schedule() {
      if (dirty || closed) return;
      dirty = true;
      channel.port2.postMessage(null);
    },
    flush,
    close() {
      closed = true;
      channel.port1.close();
    },
  };
}

/** Render function bound to the document. */
export function createView() {
  /** @type {Map<string, HTMLLIElement>} */
  const rendered = new Map();

  /** @param {import('./state.js').AppState} s */
  return function render(s) {
    viewStats.renders++;
    $('welcome').hidden = s.screen !== 'welcome';
    $('room').hidden = s.screen !== 'room';
    $('error').hidden = !s.error;
    $('error-text').textContent = s.error?.text ?? '';
    if (s.screen !== 'room') return;

    $('room-title').textContent = s.roomId ? `Room ${s.roomId.slice(0, 6)}` : 'Room';
    const conn = $('conn-state');
    const connText = connectionText(s);
    conn.dataset.state = connText === 'connected' ? 'online' : s.connection === 'online' ? 'alone' : s.connection;
    conn.textContent = connText;
    $('room-timer').textContent = `Timer ${ttlLabel(s.roomTtlS)}`;
    $('room-timer').setAttribute('aria-label', `Room timer: messages disappear after ${ttlLabel(s.roomTtlS)}`);
    fillTtlSelect(/** @type {HTMLSelectElement} */ ($('ttl-select')), s.ttlS);
    fillTtlSelect(/** @type {HTMLSelectElement} */ ($('room-ttl-select')), s.roomTtlS);

    const members = Object.values(s.members).sort((a, b) => (a.link === 'self' ? -1 : b.link === 'self' ? 1 : nameOf(s, a.peer).localeCompare(nameOf(s, b.peer))));
    const list = $('member-list');
    list.replaceChildren(...members.map((m) => {
      const li = document.createElement('li');
      li.dataset.link = m.link;
      li.dataset.peer = m.peer;
      const info = document.createElement('div');
      const name = document.createElement('div');
      const shown = nameOf(s, m.peer);
      name.textContent = shown;
      name.append(el('span', 'short-id', ` · ${m.peer.slice(0, 8)}`));
      const state = document.createElement('div');
      state.className = 'member-state';
      const at = s.lastSeen[m.peer];
      const seenAt = at !== undefined && (!s.roomTtlS || s.now - at <= s.roomTtlS * 1000) ? at : undefined; // forgotten past the room timer
      state.textContent = linkText(m);
      if (seenAt !== undefined && m.link !== 'open' && m.link !== 'self') state.textContent += ` · last seen ${ago(seenAt, s.now)}`;
      if (m.path) li.dataset.path = m.path;
      const role = m.peer === s.roles.owner ? 'owner' : s.roles.admins.includes(m.peer) && s.roles.owner !== null ? 'admin' : '';
      if (role) state.append(el('span', `role role-${role}`, ` · ${role}`));
      info.append(name, state);
      li.append(avatar(shown, m.peer), info);
      // admin actions on others (the owner cannot be removed or demoted); the core re-checks every one
      if (s.self && s.roles.admins.includes(s.self) && m.link !== 'self' && m.peer !== s.roles.owner) {
        const acts = el('div', 'member-actions');
        acts.setAttribute('role', 'group');
        acts.setAttribute('aria-label', `Actions for ${shown}`);
        if (s.roles.owner !== null) {
          const admin = s.roles.admins.includes(m.peer);
          acts.append(actionButton(admin ? 'unadmin' : 'admin', m.peer, admin ? 'Unadmin' : 'Make admin', `${admin ? 'Remove admin role of' : 'Make admin:'} ${shown}`));
        }
        acts.append(actionButton('remove', m.peer, 'Remove', `Remove ${shown} from the room`));
        li.append(acts);
      }
      const seenText = seenAt !== undefined && m.link !== 'open' && m.link !== 'self' ? `, last seen ${ago(seenAt, s.now)}` : '';
      li.setAttribute('aria-label', `${shown} (${m.peer.slice(0, 8)}), ${linkText(m)}${seenText}${role ? `, ${role}` : ''}`);
      return li;
    }));
    const iAmAdmin = Boolean(s.self && s.roles.admins.includes(s.self));
    $('announce-state').textContent = s.roles.announce ? 'Announcement mode: only admins post' : '';
    const toggle = /** @type {HTMLButtonElement} */ ($('announce-toggle'));
    toggle.hidden = !iAmAdmin;
    toggle.textContent = s.roles.announce ? 'Let everyone post' : 'Only admins post';
    toggle.dataset.action = s.roles.announce ? 'announce-off' : 'announce-on';
    renderAdmission(s, iAmAdmin);
    $('removed-list').replaceChildren(...(iAmAdmin ? s.roles.removed : []).map((peer) => {
      const li = el('li', 'removed', `${nameOf(s, peer)} · removed `);
      li.append(actionButton('readmit', peer, 'Readmit', `Readmit ${nameOf(s, peer)}`));
      return li;
    }));
    const online = members.filter((m) => m.link === 'open' || m.link === 'self').length;
    $('member-count').textContent = `${online}/${members.length} online`;

    const box = $('messages');
    /** @type {(import('./state.js').Message | import('./state.js').Ghost)[]} */
    const items = [...s.messages, ...s.ghosts.filter((g) => !s.messages.some((m) => m.id === g.id))];
    items.sort((a, b) => (a.lamport ?? 0) - (b.lamport ?? 0) || (a.sender < b.sender ? -1 : a.sender > b.sender ? 1 : 0) || (a.seq ?? 0) - (b.seq ?? 0));
    const live = new Set(items.map((m) => ('goneAt' in m ? `ghost:${m.id}` : m.id)));
    for (const [id, li] of rendered) if (!live.has(id)) { li.remove(); rendered.delete(id); }
    let before = null;
    for (let i = items.length - 1; i >= 0; i--) {
      const item = items[i];
      const ghost = 'goneAt' in item;
      const key = ghost ? `ghost:${item.id}` : item.id;
      let li = rendered.get(key);
      if (!li) {
        li = document.createElement('li');
        li.className = ghost ? 'msg mine ghost' : 'msg';
        li.dataset.id = item.id;
        box.insertBefore(li, before);
        rendered.set(key, li);
        box.scrollTop = box.scrollHeight;
      } else if (li.nextSibling !== before) {
        box.insertBefore(li, before);
      }
      if ('goneAt' in item) fillGhost(li, s, item);
      else {
        fillMessage(li, s, item);
        const left = item.expiresAt - s.now;
        const exp = /** @type {HTMLElement} */ (li.querySelector('.expiry'));
        exp.textContent = formatRemaining(left);
        exp.setAttribute('aria-label', `disappears in ${formatRemaining(left)}`);
        li.classList.toggle('soon', left < 60_000);
      }
      before = li;
    }
    renderSearch(s, (peer) => nameOf(s, peer));
    const share = /** @type {HTMLInputElement|null} */ (document.getElementById('lastseen-toggle'));
    if (share) share.checked = s.shareLastSeen;
    const typing = s.typing.filter((p) => p !== s.self).map((p) => nameOf(s, p));
    $('typing').textContent = typing.length === 0 ? '' : typing.length === 1 ? `${typing[0]} is typing…` : `${typing.join(', ')} are typing…`;
    const ctx = s.editing ?? s.replyTo;
    const target = ctx ? s.messages.find((m) => m.id === ctx) : undefined;
    $('compose-context').hidden = !target;
    if (target) $('compose-context-text').textContent = s.editing ? 'Editing your message' : `Replying to ${nameOf(s, target.sender)}: ${excerpt(target.text)}`;
    const nameInput = /** @type {HTMLInputElement} */ ($('room-name-input'));
    if (document.activeElement !== nameInput && s.self) nameInput.placeholder = nameOf(s, s.self);
    $('empty').hidden = items.length > 0;

    const dlg = /** @type {HTMLDialogElement} */ ($('safety'));
    if (s.safetyOpen && !dlg.open) dlg.showModal();
    if (!s.safetyOpen && dlg.open) dlg.close();
    if (s.safetyOpen) {
      $('safety-list').replaceChildren(...members.filter((m) => m.link !== 'self').map((m) => {
        const li = document.createElement('li');
        const who = document.createElement('strong');
        who.textContent = `${nameOf(s, m.peer)} (${m.peer.slice(0, 8)})`;
        const digits = document.createElement('div');
        digits.className = 'digits';
        digits.textContent = s.safety[m.peer] ?? 'Waiting for this member’s key…';
        li.append(who, digits);
        return li;
      }));
    }
  };
}
