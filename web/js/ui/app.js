// The app controller: owns the store, the identity, the signaling client and the mesh, and turns
// their events into store actions. UI event handlers call its methods; tests may too
// (window.ephemesh = { app, store }).
//
// Rules:
// - The room secret comes only from the URL fragment; only the derived room id reaches the server.
// - Messaging is core/room.js (handshake-authenticated links, membership, sender chains, envelopes,
//   sync, expiry). The pump: after every call into the room, persist (store/room.js, IndexedDB) THEN
//   transmit, close dead links, re-arm the one timer, then hand events to the store. Pumps run one at
//   a time, in order, so frames leave in the order the core produced them.
// - Until the room is ready sendText fails closed with a visible error: plaintext never leaves.
// - Links, redial and link state belong to net/mesh.js: bounded backoff on every failure, per peer;
//   the room tells the mesh when a handshake is done (markReady) and when it gave up on a link
//   (dropLink). Members show connecting / direct / relayed / unreachable (reason).
// - Signaling payloads are sealed for the room and signed (net/sealed-codec.js); a test may inject
//   another codec factory. Verified sender bundles give the safety numbers.
// - Signaling reconnects with exponential backoff (1 s .. 30 s); the mesh reports per-peer link state.
//   With a hub (net/hub.js) every room of the page shares one signaling connection. Closed because this
//   identity connected elsewhere ('replaced'): say so, and wait 30 s before trying again (no fight).
// - A room that is not the one shown (`active` false) never sends seen receipts.
// - Notifications are shown only when the tab is hidden, and never contain message text.
// - A room left in this browser before (ui/leave.js) and opened again with nothing stored starts from its
//   floor (store/floor.js): seq and Lamport clock above every entry this identity published there.
// - Display name: per room (localStorage `ephemesh.name.<roomId>`, else the welcome name); published as a
//   signed profile when it differs from the one the room holds for us.
// - Typing: input renews our indicator (the core rate-limits to one frame per 3 s); 4 s without input,
//   a send, or an emptied box sends "stopped".
// - Seen: messages of others are marked seen while the page is visible (on arrival, when a link comes
//   up, and when the page becomes visible); the core sends SEEN once per message, to its sender only.

import { ed25519Sign } from '../core/crypto.js';
import { ProtocolError } from '../core/errors.js';
import { deriveRoomKeys, inviteFragment, newRoomSecret, parseFragment } from '../core/invite.js';
import { safetyNumber } from '../core/safety.js';
import { cleanName } from '../core/content.js';
import { SignalingClient } from '../net/signaling.js';
import { MultiRoomSignaling, wsUrlOf } from '../net/bootstraps.js';
import { PermissionError, Room } from '../core/room.js';
import { applyBatch as storeBatch, loadSnapshot as storeSnapshot } from '../store/room.js';
import { readFloor, withFloor } from '../store/floor.js';
import { Mesh } from '../net/mesh.js';
import * as features from './features.js';
import { createSealedCodec } from '../net/sealed-codec.js';
import { FileTransfers } from '../net/files.js';

/**
 * @typedef {{ applyBatch: (roomId: string, b: import('../core/room.js').PersistBatch) => Promise<void>,
 *   loadSnapshot: (roomId: string, now: number) => Promise<import('../core/room.js').Snapshot|null> }} RoomStore
 */

export class App {
  /**
   * @param {{ store: ReturnType<typeof import('./state.js').createStore>,
   *   identity: import('../core/identity.js').Identity,
   *   wsUrl: string, now?: () => number, roomStore?: RoomStore,
   *   hub?: import('../net/hub.js').SignalingHub, active?: boolean,
   *   hubFor?: (server: string) => import('../net/hub.js').SignalingHub }} opts
   */
  constructor(opts) {
    this.store = opts.store;
    /** @type {import('../net/hub.js').SignalingHub|null} */
    this.hub = opts.hub ?? null;
    /** the hub of another signaling server (the invite's `.s` list: several bootstraps) */
    this.hubFor = opts.hubFor ?? null;
    /** @type {string[]} the invite's extra servers, other than the page's own */
    this.extraServers = [];
    /** @type {import('../net/hub.js').RoomSignaling|MultiRoomSignaling|null} */
    this.facade = null;
    this.active = opts.active ?? true;
    /** @type {string|null} the invite fragment of the room */
    this.fragment = null;
    this.closed = false;
    /** left in this browser (ui/leave.js): nothing of the room is persisted any more */
    this.forgotten = false;
    this.identity = opts.identity;
    this.wsUrl = opts.wsUrl;
    this.now = opts.now ?? Date.now;
    this.roomStore = opts.roomStore ?? { applyBatch: storeBatch, loadSnapshot: storeSnapshot };
    /** @type {Room|null} */
    this.room = null;
    /** @type {Promise<unknown>} */
    this.pumping = Promise.resolve();
    /** @type {ReturnType<typeof setTimeout>|null} */
    this.timer = null;
    /** @type {Set<string>} peers the server lists in the room */
    this.present = new Set();
    /** @type {import('../net/mesh.js').SignalCodec|null} */
    this.codec = null;
    /** @type {SignalingClient|import('../net/hub.js').RoomSignaling|MultiRoomSignaling|null} */
    this.client = null;
    /** @type {Mesh|null} */
    this.mesh = null;
    /** @type {string|null} */
    this.roomId = null;
    this.backoffMs = 1000;
    /** @type {ReturnType<typeof setTimeout>|null} */
    this.retry = null;
    /** @type {ReturnType<typeof setTimeout>|null} */
    this.typingStop = null;
    /** attachments: transfers on each link's files channel (net/files.js) */
    this.files = new FileTransfers({ now: this.now, onStatus: (status) => this.store.dispatch({ type: 'attachment', status }) });
    this.signalsRelayed = 0; // our payloads sent through linked members
    this.signalsReceivedRelayed = 0; // payloads for us that arrived through linked members
    this.reachSeen = '';
  }

  /** Create a fresh room: new secret in the fragment, then enter it. @param {number} ttlS */
  async createRoom(ttlS) {
    const frag = inviteFragment(newRoomSecret(), ttlS, this.identity.peerId); // we own the room we create
    history.replaceState(null, '', `#${frag}`);
    await this.openFragment(frag);
  }

  /**
   * Enter the room named by an invite fragment or URL. Invalid invites become a UI error.
   * `background`: a room of the room list that is not shown (the URL stays as it is).
   * @param {string} fragOrUrl @param {{background?: boolean}} [o]
   */
  async openFragment(fragOrUrl, o = {}) {
    const frag = fragOrUrl.includes('#') ? fragOrUrl.slice(fragOrUrl.indexOf('#') + 1) : fragOrUrl;
    let invite;
    try {
      invite = parseFragment(frag);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.store.dispatch({ type: 'error', code: 'invite-invalid', text: 'This invite link is not valid. Ask for a new one.' });
      return false;
    }
    if (!o.background && location.hash !== `#${frag}`) history.replaceState(null, '', `#${frag}`);
    this.fragment = frag;
    this.extraServers = invite.extraServers.filter((s) => wsUrlOf(s) !== this.wsUrl);
    const keys = await deriveRoomKeys(invite.secret, invite.owner);
    this.roomId = keys.roomId;
    this.codec = createSealedCodec({
      identity: this.identity,
      room: keys,
      now: this.now,
      onBundle: (peer, bundle) => {
        this.room?.learnBundle(peer, bundle);
        void this.onBundle(peer, bundle.ed25519);
      },
    });
    const inviteUrl = `${location.origin}${location.pathname}#${frag}`;
    this.store.dispatch({ type: 'enter-room', roomId: keys.roomId, inviteUrl, ttlS: invite.ttlS ?? undefined });
    const now = this.now();
    const stored = await this.roomStore.loadSnapshot(keys.roomId, now);
    const snapshot = stored ?? withFloor(null, await readFloor(keys.roomId)); // left in this browser before: from its floor
    if (this.closed) return false; // left (or taken over) while it opened
    this.room = await Room.create(this.identity, { roomId: keys.roomId, memberKey: keys.memberKey, ttlS: invite.ttlS, owner: invite.owner }, now, { snapshot });
    this.room.setBlobIds((m) => this.files.blobIdsOf(m)); // keepers hold our files by blob id, never the key
    await this.room.enableReach([['server', location.origin]], now).catch(() => undefined); // an origin the codec cannot carry: not announced
    this.dispatchRoles();
    // history first (shown at once after a reload), then the attachment blobs held in IndexedDB (resume, serve)
    for (const message of this.room.messages()) this.store.dispatch({ type: 'message', message });
    await this.files.restore(keys.roomId, this.room.messages());
    for (const message of this.room.messages()) this.files.onMessage(message, message.sender === this.identity.peerId);
    for (const [peer, [, , name]] of this.room.profiles) this.store.dispatch({ type: 'profile', peer, name });
    const wanted = localStorage.getItem(`ephemesh.name.${keys.roomId}`) ?? this.store.getState().displayName;
    if (wanted && wanted !== this.room.displayName(this.identity.peerId)) await this.setDisplayName(wanted);
    if (this.room.membership.timer) this.store.dispatch({ type: 'set-room-ttl', ttlS: this.room.timerS });
    for (const p of this.room.members()) if (p !== this.identity.peerId) this.store.dispatch({ type: 'member', peer: p, link: 'closed' });
    await this.pump([]);
    await this.connect();
    return true;
  }

  /** Connect (or reconnect) to signaling and join the current room. */
  async connect() {
    if (!this.roomId || !this.codec) return;
    const room = this.roomId;
    const codec = this.codec;
    if (this.closed) return;
    this.store.dispatch({ type: 'connecting' });
    /** @type {SignalingClient|import('../net/hub.js').RoomSignaling|MultiRoomSignaling} */
    let client;
    if (this.hub) {
      const hub = this.hub;
      const hubFor = this.hubFor;
      client = this.facade ??= hubFor && this.extraServers.length
        ? new MultiRoomSignaling([hub, ...this.extraServers.map(hubFor)], (ev) => this.onSignaling(/** @type {any} */ (this.facade), ev))
        : hub.forRoom((ev) => this.onSignaling(/** @type {any} */ (this.facade), ev));
    } else {
      const own = new SignalingClient({
        url: this.wsUrl,
        publicKey: this.identity.publicKey,
        sign: (m) => ed25519Sign(this.identity.signingKey, m),
        onEvent: (ev) => this.onSignaling(own, ev),
      });
      client = own;
    }
    this.client = client;
    try {
      const { peer, turn, iceServers: offered } = await client.connect();
      this.store.dispatch({ type: 'connected', peer });
      this.mesh?.close();
      const iceServers = offered ?? (turn ? [{ urls: turn.urls, username: turn.username, credential: turn.credential }] : []);
      this.mesh = new Mesh({
        selfId: peer,
        codec,
        iceServers,
        sendSignal: (to, payload) => this.sendSignal(client, room, to, payload),
        onFrame: (from, frame) => void this.onFrame(from, frame),
        onLinkState: (p, link) => this.onLinkState(p, link),
        onLinkInfo: (info) => this.store.dispatch({ type: 'link-info', info }),
        onFilesChannel: (p, ch) => this.files.attach(p, ch),
      });
      const present = await client.join(room);
      this.backoffMs = 1000;
      for (const p of present) {
        this.present.add(p);
        this.store.dispatch({ type: 'member', peer: p, link: 'connecting' });
        void this.mesh.addPeer(p);
      }
    } catch {
      if (this.client === client) this.scheduleReconnect();
    }
  }

  // ---------------------------------------------------------------- signaling through the mesh (core/room/relay.js)

  /** Through the server when it is up, and through linked members when it is not or does not list `to`.
   * @param {SignalingClient|import('../net/hub.js').RoomSignaling|MultiRoomSignaling} client @param {string} room @param {string} to @param {string} payload */
  sendSignal(client, room, to, payload) {
    const viaServer = client.state === 'ready';
    if (viaServer) client.signal(room, to, payload);
    if (viaServer && this.present.has(to)) return;
    const r = this.room;
    if (r) void r.relaySignal(to, payload, this.now()).then((sent) => { if (sent) this.signalsRelayed += 1; return this.pump([]); });
  }

  /** After a transmit: relayed payloads go to the mesh; members gossip says are up get dialled.
   * @param {Room} room */
  relayPump(room) {
    const mesh = this.mesh;
    if (!mesh) return;
    for (const [from, payload] of room.takeRelayed()) {
      this.signalsReceivedRelayed += 1;
      void mesh.handleSignal(from, payload);
    }
    const online = [...room.online()].sort().join(',');
    if (this.reachSeen === `${room.reachChanges}/${online}`) return; // no announcement changed, no link came or went
    this.reachSeen = `${room.reachChanges}/${online}`;
    for (const peer of room.reachable(this.now())) if (!mesh.present.has(peer)) void mesh.addPeer(peer);
  }

  /** Signaling server URLs learned from members (persisted with the room; newest first). */
  reachHints() {
    return this.room?.reachHints() ?? [];
  }

  /** @param {boolean} [elsewhere] closed because this identity connected elsewhere */
  scheduleReconnect(elsewhere = false) {
    if (this.closed) return;
    if (elsewhere) this.backoffMs = Math.max(this.backoffMs, 30000);
    this.store.dispatch({ type: elsewhere ? 'elsewhere' : 'unreachable' });
    if (this.retry !== null) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      void this.connect();
    }, this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, 30000);
  }

  /** @param {SignalingClient|import('../net/hub.js').RoomSignaling|MultiRoomSignaling} client @param {import('../net/signaling.js').SignalingEvent} ev */
  onSignaling(client, ev) {
    if (client !== this.client) return;
    const mesh = this.mesh;
    if (ev.type === 'closed') {
      this.present.clear(); // signaling goes through linked members meanwhile (relay.js)
      if (mesh) mesh.opts.iceServers = withoutServerStun(mesh.opts.iceServers ?? [], location.hostname); // gone with it
      if (this.client === client && this.store.getState().connection === 'online') this.scheduleReconnect(ev.reason === 'replaced');
      return;
    }
    if (ev.type === 'error' && ev.code === 'replaced') return; // the 'closed' that follows says it
    if (!mesh || !('room' in ev) || ev.room !== this.roomId) return;
    if (ev.type === 'peer-joined') {
      this.present.add(ev.peer);
      this.store.dispatch({ type: 'member', peer: ev.peer, link: 'connecting' });
      void mesh.addPeer(ev.peer);
    } else if (ev.type === 'peer-left') {
      this.present.delete(ev.peer);
      mesh.removePeer(ev.peer);
      const member = this.room?.membership.members.has(ev.peer);
      this.store.dispatch(member ? { type: 'member', peer: ev.peer, link: 'closed' } : { type: 'member-gone', peer: ev.peer });
    } else if (ev.type === 'signal') {
      void mesh.handleSignal(ev.from, ev.payload);
    } else if (ev.type === 'error' && ev.code !== 'no-such-peer') {
      this.store.dispatch({ type: 'error', code: ev.code, text: `Server refused a request (${ev.code}).` });
    }
  }

  /** A verified bundle arrived with a signaling payload: compute the safety number once per peer. */
  async onBundle(/** @type {string} */ peer, /** @type {Uint8Array} */ ed25519) {
    if (this.store.getState().safety[peer]) return;
    this.store.dispatch({ type: 'safety-number', peer, number: await safetyNumber(this.identity.publicKey, ed25519) });
  }

  /** Mesh channel state: an open channel starts the handshake; a dead one ends the room's link (the
   * mesh redials it with backoff). @param {string} peer @param {import('../net/mesh.js').LinkState} link */
  onLinkState(peer, link) {
    const room = this.room;
    if (!room) return;
    if (link === 'open') {
      void room.linkUp(peer, this.now()).then(() => this.pump([]));
      return;
    }
    if (link === 'connecting') return;
    this.store.dispatch({ type: 'member', peer, link: link === 'failed' ? 'failed' : 'closed' });
    void room.linkDown(peer, this.now()).then((events) => this.pump(events));
  }

  /** @param {string} from @param {Uint8Array} frame */
  async onFrame(from, frame) {
    const room = this.room;
    if (!room) return; // no room keys, no plaintext: drop
    await this.pump(await room.receive(from, frame, this.now()));
  }

  /**
   * Persist, transmit, close dead links, re-arm the timer, publish events — in that order, one pump at a time.
   * @param {import('../core/room.js').RoomEvent[]} events
   */
  pump(events) {
    const run = async () => {
      const room = this.room;
      if (!room || this.forgotten) return; // a left room: a receive or timer under way writes nothing back
      const batch = room.takePersist();
      const frames = room.dataToSend();
      await this.roomStore.applyBatch(room.roomId, batch);
      for (const [peer, data] of frames) this.mesh?.send(peer, data);
      for (const peer of room.takeDeadLinks()) this.mesh?.dropLink(peer);
      this.relayPump(room);
      this.armTimer();
      for (const ev of events) this.onRoomEvent(ev);
    };
    const p = this.pumping.then(run);
    this.pumping = p.catch(() => undefined);
    return p;
  }

  armTimer() {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.closed) return; // a pump that finishes after closeApp re-arms nothing
    const when = this.room?.nextTimer();
    if (when === null || when === undefined) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      const room = this.room;
      if (room) void room.handleTimer(this.now()).then((events) => this.pump(events));
    }, Math.min(Math.max(0, when - this.now()), 2 ** 31 - 1)); // longer delays fire at once in browsers
  }

  /** @param {import('../core/room.js').RoomEvent} ev */
  onRoomEvent(ev) {
    const d = this.store.dispatch;
    if (ev.type === 'message') {
      d({ type: 'message', message: ev.message });
      if (ev.message.file) this.files.onMessage(ev.message, ev.message.sender === this.identity.peerId);
      if (ev.message.sender !== this.identity.peerId) {
        const from = this.store.getState().names[ev.message.sender] ?? 'someone';
        if (!(ev.message.mentioned && features.notifyMention(from))) notifyIfHidden(from);
        void this.markSeen();
      }
    } else if (ev.type === 'updated') {
      d({ type: 'message-updated', message: ev.message });
      features.refreshSearch(this);
    }
    else if (ev.type === 'expired') {
      this.files.forget(ev.id);
      d({ type: 'message-gone', id: ev.id, reason: ev.reason });
    }
    else if (ev.type === 'profile') d({ type: 'profile', peer: ev.peer, name: ev.name });
    else if (ev.type === 'typing') d({ type: 'typing', peers: this.room?.typingMembers(this.now()) ?? [] });
    else if (ev.type === 'seen') d({ type: 'receipt', id: ev.id, seen: ev.count, of: ev.of });
    else if (ev.type === 'erased') d({ type: 'receipt', id: ev.id, erased: ev.count, of: ev.of });
    else if (ev.type === 'online') {
      d({ type: 'member', peer: ev.peer, link: ev.online ? 'open' : 'closed' });
      features.refreshLastSeen(this);
      if (ev.online) {
        void this.mesh?.markReady(ev.peer);
        void this.markSeen();
      }
    }
    else if (ev.type === 'joined') {
      if (!this.store.getState().members[ev.peer]) d({ type: 'member', peer: ev.peer, link: 'closed' });
    } else if (ev.type === 'left') {
      d({ type: 'member-gone', peer: ev.peer });
      this.dispatchRoles();
    } else if (ev.type === 'timer') d({ type: 'set-room-ttl', ttlS: ev.ttlS });
    else if (ev.type === 'roles' || ev.type === 'admission') this.dispatchRoles();
    else if (ev.type === 'delivered') d({ type: 'delivered', id: ev.id, peer: ev.peer });
  }

  /** Send a chat message with the picked TTL. Fails closed without room keys. @param {string} text */
  async sendText(text) {
    const body = text.trim();
    const room = this.room;
    if (!body) return false;
    if (!room || !this.mesh) {
      this.store.dispatch({ type: 'error', code: 'not-encrypted', text: 'Message not sent: end-to-end encryption is not ready yet.' });
      return false;
    }
    const { ttlS, replyTo, editing } = this.store.getState();
    this.store.dispatch({ type: 'compose-reset' });
    if (editing) return this.edit(editing, body);
    let message;
    try {
      message = await room.sendText(body, this.now(), { ttlS, replyTo, mentions: features.mentionsIn(this, body) });
    } catch (err) {
      const refused = features.sendRefusal(err);
      if (refused) {
        this.store.dispatch({ type: 'error', ...refused });
        return false;
      }
      if (!(err instanceof PermissionError)) throw err;
      this.store.dispatch({ type: 'error', code: 'not-allowed', text: 'Announcement mode: only admins post in this room.' });
      return false;
    }
    this.store.dispatch({ type: 'message', message });
    await this.typed(false);
    return true;
  }

  /**
   * Send a file (attach button, drop, paste, voice note): sealed here in chunks with a fresh key, announced
   * by a "file" message; members fetch it from whoever holds it. Fails closed without room keys.
   * @param {Blob} blob @param {string} name @param {string} mime
   * @param {{thumb?: Uint8Array|null, thumbMime?: string|null, durationMs?: number|null}} [o]
   */
  async sendFile(blob, name, mime, o = {}) {
    const room = this.room;
    if (!room || !this.mesh) {
      this.store.dispatch({ type: 'error', code: 'not-encrypted', text: 'File not sent: end-to-end encryption is not ready yet.' });
      return null;
    }
    let content;
    try {
      content = await this.files.seal(blob, name, mime, o);
    } catch (err) {
      this.store.dispatch({ type: 'error', code: 'file-refused', text: `File not sent: ${err instanceof Error ? err.message : 'refused'}` });
      return null;
    }
    const { ttlS } = this.store.getState();
    let message;
    try {
      message = await room.sendFile(content, this.now(), { ttlS });
    } catch (err) {
      if (!(err instanceof PermissionError)) throw err;
      this.store.dispatch({ type: 'error', code: 'not-allowed', text: 'Announcement mode: only admins post in this room.' });
      return null;
    }
    this.store.dispatch({ type: 'message', message });
    this.files.onMessage(message, true);
    await this.pump([]);
    return message;
  }

  /** Fetch an attachment (download button). @param {string} messageId */
  fetchFile(messageId) {
    return this.files.fetch(messageId);
  }

  /** Publish our display name in this room (and remember it for this room). @param {string} name */
  async setDisplayName(name) {
    const room = this.room;
    const clean = cleanName(name);
    if (!room || !clean || this.closed) return false;
    localStorage.setItem(`ephemesh.name.${room.roomId}`, clean);
    this.store.dispatch({ type: 'set-name', name: clean });
    if (clean !== room.displayName(this.identity.peerId)) await this.pump(await room.setProfile(clean, this.now()));
    return true;
  }

  /** Edit one of our own messages for everyone. @param {string} id @param {string} text */
  async edit(id, text) {
    const room = this.room;
    const body = text.trim();
    if (!room || !body) return false;
    try {
      this.store.dispatch({ type: 'message-updated', message: await room.edit(id, body, this.now()) });
    } catch {
      this.store.dispatch({ type: 'error', code: 'cannot-edit', text: 'That message can no longer be edited.' });
      return false;
    }
    await this.typed(false);
    return true;
  }

  /** Unsend one of our own messages (a signed deletion every member applies). @param {string} id */
  async unsend(id) {
    const room = this.room;
    if (!room) return;
    await this.pump(await room.unsend(id, this.now()));
  }

  /** Toggle our reaction `emoji` on a message. @param {string} id @param {string} emoji */
  async react(id, emoji) {
    const room = this.room;
    if (!room) return;
    const current = this.store.getState().messages.find((m) => m.id === id);
    const on = !(current?.reactions ?? []).some(([e, peers]) => e === emoji && peers.includes(this.identity.peerId));
    this.store.dispatch({ type: 'picker', id: null });
    try {
      this.store.dispatch({ type: 'message-updated', message: await room.react(id, emoji, this.now(), on) });
    } catch {
      return; // the message went meanwhile
    }
    await this.pump([]);
  }

  /** The user typed (true) or stopped (false): renew or clear our typing indicator. @param {boolean} typing */
  async typed(typing) {
    const room = this.room;
    if (!room) return;
    if (this.typingStop !== null) clearTimeout(this.typingStop);
    this.typingStop = typing ? setTimeout(() => void this.typed(false), 4000) : null;
    await room.setTyping(typing, this.now());
    await this.pump([]);
  }

  /** Tell senders we have shown their messages (only while the page is visible and the room shown). */
  async markSeen() {
    const room = this.room;
    if (!room || !this.active || document.visibilityState !== 'visible') return;
    const ids = this.store.getState().messages.filter((m) => m.sender !== this.identity.peerId).map((m) => m.id);
    if (!ids.length) return;
    await room.markSeen(ids, this.now());
    await this.pump([]);
  }

  /** Roles, announcement mode and removed members, from the room's membership. */
  dispatchRoles() {
    const room = this.room;
    if (!room) return;
    const m = room.membership;
    this.store.dispatch({ type: 'roles', owner: m.owner, admins: room.admins(), announce: m.announceSince > 0, removed: [...m.removed].sort(), closed: m.closed, requests: room.joinRequests() });
  }

  /**
   * A member-list action: remove, readmit, admin, unadmin (admins only) or leave; a refusal becomes a UI error.
   * @param {'remove'|'readmit'|'admin'|'unadmin'|'leave'|'announce-on'|'announce-off'|'close'|'open'|'admit'} action @param {string} [peer]
   */
  async memberAction(action, peer = '') {
    const room = this.room;
    if (!room) return false;
    const now = this.now();
    try {
      if (action === 'remove') await this.pump(await room.removeMember(peer, now));
      else if (action === 'readmit') await this.pump(await room.readmit(peer, now));
      else if (action === 'admin' || action === 'unadmin') await this.pump(await room.setAdmin(peer, action === 'admin', now));
      else if (action === 'leave') await this.pump(await room.leave(now));
      else if (action === 'close') await this.pump(await room.closeAdmission(now));
      else if (action === 'open') await this.pump(await room.openAdmission(now));
      else if (action === 'admit') await this.pump(await room.admit(peer, now));
      else await this.pump(await room.setAnnounce(action === 'announce-on', now));
    } catch (err) {
      if (!(err instanceof Error)) throw err;
      this.store.dispatch({ type: 'error', code: 'not-allowed', text: err.message });
      return false;
    }
    this.dispatchRoles();
    return true;
  }

  /** Set the room timer (a signed SET_TIMER op every member applies). @param {number} ttlS */
  async setRoomTimer(ttlS) {
    const room = this.room;
    if (!room) return;
    await this.pump(await room.setTimer(ttlS, this.now()));
  }
}

/**
 * Stop for good: the signaling share, the mesh, timers (another tab takes over, or the room is left).
 * @param {App} app
 */
export function closeApp(app) {
  app.closed = true;
  for (const t of [app.retry, app.timer, app.typingStop]) if (t !== null) clearTimeout(t);
  app.retry = app.timer = app.typingStop = null;
  app.mesh?.close();
  app.files.close();
  app.mesh = null;
  if (app.client && 'detached' in app.client) app.client.close();
  else app.client?.close();
  app.client = null;
}

/** Browser notification when the tab is hidden; the body never contains message text. @param {string} sender */
export function notifyIfHidden(sender) {
  if (typeof Notification === 'undefined' || !document.hidden || Notification.permission !== 'granted') return;
  new Notification('ephemesh', { body: `New message from ${sender}`, tag: 'ephemesh' });
}

/** ICE servers minus the STUN URLs on the signaling server's host (its embedded responder is down with it;
 * TURN stays). Mirrors peer/net/reach.py. @param {RTCIceServer[]} servers @param {string} host */
export function withoutServerStun(servers, host) {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  /** @param {string} u */
  const stunHost = (u) => {
    if (!/^stuns?:/.test(u)) return null;
    const rest = u.slice(u.indexOf(':') + 1).split('?')[0];
    if (rest.startsWith('[')) return rest.includes(']') ? rest.slice(1, rest.indexOf(']')).toLowerCase() : null;
    return (rest.split(':').length === 2 ? rest.slice(0, rest.lastIndexOf(':')) : rest).toLowerCase();
  };
  return servers.flatMap((s) => {
    const urls = (Array.isArray(s.urls) ? s.urls : [s.urls]).filter((u) => stunHost(u) !== h);
    return urls.length ? [{ ...s, urls }] : [];
  });
}
