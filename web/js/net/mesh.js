// RTC mesh adapter: one RTCPeerConnection per neighbour, one ordered reliable data channel
// "ephemesh" carrying binary frames.
//
// Rules:
// - The peer with the lexicographically lower peer id makes the offer; the other only answers
//   (no glare). An offer from a higher id is ignored.
// - No trickle: an offer/answer is sent once ICE gathering is complete, so the SDP (with its DTLS
//   fingerprint) is one unit the seal hook can sign. Remote candidates, if a peer trickles, are added.
// - Every signaling payload goes through the `codec` hook: codec.seal(to, msg) -> string and
//   codec.open(from, payload) -> msg. Phase 2 wires the encrypted+signed format; PLAIN_CODEC (plain
//   JSON) exists for phase-1 tests only. A payload the codec refuses is dropped (fail closed).
// - iceServers are exactly what the signaling server's welcome hands out (STUN, TURN), possibly none.
// - A neighbour that has not opened its channel within connectTimeoutMs is reported 'failed'.
// - Redial and link state mirror peer/net/mesh.py and peer/net/linkstate.py (see PROTOCOL.md, "Links
//   across NATs"): every failure backs off per neighbour on both sides (1 s doubling to 60 s, ±25 %
//   jitter, reset only after a link stayed ready 30 s); from the second consecutive failure on, an
//   answerer drops an offer that arrives before half the nominal delay since its last failure with that peer; the higher id sends a sealed
//   {kind:'hello'} (room-wide at most 5/s after a burst of 10, per peer under the same backoff) to nudge
//   the offerer, which dials at once on a hello only if it has no failure with that peer; at most
//   MAX_DIALS connections are in set-up at once. A hello from a peer whose link has been ready (or open
//   without becoming ready) for HELLO_STALE_MS drops that link: the peer says it has none (restarted).
// - Link info per neighbour (local knowledge): connecting / direct / relayed / unreachable (+ reason:
//   no-route, timed-out, handshake-refused); direct vs relayed comes from getStats()' selected
//   candidate pair once the room says the handshake is done (markReady).

import { ProtocolError } from '../core/errors.js';
import { isId } from '../core/ids.js';

export const CHANNEL_LABEL = 'ephemesh';
export const FILES_LABEL = 'ephemesh-files';
export const MAX_FRAME_BYTES = 64 * 1024;
export const MAX_SIGNAL_CHARS = 60000;

/**
 * @typedef {{kind:'offer', sdp:string} | {kind:'answer', sdp:string} | {kind:'candidate', candidate: RTCIceCandidateInit|null} | {kind:'hello'}} SignalMessage
 * @typedef {{ seal(to: string, msg: SignalMessage): Promise<string>, open(from: string, payload: string): Promise<SignalMessage> }} SignalCodec
 * @typedef {'connecting'|'open'|'closed'|'failed'} LinkState
 * @typedef {{peer: string, state: 'connecting'|'direct'|'relayed'|'unreachable', reason: string|null,
 *   path: [string, string]|null, failures: number}} LinkInfo
 */

export const MAX_DIALS = 8;
export const MAX_PRESENT = 1024;
/** A hello (sent only by a peer holding no link to us) from a peer whose link has been ready this long, or
 * open this long without becoming ready, means that peer restarted or lost its end: ours is dead. A
 * younger link may simply have crossed a late hello. Same rule as peer/net/mesh.py (HELLO_STALE_S). */
export const HELLO_STALE_MS = 1000;
export const REDIAL = { baseMs: 1000, capMs: 60000, jitter: 0.25, stableMs: 30000, acceptFactor: 0.5 };
const HELLO_RATE = 5;
const HELLO_BURST = 10;

/** @param {number} failures */
export function nominalDelay(failures, policy = REDIAL) {
  return failures <= 0 ? 0 : Math.min(policy.capMs, policy.baseMs * 2 ** (failures - 1));
}

/**
 * Validate a decoded signal message (shared by every codec). Throws ProtocolError.
 * @param {unknown} obj @returns {SignalMessage}
 */
export function parseSignalMessage(obj) {
  if (!obj || typeof obj !== 'object') throw new ProtocolError('bad-signal', 'not an object');
  const o = /** @type {Record<string, unknown>} */ (obj);
  if ((o.kind === 'offer' || o.kind === 'answer') && typeof o.sdp === 'string' && o.sdp.length <= MAX_SIGNAL_CHARS) {
    return { kind: o.kind, sdp: o.sdp };
  }
  if (o.kind === 'hello') return { kind: 'hello' };
  if (o.kind === 'candidate') {
    if (o.candidate === null) return { kind: 'candidate', candidate: null };
    const c = /** @type {Record<string, unknown>} */ (o.candidate);
    if (c && typeof c === 'object' && typeof c.candidate === 'string' && c.candidate.length < 1024) {
      return {
        kind: 'candidate',
        candidate: {
          candidate: c.candidate,
          sdpMid: typeof c.sdpMid === 'string' ? c.sdpMid : null,
          sdpMLineIndex: typeof c.sdpMLineIndex === 'number' ? c.sdpMLineIndex : null,
        },
      };
    }
  }
  throw new ProtocolError('bad-signal', 'bad signal message');
}

/** Phase-1 codec: plain JSON. NOT confidential, NOT authenticated; tests and development only. */
export const PLAIN_CODEC = /** @type {SignalCodec} */ ({
  async seal(_to, msg) {
    return JSON.stringify(msg);
  },
  async open(_from, payload) {
    if (payload.length > MAX_SIGNAL_CHARS) throw new ProtocolError('too-large', 'signal too large');
    let obj;
    try {
      obj = JSON.parse(payload);
    } catch {
      throw new ProtocolError('bad-signal', 'not JSON');
    }
    return parseSignalMessage(obj);
  },
});

/**
 * @typedef {object} MeshOptions
 * @property {string} selfId
 * @property {(to: string, payload: string) => void} sendSignal relay through the signaling server
 * @property {SignalCodec} codec
 * @property {RTCIceServer[]} [iceServers]
 * @property {(peer: string, frame: Uint8Array) => void} [onFrame]
 * @property {(peer: string, state: LinkState) => void} [onLinkState]
 * @property {(info: LinkInfo) => void} [onLinkInfo]
 * @property {(peer: string, channel: RTCDataChannel) => void} [onFilesChannel] the link's attachment channel (net/files.js)
 * @property {number} [connectTimeoutMs]
 * @property {typeof REDIAL} [redial]
 */

class Link {
  /** @param {string} peer @param {RTCPeerConnection} pc */
  constructor(peer, pc) {
    this.peer = peer;
    this.pc = pc;
    /** @type {RTCDataChannel|null} */
    this.channel = null;
    /** @type {LinkState} */
    this.state = 'connecting';
    /** @type {ReturnType<typeof setTimeout>|null} */
    this.timer = null;
    this.opened = false;
    /** @type {number|null} when the channel opened */
    this.openedAt = null;
    /** @type {number|null} when the room handshake finished */
    this.readyAt = null;
  }
}

class Neighbour {
  constructor() {
    this.failures = 0;
    this.notBefore = 0;
    this.failedAt = 0;
    /** @type {number|null} */
    this.readyAt = null;
    /** @type {LinkInfo|null} */
    this.info = null;
    /** @type {ReturnType<typeof setTimeout>|null} */
    this.retry = null;
    this.hellos = 0;
  }
}

export class Mesh {
  /** @param {MeshOptions} opts */
  constructor(opts) {
    if (!isId(opts.selfId)) throw new Error('bad self id');
    if (!opts.codec) throw new Error('a signal codec is required');
    this.opts = opts;
    this.policy = opts.redial ?? REDIAL;
    /** @type {Map<string, Link>} */
    this.links = new Map();
    /** @type {Set<string>} peers the server lists */
    this.present = new Set();
    /** @type {Map<string, Neighbour>} */
    this.nb = new Map();
    this.helloTokens = HELLO_BURST;
    this.helloAt = Date.now();
    this.offersSent = 0;
    this.offersAnswered = 0;
    this.offersDropped = 0;
    this.hellosSent = 0;
    this.closed = false;
  }

  /** Peers whose channel is open. */
  openPeers() {
    return [...this.links.values()].filter((l) => l.state === 'open').map((l) => l.peer);
  }

  /** @param {string} peer @returns {LinkState|null} */
  linkState(peer) {
    return this.links.get(peer)?.state ?? null;
  }

  /** Our link to `peer` as we see it, or null if the server does not list it. @param {string} peer @returns {LinkInfo|null} */
  linkInfo(peer) {
    return this.present.has(peer) ? (this.nb.get(peer)?.info ?? null) : null;
  }

  /** @param {string} peer */
  neighbour(peer) {
    let n = this.nb.get(peer);
    if (!n) {
      n = new Neighbour();
      this.nb.set(peer, n);
      if (this.nb.size > 4 * MAX_PRESENT) {
        for (const key of this.nb.keys()) {
          if (!this.present.has(key)) { this.nb.delete(key); break; }
        }
      }
    }
    return n;
  }

  /** @param {string} peer @param {LinkInfo['state']} state @param {string|null} [reason] @param {[string, string]|null} [path] */
  setInfo(peer, state, reason = null, path = null) {
    const n = this.neighbour(peer);
    const old = n.info;
    n.info = { peer, state, reason, path, failures: n.failures };
    if (old && old.state === state && old.reason === reason && JSON.stringify(old.path) === JSON.stringify(path)) return;
    if (this.present.has(peer)) this.opts.onLinkInfo?.(n.info);
  }

  /** A failed attempt: back off, say unreachable, schedule the next one. @param {string} peer @param {string} reason */
  fail(peer, reason) {
    const n = this.neighbour(peer);
    n.failures += 1;
    n.readyAt = null;
    n.failedAt = Date.now();
    const jitter = 1 - this.policy.jitter + Math.random() * 2 * this.policy.jitter;
    n.notBefore = n.failedAt + nominalDelay(n.failures, this.policy) * jitter;
    this.setInfo(peer, 'unreachable', reason);
    this.schedule(peer, n.notBefore - Date.now());
  }

  /** (Re)try `peer` after `delayMs`: offer (lower id) or hello (higher id). @param {string} peer @param {number} delayMs */
  schedule(peer, delayMs) {
    const n = this.neighbour(peer);
    if (n.retry !== null) clearTimeout(n.retry);
    n.retry = setTimeout(() => {
      n.retry = null;
      if (!this.closed && this.present.has(peer) && !this.links.has(peer)) void this.dial(peer);
    }, Math.max(0, delayMs));
  }

  /** A neighbour is present (joined list or peer-joined). Offers if our id is lower. @param {string} peer */
  async addPeer(peer) {
    if (!isId(peer) || peer === this.opts.selfId || this.closed) return;
    if (!this.present.has(peer) && this.present.size >= MAX_PRESENT) return;
    this.present.add(peer);
    const n = this.neighbour(peer);
    if (this.links.has(peer) || n.retry !== null) return;
    if (n.info?.state !== 'unreachable') this.setInfo(peer, 'connecting');
    const wait = n.notBefore - Date.now();
    if (wait > 0) this.schedule(peer, wait);
    else await this.dial(peer);
  }

  /** One attempt: an offer if our id is lower, else a hello. @param {string} peer */
  async dial(peer) {
    if (this.links.has(peer) || !this.present.has(peer)) return;
    const n = this.neighbour(peer);
    if (this.opts.selfId < peer) {
      if (this.setupCount() >= MAX_DIALS) { this.schedule(peer, this.policy.baseMs); return; }
      this.setInfo(peer, 'connecting');
      const link = this.createLink(peer);
      const channel = link.pc.createDataChannel(CHANNEL_LABEL, { ordered: true });
      this.attachChannel(link, channel);
      this.opts.onFilesChannel?.(peer, link.pc.createDataChannel(FILES_LABEL, { ordered: true }));
      this.offersSent += 1;
      await link.pc.setLocalDescription(await link.pc.createOffer());
      await this.sendDescription(link, 'offer');
      return;
    }
    // we answer: nudge the offerer, then give it connectTimeoutMs to offer
    n.hellos += 1;
    if (this.takeHelloToken()) {
      this.hellosSent += 1;
      this.opts.sendSignal(peer, await this.opts.codec.seal(peer, { kind: 'hello' }));
    }
    const timeout = this.opts.connectTimeoutMs ?? 20000;
    if (n.retry !== null) clearTimeout(n.retry);
    n.retry = setTimeout(() => {
      n.retry = null;
      if (this.closed || !this.present.has(peer) || this.links.has(peer)) return;
      if (n.info?.state === 'connecting') this.setInfo(peer, 'unreachable', 'timed-out');
      const jitter = 1 - this.policy.jitter + Math.random() * 2 * this.policy.jitter;
      this.schedule(peer, nominalDelay(n.hellos, this.policy) * jitter);
    }, timeout);
  }

  takeHelloToken() {
    const now = Date.now();
    this.helloTokens = Math.min(HELLO_BURST, this.helloTokens + ((now - this.helloAt) / 1000) * HELLO_RATE);
    this.helloAt = now;
    if (this.helloTokens < 1) return false;
    this.helloTokens -= 1;
    return true;
  }

  /** Connections still in set-up (offered or answered, channel not open yet). */
  setupCount() {
    let k = 0;
    for (const l of this.links.values()) if (l.state === 'connecting') k++;
    return k;
  }

  /** We hold a link to `peer` that became ready at least HELLO_STALE_MS ago, or opened that long ago and
   * never became ready (its end died before the room handshake finished). @param {string} peer */
  staleLink(peer) {
    const link = this.links.get(peer);
    if (!link || link.state === 'closed') return false;
    const since = link.readyAt ?? link.openedAt;
    return since !== null && Date.now() - since >= HELLO_STALE_MS;
  }

  /** A neighbour left: close its connection, stop dialling (its failure count is kept). @param {string} peer */
  removePeer(peer) {
    this.present.delete(peer);
    const n = this.nb.get(peer);
    if (n?.retry) { clearTimeout(n.retry); n.retry = null; }
    if (n) n.info = null;
    this.closeLink(peer);
  }

  /** @param {string} peer */
  closeLink(peer) {
    const link = this.links.get(peer);
    if (!link) return;
    this.links.delete(peer);
    this.setState(link, 'closed');
    link.pc.close();
  }

  /** The room's handshake with `peer` finished: the link is usable; say direct or relayed. @param {string} peer */
  async markReady(peer) {
    const link = this.links.get(peer);
    if (!link || link.state !== 'open') return;
    this.neighbour(peer).readyAt = Date.now();
    link.readyAt = Date.now();
    await this.updatePath(link);
    // Chromium keeps checking after it connects and may move to a better pair (a relay first, then a
    // hole-punched direct path): follow the selected pair.
    const ice = link.pc.sctp?.transport?.iceTransport;
    ice?.addEventListener('selectedcandidatepairchange', () => void this.updatePath(link));
  }

  /** @param {Link} link */
  async updatePath(link) {
    const path = await selectedPath(link.pc);
    if (this.links.get(link.peer) !== link || link.state !== 'open') return;
    this.setInfo(link.peer, path && path.includes('relay') ? 'relayed' : 'direct', null, path);
  }

  /** The room gave up on the link (handshake failed, heartbeats timed out): close it and redial later. @param {string} peer */
  dropLink(peer) {
    const link = this.links.get(peer);
    if (link) this.linkEnded(link, link.opened ? null : 'timed-out');
  }

  /** A link ended: count the failure (unless it served a while) and schedule the next attempt.
   * @param {Link} link @param {string|null} reason null = decide from the link's history */
  linkEnded(link, reason) {
    if (this.links.get(link.peer) !== link) return;
    this.closeLink(link.peer);
    if (this.closed || !this.present.has(link.peer)) return;
    const n = this.neighbour(link.peer);
    if (reason === null && n.readyAt !== null && Date.now() - n.readyAt >= this.policy.stableMs) {
      n.failures = 0;
      n.readyAt = null;
      this.setInfo(link.peer, 'connecting');
      this.schedule(link.peer, this.policy.baseMs * (1 - this.policy.jitter + Math.random() * 2 * this.policy.jitter));
      return;
    }
    this.fail(link.peer, reason ?? (n.readyAt === null ? 'handshake-refused' : 'timed-out'));
  }

  /**
   * A signaling payload arrived from `from`. Payloads the codec refuses, offers that break the
   * lower-id-offers rule, and offers inside the backoff window are dropped. @param {string} from @param {string} payload
   */
  async handleSignal(from, payload) {
    if (!isId(from) || from === this.opts.selfId || this.closed) return;
    /** @type {SignalMessage} */
    let msg;
    try {
      msg = await this.opts.codec.open(from, payload);
    } catch {
      return; // fail closed: an unopenable payload never reaches WebRTC
    }
    if (msg.kind === 'hello') {
      if (this.staleLink(from)) {
        this.dropLink(from); // it says it has no link to us, yet ours has been up a while: ours is dead
        return;
      }
      if (!(from > this.opts.selfId) || this.links.has(from)) return;
      if (!this.present.has(from) && this.present.size >= MAX_PRESENT) return;
      this.present.add(from);
      const n = this.neighbour(from);
      if (n.failures === 0 || Date.now() >= n.notBefore) {
        if (n.retry !== null) { clearTimeout(n.retry); n.retry = null; }
        await this.dial(from);
      } else if (n.retry === null) {
        // in backoff: dial when it ends (a hello may be all we hear of it, e.g. through the mesh)
        this.schedule(from, n.notBefore - Date.now());
      }
    } else if (msg.kind === 'offer') {
      if (!(from < this.opts.selfId)) return;
      const n = this.neighbour(from);
      if (n.failures >= 2 && Date.now() < n.failedAt + nominalDelay(n.failures, this.policy) * this.policy.acceptFactor) {
        this.offersDropped += 1;
        return;
      }
      let link = this.links.get(from);
      if (link && link.pc.signalingState !== 'stable') return;
      if (!link && this.setupCount() >= MAX_DIALS) { this.offersDropped += 1; return; }
      if (link) this.closeLink(from);
      if (n.retry !== null) { clearTimeout(n.retry); n.retry = null; }
      this.present.add(from);
      this.setInfo(from, 'connecting');
      this.offersAnswered += 1;
      link = this.createLink(from);
      await link.pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
      await link.pc.setLocalDescription(await link.pc.createAnswer());
      await this.sendDescription(link, 'answer');
    } else if (msg.kind === 'answer') {
      const link = this.links.get(from);
      if (!link || link.pc.signalingState !== 'have-local-offer') return;
      await link.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
    } else {
      const link = this.links.get(from);
      if (!link || !link.pc.remoteDescription) return;
      try {
        await link.pc.addIceCandidate(msg.candidate ?? undefined);
      } catch {
        /* a bad remote candidate is ignored */
      }
    }
  }

  /** Send one binary frame to a neighbour; false if its channel is not open. @param {string} peer @param {Uint8Array} frame */
  send(peer, frame) {
    if (frame.length > MAX_FRAME_BYTES) throw new ProtocolError('too-large', 'frame exceeds 64 KiB');
    const link = this.links.get(peer);
    if (!link || link.state !== 'open' || !link.channel) return false;
    link.channel.send(/** @type {Uint8Array<ArrayBuffer>} */ (frame));
    return true;
  }

  /** Send to every open neighbour; returns how many got it. @param {Uint8Array} frame */
  broadcast(frame) {
    let n = 0;
    for (const peer of this.openPeers()) if (this.send(peer, frame)) n++;
    return n;
  }

  close() {
    this.closed = true;
    for (const n of this.nb.values()) if (n.retry !== null) clearTimeout(n.retry);
    for (const peer of [...this.links.keys()]) this.closeLink(peer);
  }

  /** @param {string} peer */
  createLink(peer) {
    const pc = new RTCPeerConnection({ iceServers: this.opts.iceServers ?? [] });
    const link = new Link(peer, pc);
    this.links.set(peer, link);
    pc.ondatachannel = (ev) => {
      if (ev.channel.label === CHANNEL_LABEL && !link.channel) this.attachChannel(link, ev.channel);
      else if (ev.channel.label === FILES_LABEL) this.opts.onFilesChannel?.(peer, ev.channel);
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed') {
        this.setState(link, 'failed');
        this.linkEnded(link, link.opened ? null : 'no-route');
      }
      if (pc.connectionState === 'closed') this.setState(link, 'closed');
    };
    link.timer = setTimeout(() => {
      if (link.state === 'connecting') {
        this.setState(link, 'failed');
        this.linkEnded(link, 'timed-out');
      }
    }, this.opts.connectTimeoutMs ?? 20000);
    return link;
  }

  /** @param {Link} link @param {RTCDataChannel} channel */
  attachChannel(link, channel) {
    link.channel = channel;
    channel.binaryType = 'arraybuffer';
    channel.onopen = () => { link.opened = true; link.openedAt = Date.now(); this.setState(link, 'open'); };
    channel.onclose = () => {
      this.setState(link, 'closed');
      this.linkEnded(link, null);
    };
    channel.onmessage = (ev) => {
      if (!(ev.data instanceof ArrayBuffer) || ev.data.byteLength > MAX_FRAME_BYTES) return;
      this.opts.onFrame?.(link.peer, new Uint8Array(ev.data));
    };
  }

  /** @param {Link} link @param {LinkState} state */
  setState(link, state) {
    if (link.state === state || link.state === 'closed') return;
    link.state = state;
    if (link.timer !== null && state !== 'connecting') clearTimeout(link.timer);
    this.opts.onLinkState?.(link.peer, state);
  }

  /** Wait for ICE gathering to finish, then seal and send the local description. @param {Link} link @param {'offer'|'answer'} kind */
  async sendDescription(link, kind) {
    const pc = link.pc;
    if (pc.iceGatheringState !== 'complete') {
      await new Promise((resolve) => {
        const done = () => {
          if (pc.iceGatheringState === 'complete') {
            pc.removeEventListener('icegatheringstatechange', done);
            resolve(undefined);
          }
        };
        pc.addEventListener('icegatheringstatechange', done);
        done();
      });
    }
    const sdp = pc.localDescription?.sdp;
    if (!sdp || this.links.get(link.peer) !== link) return;
    this.opts.sendSignal(link.peer, await this.opts.codec.seal(link.peer, { kind, sdp }));
  }
}

/**
 * [local, remote] candidate types of the selected ICE pair (getStats), or null when unknown.
 * @param {RTCPeerConnection} pc @returns {Promise<[string, string]|null>}
 */
export async function selectedPath(pc) {
  /** @type {Map<string, any>} */
  const stats = new Map();
  (await pc.getStats()).forEach((/** @type {any} */ r) => stats.set(r.id, r));
  let pair = null;
  for (const r of stats.values()) {
    if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId);
  }
  if (!pair) for (const r of stats.values()) if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r;
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId);
  const remote = stats.get(pair.remoteCandidateId);
  if (!local || !remote) return null;
  return [String(local.candidateType), String(remote.candidateType)];
}
