// The production signal codec for the mesh: every offer/answer/candidate travels encrypted for the
// room and signed by our identity (core/signal.js), with the SDP's DTLS fingerprints signed.
//
// Rules:
// - hello bodies are {} (the nudge the higher id sends, as peer/net/mesh.py does);
// - offer/answer bodies are {"type": kind, "sdp": sdp}; candidates are flat, as peer/net/rtc.py reads
//   them: {"candidate": "candidate:..." | null, "sdpMid": str|null, "sdpMLineIndex": int|null}.
// - open() returns only what core/signal.js verified; the sender's verified PublicBundle is reported
//   through onBundle (used for safety numbers). Any failure throws ProtocolError and the mesh drops it.

import { ReplayCache, openSignal, sealSignal } from '../core/signal.js';
import { parseSignalMessage } from './mesh.js';

/**
 * @param {{ identity: import('../core/identity.js').Identity,
 *   room: {roomId: string, signalKey: Uint8Array},
 *   now?: () => number,
 *   onBundle?: (peer: string, bundle: import('../core/identity.js').PublicBundle) => void }} opts
 * @returns {import('./mesh.js').SignalCodec}
 */
export function createSealedCodec(opts) {
  const now = opts.now ?? Date.now;
  const replay = new ReplayCache();
  return {
    async seal(to, msg) {
      const body = msg.kind === 'candidate'
        ? { candidate: msg.candidate?.candidate ?? null, sdpMid: msg.candidate?.sdpMid ?? null, sdpMLineIndex: msg.candidate?.sdpMLineIndex ?? null }
        : msg.kind === 'hello' ? {} : { type: msg.kind, sdp: msg.sdp };
      return sealSignal(opts.identity, opts.room, to, msg.kind, body, now());
    },
    async open(from, payload) {
      const opened = await openSignal(opts.room, opts.identity.peerId, from, payload, now(), replay);
      opts.onBundle?.(from, opened.senderBundle);
      const body = /** @type {any} */ (opened.body);
      if (opened.kind === 'hello') return parseSignalMessage({ kind: 'hello' });
      if (opened.kind === 'candidate') {
        const candidate = typeof body?.candidate === 'string' ? { candidate: body.candidate, sdpMid: body.sdpMid, sdpMLineIndex: body.sdpMLineIndex } : null;
        return parseSignalMessage({ kind: 'candidate', candidate });
      }
      return parseSignalMessage({ kind: opened.kind, sdp: body?.sdp });
    },
  };
}
