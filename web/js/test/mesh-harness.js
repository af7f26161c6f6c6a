// Drives a signaling client + mesh from a Playwright test (loaded on test.html?manual).
// Exposes `startNode(wsUrl, fragment)` which resolves once authenticated and joined; received frames
// accumulate in node.frames and link states in node.links, so the test waits on conditions.
// Signaling payloads are sealed and signed (net/sealed-codec.js), exactly as in the app.
import { fromUtf8, utf8 } from '../core/bytes.js';
import { ed25519Sign } from '../core/crypto.js';
import { generateIdentity } from '../core/identity.js';
import { deriveRoomKeys, parseFragment } from '../core/invite.js';
import { SignalingClient } from '../net/signaling.js';
import { Mesh } from '../net/mesh.js';
import { createSealedCodec } from '../net/sealed-codec.js';

/** @param {string} wsUrl @param {string} fragment invite fragment (v1.<secret>) */
export async function startNode(wsUrl, fragment) {
  const identity = await generateIdentity();
  const keys = await deriveRoomKeys(parseFragment(fragment).secret);
  const room = keys.roomId;
  /** @type {string[]} */
  const bundlesFrom = [];
  /** @type {{peer:string, text:string}[]} */
  const frames = [];
  /** @type {Record<string, string>} */
  const links = {};
  /** @type {Mesh|null} */
  let mesh = null;
  const client = new SignalingClient({
    url: wsUrl,
    publicKey: identity.publicKey,
    sign: (m) => ed25519Sign(identity.signingKey, m),
    onEvent: (ev) => {
      if (!mesh) return;
      if (ev.type === 'peer-joined' && ev.room === room) void mesh.addPeer(ev.peer);
      if (ev.type === 'peer-left' && ev.room === room) mesh.removePeer(ev.peer);
      if (ev.type === 'signal' && ev.room === room) void mesh.handleSignal(ev.from, ev.payload);
    },
  });
  const { peer } = await client.connect();
  mesh = new Mesh({
    selfId: peer,
    codec: createSealedCodec({ identity, room: keys, onBundle: (p) => bundlesFrom.push(p) }),
    sendSignal: (to, payload) => client.signal(room, to, payload),
    onFrame: (from, frame) => frames.push({ peer: from, text: fromUtf8(frame) }),
    onLinkState: (p, state) => { links[p] = state; },
  });
  const present = await client.join(room);
  for (const p of present) void mesh.addPeer(p);
  const m = mesh;
  return {
    peer,
    room,
    bundlesFrom,
    frames,
    links,
    send: (/** @type {string} */ to, /** @type {string} */ text) => m.send(to, utf8(text)),
    close: () => { m.close(); client.close(); },
  };
}
