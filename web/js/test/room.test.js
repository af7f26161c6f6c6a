// Tests of the sans-IO sync/room mirrors on a fake clock (no network): wire fuzzing, log CRDT rules,
// three JS rooms in a line (gossip relay), expiry everywhere, a tampered frame; two rooms for content
// (names, edits, reactions), typing, seen and erasure receipts.
import { test, assert, assertEqual } from './runner.js';
import { ProtocolError } from '../core/errors.js';
import { decodeFrame, encodeHello, encodeWant, encodeEnvelopes, encodeTombstones } from '../core/wire.js';
import { Log, RangeSet } from '../core/log.js';
import { generateIdentity, publicBundle } from '../core/identity.js';
import { deriveRoomKeys, newRoomSecret } from '../core/invite.js';
import { Room } from '../core/room.js';
import { LamportClock } from '../core/clock.js';
import { Kind, sealUnchainedEnvelope } from '../core/envelope.js';
import { encodeOp, makeSetTimer } from '../core/membership.js';
import * as content from '../core/content.js';

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

test('log: order (effective lamport, sender, seq), expiry tombstones, no resurrection', () => {
  const log = new Log(1000);
  const e = (/** @type {string} */ s, /** @type {number} */ q, /** @type {number} */ l, /** @type {number} */ x) => ({ sender: s.repeat(32), seq: q, lamport: l, sentAt: 0, expiresAt: x, data: new Uint8Array([q]) });
  assert(log.add(e('b', 1, 2, 100), 0) && log.add(e('a', 1, 2, 100), 0) && log.add(e('a', 2, 1, 50), 0));
  // a2 is backdated (lamport 1 < its own a1's 2): it is shown right after a1, never before it
  assertEqual(log.ordered().map((x) => `${x.sender[0]}${x.seq}`).join(), 'a1,a2,b1');
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
  // deliver until quiet; then let the lazy-relay announce (a HELLO 250 ms later) fire once, and again
  const pump = async () => {
    let announced = false;
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
      if (!moved) {
        if (announced) return;
        announced = true;
        now += 300;
        for (const r of rooms) await r.handleTimer(now);
      } else {
        announced = false;
      }
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
  assert(rooms[1].errorSummary().some(([, c]) => c === 'bad-signature'), 'tampered envelope refused');
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

test('backdating (issue 13, item 12): never at or before the author\'s ADD, never before its own previous message', async () => {
  const keys = await deriveRoomKeys(newRoomSecret());
  const inv = { roomId: keys.roomId, memberKey: keys.memberKey, ttlS: 3600 };
  const now = 1_700_000_000_000;
  const ids = [await generateIdentity(), await generateIdentity()];
  const [a, m] = await Promise.all(ids.map((id) => Room.create(id, inv, now)));
  for (const r of [a, m]) for (const id of ids) r.learnBundle(id.peerId, publicBundle(id));
  await a.linkUp(m.peerId, now);
  await m.linkUp(a.peerId, now);
  const pump = async () => {
    for (let i = 0; i < 50; i++) {
      let moved = 0;
      for (const [from, to] of [[a, m], [m, a]]) {
        from.takePersist();
        for (const [, data] of from.dataToSend()) { moved++; await to.receive(from.peerId, data, now); }
      }
      if (!moved) return;
    }
    throw new Error('pump did not settle');
  };
  await pump();
  await a.sendText('first', now);
  await pump();
  await m.sendText('m1', now);
  await pump();
  await a.sendText('third', now);
  await pump();
  const floor = /** @type {number} */ (a.membersPart.admittedAt.get(m.peerId));
  m.membersPart.checkPlacement = () => {};  // a hostile client: no checks on its own envelopes...
  m.sync.clock = new LamportClock(0);  // ...and it picks its lamport
  await m.sendText('before everything', now);
  await pump();
  assert((a.errorCounts(m.peerId).get('backdated') ?? 0) > 0, 'refused as backdated');
  m.sync.clock = new LamportClock(floor + 1);  // after its ADD, before its own m1
  await m.sendText('after my add', now);
  await pump();
  assertEqual(a.messages().map((x) => x.text).join(), 'first,m1,after my add,third');
});

test('equivocation (issue 13, item 3): two room timers under one (sender, seq) are void on every member', async () => {
  const keys = await deriveRoomKeys(newRoomSecret());
  const inv = { roomId: keys.roomId, memberKey: keys.memberKey, ttlS: 3600 };
  let now = 1_700_000_000_000;
  const ids = [await generateIdentity(), await generateIdentity(), await generateIdentity()];
  const [a, b, m] = await Promise.all(ids.map((id) => Room.create(id, inv, now)));
  const rooms = [a, b, m];
  for (const r of rooms) for (const id of ids) r.learnBundle(id.peerId, publicBundle(id));
  const links = [[a, b], [a, m], [b, m]];
  for (const [x, y] of links) { await x.linkUp(y.peerId, now); await y.linkUp(x.peerId, now); }
  const byId = new Map(rooms.map((r) => [r.peerId, r]));
  const pump = async () => {
    for (let i = 0; i < 50; i++) {
      let moved = 0;
      for (const r of rooms) {
        r.takePersist();
        for (const [to, data] of r.dataToSend()) { moved++; await /** @type {Room} */ (byId.get(to)).receive(r.peerId, data, now); }
      }
      if (!moved) return;
    }
    throw new Error('pump did not settle');
  };
  await pump();
  now += 1000;
  for (const r of rooms) await r.handleTimer(now);
  await pump();
  const before = a.timerS;
  const lamport = Math.max(...rooms.map((r) => r.sync.clock.value)) + 10;
  const version = async (/** @type {number} */ ttl) => sealUnchainedEnvelope(ids[2], keys.roomId, Kind.MEMBERSHIP,
    { seq: 10_000, lamport: lamport + 1, sentAt: now, expiresAt: 2 ** 52 },
    encodeOp(await makeSetTimer(ids[2], keys.memberKey, keys.roomId, lamport, ttl, 2)));
  const [short, long] = [await version(60), await version(604_800)];
  for (const frame of encodeEnvelopes([short])) await a.receive(m.peerId, frame, now);
  for (const frame of encodeEnvelopes([long])) await b.receive(m.peerId, frame, now);
  await pump();
  for (const r of [a, b]) {
    assertEqual(r.timerS, before, 'neither version counts');
    assertEqual(r.errorCounts(m.peerId).get('equivocation'), 1, 'reported against the author');
    assert(r.sync.log.isVoid(m.peerId, 10_000), 'the key is void');
  }
});

test('two JS rooms: names, edits (own only), reactions, typing TTL, seen once, erasure receipts', async () => {
  const keys = await deriveRoomKeys(newRoomSecret());
  const inv = { roomId: keys.roomId, memberKey: keys.memberKey, ttlS: 3600 };
  let now = 1_700_000_000_000;
  const ids = [await generateIdentity(), await generateIdentity()];
  const [a, b] = await Promise.all(ids.map((id) => Room.create(id, inv, now)));
  for (const r of [a, b]) for (const id of ids) r.learnBundle(id.peerId, publicBundle(id));
  await a.linkUp(b.peerId, now);
  await b.linkUp(a.peerId, now);
  /** @type {Map<string, import('../core/room.js').RoomEvent[]>} */
  const seen = new Map([[a.peerId, []], [b.peerId, []]]);
  let appFrames = 0;
  const pump = async () => {
    for (let i = 0; i < 50; i++) {
      let moved = 0;
      for (const [r, o] of [[a, b], [b, a]]) {
        r.takePersist();
        for (const [, data] of r.dataToSend()) {
          moved++;
          if (data[0] === 0x12) appFrames++;
          seen.get(o.peerId)?.push(...(await o.receive(r.peerId, data, now)));
        }
      }
      if (!moved) return;
    }
    throw new Error('pump did not settle');
  };
  await pump();
  assertEqual(a.online().size, 1, 'online');
  await a.setProfile('  Ada \u0007 Lovelace ', now);
  await pump();
  assertEqual(b.displayName(a.peerId), 'Ada Lovelace');
  await a.setProfile('Ada', now);
  await pump();
  assertEqual(b.displayName(a.peerId), 'Ada');
  const m = await a.sendText('helo', now);
  await pump();
  await a.edit(m.id, 'hello', now);
  await a.edit(m.id, 'hello!', now);
  await pump();
  const shown = () => /** @type {import('../core/room.js').Message} */ (b.messages().find((x) => x.id === m.id));
  assertEqual(shown().text, 'hello!');
  assert(shown().edited, 'marked edited');
  let refused = false;
  try { await b.edit(m.id, 'not yours', now); } catch { refused = true; }
  assert(refused, 'editing another member\'s message is refused locally');
  await b.run(() => b.sendContent(content.edit(m.id, 'forged'), now, m.expiresAt, []));
  await pump();
  assert(a.errorSummary().some(([, c]) => c === 'bad-edit'), 'a forged edit is bad-edit');
  assertEqual(/** @type {any} */ (a.messages().find((x) => x.id === m.id)).text, 'hello!');
  await b.react(m.id, '👍', now);
  await a.react(m.id, '👍', now);
  await a.react(m.id, '🎉', now);
  await pump();
  assertEqual(JSON.stringify(a.messages()[0].reactions), JSON.stringify([['🎉', [a.peerId]], ['👍', [a.peerId, b.peerId].sort()]]));
  await b.react(m.id, '👍', now, false);
  await pump();
  assertEqual(JSON.stringify(a.messages()[0].reactions), JSON.stringify([['🎉', [a.peerId]], ['👍', [a.peerId]]]));
  // typing: on, renewals rate-limited, gone 6 s after the last one
  const before = appFrames;
  await a.setTyping(true, now);
  await a.setTyping(true, now + 1000);
  await pump();
  assertEqual(appFrames - before, 1, 'typing frames');
  assertEqual(b.typingMembers(now).join(), a.peerId);
  assertEqual(b.nextTimer() !== null && /** @type {number} */ (b.nextTimer()) <= now + 6000, true);
  const advance = async (/** @type {number} */ ms) => { // in heartbeat steps, so links stay alive
    for (let t = 0; t < ms; t += 1000) {
      now += 1000;
      for (const r of [a, b]) seen.get(r.peerId)?.push(...(await r.handleTimer(now)));
      await pump();
    }
  };
  await advance(5000);
  assertEqual(b.typingMembers(now).join(), a.peerId, 'still typing at 5 s');
  await advance(1000);
  assert(seen.get(b.peerId)?.some((e) => e.type === 'typing' && !e.typing), 'typing expires');
  assertEqual(b.typingMembers(now).length, 0);
  assertEqual(b.online().size, 1, 'still linked');
  // seen: once per message, to its sender only
  const s0 = appFrames;
  await b.markSeen([m.id], now);
  await b.markSeen([m.id], now);
  await pump();
  assertEqual(appFrames - s0, 1, 'seen frames');
  assertEqual([...a.seenByMembers(m.id)].join(), b.peerId);
  // a short message with an edit: both vanish at expiry; b reports erasing them to a
  const short = await a.sendText('short', now, { ttlS: 5 });
  await pump();
  await a.edit(short.id, 'short!', now);
  await pump();
  const auxBefore = b.timeline.aux.size;
  await advance(5000);
  assert(!b.messages().some((x) => x.id === short.id), 'target erased');
  assertEqual(b.timeline.aux.size, auxBefore - 1, 'its edit erased with it');
  assertEqual(JSON.stringify(a.erasure(short.id)), JSON.stringify([1, 1]));
  assert(seen.get(a.peerId)?.some((e) => e.type === 'erased' && e.id === short.id && e.count === 1 && e.of === 1), 'erased event');
  const other = (/** @type {Room} */ r) => r.errorSummary().filter(([, c]) => c !== 'bad-edit');
  assertEqual(JSON.stringify([other(a), other(b)]), '[[],[]]');
});

test('delivery: a member that got our message from someone else is counted from its HELLO, once', async () => {
  const keys = await deriveRoomKeys(newRoomSecret());
  const inv = { roomId: keys.roomId, memberKey: keys.memberKey, ttlS: 3600 };
  let now = 1_700_000_000_000;
  const ids = [await generateIdentity(), await generateIdentity(), await generateIdentity()];
  const [author, keeper, member] = await Promise.all(ids.map((id) => Room.create(id, inv, now)));
  const rooms = [author, keeper, member];
  for (const r of rooms) for (const id of ids) r.learnBundle(id.peerId, publicBundle(id));
  const byId = new Map(rooms.map((r) => [r.peerId, r]));
  /** @type {Map<string, any[]>} */
  const events = new Map(rooms.map((r) => [r.peerId, []]));
  /** @type {Set<string>} */
  const links = new Set();
  const link = async (/** @type {Room} */ a, /** @type {Room} */ b) => {
    links.add([a.peerId, b.peerId].sort().join());
    await a.linkUp(b.peerId, now);
    await b.linkUp(a.peerId, now);
  };
  const ACK = 4;
  const pump = async () => {
    for (let i = 0; i < 50; i++) {
      let moved = 0;
      for (const r of rooms) {
        r.takePersist();
        for (const [to, data] of r.dataToSend()) {
          if (!links.has([r.peerId, to].sort().join())) continue;
          if (r === member && to === author.peerId && data[0] === ACK) continue; // only its HELLO speaks
          moved++;
          const evs = await /** @type {Room} */ (byId.get(to)).receive(r.peerId, data, now);
          /** @type {any[]} */ (events.get(to)).push(...evs);
        }
      }
      if (!moved) return;
    }
    throw new Error('pump did not settle');
  };
  const settle = async () => { // anti-entropy: HELLOs every resyncMs re-pull what was refused meanwhile
    for (let i = 0; i < 7; i++) {
      now += 1000;
      for (const r of rooms) /** @type {any[]} */ (events.get(r.peerId)).push(...await r.handleTimer(now));
      await pump();
    }
  };
  const deliveredTo = (/** @type {string} */ id) => /** @type {any[]} */ (events.get(author.peerId))
    .filter((e) => e.type === 'delivered' && e.id === id).map((e) => e.peer);
  await link(author, keeper);
  await pump();
  const msg = await author.sendText('while the member was away', now);
  await pump();
  assertEqual(deliveredTo(msg.id).join(), keeper.peerId);
  await link(keeper, member); // back from a restart: served by the keeper
  await pump();
  await settle(); // (the JS core does not park envelopes that overtake their author's ADD)
  assert(member.sync.log.holds(author.peerId, msg.seq), 'the keeper served it');
  await link(author, member);
  await pump();
  assertEqual(deliveredTo(msg.id).sort().join(), [keeper.peerId, member.peerId].sort().join());
  assertEqual([...author.deliveredTo(msg.id)].sort().join(), [keeper.peerId, member.peerId].sort().join());
});
