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
// - iceServers is [] unless TURN credentials are given.
// - A neighbour that has not opened its channel within connectTimeoutMs is reported 'failed'.

import { ProtocolError } from '../core/errors.js';
import { isId } from '../core/ids.js';

export const CHANNEL_LABEL = 'ephemesh';
export const MAX_FRAME_BYTES = 64 * 1024;
export const MAX_SIGNAL_CHARS = 60000;

/**
 * @typedef {{kind:'offer', sdp:string} | {kind:'answer', sdp:string} | {kind:'candidate', candidate: RTCIceCandidateInit|null}} SignalMessage
 * @typedef {{ seal(to: string, msg: SignalMessage): Promise<string>, open(from: string, payload: string): Promise<SignalMessage> }} SignalCodec
 * @typedef {'connecting'|'open'|'closed'|'failed'} LinkState
 */

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
 * @property {number} [connectTimeoutMs]
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
  }
}

export class Mesh {
  /** @param {MeshOptions} opts */
  constructor(opts) {
    if (!isId(opts.selfId)) throw new Error('bad self id');
    if (!opts.codec) throw new Error('a signal codec is required');
    this.opts = opts;
    /** @type {Map<string, Link>} */
    this.links = new Map();
  }

  /** Peers whose channel is open. */
  openPeers() {
    return [...this.links.values()].filter((l) => l.state === 'open').map((l) => l.peer);
  }

  /** @param {string} peer @returns {LinkState|null} */
  linkState(peer) {
    return this.links.get(peer)?.state ?? null;
  }

  /** A neighbour is present (joined list or peer-joined). Offers if our id is lower. @param {string} peer */
  async addPeer(peer) {
    if (!isId(peer) || peer === this.opts.selfId || this.links.has(peer)) return;
    const link = this.createLink(peer);
    if (this.opts.selfId < peer) {
      const channel = link.pc.createDataChannel(CHANNEL_LABEL, { ordered: true });
      this.attachChannel(link, channel);
      await link.pc.setLocalDescription(await link.pc.createOffer());
      await this.sendDescription(link, 'offer');
    }
  }

  /** A neighbour left: close its connection. @param {string} peer */
  removePeer(peer) {
    const link = this.links.get(peer);
    if (!link) return;
    this.links.delete(peer);
    this.setState(link, 'closed');
    link.pc.close();
  }

  /**
   * A signaling payload arrived from `from`. Payloads the codec refuses, and offers that break the
   * lower-id-offers rule, are dropped. @param {string} from @param {string} payload
   */
  async handleSignal(from, payload) {
    if (!isId(from) || from === this.opts.selfId) return;
    /** @type {SignalMessage} */
    let msg;
    try {
      msg = await this.opts.codec.open(from, payload);
    } catch {
      return; // fail closed: an unopenable payload never reaches WebRTC
    }
    if (msg.kind === 'offer') {
      if (!(from < this.opts.selfId)) return;
      let link = this.links.get(from);
      if (link && link.pc.signalingState !== 'stable') return;
      if (link) this.removePeer(from);
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
    for (const peer of [...this.links.keys()]) this.removePeer(peer);
  }

  /** @param {string} peer */
  createLink(peer) {
    const pc = new RTCPeerConnection({ iceServers: this.opts.iceServers ?? [] });
    const link = new Link(peer, pc);
    this.links.set(peer, link);
    pc.ondatachannel = (ev) => {
      if (ev.channel.label === CHANNEL_LABEL && !link.channel) this.attachChannel(link, ev.channel);
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed') this.setState(link, 'failed');
      if (pc.connectionState === 'closed') this.setState(link, 'closed');
    };
    link.timer = setTimeout(() => {
      if (link.state === 'connecting') this.setState(link, 'failed');
    }, this.opts.connectTimeoutMs ?? 15000);
    return link;
  }

  /** @param {Link} link @param {RTCDataChannel} channel */
  attachChannel(link, channel) {
    link.channel = channel;
    channel.binaryType = 'arraybuffer';
    channel.onopen = () => this.setState(link, 'open');
    channel.onclose = () => this.setState(link, 'closed');
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
