// Tests of the sans-IO sync/room mirrors on a fake clock (no network): wire fuzzing, log CRDT rules,
// three JS rooms in a line (gossip relay), expiry everywhere, a tampered frame.
import { test, assert, assertEqual } from './runner.js';
import { ProtocolError } from '../core/errors.js';
import { decodeFrame, encodeHello, encodeWant, encodeEnvelopes, encodeTombstones } from '../core/wire.js';
import { Log, RangeSet } from '../core/log.js';
import { generateIdentity, publicBundle } from '../core/identity.js';
import { deriveRoomKeys, newRoomSecret } from '../core/invite.js';
import { Room } from '../core/room.js';

test('wire: round trips; random and truncated frames raise ProtocolError only', () => {
  const have = new Map([['a'.repeat(32), /** @type {[number, number][]} */ ([[1, 3], [5, 5]])]]);
  const hello = decodeFrame(encodeHello('b'.repeat(32), have));
  assert(hello.type === 1 && hello.roomId === 'b'.repeat(32) && JSON.stringify([...hello.have]) === JSON.stringify([...have]));
  const frames = [encodeHello('b'.repeat(32), have), ...encodeWant(have), ...encodeEnvelopes([new Uint8Array([1, 2, 3])]),
    ...encodeTombstones([{ sender: 'c'.repeat(32), seq: 7, until: 9, proof: new Uint8Array(0) }])];
  for (const f of frames) {
    for (let n = 0; n < f.length; n++) {
      try { decodeFrame(f.slice(0, n)); } catch (e) { assert(e instanceof ProtocolError, `truncated: ${e}`); }
    }
  }
  for (let i = 0; i < 500; i++) {
    const b = crypto.getRandomValues(new Uint8Array(1 + (i % 60)));
    b[0] = 1 + (i % 7);
    try { decodeFrame(b); } catch (e) { assert(e instanceof ProtocolError, `random: ${e}`); }
  }
});

test('log: order (lamport, sender, seq), expiry tombstones, no resurrection', () => {
  const log = new Log(1000);
  const e = (/** @type {string} */ s, /** @type {number} */ q, /** @type {number} */ l, /** @type {number} */ x) => ({ sender: s.repeat(32), seq: q, lamport: l, sentAt: 0, expiresAt: x, data: new Uint8Array([q]) });
  assert(log.add(e('b', 1, 2, 100), 0) && log.add(e('a', 1, 2, 100), 0) && log.add(e('a', 2, 1, 50), 0));
  assertEqual(log.ordered().map((x) => `${x.sender[0]}${x.seq}`).join(), 'a2,a1,b1');
  assert(!log.add(e('a', 1, 2, 100), 0), 'duplicate');
  assertEqual(JSON.stringify(log.expire(60)), JSON.stringify([['a'.repeat(32), 2]]));
  assert(!log.add(e('a', 2, 1, 50), 0), 'tombstoned key refused');
  assertEqual(JSON.stringify(log.have().get('a'.repeat(32))), '[[1,2]]');
  const rs = new RangeSet([[1, 3], [7, 9]]);
  assertEqual(JSON.stringify(rs.difference(new RangeSet([[2, 8]]))), '[[1,1],[9,9]]');
});

test('three JS rooms in a line: handshake, relay, same order, unsend and expiry everywhere, tampering refused', async () => {
  const keys = await deriveRoomKeys(newRoomSecret());
  const inv = { roomId: keys.roomId, memberKey: keys.memberKey, ttlS: 3600 };
  let now = 1_700_000_000_000;
  const ids = [await generateIdentity(), await generateIdentity(), await generateIdentity()];
  const rooms = await Promise.all(ids.map((id) => Room.create(id, inv, now)));
  for (const r of rooms) for (const id of ids) r.learnBundle(id.peerId, publicBundle(id));
  const byId = new Map(rooms.map((r) => [r.peerId, r]));
  for (const [a, b] of [[0, 1], [1, 2]]) {
    await rooms[a].linkUp(rooms[b].peerId, now);
    await rooms[b].linkUp(rooms[a].peerId, now);
  }
  let tamper = false;
  const pump = async () => {
    for (let i = 0; i < 50; i++) {
      let moved = 0;
      for (const r of rooms) {
        r.takePersist();
        for (const [to, data] of r.dataToSend()) {
          moved++;
          if (tamper && data[0] === 2) { data[data.length - 1] ^= 1; tamper = false; }
          await /** @type {Room} */ (byId.get(to)).receive(r.peerId, data, now);
        }
      }
      if (!moved) return;
    }
    throw new Error('pump did not settle');
  };
  await pump();
  assertEqual(rooms.map((r) => r.members().length).join(), '3,3,3');
  assertEqual(rooms.map((r) => r.online().size).join(), '1,2,1');
  await rooms[0].sendText('from 0', now);
  await rooms[2].sendText('short', now, { ttlS: 5 });
  await pump();
  const order = rooms[0].messages().map((m) => m.text).join();
  for (const r of rooms) assertEqual(r.messages().map((m) => m.text).join(), order);
  assertEqual(rooms[0].messages().length, 2);
  tamper = true;
  await rooms[0].sendText('tampered on the wire', now);
  await pump();
  assert(rooms[1].protocolErrors.some(([, c]) => c === 'bad-signature'), 'tampered envelope refused');
  const victim = /** @type {import('../core/room.js').Message} */ (rooms[0].messages().find((m) => m.text === 'from 0'));
  const local = await rooms[0].unsend(victim.id, now);
  assertEqual(local.map((e) => e.type).join(), 'expired');
  await pump();
  for (const r of rooms) assert(!r.messages().some((m) => m.text === 'from 0'), 'unsent everywhere');
  assert(rooms[2].sync.log.getTombstone(rooms[0].peerId, victim.seq)?.proof.length, 'tombstone carries the signed proof');
  now += 6000;
  for (const r of rooms) await r.handleTimer(now);
  for (const r of rooms) assert(!r.messages().some((m) => m.text === 'short'), 'expired everywhere');
});
