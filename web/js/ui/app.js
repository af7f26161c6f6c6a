// The app controller: owns the store, the identity, the signaling client and the mesh, and turns
// their events into store actions. UI event handlers call its methods; tests may too
// (window.ephemesh = { app, store }).
//
// Rules:
// - The room secret comes only from the URL fragment; only the derived room id reaches the server.
// - Messaging is delegated to a pluggable `engine` (phase 2: chains + envelopes + sync). Without an
//   engine, sendText fails closed with an error and incoming frames are dropped: plaintext is never
//   put on the wire in place of a missing key.
// - Signaling payloads are sealed for the room and signed (net/sealed-codec.js); a test may inject
//   another codec factory. Verified sender bundles give the safety numbers.
// - Signaling reconnects with exponential backoff (1 s .. 30 s); the mesh reports per-peer link state.
// - Notifications are shown only when the tab is hidden, and never contain message text.

import { ed25519Sign } from '../core/crypto.js';
import { ProtocolError } from '../core/errors.js';
import { deriveRoomKeys, inviteFragment, newRoomSecret, parseFragment } from '../core/invite.js';
import { safetyNumber } from '../core/safety.js';
import { SignalingClient } from '../net/signaling.js';
import { Mesh } from '../net/mesh.js';
import { createSealedCodec } from '../net/sealed-codec.js';

/**
 * @typedef {{
 *   sendText(text: string, ttlS: number, now: number): Promise<{ message: import('./state.js').Message, frame: Uint8Array }>,
 *   receive(peer: string, frame: Uint8Array, now: number): Promise<import('./state.js').Message[]>,
 * }} MessagingEngine
 */

export class App {
  /**
   * @param {{ store: ReturnType<typeof import('./state.js').createStore>,
   *   identity: import('../core/identity.js').Identity,
   *   wsUrl: string, now?: () => number, engine?: MessagingEngine|null }} opts
   */
  constructor(opts) {
    this.store = opts.store;
    this.identity = opts.identity;
    this.wsUrl = opts.wsUrl;
    this.now = opts.now ?? Date.now;
    this.engine = opts.engine ?? null;
    /** @type {import('../net/mesh.js').SignalCodec|null} */
    this.codec = null;
    /** @type {SignalingClient|null} */
    this.client = null;
    /** @type {Mesh|null} */
    this.mesh = null;
    /** @type {string|null} */
    this.roomId = null;
    this.backoffMs = 1000;
    /** @type {ReturnType<typeof setTimeout>|null} */
    this.retry = null;
  }

  /** Create a fresh room: new secret in the fragment, then enter it. @param {number} ttlS */
  async createRoom(ttlS) {
    const frag = inviteFragment(newRoomSecret(), ttlS);
    history.replaceState(null, '', `#${frag}`);
    await this.openFragment(frag);
  }

  /**
   * Enter the room named by an invite fragment or URL. Invalid invites become a UI error.
   * @param {string} fragOrUrl
   */
  async openFragment(fragOrUrl) {
    const frag = fragOrUrl.includes('#') ? fragOrUrl.slice(fragOrUrl.indexOf('#') + 1) : fragOrUrl;
    let invite;
    try {
      invite = parseFragment(frag);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.store.dispatch({ type: 'error', code: 'invite-invalid', text: 'This invite link is not valid. Ask for a new one.' });
      return false;
    }
    if (location.hash !== `#${frag}`) history.replaceState(null, '', `#${frag}`);
    const keys = await deriveRoomKeys(invite.secret);
    this.roomId = keys.roomId;
    this.codec = createSealedCodec({
      identity: this.identity,
      room: keys,
      now: this.now,
      onBundle: (peer, bundle) => void this.onBundle(peer, bundle.ed25519),
    });
    const inviteUrl = `${location.origin}${location.pathname}#${frag}`;
    this.store.dispatch({ type: 'enter-room', roomId: keys.roomId, inviteUrl, ttlS: invite.ttlS ?? undefined });
    await this.connect();
    return true;
  }

  /** Connect (or reconnect) to signaling and join the current room. */
  async connect() {
    if (!this.roomId || !this.codec) return;
    const room = this.roomId;
    const codec = this.codec;
    this.store.dispatch({ type: 'connecting' });
    const client = new SignalingClient({
      url: this.wsUrl,
      publicKey: this.identity.publicKey,
      sign: (m) => ed25519Sign(this.identity.signingKey, m),
      onEvent: (ev) => this.onSignaling(client, ev),
    });
    this.client = client;
    try {
      const { peer, turn } = await client.connect();
      this.store.dispatch({ type: 'connected', peer });
      this.mesh?.close();
      const iceServers = turn ? [{ urls: turn.urls, username: turn.username, credential: turn.credential }] : [];
      this.mesh = new Mesh({
        selfId: peer,
        codec,
        iceServers,
        sendSignal: (to, payload) => { if (client.state === 'ready') client.signal(room, to, payload); },
        onFrame: (from, frame) => void this.onFrame(from, frame),
        onLinkState: (p, link) => this.store.dispatch({ type: 'member', peer: p, link }),
      });
      const present = await client.join(room);
      this.backoffMs = 1000;
      for (const p of present) {
        this.store.dispatch({ type: 'member', peer: p, link: 'connecting' });
        void this.mesh.addPeer(p);
      }
    } catch {
      if (this.client === client) this.scheduleReconnect();
    }
  }

  scheduleReconnect() {
    this.store.dispatch({ type: 'unreachable' });
    if (this.retry !== null) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      void this.connect();
    }, this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, 30000);
  }

  /** @param {SignalingClient} client @param {import('../net/signaling.js').SignalingEvent} ev */
  onSignaling(client, ev) {
    if (client !== this.client) return;
    const mesh = this.mesh;
    if (ev.type === 'closed') {
      if (this.client === client && this.store.getState().connection === 'online') this.scheduleReconnect();
      return;
    }
    if (!mesh || !('room' in ev) || ev.room !== this.roomId) return;
    if (ev.type === 'peer-joined') {
      this.store.dispatch({ type: 'member', peer: ev.peer, link: 'connecting' });
      void mesh.addPeer(ev.peer);
    } else if (ev.type === 'peer-left') {
      mesh.removePeer(ev.peer);
      this.store.dispatch({ type: 'member-gone', peer: ev.peer });
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

  /** @param {string} from @param {Uint8Array} frame */
  async onFrame(from, frame) {
    if (!this.engine) return; // no engine, no plaintext: drop
    try {
      const messages = await this.engine.receive(from, frame, this.now());
      for (const message of messages) {
        this.store.dispatch({ type: 'message', message });
        notifyIfHidden(this.store.getState().members[message.sender]?.name ?? 'someone');
      }
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
    }
  }

  /** Send a chat message with the picked TTL. Fails closed without an engine. @param {string} text */
  async sendText(text) {
    const body = text.trim();
    if (!body) return false;
    if (!this.engine || !this.mesh) {
      this.store.dispatch({ type: 'error', code: 'not-encrypted', text: 'Message not sent: end-to-end encryption is not available yet.' });
      return false;
    }
    const { message, frame } = await this.engine.sendText(body, this.store.getState().ttlS, this.now());
    this.store.dispatch({ type: 'message', message });
    this.mesh.broadcast(frame);
    return true;
  }
}

/** Browser notification when the tab is hidden; the body never contains message text. @param {string} sender */
export function notifyIfHidden(sender) {
  if (typeof Notification === 'undefined' || !document.hidden || Notification.permission !== 'granted') return;
  new Notification('ephemesh', { body: `New message from ${sender}`, tag: 'ephemesh' });
}
