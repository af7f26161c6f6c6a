// JS membership recompute is linear (issue 13 item 8): the room recomputes from every op on each new op;
// each op's MAC/signature/prekey must be checked once, not on every recompute. Crypto calls are counted by
// wrapping WebCrypto's verify. Prints JSON.

import { generateIdentity, publicBundle } from '../../../web/js/core/identity.js';
import { generatePrekey } from '../../../web/js/core/handshake.js';
import { makeAdd, stateFromOps } from '../../../web/js/core/membership.js';

const subtle = globalThis.crypto.subtle;
let verifies = 0;
const inner = subtle.verify.bind(subtle);
subtle.verify = (...args) => { verifies += 1; return inner(...args); };


const roomId = 'ab'.repeat(16);
const memberKey = new Uint8Array(32).fill(7);
const n = Number(process.argv[2] ?? 60);
const ops = [];
for (let i = 0; i < n; i++) {
  const id = await generateIdentity();
  const prekey = await generatePrekey(id, 1_700_000_000_000);
  ops.push(await makeAdd(id, memberKey, roomId, n - i, publicBundle(id), prekey.signed ?? prekey));
}
verifies = 0;
let state;
for (let i = 1; i <= n; i++) ({ state } = await stateFromOps(roomId, ops.slice(0, i), memberKey)); // as room.js does
console.log(JSON.stringify({ n, members: state.members.size, verifies }));
