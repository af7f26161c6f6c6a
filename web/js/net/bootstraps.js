// Several bootstraps for one room in the browser: the page's own server plus the invite's `.s` servers.
// Mirrors peer/net/bootstrap.py (PROTOCOL.md, "Several bootstraps and no server").
//
// Rules:
// - One facade per room over one RoomSignaling per server (each from that server's SignalingHub, shared by
//   the page's rooms), with the surface the App uses: connect(), join(room), signal(room, to, payload),
//   state, close(). At most MAX_ROOM_SERVERS servers, the page's origin first.
// - connect() resolves with the first server that welcomes us (its peer id and ICE servers); the others
//   keep connecting in the background, each with its own backoff (1 s doubling to 30 s), and join the room
//   when they come up. It rejects only when every server failed its first attempt.
// - Presence is per server: 'peer-joined' is passed on when a peer is listed by its first server,
//   'peer-left' when no server lists it any more. A server whose connection closes lists nobody. 'closed'
//   is passed on only when no server is connected.
// - signal() goes through one ready server that lists the target (first in list order), else any ready one.

/** @typedef {import('./signaling.js').SignalingEvent} SignalingEvent */
/** @typedef {import('./hub.js').SignalingHub} SignalingHub */
/** @typedef {import('./hub.js').RoomSignaling} RoomSignaling */
/** @typedef {{facade: RoomSignaling, present: Set<string>, joined: boolean, backoffMs: number, timer: ReturnType<typeof setTimeout>|null}} Part */

export const MAX_ROOM_SERVERS = 6;

/** `http(s)://host[:port][/path]` -> the signaling WebSocket URL (PROTOCOL.md, Invite). @param {string} server */
export function wsUrlOf(server) {
  const u = new URL(server);
  const scheme = u.protocol === 'https:' ? 'wss:' : 'ws:';
  const path = u.pathname === '/' || u.pathname === '' ? '/ws' : u.pathname;
  return `${scheme}//${u.host}${path}`;
}

export class MultiRoomSignaling {
  /**
   * @param {SignalingHub[]} hubs the page's hub first, then one per extra server
   * @param {(ev: SignalingEvent) => void} onEvent
   */
  constructor(hubs, onEvent) {
    this.onEvent = onEvent;
    /** @type {Part[]} */
    this.parts = [];
    for (const hub of hubs.slice(0, MAX_ROOM_SERVERS)) {
      /** @type {Part} */
      const p = { facade: /** @type {any} */ (null), present: new Set(), joined: false, backoffMs: 1000, timer: null };
      p.facade = hub.forRoom((ev) => this.onPartEvent(p, ev));
      this.parts.push(p);
    }
    /** @type {Set<string>} */
    this.rooms = new Set();
    this.closed = false;
  }

  get state() {
    if (this.closed) return 'closed';
    return this.parts.some((p) => p.facade.state === 'ready') ? 'ready' : 'connecting';
  }

  /** @returns {Promise<any>} the welcome of the first server that answers */
  connect() {
    const attempts = this.parts.map((p) => this.connectPart(p));
    return Promise.any(attempts);
  }

  /** @param {Part} p */
  async connectPart(p) {
    try {
      const welcome = await p.facade.connect();
      p.backoffMs = 1000;
      if (this.rooms.size) void this.joinPart(p);
      return welcome;
    } catch (err) {
      this.retryPart(p);
      throw err;
    }
  }

  /** @param {Part} p */
  retryPart(p) {
    if (this.closed || p.timer !== null) return;
    p.timer = setTimeout(() => {
      p.timer = null;
      void this.connectPart(p).catch(() => undefined);
    }, p.backoffMs);
    p.backoffMs = Math.min(p.backoffMs * 2, 30000);
  }

  /** @param {Part} p */
  async joinPart(p) {
    for (const room of this.rooms) {
      try {
        const peers = await p.facade.join(room);
        p.joined = true;
        this.list(p, peers);
      } catch { /* that server refused or dropped: its own retry handles it */ }
    }
  }

  /** @param {Part} p @param {string[]} peers */
  list(p, peers) {
    const room = [...this.rooms][0];
    const before = this.present();
    p.present = new Set(peers);
    const after = this.present();
    for (const peer of after) if (!before.has(peer)) this.onEvent({ type: 'peer-joined', room, peer });
    for (const peer of before) if (!after.has(peer)) this.onEvent({ type: 'peer-left', room, peer });
  }

  present() {
    /** @type {Set<string>} */
    const out = new Set();
    for (const p of this.parts) for (const peer of p.present) out.add(peer);
    return out;
  }

  /** @param {string} room @returns {Promise<string[]>} */
  async join(room) {
    this.rooms.add(room);
    const ready = this.parts.filter((p) => p.facade.state === 'ready');
    const results = await Promise.allSettled(ready.map(async (p) => {
      const peers = await p.facade.join(room);
      p.joined = true;
      p.present = new Set(peers);
      return peers;
    }));
    if (!results.some((r) => r.status === 'fulfilled')) throw new Error('no signaling server joined the room');
    return [...this.present()];
  }

  /** @param {string} room @param {string} to @param {string} payload */
  signal(room, to, payload) {
    const ready = this.parts.filter((p) => p.facade.state === 'ready' && p.joined);
    const via = ready.find((p) => p.present.has(to)) ?? ready[0];
    via?.facade.signal(room, to, payload);
  }

  /** @param {Part} p @param {SignalingEvent} ev */
  onPartEvent(p, ev) {
    if (this.closed) return;
    if (ev.type === 'closed') {
      p.joined = false;
      this.list(p, []);
      if (!this.parts.some((q) => q !== p && q.facade.state === 'ready')) this.onEvent(ev);
      else if (ev.reason !== 'replaced') this.retryPart(p);
      return;
    }
    if (ev.type === 'peer-joined') {
      const known = this.present().has(ev.peer);
      p.present.add(ev.peer);
      if (!known) this.onEvent(ev);
    } else if (ev.type === 'peer-left') {
      p.present.delete(ev.peer);
      if (!this.present().has(ev.peer)) this.onEvent(ev);
    } else {
      this.onEvent(ev);
    }
  }

  close() {
    this.closed = true;
    for (const p of this.parts) {
      if (p.timer !== null) clearTimeout(p.timer);
      p.facade.close();
    }
  }
}
