// One signaling connection for every room of the page (the server knows one connection per identity:
// a second one replaces the first).
//
// Rules:
// - The hub owns at most one SignalingClient at a time. Each room gets a facade (hub.forRoom(onEvent))
//   with the SignalingClient surface the App uses: connect(), join(room), signal(room, to, payload),
//   state, close(). connect() shares one connection attempt between all rooms.
// - Frames naming a room go to the facades that joined that room; frames without a room (errors) and
//   the 'closed' event go to every facade. A facade's close() detaches it; the socket closes when no
//   facade is left (or on hub.close()).
// - A connection closed because this identity connected elsewhere ('replaced') is reported as
//   {type:'closed', reason:'replaced'}: the App backs off instead of reconnecting at once.

import { SignalingClient } from './signaling.js';

/** @typedef {import('./signaling.js').SignalingEvent} SignalingEvent */

export class SignalingHub {
  /** @param {import('./signaling.js').SignalingOptions} opts (its onEvent is ignored) */
  constructor(opts) {
    this.opts = opts;
    /** @type {SignalingClient|null} */
    this.client = null;
    /** @type {Promise<{peer: string, turn: any}>|null} */
    this.connecting = null;
    /** @type {Set<RoomSignaling>} */
    this.facades = new Set();
    this.replaced = false;
    this.connections = 0;
  }

  /** A facade for one room. @param {(ev: SignalingEvent) => void} onEvent */
  forRoom(onEvent) {
    const f = new RoomSignaling(this, onEvent);
    this.facades.add(f);
    return f;
  }

  /** @returns {Promise<{peer: string, turn: any}>} */
  connect() {
    const c = this.client;
    if (c && c.state === 'ready' && c.peerId) return Promise.resolve({ peer: c.peerId, turn: c.turn });
    if (this.connecting) return this.connecting;
    this.replaced = false;
    const client = new SignalingClient({ ...this.opts, onEvent: (ev) => this.onEvent(client, ev) });
    this.client = client;
    this.connections++;
    const p = client.connect().finally(() => { if (this.connecting === p) this.connecting = null; });
    this.connecting = p;
    return p;
  }

  /** @param {SignalingClient} client @param {SignalingEvent} ev */
  onEvent(client, ev) {
    if (client !== this.client) return;
    if (ev.type === 'error' && ev.code === 'replaced') this.replaced = true;
    if (ev.type === 'closed') {
      this.client = null;
      const closed = { type: /** @type {const} */ ('closed'), reason: this.replaced ? 'replaced' : ev.reason };
      for (const f of [...this.facades]) f.onEvent(closed);
      return;
    }
    const room = 'room' in ev ? ev.room : null;
    for (const f of [...this.facades]) if (room === null || f.rooms.has(room)) f.onEvent(ev);
  }

  /** @param {RoomSignaling} f */
  detach(f) {
    this.facades.delete(f);
    if (!this.facades.size) this.close();
  }

  close() {
    const c = this.client;
    this.client = null;
    this.connecting = null;
    c?.close('closed by us');
  }
}

/** What one App sees of the hub: the SignalingClient surface it uses. */
export class RoomSignaling {
  /** @param {SignalingHub} hub @param {(ev: SignalingEvent) => void} onEvent */
  constructor(hub, onEvent) {
    this.hub = hub;
    this.onEvent = onEvent;
    /** @type {Set<string>} */
    this.rooms = new Set();
    this.detached = false;
  }

  get state() {
    return this.detached ? 'closed' : this.hub.client?.state ?? 'closed';
  }

  connect() {
    return this.hub.connect();
  }

  /** @param {string} room @returns {Promise<string[]>} */
  async join(room) {
    const client = this.hub.client;
    if (!client) throw new Error('signaling is not connected');
    this.rooms.add(room);
    return client.join(room);
  }

  /** @param {string} room @param {string} to @param {string} payload */
  signal(room, to, payload) {
    this.hub.client?.signal(room, to, payload);
  }

  /** Leave our rooms and detach (the shared socket stays up for the other rooms). */
  close() {
    if (this.detached) return;
    this.detached = true;
    const client = this.hub.client;
    for (const room of this.rooms) {
      try { if (client?.state === 'ready') client.leave(room); } catch { /* closing anyway */ }
    }
    this.hub.detach(this);
  }
}
