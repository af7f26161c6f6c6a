// JS sender-key distribution under a fake-member flood (issue 13 item 8): room A (with a chain) gets N fake
// self-ADDs relayed by its neighbour B; A must seal its chain to at most distribution PER_WINDOW members
// it has not linked with per window, the rest waiting; a rotation reaches at once the members it served.
// Prints JSON {members, sealed, waiting, atRotation, sealedLater}.

import { generateIdentity, publicBundle } from '../../../web/js/core/identity.js';
import { deriveRoomKeys } from '../../../web/js/core/invite.js';
import { Kind } from '../../../web/js/core/envelope.js';
import { Room } from '../../../web/js/core/room.js';
import { encodeEnvelopes } from '../../../web/js/core/wire.js';

const n = Number(process.argv[2] ?? 40);
const keys = await deriveRoomKeys(new Uint8Array(32).fill(5));
const invite = { roomId: keys.roomId, memberKey: keys.memberKey, ttlS: 0, owner: null };
let now = 1_700_000_000_000;
const [ia, ib] = [await generateIdentity(), await generateIdentity()];
const a = await Room.create(ia, invite, now);
const b = await Room.create(ib, invite, now);
a.learnBundle(ib.peerId, publicBundle(ib));
b.learnBundle(ia.peerId, publicBundle(ia));
await a.linkUp(ib.peerId, now);
await b.linkUp(ia.peerId, now);
const rooms = new Map([[ia.peerId, a], [ib.peerId, b]]);
async function pump() {
  for (let round = 0; round < 200; round++) {
    let moved = false;
    for (const [from, room] of rooms) {
      room.takePersist();
      for (const [to, data] of room.dataToSend()) {
        moved = true;
        await /** @type {Room} */ (rooms.get(to)).receive(from, data, now);
      }
    }
    if (!moved) return;
  }
  throw new Error('network did not settle');
}
async function tick(ms) {
  for (const end = now + ms; now < end;) {
    now = Math.min(now + 250, end);
    for (const room of rooms.values()) {
      const when = room.nextTimer();
      if (when !== null && when <= now) await room.handleTimer(now);
    }
    await pump();
  }
}
await pump();
await tick(1000);
await a.sendText('history', now, { ttlS: 3600 });
await pump();
const sealedBy = (/** @type {Room} */ r) => r.sync.log.ordered().filter((e) => e.sender === r.peerId && e.data[1] === Kind.SENDER_KEY).length;
const before = sealedBy(a);
const adds = [];
for (let i = 0; i < n; i++) {
  const fake = await Room.create(await generateIdentity(), invite, now);
  adds.push(...fake.takePersist().envelopes.map((e) => e.data));
}
for (const frame of encodeEnvelopes(adds)) await a.receive(ib.peerId, frame, now);
const sealed = sealedBy(a) - before;
const waiting = a.distribution.size;
await a.sendText('a new window', now, { ttlS: 7300 }); // rotates: b and the served members at once
const atRotation = sealedBy(a) - before - sealed;
await tick(60_000);
console.log(JSON.stringify({ members: a.members().length, sealed, waiting, atRotation, sealedLater: sealedBy(a) - before }));
