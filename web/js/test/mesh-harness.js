// Drives a signaling client + mesh from a Playwright test (loaded on test.html?manual).
// Exposes `startNode(wsUrl, room)` which resolves once authenticated and joined; received frames
// accumulate in node.frames and link states in node.links, so the test waits on conditions.
import { ed25519Generate, ed25519Sign } from '../core/crypto.js';
import { fromUtf8, utf8 } from '../core/bytes.js';
import { SignalingClient } from '../net/signaling.js';
import { Mesh, PLAIN_CODEC } from '../net/mesh.js';

/** @param {string} wsUrl @param {string} room */
export async function startNode(wsUrl, room) {
  const identity = await ed25519Generate();
  /** @type {{peer:string, text:string}[]} */
  const frames = [];
  /** @type {Record<string, string>} */
  const links = {};
  /** @type {Mesh|null} */
  let mesh = null;
  const client = new SignalingClient({
    url: wsUrl,
    publicKey: identity.publicKey,
    sign: (m) => ed25519Sign(identity.privateKey, m),
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
    codec: PLAIN_CODEC,
    sendSignal: (to, payload) => client.signal(room, to, payload),
    onFrame: (from, frame) => frames.push({ peer: from, text: fromUtf8(frame) }),
    onLinkState: (p, state) => { links[p] = state; },
  });
  const present = await client.join(room);
  for (const p of present) void mesh.addPeer(p);
  const m = mesh;
  return {
    peer,
    frames,
    links,
    send: (/** @type {string} */ to, /** @type {string} */ text) => m.send(to, utf8(text)),
    close: () => { m.close(); client.close(); },
  };
}
