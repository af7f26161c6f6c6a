// The JS sync engine's per-neighbour budgets (issue 13 items 4 and 7), mirroring tests/sync/test_budgets.py.
// Run by tests/sync/test_budgets_js.py with node; prints one JSON object of measured counts.
import { SyncEngine } from '../../../web/js/core/sync.js';
import * as wire from '../../../web/js/core/wire.js';

const HOUR = 3_600_000;
const hex = (n) => n.toString(16).padStart(32, '0');
const ROOM = hex(0xabc);
const HOSTILE = hex(0xbad);
const enc = new TextEncoder();
const dec = new TextDecoder();
/** dummy envelopes: JSON with the entry's fields (the engine never looks inside) */
const envelope = (sender, seq, lamport, now, ttl, pad = 200) =>
  enc.encode(JSON.stringify({ sender, seq, lamport, sentAt: now, expiresAt: now + ttl, pad: 'x'.repeat(pad) }));
const validate = async (data) => {
  const o = JSON.parse(dec.decode(data));
  return { sender: o.sender, seq: o.seq, lamport: o.lamport, sentAt: o.sentAt, expiresAt: o.expiresAt, data };
};
const engine = (id, opts = {}) => new SyncEngine(id, ROOM, validate, opts);
const now = 1_700_000_000_000;

async function link(v, have = new Map()) {
  v.connect(HOSTILE, now);
  await v.receive(HOSTILE, wire.encodeHello(ROOM, have), now);
  v.dataToSend();
}
const served = (v) => v.dataToSend().filter(([n]) => n === HOSTILE).map(([, f]) => wire.decodeFrame(f))
  .filter((f) => f.type === wire.FrameType.ENVELOPES).reduce((a, f) => a + f.items.length, 0);

const out = {};

// HELLO flood: 300 HELLOs claiming fresh senders
{
  const v = engine(hex(1));
  await link(v);
  let maxInflight = 0;
  for (let i = 0; i < 300; i++) {
    await v.receive(HOSTILE, wire.encodeHello(ROOM, new Map([[hex(1000 + i), [[0, 1_000_000]]]])), now);
    maxInflight = Math.max(maxInflight, v.budgetCounts(HOSTILE).inflight, v.pendingWants());
  }
  await v.receive(HOSTILE, wire.encodeHello(ROOM, new Map()), now);
  out.hello = { maxInflight, cap: v.config.maxWantKeys, afterEmptyHello: v.budgetCounts(HOSTILE).inflight };
}

// WANT flood: 300 WANTs for a 500-entry log
{
  const v = engine(hex(1));
  for (let seq = 0; seq < 500; seq++) await v.publish(envelope(hex(1), seq, seq + 1, now, HOUR), now);
  await link(v);
  const want = wire.encodeWant(new Map([[hex(1), [[0, 10_000]]]]));
  let total = 0;
  for (let i = 0; i < 300; i++) {
    for (const f of want) await v.receive(HOSTILE, f, now);
    total += served(v);
  }
  const later = now + v.config.wantTimeoutMs;
  for (const f of want) await v.receive(HOSTILE, f, later);
  out.want = { total, retry: served(v) };
}

// tombstone flood: 80,000 tombstones for 2,000 non-members; a newcomer then syncs the 5 real messages
{
  const real = hex(7);
  const v = engine(hex(1), { knownSender: (p) => p === real });
  for (let seq = 0; seq < 5; seq++) await v.publish(envelope(real, seq, seq + 1, now, HOUR), now);
  await link(v);
  const tombs = [];
  for (let i = 0; i < 2000; i++) for (let j = 0; j < 40; j++) tombs.push({ sender: hex(5000 + i), seq: j, until: now, proof: new Uint8Array() });
  for (const f of wire.encodeTombstones(tombs)) await v.receive(HOSTILE, f, now);
  const foreign = [];
  for (let seq = 1000; seq < 6000; seq++) foreign.push({ sender: real, seq, until: now, proof: new Uint8Array() });
  for (const f of wire.encodeTombstones(foreign)) await v.receive(HOSTILE, f, now);
  const hello = wire.decodeFrame(v.hello());
  const counts = v.budgetCounts(HOSTILE);
  const n = engine(hex(2), { knownSender: (p) => p === real });
  v.connect(n.selfId, now); n.connect(v.selfId, now);
  for (let round = 0; round < 50; round++) {
    const batch = [...v.dataToSend().filter(([d]) => d === n.selfId).map(([, f]) => [n, v.selfId, f]),
      ...n.dataToSend().filter(([d]) => d === v.selfId).map(([, f]) => [v, n.selfId, f])];
    if (!batch.length) break;
    for (const [dst, src, f] of batch) await dst.receive(src, f, now);
  }
  out.tombs = { stored: v.log.tombstones().length, helloSenders: [...hello.have.keys()], real,
    remoteHaveRanges: counts.remoteHaveRanges, unservable: counts.unservable,
    foreign: counts.foreignTombstones, cap: v.config.maxForeignTombstonesPerNeighbour, newcomer: n.log.length };
}

// tombstones of our own next seqs: dropped, so our next messages publish (was: "duplicate" forever)
{
  const me = hex(1);
  const v = engine(me, { knownSender: () => true });
  await v.publish(envelope(me, 1, 1, now, HOUR), now);
  await link(v);
  const own = [2, 3, 4].map((seq) => ({ sender: me, seq, until: now, proof: new Uint8Array() }));
  for (const f of wire.encodeTombstones(own)) await v.receive(HOSTILE, f, now);
  const stored = v.log.tombstones().length;
  let published = 0;
  for (const seq of [2, 3, 4]) { await v.publish(envelope(me, seq, seq, now, HOUR), now); published++; }
  out.ownTombs = { stored, published };
}

// equivocation check floods: bogus DIGESTS for 2,001 senders (50 times), then hash requests (500)
{
  const v = engine(hex(1));
  const m = hex(0x77);
  v.connect(m, now);
  await v.receive(m, wire.encodeHello(ROOM, new Map()), now);
  for (const f of wire.encodeEnvelopes(Array.from({ length: 3000 }, (_, i) => envelope(m, i + 1, i + 1, now, HOUR, 20)))) await v.receive(m, f, now);
  await link(v, new Map([[m, [[1, 3000]]]]));
  const senders = [m, ...Array.from({ length: 2000 }, (_, i) => hex(9000 + i))];
  let asked = 0, maxChecks = 0;
  for (let i = 0; i < 50; i++) {
    for (const f of wire.encodeDigests(senders.map((x) => [x, 3000, new Uint8Array(32).fill(1)]))) await v.receive(HOSTILE, f, now);
    asked += v.dataToSend().filter(([n, f]) => n === HOSTILE && f[0] === wire.FrameType.HASH_WANT).length;
    maxChecks = Math.max(maxChecks, v.budgetCounts(HOSTILE).checks);
  }
  let pages = 0, items = 0;
  const later = now + v.config.wantTimeoutMs;
  for (let i = 0; i < 500; i++) {
    const level = i % 2;
    await v.receive(HOSTILE, wire.encodeHashWant(m, level, 0, level ? Math.floor(wire.MAX_INT / 64) : wire.MAX_INT), later);
    for (const [n, f] of v.dataToSend()) {
      if (n !== HOSTILE) continue;
      const fr = wire.decodeFrame(f);
      if (fr.type === wire.FrameType.HASHES) { pages += 1; items += fr.items.length; }
    }
  }
  // new marks in every DIGESTS and HELLO: uncached digests computed per window are bounded
  let computed = 0;
  const compute = v.check.compute.bind(v.check);
  v.check.compute = async (sender, hi) => { computed += 1; return compute(sender, hi); };
  const fresh = later + v.config.wantTimeoutMs;
  for (let k = 1000; k < 1100; k++) {
    await v.receive(HOSTILE, wire.encodeDigests([[m, k, new Uint8Array(32)]])[0], fresh);
    await v.receive(HOSTILE, wire.encodeHello(ROOM, new Map([[m, [[1, k + 100]]]])), fresh);
  }
  v.dataToSend();
  out.check = { asked, maxChecks, capChecks: v.config.maxChecksPerNeighbour, pages, items,
    capPages: v.config.maxHashPagesPerWindow, capItems: v.config.maxHashItemsPerWindow,
    computed, capDigests: v.config.maxDigestsPerWindow };
}

console.log(JSON.stringify(out));
